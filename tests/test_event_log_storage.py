"""The project's event log storage: Dagster's SQLite event log with engines kept between
events (pipelines/event_log_storage.py), on a real instance with the project's dagster.yaml."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dagster import (
    AssetCheckResult,
    AssetKey,
    BackfillPolicy,
    DagsterEventType,
    DailyPartitionsDefinition,
    asset,
    asset_check,
    materialize,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from pipelines.event_log_storage import (
    EVENT_BATCH_SIZE,
    MAX_ENGINES,
    PooledSqliteEventLogStorage,
)
from pipelines.instance import DAGSTER_YAML, instance_at

DAYS = DailyPartitionsDefinition(start_date="2013-01-01")


@asset(partitions_def=DAYS)
def daily_numbers() -> int:
    return 1


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    return home


def test_the_project_instance_stores_events_where_dagster_does(home: Path) -> None:
    with instance_at(home) as instance:
        storage = instance.event_log_storage
        assert isinstance(storage, PooledSqliteEventLogStorage)
        result = materialize([daily_numbers], partition_key="2013-01-02", instance=instance)
        assert result.success
        run_id = result.run_id
    # The default storage's layout: the index and one database per run.
    runs = home / "history" / "runs"
    assert (runs / "index.db").exists() and (runs / f"{run_id}.db").exists()


def test_events_read_back_across_runs_and_partitions(home: Path) -> None:
    days = ["2013-01-01", "2013-01-02", "2013-01-03"]
    with instance_at(home) as instance:
        run_ids = [
            materialize([daily_numbers], partition_key=day, instance=instance).run_id
            for day in days
        ]
        key = AssetKey("daily_numbers")
        assert instance.get_materialized_partitions(key) == set(days)
        records = instance.fetch_materializations(key, limit=10).records
        assert sorted(r.partition_key for r in records) == days
        # Each run's own log (its own shard) is complete: start to success.
        for run_id in run_ids:
            kinds = [e.dagster_event_type for e in instance.all_logs(run_id) if e.dagster_event]
            assert DagsterEventType.RUN_START in kinds
            assert kinds[-1] == DagsterEventType.RUN_SUCCESS


def test_event_logs_are_in_wal_mode_and_commit_without_waiting_for_the_disk(
    home: Path,
) -> None:
    with instance_at(home) as instance:
        result = materialize([daily_numbers], partition_key="2013-01-04", instance=instance)
        storage = instance.event_log_storage
        for shard in ("index", result.run_id):
            with storage._connect(shard) as connection:
                pragma = connection.exec_driver_sql
                assert pragma("PRAGMA journal_mode").scalar() == "wal"
                assert pragma("PRAGMA synchronous").scalar() == 1  # NORMAL (FULL is 2)
        assert instance.get_materialized_partitions(AssetKey("daily_numbers")) == {"2013-01-04"}


def test_engines_are_reused_and_bounded(home: Path) -> None:
    with instance_at(home) as instance:
        storage = instance.event_log_storage
        first = materialize([daily_numbers], partition_key="2013-01-01", instance=instance)
        index_engine = storage._engines["index"]
        for k in range(MAX_ENGINES + 2):
            day = f"2013-02-{k + 1:02d}"
            assert materialize([daily_numbers], partition_key=day, instance=instance).success
        assert len(storage._engines) <= MAX_ENGINES
        assert storage._engines["index"] is index_engine  # the busiest one is never evicted
        assert first.run_id not in storage._engines
        # An evicted run's events are still there (a new engine is made for it).
        assert instance.all_logs(first.run_id)
        storage.wipe()
        assert not storage._engines or set(storage._engines) == {"index"}
        assert instance.get_materialized_partitions(AssetKey("daily_numbers")) == set()


def test_a_forked_child_does_not_share_the_parents_connections(home: Path) -> None:
    with instance_at(home) as instance:
        storage = instance.event_log_storage
        materialize([daily_numbers], partition_key="2013-01-05", instance=instance)
        assert storage._engines
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: no engine inherited, and the storage still works
            inherited = len(storage._engines)
            ok = bool(instance.get_materialized_partitions(AssetKey("daily_numbers")))
            os.write(write, f"{inherited} {ok}".encode())
            os._exit(0)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert os.read(read, 100).decode() == "0 True"
        # The parent's connections were left alone.
        assert instance.get_materialized_partitions(AssetKey("daily_numbers")) == {"2013-01-05"}


def test_without_dagster_home_or_base_dir_it_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with pytest.raises(RuntimeError, match="DAGSTER_HOME"):
        PooledSqliteEventLogStorage()


def test_an_explicit_base_dir_is_used(tmp_path: Path) -> None:
    storage = PooledSqliteEventLogStorage(base_dir=str(tmp_path / "events"))
    try:
        assert (tmp_path / "events" / "index.db").exists()
    finally:
        storage.dispose()


@asset(partitions_def=DAYS, backfill_policy=BackfillPolicy.single_run())
def ranged_numbers() -> None:
    return None


@asset_check(asset=ranged_numbers)
def ranged_numbers_ok() -> AssetCheckResult:
    return AssetCheckResult(passed=True)


def _range_run(home: Path, days: list[str]) -> tuple[list[tuple[str, str | None]], list]:
    """Materialize `days` of ranged_numbers in one run; its log and the index's records."""
    tags = {ASSET_PARTITION_RANGE_START_TAG: days[0], ASSET_PARTITION_RANGE_END_TAG: days[-1]}
    with instance_at(home) as instance:
        result = materialize([ranged_numbers, ranged_numbers_ok], instance=instance, tags=tags)
        assert result.success
        log = [
            (e.dagster_event_type.value, e.dagster_event.partition)
            for e in instance.all_logs(result.run_id)
            if e.dagster_event and e.dagster_event_type.value.startswith("ASSET")
        ]
        key = AssetKey("ranged_numbers")
        assert instance.get_materialized_partitions(key) == set(days)
        records = instance.fetch_materializations(key, limit=100, ascending=True).records
        planned = instance.get_latest_planned_materialization_info(key)
        assert planned is not None and planned.run_id == result.run_id
        check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [ranged_numbers_ok.check_key]
        )[ranged_numbers_ok.check_key]
        assert check.run_id == result.run_id and check.status.value == "SUCCEEDED"
        # The asset's own row in the index (its latest materialization) and the events' tags
        # (their names: data versions differ between runs).
        entry = instance.get_asset_records([key])[0].asset_entry
        assert entry.last_run_id == result.run_id
        assert entry.last_materialization.dagster_event.partition == days[-1]
        tags = instance.get_event_tags_for_asset(key)
        return log, [r.partition_key for r in records] + [sorted(t) for t in tags]


