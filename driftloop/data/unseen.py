"""Unseen categories: values of free categorical features that no earlier raw day held.

A free categorical feature is a categorical contract column used as a feature without an
`allowed` list (flights: `dest`). A model scores a value it never saw as missing, so each
raw day counts, per such column, the distinct values absent from every earlier raw
partition in the lake (days before it, point in time), and how many rows carry them. The
counts go into the raw day's metadata, the `unseen_categories` warning check and a
sidecar `unseen_categories.json` beside the partition, which the drift report can show.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

from driftloop.data.check_outcome import CheckOutcome, outcome
from driftloop.data.contract import ColumnType, Contract
from driftloop.data.lake import existing_partitions, sql_file_list, write_text_atomic
from driftloop.paths import DatasetPaths

RAW_TABLE = "raw"
SIDECAR = "unseen_categories.json"
MAX_SHOWN = 10


def free_categorical_features(contract: Contract) -> list[str]:
    return [
        name
        for name in contract.features
        if name in contract.columns
        and contract.columns[name].type == ColumnType.categorical
        and contract.columns[name].allowed is None
    ]


def _first_seen(paths: DatasetPaths, column: str, exclude: set[str]) -> dict[str, str]:
    """Per value of `column`: the earliest stored raw day (outside `exclude`) holding it."""
    import duckdb

    days = [d for d in existing_partitions(paths.table(RAW_TABLE)) if d not in exclude]
    if not days:
        return {}
    files = [paths.partition_file(RAW_TABLE, d) for d in days]
    quoted = '"' + column.replace('"', '""') + '"'
    sql = (
        f"SELECT {quoted} AS v, min(regexp_extract(filename, 'date=([0-9-]+)', 1)) AS d "
        f"FROM read_parquet({sql_file_list(files)}, filename=true) "
        f"WHERE {quoted} IS NOT NULL GROUP BY 1"
    )
    with duckdb.connect() as con:
        return {str(v): str(d) for v, d in con.execute(sql).fetchall()}


def unseen_categories(
    contract: Contract, paths: DatasetPaths, frames: dict[str, pd.DataFrame]
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per day of `frames` (being written now) and free categorical column: what is new."""
    result: dict[str, dict[str, dict[str, Any]]] = {day: {} for day in frames}
    for column in free_categorical_features(contract):
        first = _first_seen(paths, column, set(frames))
        for day in sorted(frames):
            values = frames[day][column].dropna().astype(str)
            seen_before = {v for v, d in first.items() if d < day}
            new = values[~values.isin(seen_before)]
            history = bool(seen_before) or any(d < day for d in first.values())
            distinct = sorted(new.unique())
            result[day][column] = {
                "unseen_values": len(distinct) if history else 0,
                "rows": int(len(new)) if history else 0,
                "examples": distinct[:MAX_SHOWN] if history else [],
                "history": history,
            }
            for value in distinct:
                first[value] = min(first.get(value, day), day)
    return result


def check_unseen_categories(unseen: dict[str, dict[str, Any]]) -> CheckOutcome:
    """Warning: values of free categorical features that no earlier day held."""
    new = {c: u for c, u in unseen.items() if u["unseen_values"]}
    table = [
        {"column": c, "unseen_values": u["unseen_values"], "rows": u["rows"]}
        for c, u in unseen.items()
    ]
    if not unseen:
        return outcome("unseen_categories", True, "no free categorical features to watch")
    if not new:
        history = any(u["history"] for u in unseen.values())
        text = "no unseen values" if history else "no earlier partitions to compare with"
        return outcome("unseen_categories", True, text, table=table, columns=list(unseen))
    parts = [
        f"column '{c}': {u['unseen_values']} value(s) never seen before ({u['rows']} rows), "
        f"e.g. {u['examples'][:5]}"
        for c, u in new.items()
    ]
    return outcome(
        "unseen_categories",
        False,
        "; ".join(parts) + " (a model scores them as missing)",
        columns=list(new),
        rule="values seen in earlier partitions",
        failing_rows=sum(u["rows"] for u in new.values()),
        examples={c: u["examples"] for c, u in new.items()},
        table=table,
    )


def write_sidecar(paths: DatasetPaths, day: str, unseen: dict[str, dict[str, Any]]) -> None:
    target = paths.partition_file(RAW_TABLE, day).with_name(SIDECAR)
    write_text_atomic(json.dumps(unseen, indent=1) + "\n", target)


def read_unseen_categories(paths: DatasetPaths, day: str) -> dict[str, dict[str, Any]]:
    """What `write_sidecar` stored for a raw day ({} when nothing was recorded)."""
    try:
        return json.loads(paths.partition_file(RAW_TABLE, day).with_name(SIDECAR).read_text())
    except FileNotFoundError:
        return {}
