"""The project's event log storage: Dagster's SQLite event log with engines kept between
events (pipelines/event_log_storage.py), on a real instance with the project's dagster.yaml."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    DagsterEventType,
    DailyPartitionsDefinition,
    asset,
    materialize,
)

from pipelines.event_log_storage import MAX_ENGINES, PooledSqliteEventLogStorage
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
