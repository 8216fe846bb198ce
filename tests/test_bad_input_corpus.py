"""The bad-input corpus: every hostile or broken input class, landed in one batch on top of
eight clean days, through a real ingest run. Each is quarantined or flagged with a reason
naming the file, the column and the rule; every day's rows add up; other days are unchanged.
"""

from __future__ import annotations

import json
from datetime import date

import pandas as pd
import pytest
from dagster import AssetCheckSeverity, DagsterEventType, DagsterInstance

from driftloop.data.contract import Contract
from driftloop.data.flights_source import flights_between
from driftloop.data.ingest import manifest_path
from driftloop.data.lake import blocked_marker
from driftloop.data.unseen import read_unseen_categories
from driftloop.paths import DatasetPaths
from pipelines.ingest_job import build_ingest_job
from resources.lake import LakeResource

BASE = [f"2013-01-{d:02d}" for d in range(1, 9)]
CORRECTED, EXACT, CONFLICT, NULL_TARGET, ROWS_BAD, UNSEEN = (
    "2013-01-03",
    "2013-01-09",
    "2013-01-10",
    "2013-01-11",
    "2013-01-12",
    "2013-01-13",
)
LIMITS = {
    "DRIFTLOOP_MAX_FILE_BYTES": str(2 * 1024 * 1024),
    "DRIFTLOOP_MAX_HEADER_BYTES": str(64 * 1024),
    "DRIFTLOOP_MAX_COLUMNS": "500",
}


@pytest.fixture(scope="module")
def flights() -> pd.DataFrame:
    return flights_between(date(2013, 1, 1), 14)


def _day(frame: pd.DataFrame, day: str) -> pd.DataFrame:
    return frame[frame["scheduled_departure"].dt.strftime("%Y-%m-%d") == day].copy()


def _csv(paths: DatasetPaths, frame: pd.DataFrame, name: str) -> None:
    paths.landing.mkdir(parents=True, exist_ok=True)
    frame.to_csv(paths.landing / name, index=False)


def _ingest(paths: DatasetPaths, contract: Contract, instance: DagsterInstance):
    return build_ingest_job(contract).execute_in_process(
        instance=instance,
        resources={"lake": LakeResource(data_dir=str(paths.root))},
        raise_on_error=False,
    )


def _events(instance: DagsterInstance, run_id: str, kind: DagsterEventType) -> list:
    """The run's events of one kind, from the instance (a failed step's included)."""
    return [
        e.dagster_event
        for e in instance.all_logs(run_id, of_type=kind)
        if e.dagster_event is not None
    ]


def _reasons(paths: DatasetPaths) -> dict[str, str]:
    """Reason text per landed file name (first line of each reason file)."""
    texts = {}
    for path in paths.quarantine.rglob("*.reason.txt"):
        text = path.read_text()
        first = text.splitlines()[0]
        if first.startswith("landed file: "):
            texts[first.removeprefix("landed file: ")] = text
    return texts


