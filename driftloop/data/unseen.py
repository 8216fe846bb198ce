"""Unseen categories: values of free categorical features that no earlier raw day held.

A free categorical feature is a categorical contract column used as a feature without an
`allowed` list (flights: `dest`). A model scores a value it never saw as missing, so each
raw day counts, per such column, the distinct values absent from every earlier raw
partition in the lake (days before it, point in time), and how many rows carry them. The
counts go into the raw day's metadata, the `unseen_categories` check and a sidecar
`unseen_categories.json` beside the partition, which the drift report can show.

The check warns (it never blocks) when rows with unseen values exceed `WARN_SHARE` of the
day's rows once at least `MIN_HISTORY_DAYS` earlier days exist; with less history most
values are new and the counts alone are reported.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

from driftloop.data.check_outcome import CheckOutcome, outcome
from driftloop.data.contract import ColumnType, Contract
from driftloop.data.lake import existing_partitions, sql_file_list, write_text_atomic
from driftloop.names import RAW_TABLE
from driftloop.paths import DatasetPaths

SIDECAR = "unseen_categories.json"
MAX_SHOWN = 10
WARN_SHARE = 0.01
MIN_HISTORY_DAYS = 7


def free_categorical_features(contract: Contract) -> list[str]:
    return [
        name
        for name in contract.features
        if name in contract.columns
        and contract.columns[name].type == ColumnType.categorical
        and contract.columns[name].allowed is None
    ]


def _first_seen(paths: DatasetPaths, column: str, stored: list[str]) -> dict[str, str]:
    """Per value of `column`: the earliest of the `stored` raw days holding it."""
    import duckdb

    if not stored:
        return {}
    files = [paths.partition_file(RAW_TABLE, d) for d in stored]
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
    stored = [d for d in existing_partitions(paths.table(RAW_TABLE)) if d not in frames]
    all_days = sorted(set(stored) | set(frames))
    result: dict[str, dict[str, dict[str, Any]]] = {day: {} for day in frames}
    for column in free_categorical_features(contract):
        first = _first_seen(paths, column, stored)
        for day in sorted(frames):
            values = frames[day][column].dropna().astype(str)
            seen_before = {v for v, d in first.items() if d < day}
            new = values[~values.isin(seen_before)]
            distinct = sorted(new.unique())
            result[day][column] = {
                "unseen_values": len(distinct),
                "rows": len(new),
                "share": round(len(new) / len(values), 4) if len(values) else 0.0,
                "examples": distinct[:MAX_SHOWN],
                "history_days": sum(1 for d in all_days if d < day),
            }
            for value in distinct:
                first[value] = min(first.get(value, day), day)
    return result


def check_unseen_categories(unseen: dict[str, dict[str, Any]]) -> CheckOutcome:
    """Warning: many rows carry values of free categorical features no earlier day held."""
    table = [
        {
            "column": c,
            "unseen_values": u["unseen_values"],
            "rows": u["rows"],
            "share": u["share"],
            "history_days": u["history_days"],
        }
        for c, u in unseen.items()
    ]
    if not unseen:
        return outcome("unseen_categories", True, "no free categorical features to watch")
    history = min(u["history_days"] for u in unseen.values())
    rule = f"rows with unseen values <= {WARN_SHARE:.0%} after {MIN_HISTORY_DAYS} days of history"
    parts = [
        f"column '{c}': {u['unseen_values']} value(s) never seen before ({u['rows']} rows, "
        f"{u['share']:.1%}), e.g. {u['examples'][:5]}"
        for c, u in unseen.items()
        if u["unseen_values"]
    ]
    failing = [
        c for c, u in unseen.items() if u["share"] > WARN_SHARE and history >= MIN_HISTORY_DAYS
    ]
    if not failing:
        if history < MIN_HISTORY_DAYS:
            text = f"{history} earlier day(s), fewer than {MIN_HISTORY_DAYS}: counted only"
        else:
            text = "unseen values within the rule"
        text += f"; {'; '.join(parts)}" if parts else "; no unseen values"
        return outcome("unseen_categories", True, text, table=table, rule=rule)
    return outcome(
        "unseen_categories",
        False,
        "; ".join(p for p in parts if p.split("'")[1] in failing)
        + " (a model scores them as missing)",
        columns=failing,
        rule=rule,
        failing_rows=sum(unseen[c]["rows"] for c in failing),
        examples={c: unseen[c]["examples"] for c in failing},
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
