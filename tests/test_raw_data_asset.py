"""The `flights/raw_data` asset on a real Dagster instance, with real landed flights files."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from dagster import (
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    AssetsDefinition,
    BackfillPolicy,
    DagsterInstance,
    ExecuteInProcessResult,
    MaterializeResult,
    asset,
    materialize,
)

from assets import raw_data
from assets.partitions import daily_partitions
from assets.raw_checks import CONTRACT_CHECK
from driftloop.data.contract import Contract
from driftloop.data.lake import blocked_marker
from driftloop.data.validation import CHECK_NAMES
from driftloop.paths import DatasetPaths
from resources.lake import LakeResource

DAYS = ["2013-01-01", "2013-01-02", "2013-01-03"]
RAW = AssetKey(["flights", "raw_data"])
PROBE = AssetKey(["flights", "downstream_probe"])
# The probe below uses backfill_policy, which 1.13 marks as beta.
pytestmark = pytest.mark.filterwarnings("ignore::dagster.BetaWarning")


@pytest.fixture(scope="module")
def flights3() -> pd.DataFrame:
    from driftloop.data.flights_source import flights_between

    return flights_between(date(2013, 1, 1), 3)


def _raw_assets_def(contract: Contract) -> AssetsDefinition:
    # The resources come with the code location's Definitions, not with build().
    (assets_def,) = raw_data.build(contract).assets
    return assets_def


@pytest.fixture
def assets(flights_contract: Contract) -> list:
    raw_def = _raw_assets_def(flights_contract)

    @asset(
        key=PROBE,
        deps=[RAW],
        partitions_def=daily_partitions(flights_contract),
        backfill_policy=BackfillPolicy.single_run(),
    )
    def downstream_probe() -> MaterializeResult:
        return MaterializeResult()

    return [raw_def, downstream_probe]


def _day(frame: pd.DataFrame, day: str) -> pd.DataFrame:
    return frame[frame["scheduled_departure"].dt.strftime("%Y-%m-%d") == day]


def _land(paths: DatasetPaths, frame: pd.DataFrame, name: str) -> None:
    paths.landing.mkdir(parents=True, exist_ok=True)
    if name.endswith(".csv"):
        frame.to_csv(paths.landing / name, index=False)
    else:
        frame.to_parquet(paths.landing / name, index=False)


def _run(
    assets: list, instance: DagsterInstance, root: Path, days: list[str]
) -> ExecuteInProcessResult:
    options: dict = {"partition_key": days[0]}
    if len(days) > 1:
        options = {
            "tags": {
                "dagster/asset_partition_range_start": days[0],
                "dagster/asset_partition_range_end": days[-1],
            }
        }
    return materialize(
        assets,
        instance=instance,
        resources={"lake": LakeResource(data_dir=str(root))},
        raise_on_error=False,
        **options,
    )


def _checks(result: ExecuteInProcessResult) -> dict[tuple[str, str | None], bool]:
    return {(e.check_name, e.partition): e.passed for e in result.get_asset_check_evaluations()}


def _failure_messages(result: ExecuteInProcessResult) -> str:
    return "\n".join(
        str(e.step_failure_data.error.to_string())
        for e in result.get_step_failure_events()
        if e.step_failure_data and e.step_failure_data.error
    )


def _materialized(result: ExecuteInProcessResult) -> set[tuple[AssetKey, str | None]]:
    return {(m.asset_key, m.partition) for m in result.get_asset_materialization_events()}


def test_definitions_declare_the_asset_and_its_checks(flights_contract: Contract) -> None:
    spec = _raw_assets_def(flights_contract)
    assert spec.key == RAW
    assert spec.group_names_by_key[RAW] == "flights"
    assert spec.backfill_policy == BackfillPolicy.single_run()
    assert "lake" in spec.required_resource_keys
    [check] = spec.check_specs
    assert check.name == CONTRACT_CHECK and check.blocking
    assert check.partitions_def == spec.partitions_def


@pytest.mark.slow
def test_days_materialize_and_pass_their_checks(
    assets, flights_contract, flights_paths, data_root, dagster_instance, flights3
) -> None:
    _land(flights_paths, _day(flights3, DAYS[0]), "day1.csv")
    _land(flights_paths, flights3[flights3["scheduled_departure"] >= DAYS[1]], "days23.parquet")

    first = _run(assets, dagster_instance, data_root, DAYS[:1])
    assert first.success
    # Only the day asked for: the days the landed files also filled stay staged.
    assert _materialized(first) == {(RAW, DAYS[0]), (PROBE, DAYS[0])}
    assert _checks(first) == {(CONTRACT_CHECK, DAYS[0]): True}
    [evaluation] = first.get_asset_check_evaluations()
    # Every rule's result is in the day's check.
    assert all(f"| {name} | yes |" in evaluation.metadata["rules"].value for name in CHECK_NAMES)
    assert not flights_paths.partition_file("raw", DAYS[1]).exists()
    [meta] = [
        e.materialization.metadata
        for e in first.get_asset_materialization_events()
        if e.asset_key == RAW and e.partition == DAYS[0]
    ]
    rows = len(_day(flights3, DAYS[0]))
    assert meta["dagster/row_count"].value == rows
    assert meta["source_files"].value == {"day1.csv": rows}
    assert meta["rows_landed"].value == meta["rows_stored"].value == rows
    assert meta["accounting_balanced"].value is True
    assert "flight_id" in meta["preview"].value
    partition = flights_paths.partition_file("raw", DAYS[0])
    assert pq.ParquetFile(partition).metadata.num_rows == rows
    assert not blocked_marker(flights_paths.table("raw"), DAYS[0]).exists()

    # The other two days in one run (single-run backfill): per-day files and check results.
    rest = _run(assets, dagster_instance, data_root, DAYS[1:])
    assert rest.success, _failure_messages(rest)
    assert _materialized(rest) == {(k, d) for k in (RAW, PROBE) for d in DAYS[1:]}
    assert _checks(rest) == {(CONTRACT_CHECK, d): True for d in DAYS[1:]}
    for day in DAYS[1:]:
        assert pq.ParquetFile(flights_paths.partition_file("raw", day)).metadata.num_rows == len(
            _day(flights3, day)
        )
    # Stored per partition, so the UI shows each day's status.
    history = dagster_instance.event_log_storage.get_asset_check_execution_history(
        AssetCheckKey(RAW, CONTRACT_CHECK), limit=10
    )
    assert {r.partition for r in history} == set(DAYS)

    # Re-running a day with nothing new landed rewrites the same rows.
    again = _run(assets, dagster_instance, data_root, DAYS[:1])
    assert again.success
    assert pq.ParquetFile(partition).metadata.num_rows == rows


@pytest.mark.slow
def test_blocking_check_failure_blocks_the_day_and_stops_downstream(
    assets, flights_contract, flights_paths, data_root, dagster_instance, flights3
) -> None:
    bad = _day(flights3, DAYS[0]).copy()
    bad.loc[bad.index[: len(bad) * 6 // 10], "temp"] = None  # 60% > max_null_fraction 0.5
    _land(flights_paths, bad, "day1_no_weather.csv")

    result = _run(assets, dagster_instance, data_root, DAYS[:1])

    assert not result.success
    assert dagster_instance.get_materialized_partitions(RAW) == {DAYS[0]}
    assert (PROBE, DAYS[0]) not in _materialized(result)
    assert _checks(result) == {(CONTRACT_CHECK, DAYS[0]): False}
    assert "blocking asset check failed" in _failure_messages(result)
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.severity == AssetCheckSeverity.ERROR
    assert evaluation.metadata["failed_rules"].value == ["null_fractions"]
    assert "null_fractions: column 'temp'" in evaluation.description
    assert evaluation.metadata["null_fractions/columns"].value == ["temp"]
    assert evaluation.metadata["null_fractions/source_files"].value == {
        "day1_no_weather.csv": len(bad) * 6 // 10
    }

    marker = blocked_marker(flights_paths.table("raw"), DAYS[0])
    body = json.loads(marker.read_text())
    assert [c["name"] for c in body["failed_checks"]] == ["null_fractions"]
    assert "column 'temp' rule max_null_fraction=0.5" in body["failed_checks"][0]["description"]
    assert flights_paths.partition_file("raw", DAYS[0]).exists()

    # A corrected delivery under the same name replaces the rows and lifts the block.
    _land(flights_paths, _day(flights3, DAYS[0]), "day1_no_weather.csv")
    fixed = _run(assets, dagster_instance, data_root, DAYS[:1])
    assert fixed.success, _failure_messages(fixed)
    assert (PROBE, DAYS[0]) in _materialized(fixed)
    assert not marker.exists()


@pytest.mark.slow
def test_range_run_writes_every_day_and_marks_only_the_bad_one(
    assets, flights_contract, flights_paths, data_root, dagster_instance, flights3
) -> None:
    frame = flights3.copy()
    day2 = frame["scheduled_departure"].dt.strftime("%Y-%m-%d") == DAYS[1]
    frame.loc[frame.index[day2][:700], "temp"] = None
    _land(flights_paths, frame, "three_days.parquet")

    result = _run(assets, dagster_instance, data_root, DAYS)

    assert not result.success
    assert {p for k, p in _materialized(result) if k == PROBE} == set()
    assert _checks(result) == {(CONTRACT_CHECK, d): d != DAYS[1] for d in DAYS}
    evaluations = result.get_asset_check_evaluations()
    failed = {e.partition: e.metadata["failed_rules"].value for e in evaluations}
    assert failed == {DAYS[0]: [], DAYS[1]: ["null_fractions"], DAYS[2]: []}
    table = flights_paths.table("raw")
    assert [blocked_marker(table, d).exists() for d in DAYS] == [False, True, False]
    assert all(flights_paths.partition_file("raw", d).exists() for d in DAYS)


@pytest.mark.slow
def test_a_day_without_data_fails_clearly(
    assets, flights_paths, data_root, dagster_instance, flights3
) -> None:
    _land(flights_paths, _day(flights3, DAYS[0]), "day1.csv")
    result = _run(assets, dagster_instance, data_root, ["2013-01-05"])
    assert not result.success
    assert "no data landed for 2013-01-05" in _failure_messages(result)
    assert not flights_paths.partition_file("raw", "2013-01-05").exists()
    # The landed file was still ingested: its own day is staged, not written (not asked for).
    assert list((flights_paths.staged / f"date={DAYS[0]}").glob("*.parquet"))
    assert not flights_paths.partition_file("raw", DAYS[0]).exists()
    assert dagster_instance.get_materialized_partitions(RAW) == set()


@pytest.mark.slow
def test_a_range_writes_and_records_only_its_days(
    data_root: Path, dagster_instance: DagsterInstance, tmp_path: Path, monkeypatch
) -> None:
    """A landed history of 12 days and a run for 3 of them: those 3 are written and recorded,
    the other 9 stay staged and are named, and a second run writes them. With Dagster's
    event batching on, as docs/deploy.md advises: every day is still recorded."""
    from benchmarks.data import hourly_contract, hourly_history
    from driftloop.data.contract import load_contract
    from driftloop.paths import dataset_paths

    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "5")
    (tmp_path / "hourly.yaml").write_text(hourly_contract("hourly", 12))
    contract = load_contract(tmp_path / "hourly.yaml")
    paths = dataset_paths("hourly", data_root)
    _land(paths, hourly_history(12), "history.csv")
    days = [f"2019-01-{d:02d}" for d in range(1, 13)]
    key = AssetKey(["hourly", "raw_data"])
    assets = [_raw_assets_def(contract)]

    first = _run(assets, dagster_instance, data_root, days[3:6])

    assert first.success, _failure_messages(first)
    assert dagster_instance.get_materialized_partitions(key) == set(days[3:6])
    assert {p for _, p in _checks(first)} == set(days[3:6])
    assert [paths.partition_file("raw", d).exists() for d in days] == [d in days[3:6] for d in days]
    assert all(list((paths.staged / f"date={d}").glob("*.parquet")) for d in days)
    # Every day's materialization of a range run carries the run's metadata.
    recorded = first.get_asset_materialization_events()[0].materialization
    waiting = recorded.metadata["days_staged_not_written"].value
    assert waiting == ["2019-01-01...2019-01-03", "2019-01-07...2019-01-12"]

    rest = _run(assets, dagster_instance, data_root, days)
    assert rest.success, _failure_messages(rest)
    assert dagster_instance.get_materialized_partitions(key) == set(days)
    assert all(len(pd.read_parquet(paths.partition_file("raw", d))) == 24 for d in days)
