"""Rolling features kept ready in memory: built from the lake, fed by events, read in microseconds.

The contract's feature definition (`driftloop.features.definition`) stays the one source
of truth: each rolling feature aggregates, per group, the `value` of earlier rows from
their `known_at` time, over [t - window, t). The definition's own SQL fragments (the
sources that share a group, value and known-at; the label; the known-at clamp) are run by
DuckDB on each stored raw row once, giving its contributions (group, known-at key, value)
per source. Those are kept per group as sorted keys with prefix sums, so a request at t
reads a window as two binary searches and a subtraction: the same arithmetic as the batch
query's ASOF joins over prefix sums, hence the same numbers (exactly so for integer-valued
values such as labels, counts and minutes).

Two layers:
  lake    the stored raw partitions of the last `history_days` days (blocked days left out,
          as batch leaves them out). A background refresh notices new or rewritten
          partitions (file size and modification time), recomputes only those days'
          contributions and swaps the rebuilt tables in with one assignment.
  events  facts known before their day lands (a flight departed: its dep_delay): records
          posted to /events, merged per row id (later fields win) and kept until the row's
          partition lands, when the lake's row replaces them. Events go through an
          append-only log file under the data root (`EventLog`), which every worker process
          tails before it answers, so each sees every event accepted before its request.
          Events for a row the lake already stores are counted and ignored: the lake wins.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from driftloop.data.contract import ColumnType, Contract
from driftloop.data.lake import existing_partitions, is_blocked
from driftloop.features.definition import lookback_days
from driftloop.names import RAW_TABLE
from driftloop.paths import DatasetPaths
from driftloop.serving.event_log import EventLog
from driftloop.serving.periodic import Periodic
from driftloop.serving.rolling import (
    EMPTY,
    ID_SEPARATOR,
    Part,
    Table,
    connect,
    contributions_sql,
    rolling_sources,
)

log = logging.getLogger(__name__)

DEFAULT_HISTORY_DAYS = 30
_ROWS = "__driftloop_online_rows"


@dataclass
class _Overlay:
    """Event rows' parts of one source and group, and their table (rebuilt when changed)."""

    parts: dict[str, tuple[int, float | None]] = field(default_factory=dict)
    table: Table | None = None


def _types(contract: Contract) -> dict[str, Any]:
    import pyarrow as pa

    kinds = {
        ColumnType.numeric: pa.float64(),
        ColumnType.categorical: pa.string(),
        ColumnType.boolean: pa.bool_(),
        ColumnType.timestamp: pa.timestamp("us"),
    }
    return {name: kinds[column.type] for name, column in contract.columns.items()}