def test_a_range_runs_events_are_stored_in_batches_the_same_as_one_by_one(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dagster hands a run's planned events and a range's materializations over as batches;
    they are stored in one transaction per database and read back exactly as events stored
    one at a time."""
    days = [f"2013-01-{d:02d}" for d in range(1, 8)]
    batches: list[int] = []
    store_batch = PooledSqliteEventLogStorage.store_event_batch

    def recording(self: PooledSqliteEventLogStorage, events: list) -> None:
        batches.append(len(events))
        store_batch(self, events)

    monkeypatch.setattr(PooledSqliteEventLogStorage, "store_event_batch", recording)
    monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE", raising=False)
    batched_log, batched_records = _range_run(home, days)  # the storage turns batching on
    assert os.environ["DAGSTER_EVENT_BATCH_SIZE"] == EVENT_BATCH_SIZE
    # The planned events (7 materializations and the check) and the 7 materializations.
    assert sorted(batches) == [len(days), len(days) + 1]

    one_by_one = tmp_path / "one_by_one"
    one_by_one.mkdir()
    (one_by_one / "dagster.yaml").write_text(DAGSTER_YAML)
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "0")  # Dagster's default: no batches
    batches.clear()
    single_log, single_records = _range_run(one_by_one, days)
    assert batches == []
    assert batched_log == single_log
    assert batched_records == single_records
    assert batched_records[: len(days)] == days
    assert [kind for kind, _ in batched_log].count("ASSET_MATERIALIZATION_PLANNED") == len(days)