def _land_corpus(paths: DatasetPaths, flights: pd.DataFrame) -> dict[str, str]:
    """Every input class; returns what each case is expected to say."""
    landing = paths.landing
    landing.mkdir(parents=True, exist_ok=True)
    day = {d: _day(flights, d) for d in [EXACT, CONFLICT, NULL_TARGET, ROWS_BAD, UNSEEN]}
    (landing / "corrupt.parquet").write_bytes(b"PAR1 this is not parquet PAR1")
    _csv(paths, day[ROWS_BAD].head(50).rename(columns={"carrier": "airline"}), "renamed.csv")
    wrong = day[ROWS_BAD].head(40).copy()
    wrong["distance"] = "far"
    _csv(paths, wrong, "wrong_types.csv")
    (landing / "header_only.csv").write_text(",".join(flights.columns) + "\n")
    (landing / "zero_bytes.csv").write_bytes(b"")
    (landing / "garbage.csv").write_bytes(bytes(range(256)) * 64)
    (landing / "one_line.csv").write_bytes(b"c," * (512 * 1024))  # 1 MB, no line break
    (landing / "wide.csv").write_text(
        ",".join(f"c{i}" for i in range(800)) + "\n" + "1," * 799 + "1\n"
    )
    big = pd.concat([day[ROWS_BAD]] * 30)
    _csv(paths, big, "too_large.csv")
    assert (landing / "too_large.csv").stat().st_size > 2 * 1024 * 1024
    # Row-level: out-of-range timestamps and values; the rest of the file is ingested.
    rows = day[ROWS_BAD].astype({"scheduled_departure": str})
    rows.iloc[0, rows.columns.get_loc("scheduled_departure")] = "9999-01-01 10:00:00"
    rows.iloc[1, rows.columns.get_loc("scheduled_departure")] = "1600-01-01 10:00:00"
    rows.iloc[2:5, rows.columns.get_loc("distance")] = 99999
    _csv(paths, rows, "rows_bad.csv")
    # A whole day whose target is null: blocked by null_fractions on arr_delay.
    _csv(paths, day[NULL_TARGET].assign(arr_delay=None), "null_target.csv")
    # Exact duplicates across two files of one day, and conflicting ones.
    _csv(paths, day[EXACT], "exact.csv")
    _csv(paths, day[EXACT].head(30), "exact_again.csv")
    _csv(paths, day[CONFLICT], "conflict_a.csv")
    _csv(paths, day[CONFLICT].head(50).assign(arr_delay=999.0), "conflict_b.csv")
    # Destinations no earlier day held.
    unseen = day[UNSEEN].copy()
    unseen.iloc[:40, unseen.columns.get_loc("dest")] = "ZZZ"
    _csv(paths, unseen, "unseen.csv")
    # A correction: day 3 landed again under its name, delays changed, a tenth left out.
    fixed = _day(flights, CORRECTED).assign(arr_delay=lambda f: f["arr_delay"] + 40)
    _csv(paths, fixed.iloc[: len(fixed) * 9 // 10], f"flights_{CORRECTED}.csv")
    return {
        "corrupt.parquet": "unreadable parquet file",
        "renamed.csv": "missing required column(s) ['carrier']",
        "wrong_types.csv": "column 'distance' is not castable to numeric",
        "header_only.csv": "empty file: no rows",
        "zero_bytes.csv": "empty file: no header and no rows",
        "garbage.csv": "binary content",
        "one_line.csv": "header line longer than 65536 bytes",
        "wide.csv": "too wide: 800 columns",
        "too_large.csv": "file too large",
    }


@pytest.mark.slow
def test_every_bad_input_is_quarantined_or_flagged_and_rows_add_up(
    flights_contract: Contract,
    flights_paths: DatasetPaths,
    dagster_instance: DagsterInstance,
    flights: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in LIMITS.items():
        monkeypatch.setenv(name, value)
    for d in BASE:
        _csv(flights_paths, _day(flights, d), f"flights_{d}.csv")
    assert _ingest(flights_paths, flights_contract, dagster_instance).success
    base = {d: pd.read_parquet(flights_paths.partition_file("raw", d)) for d in BASE}

    expected = _land_corpus(flights_paths, flights)
    run = _ingest(flights_paths, flights_contract, dagster_instance)

    # The run fails because days are blocked, after writing and recording every day.
    assert not run.success
    materialized = _events(dagster_instance, run.run_id, DagsterEventType.ASSET_MATERIALIZATION)
    evaluated = _events(dagster_instance, run.run_id, DagsterEventType.ASSET_CHECK_EVALUATION)
    written = {m.partition for m in materialized}
    assert written == {CORRECTED, EXACT, CONFLICT, NULL_TARGET, ROWS_BAD, UNSEEN}
    assert list(flights_paths.landing.iterdir()) == []

    # Whole files: quarantined byte for byte with a short reason naming file and rule.
    reasons = _reasons(flights_paths)
    for name, says in expected.items():
        assert says in reasons[name], (name, reasons[name])
        assert len(reasons[name]) < 2000, name
        stem, suffix = name.rsplit(".", 1)
        assert len(list(flights_paths.quarantine.glob(f"{stem}.*.{suffix}"))) == 1, name

    # Rows: the rest of the file ingested, the bad rows kept with their rule.
    text = reasons["rows_bad.csv"]
    assert "column 'scheduled_departure' not castable to event time: 2 row(s)" in text
    assert "column 'distance' rule max=6000: 3 row(s), e.g. 99999" in text

    table = flights_paths.table("raw")
    events = {m.partition: m.materialization.metadata for m in materialized}
    for day, meta in events.items():
        landed = meta["rows_landed"].value
        parts = meta["rows_stored"].value + meta["rows_quarantined"].value
        assert landed == parts + meta["exact_duplicates_dropped"].value, day
        assert meta["accounting_balanced"].value is True
    assert events[ROWS_BAD]["rows_quarantined"].value == 3  # the two timeless rows have no day
    assert events[EXACT]["exact_duplicates_dropped"].value == 30
    assert events[EXACT]["rows_stored"].value == len(_day(flights, EXACT))

    # Conflicting duplicates: all versions set aside, the check fails, the day is blocked.
    checks = {
        e.asset_check_evaluation_data.partition: e.asset_check_evaluation_data for e in evaluated
    }
    assert {e.asset_check_evaluation_data.check_name for e in evaluated} == {"contract"}
    conflict = checks[CONFLICT]
    assert not conflict.passed and "duplicate_ids: " in conflict.description
    assert "different values" in conflict.description
    assert events[CONFLICT]["rows_quarantined_as_conflicting_duplicates"].value == 100
    marker = json.loads(blocked_marker(table, CONFLICT).read_text())
    assert [c["name"] for c in marker["failed_checks"]] == ["duplicate_ids"]
    conflicts = pd.read_parquet(
        flights_paths.quarantine / "conflicts" / f"date={CONFLICT}.rows.parquet"
    )
    assert conflicts["_reason"].str.contains("column(s) ['arr_delay']", regex=False).all()

    # An all-null target: the day is blocked by the null rule on the target's column.
    null_check = checks[NULL_TARGET]
    assert not null_check.passed and "column 'arr_delay' rule max_null_fraction=0.9" in (
        null_check.description
    )
    assert null_check.metadata["failed_rules"].value == ["null_fractions"]
    assert blocked_marker(table, NULL_TARGET).exists()

    # Unseen categories: counted in the metadata and the sidecar the drift report reads.
    assert events[UNSEEN]["unseen_categories"].value["dest"] >= 1
    unseen = read_unseen_categories(flights_paths, UNSEEN)["dest"]
    assert "ZZZ" in unseen["examples"] and unseen["rows"] >= 40
    # 40 of ~900 rows, 8 days known: a warning, not a block.
    unseen_check = checks[UNSEEN]
    assert not unseen_check.passed and unseen_check.severity == AssetCheckSeverity.WARN
    assert unseen_check.metadata["failed_rules"].value == ["unseen_categories"]

    # The correction replaced the file's rows instead of adding to them.
    corrected = pd.read_parquet(flights_paths.partition_file("raw", CORRECTED))
    original = _day(flights, CORRECTED)
    assert len(corrected) == len(original) * 9 // 10
    manifest = json.loads(manifest_path(flights_paths, f"flights_{CORRECTED}.csv").read_text())
    assert manifest["days"][CORRECTED]["staged"] == len(corrected)

    # Other days are untouched, byte for byte in content.
    for d in BASE:
        if d != CORRECTED:
            stored = pd.read_parquet(flights_paths.partition_file("raw", d))
            pd.testing.assert_frame_equal(stored, base[d])

    # Every landed row of an ingested file is somewhere: stored, quarantined, or dropped
    # as an exact duplicate (per file, over the days its manifest lists).
    for name in ["rows_bad.csv", "exact_again.csv", "conflict_b.csv", "unseen.csv"]:
        manifest = json.loads(manifest_path(flights_paths, name).read_text())
        per_day = sum(c["staged"] + c["quarantined"] for c in manifest["days"].values())
        assert per_day + manifest["rows_quarantined_without_day"] == manifest["rows"], name
    assert not manifest_path(flights_paths, "corrupt.parquet").exists()