class OnlineFeatureState:
    """The rolling features of any row at any time, from the lake and the events."""

    def __init__(
        self,
        contract: Contract,
        paths: DatasetPaths,
        history_days: int = DEFAULT_HISTORY_DAYS,
        event_log: EventLog | None = None,
    ) -> None:
        self.contract = contract
        self.paths = paths
        self.history_days = history_days
        self.sources = rolling_sources(contract)
        self.sql = contributions_sql(contract, self.sources, _ROWS)
        self.event_log = event_log
        self.lookback = lookback_days(contract)
        self._lock = threading.RLock()
        self._con: Any = None
        self._periodic: Periodic | None = None
        # lake layer
        self._day_signature: dict[str, tuple] = {}
        self._day_parts: dict[str, tuple[set[str], list[list[Part]]]] = {}
        self._tables: list[dict[Any, Table]] = [{} for _ in self.sources]
        self._lake_ids: set[str] = set()
        self.loaded = False
        self.first_day: str | None = None
        self.last_day: str | None = None
        self.lake_first_day: str | None = None
        self.blocked: set[str] = set()
        # event layer
        self._event_rows: dict[str, dict[str, Any]] = {}
        self._event_parts: list[dict[str, Part]] = [{} for _ in self.sources]
        self._overlay: list[dict[Any, _Overlay]] = [{} for _ in self.sources]
        self.events_applied = 0
        self.events_ignored = 0

    # --- contributions ----------------------------------------------------------------

    def _connection(self) -> Any:
        """The event layer's connection (used under the lock)."""
        if self._con is None:
            self._con = connect()
        return self._con

    def _parts(self, table: Any, con: Any) -> tuple[list[str | None], list[list[Part]]]:
        """Row ids and, per source, the parts of the rows of an Arrow table of raw rows."""
        con.register(_ROWS, table)
        try:
            result = con.sql(self.sql).to_arrow_table()
        finally:
            con.unregister(_ROWS)
        ids = result.column("__id").to_pylist()
        parts: list[list[Part]] = []
        for s in range(len(self.sources)):
            groups = result.column(f"__g{s}").to_pylist()
            values = result.column(f"__v{s}").to_pylist()
            keys = result.column(f"__k{s}").to_pylist()
            parts.append(
                [
                    (g, k, v)
                    for g, k, v in zip(groups, keys, values, strict=True)
                    if g is not None and k is not None
                ]
            )
        return ids, parts

    # --- the lake layer ---------------------------------------------------------------

    def refresh_lake(self) -> bool:
        """Load new or rewritten stored days, drop days past the history; True if changed."""
        import pyarrow.parquet as pq

        raw_dir = self.paths.table(RAW_TABLE)
        days = existing_partitions(raw_dir)
        lake_first = days[0] if days else None
        if days:
            last = date.fromisoformat(days[-1])
            first = (last - timedelta(days=self.history_days - 1)).isoformat()
            days = [d for d in days if d >= first]
        wanted: dict[str, tuple] = {}
        blocked = set()
        for day in days:
            file = self.paths.partition_file(RAW_TABLE, day)
            if is_blocked(raw_dir, day):
                blocked.add(day)
                continue
            try:
                stat = file.stat()
            except FileNotFoundError:
                continue
            wanted[day] = (stat.st_mtime_ns, stat.st_size)
        if self.loaded and wanted == self._day_signature and blocked == self.blocked:
            return False
        old = self._day_signature
        loaded = {d: p for d, p in self._day_parts.items() if d in wanted and old[d] == wanted[d]}
        con = connect()  # the refresh's own: the event layer's may be in use meanwhile
        try:
            for day in wanted:
                if day not in loaded:
                    file = self.paths.partition_file(RAW_TABLE, day)
                    ids, parts = self._parts(pq.read_table(file), con)
                    loaded[day] = ({i for i in ids if i is not None}, parts)
        finally:
            con.close()
        tables = []
        for s in range(len(self.sources)):
            by_group: dict[Any, list[tuple[int, float | None]]] = {}
            for _, parts in loaded.values():
                for g, k, v in parts[s]:
                    by_group.setdefault(g, []).append((k, v))
            tables.append({g: Table.build(p) for g, p in by_group.items()})
        lake_ids = set().union(*(ids for ids, _ in loaded.values())) if loaded else set()
        with self._lock:
            self._day_signature, self._day_parts = wanted, loaded
            self._tables, self._lake_ids = tables, lake_ids
            self.first_day = min(wanted) if wanted else None
            self.last_day = max(wanted) if wanted else None
            self.lake_first_day, self.blocked = lake_first, blocked
            self.loaded = True
            for row_id in [r for r in self._event_rows if r in lake_ids]:
                self._drop_event_row(row_id)  # the stored row replaces what events said
        log.info(
            "%s online state: %d stored days (%s to %s), %d rows",
            self.contract.name,
            len(wanted),
            self.first_day,
            self.last_day,
            len(lake_ids),
        )
        return True

    # --- the event layer --------------------------------------------------------------

    def row_id(self, record: dict[str, Any]) -> str:
        return ID_SEPARATOR.join(str(record[i]) for i in self.contract.id_columns)

    def stored(self, row_id: str) -> bool:
        """Whether the lake holds this row (events about it are then ignored)."""
        return row_id in self._lake_ids

    def catch_up(self) -> int:
        """Apply the events other workers (or this one) logged since the last call."""
        if self.event_log is None:
            return 0
        with self._lock:
            records = self.event_log.read_new(self.contract)
            return self.apply_events(records) if records else 0

    def apply_events(self, records: list[dict[str, Any]]) -> int:
        """Merge validated event records into their rows; returns how many were applied."""
        import pyarrow as pa

        with self._lock:
            touched: dict[str, dict[str, Any]] = {}
            for record in records:
                row_id = self.row_id(record)
                if row_id in self._lake_ids:
                    self.events_ignored += 1
                    continue
                merged = {**self._event_rows.get(row_id, {}), **record}
                self._event_rows[row_id] = touched[row_id] = merged
            if not touched:
                return 0
            types = _types(self.contract)
            rows = list(touched.values())
            table = pa.table(
                {n: pa.array([r.get(n) for r in rows], type=t) for n, t in types.items()}
            )
            for row_id in touched:
                self._drop_parts(row_id)
            self._add_parts(table)
            self.events_applied += len(touched)
            return len(touched)

    def _add_parts(self, table: Any) -> None:
        """Each touched row's parts, one query for all of them (keyed by row id)."""
        con = self._connection()
        con.register(_ROWS, table)
        try:
            result = con.sql(self.sql).to_arrow_table().to_pylist()
        finally:
            con.unregister(_ROWS)
        for row in result:
            row_id = row["__id"]
            for s in range(len(self.sources)):
                g, k, v = row[f"__g{s}"], row[f"__k{s}"], row[f"__v{s}"]
                if g is None or k is None:
                    continue
                self._event_parts[s][row_id] = (g, k, v)
                overlay = self._overlay[s].setdefault(g, _Overlay())
                overlay.parts[row_id] = (k, v)
                overlay.table = None

    def _drop_parts(self, row_id: str) -> None:
        for s in range(len(self.sources)):
            old = self._event_parts[s].pop(row_id, None)
            if old is not None:
                overlay = self._overlay[s][old[0]]
                overlay.parts.pop(row_id, None)
                overlay.table = None

    def _drop_event_row(self, row_id: str) -> None:
        self._drop_parts(row_id)
        self._event_rows.pop(row_id, None)

    @property
    def event_rows(self) -> int:
        return len(self._event_rows)

    # --- reading ----------------------------------------------------------------------

    def servable(self, day: str) -> str | None:
        """Why a request on `day` cannot be answered from the state, or None if it can."""
        if day in self.blocked:
            return (
                f"the stored raw partition {day} failed its blocking checks: its aggregates "
                "would be wrong, so it is not scored (batch refuses it too)"
            )
        if self.first_day and self.lake_first_day and self.first_day > self.lake_first_day:
            earliest = date.fromisoformat(self.first_day) + timedelta(days=self.lookback)
            if day < earliest.isoformat():
                return (
                    f"{day} is before the online history (from {earliest}; the server keeps "
                    f"{self.history_days} days): score it in batch, or raise --history-days"
                )
        return None

    def features(self, groups: dict[str, list[Any]], times_us: list[int]) -> dict[str, list]:
        """Each rolling feature of rows with these group values at these times (None =
        NULL), exactly as the batch definition computes it."""
        out: dict[str, list] = {}
        with self._lock:
            for s, source in enumerate(self.sources):
                tables, overlays = self._tables[s], self._overlay[s]
                columns: list[list] = [[] for _ in source.windows]
                for g, t in zip(groups[source.group_by], times_us, strict=True):
                    if g is None:
                        for column in columns:
                            column.append(None)
                        continue
                    table = tables.get(g, EMPTY)
                    overlay = overlays.get(g)
                    if overlay is not None and overlay.table is None:
                        overlay.table = Table.build(overlay.parts.values())
                    extra = overlay.table if overlay is not None else None
                    s_at, c_at, n_at = table.before(t)
                    if extra is not None:
                        es, ec, en = extra.before(t)
                    for column, window in zip(columns, source.windows, strict=True):
                        s_lo, c_lo, n_lo = table.before(t - window.window_us)
                        s, c, n = s_at - s_lo, c_at - c_lo, n_at - n_lo
                        if extra is not None:
                            xs, xc, xn = extra.before(t - window.window_us)
                            s, c, n = s + (es - xs), c + (ec - xc), n + (en - xn)
                        if window.count:
                            column.append(float(n))
                        else:
                            column.append(s / c if c else None)
                for window, column in zip(source.windows, columns, strict=True):
                    out[window.feature] = column
        return out

    def start(self, refresh_seconds: float) -> None:
        """Load the lake now, then look for new or rewritten days every `refresh_seconds`."""
        self.refresh_lake()
        self.catch_up()
        if self._periodic is None:
            # A half-written day or a full disk is logged; the state keeps serving.
            self._periodic = Periodic("online-state", self.refresh_lake, refresh_seconds)
            self._periodic.start()

    def stop(self) -> None:
        if self._periodic is not None:
            self._periodic.stop()

    def describe(self) -> dict[str, Any]:
        return {
            "history_days": self.history_days,
            "first_day": self.first_day,
            "last_day": self.last_day,
            "stored_rows": len(self._lake_ids),
            "event_rows": len(self._event_rows),
            "events_applied": self.events_applied,
            "events_ignored": self.events_ignored,
        }


def log_path(paths: DatasetPaths) -> Path:
    """Where a dataset's online events are logged, under the data root."""
    return paths.root / "online" / paths.dataset / "events.jsonl"
