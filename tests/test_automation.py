"""Dagster's automation keeps every landed day current (assets/automation.py), evaluated
with `dagster.evaluate_automation_conditions` on a real instance and lake.

New days are requested from features to performance in one tick; a correction makes every
day whose rolling windows read the corrected day stale, and the rebuilt features equal those
of a lake that held the corrected file from the start; a rebuilt features day makes its
predictions, drift and performance stale; a failed run is requested again without new data.
(A blocked day stops at features: tests/test_raw_data_asset.py.)"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    Definitions,
    EvaluateAutomationConditionsResult,
    MaterializeResult,
    asset,
    evaluate_automation_conditions,
    materialize,
)

from assets.features import build as build_features_asset
from driftloop.data.contract import Contract
from driftloop.data.flights_source import flights_between
from driftloop.data.raw_days import ingest_batch
from driftloop.features.definition import lookback_days
from driftloop.paths import DatasetPaths, dataset_paths
from pipelines.factory import build_dataset_definitions
from pipelines.ingest_job import build_ingest_job
from resources.lake import LakeResource
from resources.mlflow import MlflowResource
from sensors.recompute import RECOMPUTE_TAG, latest_signal_is_recompute

DAYS = [f"2013-01-{d:02d}" for d in range(1, 13)]
pytestmark = pytest.mark.filterwarnings("ignore::dagster.BetaWarning")


@pytest.fixture(scope="module")
def flights12() -> pd.DataFrame:
    return flights_between(date(2013, 1, 1), 12)


def _land_days(paths: DatasetPaths, frame: pd.DataFrame) -> None:
    paths.landing.mkdir(parents=True, exist_ok=True)
    day = frame["scheduled_departure"].dt.strftime("%Y-%m-%d")
    for value, rows in frame.groupby(day):
        rows.to_csv(paths.landing / f"flights_{value}.csv", index=False)


def _ingest(contract: Contract, paths: DatasetPaths, instance: DagsterInstance) -> None:
    """The ingest job in process: it writes the raw days and leaves the rest to the
    automation (switched off, its second step would build the days, and the automation
    leave them to it)."""
    from pipelines.ingest_daily import INGEST_DAILY_ENV

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(INGEST_DAILY_ENV, "off")
        job = build_ingest_job(contract)
    result = job.execute_in_process(
        instance=instance, resources={"lake": LakeResource(data_dir=str(paths.root))}
    )
    assert result.success


def _features(contract: Contract, root: Path, instance: DagsterInstance, days: list[str]) -> bool:
    (features,) = build_features_asset(contract).assets
    tags = {
        "dagster/asset_partition_range_start": days[0],
        "dagster/asset_partition_range_end": days[-1],
    }
    result = materialize(
        [features],
        instance=instance,
        resources={"lake": LakeResource(data_dir=str(root))},
        tags=tags,
        raise_on_error=False,
    )
    return result.success


def _corrected(frame: pd.DataFrame) -> pd.DataFrame:
    """Day 3 again: every arrival delay changed, a tenth of the rows left out."""
    fixed = frame.copy()
    fixed["arr_delay"] = fixed["arr_delay"] + 40
    return fixed.iloc[: len(fixed) * 9 // 10]


DAILY = ("features", "predictions", "drift_report", "performance")
DAILY_TOY = ("features", "performance")


class Automation:
    """Ticks of the dataset's automation conditions, the cursor carried from tick to tick."""

    def __init__(self, contract: Contract, root: Path, instance: DagsterInstance) -> None:
        resources = {
            "lake": LakeResource(data_dir=str(root)),
            "mlflow": MlflowResource(data_dir=str(root)),
        }
        self.defs = Definitions.merge(
            build_dataset_definitions(contract), Definitions(resources=resources)
        )
        self.instance = instance
        self.cursor = None
        self.name = contract.name

    def tick(self) -> dict[str, list[str]]:
        """The partitions requested per daily asset on one evaluation."""
        result: EvaluateAutomationConditionsResult = evaluate_automation_conditions(
            defs=self.defs, instance=self.instance, cursor=self.cursor
        )
        self.cursor = result.cursor
        return {
            name: sorted(result.get_requested_partitions(AssetKey([self.name, name])))
            for name in DAILY
        }


def _read_features(paths: DatasetPaths, day: str) -> pd.DataFrame:
    frame = pd.read_parquet(paths.partition_file("features", day))
    return frame.sort_values("flight_id").reset_index(drop=True)


