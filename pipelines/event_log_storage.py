"""Dagster's SQLite event log, keeping its database engines between events.

Dagster's `SqliteEventLogStorage` builds a new SQLAlchemy engine, opens a new SQLite
connection and, with the fresh engine, compiles every statement anew for each event it
stores: about 15 ms per asset event on this machine, in two databases (the run's own and
the cross-run index). A 60-day features run writes a planned and a materialization event
per day, so the bookkeeping costs more than a second. This subclass keeps one engine per
database file (the index and the most recently used run shards), so connections and
compiled statements are reused; the same events take about a third of the time. Its
connections commit without waiting for the disk (`_sync_at_checkpoints`).

Dagster marks the events it emits together as one batch (a run's planned materializations,
and the materializations of one output's partitions), and hands a batch to the storage's
`store_event_batch` when `DAGSTER_EVENT_BATCH_SIZE` is set. This storage sets it (unless the
environment already does) and writes a batch's asset events in one transaction per database
instead of two commits per event.

Everything else is Dagster's: the schema, the files (`<DAGSTER_HOME>/history/runs/`, as
the default storage), the per-storage lock that serialises connections, the file watcher
the UI uses. Engines are disposed when evicted, on `wipe`/`dispose`, and dropped without
closing in a forked child (SQLite connections must not cross a fork).
"""

from __future__ import annotations

import os
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from dagster import Field, StringSource
from dagster._core.events import ASSET_CHECK_EVENTS, ASSET_EVENTS, EVENT_TYPE_TO_PIPELINE_RUN_STATUS
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sqlalchemy_compat import db_result
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS

if TYPE_CHECKING:
    from dagster import EventLogEntry
    from dagster._serdes import ConfigurableClassData
    from sqlalchemy.engine import Connection, Engine

# The index shard plus the run shards a webserver or daemon touches in turn.
MAX_ENGINES = 8
# Events Dagster buffers before handing a batch over (a batch's end also flushes it): a
# year of daily partitions' planned events fits in one.
EVENT_BATCH_SIZE = "1000"

_LIVE: weakref.WeakSet[PooledSqliteEventLogStorage] = weakref.WeakSet()


def default_base_dir() -> str:
    """Where Dagster's default SQLite storage keeps event logs: $DAGSTER_HOME/history/runs."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        raise RuntimeError(
            "PooledSqliteEventLogStorage: set DAGSTER_HOME or give `base_dir` in dagster.yaml"
        )
    return os.path.join(home, "history", "runs")


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` with one long-lived engine per database file (see module)."""

    def __init__(self, base_dir: str | None = None, inst_data: ConfigurableClassData | None = None):
        # Set before the parent's __init__, which may already connect (to create the index).
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        super().__init__(base_dir or default_base_dir(), inst_data)
        _LIVE.add(self)
        # Read by Dagster's instance at each event, in this process (see module).
        os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE)

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {"base_dir": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> PooledSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engine_for(shard)
            with engine.connect() as connection, connection.begin():
                yield connection

    def _engine_for(self, shard: str) -> Engine:
        from sqlalchemy import create_engine, event

        engine = self._engines.pop(shard, None)
        if engine is None:
            engine = create_engine(
                self.conn_string_for_shard(shard),
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
                # Connections are taken one at a time (under the lock above).
                pool_size=1,
                max_overflow=1,
            )
            event.listen(engine, "connect", _sync_at_checkpoints)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
        self._engines[shard] = engine  # most recently used last
        while len(self._engines) > MAX_ENGINES:
            _, oldest = self._engines.popitem(last=False)
            oldest.dispose()
        return engine

    def _close_engines(self) -> None:
        with self._db_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """Store `events` in order; runs of plain asset events share one transaction per
        database. Other events (asset checks, run status) go through `store_event`."""
        pending: list[EventLogEntry] = []
        for event in events:
            plain = _is_plain_asset_event(event)
            if pending and (not plain or event.run_id != pending[0].run_id):
                self._store_asset_events(pending)
                pending = []
            if plain:
                pending.append(event)
            else:
                self.store_event(event)
        self._store_asset_events(pending)

    def _store_asset_events(self, events: Sequence[EventLogEntry]) -> None:
        """What `store_event` does for each asset event, for events of one run at once."""
        if not events:
            return
        statements = [self.prepare_insert_event(event) for event in events]
        with self.run_connection(events[0].run_id) as connection:
            for statement in statements:
                connection.execute(statement)
        # Mirrored in the cross-run index, whose own event ids the asset tables refer to.
        with self.index_transaction() as connection:
            for event, statement in zip(events, statements, strict=True):
                with db_result(connection, statement) as result:
                    event_id = result.inserted_primary_key[0]
                self._store_asset_event_tags(connection, [event], [event_id])
                self._store_asset_event(connection, event, event_id)

    def wipe(self) -> None:
        self._close_engines()  # the run shards' files are deleted next
        super().wipe()

    def upgrade(self) -> None:
        self._close_engines()
        super().upgrade()

    def dispose(self) -> None:
        self._close_engines()
        super().dispose()


def _is_plain_asset_event(event: EventLogEntry) -> bool:
    """An asset event `store_event` mirrors to the index and nothing else (see there)."""
    kind = event.dagster_event_type if event.is_dagster_event else None
    return (
        kind in ASSET_EVENTS
        and kind not in ASSET_CHECK_EVENTS
        and kind not in EVENT_TYPE_TO_PIPELINE_RUN_STATUS
    )


def _sync_at_checkpoints(connection: Any, _record: Any) -> None:
    """`synchronous=NORMAL` on a connection to a WAL database (Dagster puts its event logs
    in WAL mode): a commit appends to the log without waiting for the disk, which is
    flushed at checkpoints. SQLite's recommended setting for WAL: a crash of the process
    loses nothing and nothing can be corrupted; a power cut can lose the last commits.
    Each commit waited 1.2 ms for the disk here, for every event, in two databases."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _forget_engines_in_child() -> None:
    """After fork: the child must not use (or close) the parent's SQLite connections."""
    for storage in list(_LIVE):
        for engine in storage._engines.values():
            engine.dispose(close=False)
        storage._engines.clear()


os.register_at_fork(after_in_child=_forget_engines_in_child)
