"""The promotion ledger: append-only, one Parquet file per entry, read back with DuckDB.

A file is never rewritten or deleted. Names start with the UTC time in nanoseconds (so a
directory listing is already in time order) followed by a random uuid (so two writers
can never collide), and each file is written atomically (temp file + rename).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

from driftloop.data.lake import sql_file_list, write_parquet_atomic
from driftloop.paths import DatasetPaths

# What an entry records. "promoted"/"rejected" are the gate's decisions, "rollback" the
# rollback command's; "canary_started"/"canary_changed"/"canary_stopped" a canary's life;
# "reconciled" a repair that put the registry back in line with the ledger.
ACTIONS = (
    "promoted",
    "rejected",
    "rollback",
    "canary_started",
    "canary_changed",
    "canary_stopped",
    "reconciled",
)


@cache
def schema() -> pa.Schema:
    """The ledger's Arrow schema, built on first use (pyarrow is imported lazily so that
    loading the code location does not pay for it)."""
    import pyarrow as pa

    return pa.schema(
        [
            ("timestamp", pa.timestamp("us", tz="UTC")),
            ("dataset", pa.string()),
            ("action", pa.string()),
            ("challenger_version", pa.string()),
            ("champion_before", pa.string()),
            ("champion_after", pa.string()),
            ("metric", pa.string()),
            ("challenger_value", pa.float64()),
            ("champion_value", pa.float64()),
            ("diff", pa.float64()),
            ("ci_low", pa.float64()),
            ("ci_high", pa.float64()),
            ("reasons", pa.string()),
            ("dagster_run_id", pa.string()),
            ("report_path", pa.string()),
            # The model's identity is its MLflow run id: a version number is only a
            # position in one registry and comes back when a store is replaced.
            ("model_run_id", pa.string()),
            ("champion_before_run_id", pa.string()),
            ("champion_after_run_id", pa.string()),
            # Which MLflow store the versions belong to (its registered model's creation
            # time), so an entry written against a lost or replaced store is recognised.
            ("store_id", pa.string()),
            # Why the retrain that trained this model was launched (the trigger's sentence).
            ("trigger_reason", pa.string()),
            # Everything else as one JSON object: the gate's slices (gated or why not), a
            # canary's share and its online evidence, a reconcile's repair.
            ("details", pa.string()),
        ]
    )


def columns() -> list[str]:
    """The ledger's column names, in order."""
    return [f.name for f in schema()]


@dataclass
class LedgerEntry:
    dataset: str
    action: str
    challenger_version: str | None = None
    champion_before: str | None = None
    champion_after: str | None = None
    metric: str | None = None
    challenger_value: float | None = None
    champion_value: float | None = None
    diff: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    reasons: list[str] = field(default_factory=list)
    dagster_run_id: str | None = None
    report_path: str | None = None
    model_run_id: str | None = None
    champion_before_run_id: str | None = None
    champion_after_run_id: str | None = None
    store_id: str | None = None
    trigger_reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    timestamp: datetime | None = None  # set to now (UTC) by append() when left empty

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"ledger action must be one of {ACTIONS}, got {self.action!r}")


def _file_name(now_ns: int) -> str:
    return f"{now_ns:020d}-{uuid.uuid4().hex}.parquet"


def append(paths: DatasetPaths, entry: LedgerEntry) -> Path:
    """Write one new entry file; returns its path. Existing files are never touched."""
    import pyarrow as pa

    now_ns = time.time_ns()
    when = entry.timestamp or datetime.fromtimestamp(now_ns / 1e9, tz=UTC)
    row = asdict(entry) | {
        "timestamp": when,
        "reasons": json.dumps(list(entry.reasons)),
        "details": json.dumps(entry.details, default=str),
    }
    for key in ("challenger_version", "champion_before", "champion_after"):
        row[key] = None if row[key] is None else str(row[key])
    table = pa.Table.from_pylist([{k: row[k] for k in columns()}], schema=schema())
    path = paths.ledger / _file_name(now_ns)
    if path.exists():  # uuid4 collision: practically impossible, but never overwrite
        raise FileExistsError(path)
    return write_parquet_atomic(table, path)


def _sql_type(name: str) -> str:
    import pyarrow as pa

    kind = schema().field(name).type
    return "DOUBLE" if pa.types.is_floating(kind) else "VARCHAR"


def entry_files(paths: DatasetPaths) -> list[Path]:
    if not paths.ledger.exists():
        return []
    return sorted(paths.ledger.glob("*.parquet"))


def read(paths: DatasetPaths, limit: int | None = None) -> pd.DataFrame:
    """All entries, oldest first (or the last ``limit`` of them); reasons as JSON strings."""
    import duckdb
    import pandas as pd

    files = entry_files(paths)
    if not files:
        frame = schema().empty_table().to_pandas()
        return frame
    source = f"read_parquet({sql_file_list(files)}, union_by_name = true, filename = true)"
    con = duckdb.connect()
    try:
        present = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
        # Entries written before a column existed read it as NULL.
        select = ", ".join(
            name if name in present else f"CAST(NULL AS {_sql_type(name)}) AS {name}"
            for name in columns()
        )
        order = "timestamp, filename"
        frame = con.execute(f"SELECT {select} FROM {source} ORDER BY {order}").df()
    finally:
        con.close()
    if limit is not None:
        frame = frame.tail(limit).reset_index(drop=True)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame


# Actions after which the champion is the entry's champion_after (canary entries and
# rejections leave it as it was).
CHAMPION_ACTIONS = ("promoted", "rollback", "reconciled")


def _text(value: Any) -> str | None:
    import pandas as pd

    return None if value is None or pd.isna(value) or value == "" else str(value)


@dataclass(frozen=True)
class LedgerChampion:
    """The champion as the ledger records it: the model's identity and where it was set."""

    version: str | None
    run_id: str | None
    store_id: str | None
    action: str
    timestamp: Any


def _identity(version: str | None, run_id: str | None) -> str | None:
    # Entries keyed by run id compare by it; entries written without one fall back to the
    # version number, which is all they recorded.
    return run_id or (None if version is None else f"v{version}")


def ledger_champion(paths: DatasetPaths) -> LedgerChampion | None:
    """The champion the ledger's last champion-setting entry names (None: none recorded).

    A champion_after of None (a store adopted with no champion in it) is returned as a
    LedgerChampion whose version and run_id are None."""
    frame = read(paths)
    frame = frame[frame["action"].isin(CHAMPION_ACTIONS)]
    if frame.empty:
        return None
    row = frame.iloc[-1]
    return LedgerChampion(
        version=_text(row["champion_after"]),
        run_id=_text(row["champion_after_run_id"]),
        store_id=_text(row["store_id"]),
        action=str(row["action"]),
        timestamp=row["timestamp"],
    )


def latest_store_id(paths: DatasetPaths) -> str | None:
    """The MLflow store the ledger's latest entry that names one was written against."""
    frame = read(paths)
    named = frame["store_id"].dropna()
    named = named[named != ""]
    return None if named.empty else str(named.iloc[-1])


def decision_for(paths: DatasetPaths, model_run_id: str, store_id: str | None) -> dict | None:
    """The gate's recorded decision (promoted/rejected) on the model of `model_run_id` in
    this store, newest first, as a dict; None if it was never decided."""
    frame = read(paths)
    same = (frame["model_run_id"] == model_run_id) & frame["action"].isin(["promoted", "rejected"])
    if store_id is not None:
        same &= frame["store_id"].isna() | (frame["store_id"] == store_id)
    if not same.any():
        return None
    return frame[same].iloc[-1].to_dict()


def champion_history(paths: DatasetPaths) -> tuple[str | None, list[str]]:
    """Replay the ledger: (current champion, stack of earlier champions, most recent last),
    as version numbers. See champion_run_history for the rules."""
    current, stack = _replay(paths)
    return (None if current is None else current[0]), [v for v, _ in stack if v is not None]


def champion_run_history(
    paths: DatasetPaths,
) -> tuple[tuple[str | None, str | None] | None, list[tuple[str | None, str | None]]]:
    """Replay the ledger: (current champion, stack of earlier champions, most recent last),
    each as (version, model run id).

    A promotion pushes the champion it replaced; a rollback to X pops the stack back to
    (and including) X, so rolling back twice walks further back instead of bouncing
    between the last two. A rollback never pushes the champion it rolled back from: that
    one was judged bad. Rejections change nothing. A reconcile sets the champion without
    pushing; one that adopts another store starts the history again, as the versions of
    the store it replaced are gone.
    """
    return _replay(paths)


def _replay(
    paths: DatasetPaths,
) -> tuple[tuple[str | None, str | None] | None, list[tuple[str | None, str | None]]]:
    current: tuple[str | None, str | None] | None = None
    stack: list[tuple[str | None, str | None]] = []

    def same(a: tuple | None, b: tuple | None) -> bool:
        return a is not None and b is not None and _identity(*a) == _identity(*b)

    for row in read(paths).to_dict(orient="records"):
        after = (_text(row["champion_after"]), _text(row["champion_after_run_id"]))
        before = (_text(row["champion_before"]), _text(row["champion_before_run_id"]))
        has_after = _identity(*after) is not None
        has_before = _identity(*before) is not None
        if row["action"] == "promoted" and has_after:
            if has_before and not same(before, after) and not (stack and same(stack[-1], before)):
                stack.append(before)
            current = after
        elif row["action"] == "rollback" and has_after:
            keys = [_identity(*s) for s in stack]
            if _identity(*after) in keys:
                stack = stack[: len(keys) - 1 - keys[::-1].index(_identity(*after))]
            current = after
        elif row["action"] == "reconciled":
            details = json.loads(row["details"]) if _text(row["details"]) else {}
            if details.get("adopted_store"):
                stack = []
            current = after if has_after else None
    return current, stack


def previous_champion(paths: DatasetPaths) -> str | None:
    """The version a rollback should go back to, or None if the ledger knows none."""
    previous = previous_champion_run(paths)
    return None if previous is None else previous[0]


def previous_champion_run(paths: DatasetPaths) -> tuple[str | None, str | None] | None:
    """(version, model run id) a rollback should go back to, or None if there is none."""
    current, stack = _replay(paths)
    while stack and current is not None and _identity(*stack[-1]) == _identity(*current):
        stack.pop()
    return stack[-1] if stack else None