@pytest.mark.slow
def test_a_correction_rebuilds_every_day_its_windows_reach(
    flights_contract: Contract,
    flights_paths: DatasetPaths,
    dagster_instance: DagsterInstance,
    flights12: pd.DataFrame,
    tmp_path: Path,
) -> None:
    automation = Automation(flights_contract, flights_paths.root, dagster_instance)
    assert automation.tick() == {name: [] for name in DAILY}  # nothing landed yet
    _land_days(flights_paths, flights12)
    _ingest(flights_contract, flights_paths, dagster_instance)
    # Every new day, from features to performance, in one tick.
    assert automation.tick() == {name: DAYS for name in DAILY}
    assert automation.tick() == {name: [] for name in DAILY}  # requested: handled
    assert _features(flights_contract, flights_paths.root, dagster_instance, DAYS)
    # Features rebuilt: every downstream layer of those days is stale, not features.
    assert automation.tick() == {"features": [], **{n: DAYS for n in DAILY[1:]}}
    assert automation.tick() == {name: [] for name in DAILY}

    day3 = flights12[flights12["scheduled_departure"].dt.strftime("%Y-%m-%d") == DAYS[2]]
    _land_days(flights_paths, _corrected(day3))
    _ingest(flights_contract, flights_paths, dagster_instance)

    reach = lookback_days(flights_contract)
    expected = DAYS[2 : 2 + reach + 1]
    assert automation.tick() == {name: expected for name in DAILY}
    raw3 = pd.read_parquet(flights_paths.partition_file("raw", DAYS[2]))
    assert len(raw3) == len(day3) * 9 // 10  # replaced, not a union

    assert _features(flights_contract, flights_paths.root, dagster_instance, expected)
    assert automation.tick()["features"] == []

    # A failed run is requested again at the next tick, with no new data.
    last = flights_paths.partition_file("raw", DAYS[-1])
    kept = last.read_bytes()
    last.unlink()
    failed = _features(flights_contract, flights_paths.root, dagster_instance, DAYS[-1:])
    assert not failed
    last.write_bytes(kept)
    assert automation.tick()["features"] == DAYS[-1:]

    # The same features as a lake that held the corrected day from the start.
    fresh = dataset_paths("flights", tmp_path / "fresh")
    clean = pd.concat([flights12[~flights12.index.isin(day3.index)], _corrected(day3)])
    _land_days(fresh, clean)
    ingest_batch(flights_contract, fresh, None)
    with DagsterInstance.ephemeral() as other:
        assert _features(flights_contract, fresh.root, other, DAYS)
    for day in DAYS:
        pd.testing.assert_frame_equal(
            _read_features(flights_paths, day), _read_features(fresh, day)
        )
    # And not the features the uncorrected lake had: the later days' windows changed.
    stale = dataset_paths("flights", tmp_path / "stale")
    _land_days(stale, flights12)
    ingest_batch(flights_contract, stale, None)
    with DagsterInstance.ephemeral() as other:
        assert _features(flights_contract, stale.root, other, DAYS[5:6])
    late_rate = "carrier_late_rate_7d"
    assert not _read_features(stale, DAYS[5])[late_rate].equals(
        _read_features(flights_paths, DAYS[5])[late_rate]
    )


def test_the_trigger_reads_recomputed_signals_as_no_news(
    flights_contract: Contract, dagster_instance: DagsterInstance
) -> None:
    @asset(key=AssetKey(["flights", "drift_report"]))
    def drift_report() -> MaterializeResult:
        return MaterializeResult()

    assert not latest_signal_is_recompute(flights_contract, dagster_instance)
    materialize([drift_report], instance=dagster_instance, tags={RECOMPUTE_TAG: "true"})
    assert latest_signal_is_recompute(flights_contract, dagster_instance)
    materialize([drift_report], instance=dagster_instance)
    assert not latest_signal_is_recompute(flights_contract, dagster_instance)


@pytest.mark.parametrize("retry_failed", [True, False])
def test_a_failed_partition_that_later_runs_skip_is_retried_only_with_retry_failed(
    dagster_instance: DagsterInstance, retry_failed: bool
) -> None:
    """Dagster counts a partition failed from a failed run until it is materialized: a later
    run that succeeds but skips it (performance on a day whose labels are not due) leaves it
    failed, so `execution_failed` requests it after every such run. `keep_current(False)`,
    the performance asset's, leaves failed days to its sensor."""
    from dagster import DailyPartitionsDefinition, Definitions, Output

    from assets.automation import keep_current

    days = DailyPartitionsDefinition(start_date="2013-01-01")
    behaviour = {"mode": "fail"}

    @asset(key="upstream", partitions_def=days)
    def upstream() -> None:
        return None

    @asset(
        key="downstream",
        partitions_def=days,
        deps=[upstream],
        output_required=False,
        automation_condition=keep_current(retry_failed),
    )
    def downstream():
        if behaviour["mode"] == "fail":
            raise RuntimeError("the store is unavailable")
        if behaviour["mode"] == "run":
            yield Output(None)

    defs = Definitions(assets=[upstream, downstream])
    cursor = None

    def requested() -> list[str]:
        nonlocal cursor
        result = evaluate_automation_conditions(defs=defs, instance=dagster_instance, cursor=cursor)
        cursor = result.cursor
        return sorted(result.get_requested_partitions(AssetKey("downstream")))

    day = "2013-01-02"
    requested()
    assert materialize([upstream], instance=dagster_instance, partition_key=day).success
    assert requested() == [day]
    behaviour["mode"] = "run"
    assert materialize([downstream], instance=dagster_instance, partition_key=day).success
    assert requested() == []
    behaviour["mode"] = "fail"
    run = materialize(
        [downstream], instance=dagster_instance, partition_key=day, raise_on_error=False
    )
    assert not run.success
    assert requested() == ([day] if retry_failed else [])
    behaviour["mode"] = "skip"
    for _ in range(2):  # a run that succeeds and skips the day, twice
        assert requested() == []  # the daemon's tick while the requested run is in flight
        assert materialize([downstream], instance=dagster_instance, partition_key=day).success
        assert requested() == ([day] if retry_failed else [])
    behaviour["mode"] = "run"
    assert materialize([downstream], instance=dagster_instance, partition_key=day).success
    assert requested() == []


def test_days_an_ingest_run_builds_are_left_to_it_and_what_it_fails_is_requested(
    dagster_instance: DagsterInstance,
) -> None:
    """The ingest run builds its days in a daily run of its own (pipelines/ingest_daily.py);
    both carry `driftloop/ingest_daily`. The automation leaves those days to them, whatever
    they build or skip (performance on a day whose labels are not due), requests what the
    daily run failed, and builds days whose raw data came from a run without the tag."""
    from dagster import AssetMaterialization, DailyPartitionsDefinition, Output

    from assets.automation import INGEST_DAILY_TAG, keep_current

    days = DailyPartitionsDefinition(start_date="2013-01-01")
    broken = {"features": False}

    @asset(key="raw", partitions_def=days)
    def raw() -> None:
        return None

    @asset(key="features", partitions_def=days, deps=[raw], automation_condition=keep_current())
    def features() -> None:
        if broken["features"]:
            raise RuntimeError("killed")

    @asset(
        key="performance",
        partitions_def=days,
        deps=[features],
        output_required=False,
        automation_condition=keep_current(retry_failed=False),
    )
    def performance():  # labels never due here: always skipped
        if False:
            yield Output(None)

    defs = Definitions(assets=[raw, features, performance])
    cursor = None

    def requested() -> dict[str, list[str]]:
        nonlocal cursor
        result = evaluate_automation_conditions(defs=defs, instance=dagster_instance, cursor=cursor)
        cursor = result.cursor
        return {k: sorted(result.get_requested_partitions(AssetKey(k))) for k in DAILY_TOY}

    def run(assets: list, day: str, tags: dict[str, str]) -> bool:
        done = materialize(
            assets, instance=dagster_instance, partition_key=day, tags=tags, raise_on_error=False
        )
        return done.success

    # The automation compares each evaluation with what the previous one saw: an instance
    # without a single asset event has nothing to compare with.
    dagster_instance.report_runless_asset_event(AssetMaterialization("elsewhere"))
    nothing = {"features": [], "performance": []}
    assert requested() == nothing
    in_run = {INGEST_DAILY_TAG: "in_run"}
    built, failed, by_hand = "2013-01-02", "2013-01-03", "2013-01-04"
    assert run([raw], built, in_run)
    assert requested() == nothing  # the ingest run's daily run builds it
    assert run([features, performance], built, in_run)
    for _ in range(2):
        assert requested() == nothing  # built, and performance skipped: handled
    assert run([raw], failed, in_run)
    assert requested() == nothing
    broken["features"] = True
    assert not run([features, performance], failed, in_run)  # the daily run fails
    broken["features"] = False
    assert requested() == {"features": [failed], "performance": [failed]}
    assert run([raw], by_hand, {})
    assert requested() == {"features": [by_hand], "performance": [by_hand]}
