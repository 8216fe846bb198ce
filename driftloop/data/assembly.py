"""A raw day assembled from the staged pieces of every file that landed rows in it.

The duplicate rule, within one day across every file that fills it (id columns from the
contract; without id columns no row is a duplicate):

- exact duplicates (same values in every contract column) are kept once, the copy from
  the earliest landed file; the others are dropped and counted;
- conflicting duplicates (same id, different values) are all set aside, none is stored:
  `AssembledDay.conflicts` holds them with a reason, and the `duplicate_ids` check fails.

Row accounting: rows landed on the day (over the current version of every file) equal
rows stored + rows quarantined (row rules and conflicts) + exact duplicates dropped.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

from driftloop.data.contract import Contract
from driftloop.data.raw_table import REASON, SOURCE_FILE, conform, raw_schema
from driftloop.paths import DatasetPaths

MANIFESTS = "_files"
# The day of each row while many days are assembled together (never stored).
DAY = "_day"


@dataclass
class AssembledDay:
    """One day's stored rows, what was set aside, and the counts that must add up."""

    day: str
    frame: pd.DataFrame
    conflicts: pd.DataFrame  # every row of an id seen with different values, with `_reason`
    rows_landed: int
    rows_rule_quarantined: int
    exact_duplicates: int
    files: dict[str, int] = field(default_factory=dict)  # landed rows on this day per file

    @property
    def rows_stored(self) -> int:
        return len(self.frame)

    @property
    def rows_quarantined(self) -> int:
        return self.rows_rule_quarantined + len(self.conflicts)

    @property
    def balanced(self) -> bool:
        stored = self.rows_stored + self.rows_quarantined + self.exact_duplicates
        return self.rows_landed == stored

    def accounting(self) -> dict[str, Any]:
        return {
            "rows_landed": self.rows_landed,
            "rows_stored": self.rows_stored,
            "rows_quarantined": self.rows_quarantined,
            "rows_quarantined_by_row_rules": self.rows_rule_quarantined,
            "rows_quarantined_as_conflicting_duplicates": len(self.conflicts),
            "exact_duplicates_dropped": self.exact_duplicates,
            "balanced": self.balanced,
        }


def load_manifests(paths: DatasetPaths) -> list[dict[str, Any]]:
    """Every landed file name's manifest (what its current version staged, per day)."""
    folder = paths.staged / MANIFESTS
    found = []
    if folder.is_dir():
        for path in folder.glob("*.json"):
            with contextlib.suppress(FileNotFoundError):
                manifest = json.loads(path.read_text())
                manifest["key"] = path.stem
                found.append(manifest)
    return found


def _day_manifests(
    paths: DatasetPaths, day: str, loaded: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Manifests of the files with rows on `day`, earliest landed first."""
    found = [
        m for m in (loaded if loaded is not None else load_manifests(paths)) if day in m["days"]
    ]
    return sorted(found, key=lambda m: (m["landed_at"], m["name"]))


def staged_pieces(paths: DatasetPaths, day: str) -> list[Path]:
    """The day's staged pieces, earliest landed file first."""
    folder = paths.staged / f"date={day}"
    return [
        folder / f"{m['key']}.parquet"
        for m in _day_manifests(paths, day)
        if (folder / f"{m['key']}.parquet").exists()
    ]


def _conflict_reasons(contract: Contract, rows: pd.DataFrame) -> pd.Series:
    """Per conflicting row: the id, the columns whose values differ, and the files."""
    ids = contract.id_columns
    columns = list(contract.columns)
    key = rows[ids].astype(str).agg("|".join, axis=1)
    reasons = {}
    for value, group in rows.groupby(key, sort=False):
        differ = [c for c in columns if group[c].astype(object).nunique(dropna=False) > 1]
        files = sorted(group[SOURCE_FILE].dropna().astype(str).unique())
        reasons[value] = (
            f"id {ids}={value} appears {len(group)} times with different values in "
            f"column(s) {differ[:10]} (files {files[:5]}): rule duplicate_ids, "
            "conflicting duplicates are quarantined"
        )
    return key.map(reasons)


def assemble_day(
    contract: Contract,
    paths: DatasetPaths,
    day: str,
    manifests: list[dict[str, Any]] | None = None,
) -> AssembledDay:
    """The day's rows under the duplicate rule (module docstring), in event-time order.

    `manifests` (`load_manifests`) saves reading them again for each of many days."""
    return assemble_days(contract, paths, [day], manifests)[day]


def _read_pieces(
    contract: Contract, paths: DatasetPaths, days: list[str], manifests: list[dict[str, Any]]
) -> tuple[Any, list[str], dict[str, dict[str, Any]]]:
    """Every staged piece of `days` in one Arrow table (day by day, earliest landed file
    first), the day of each of its rows, and per day the landed counts from the manifests."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = raw_schema(contract)
    ordered = sorted(manifests, key=lambda m: (m["landed_at"], m["name"]))
    tables, labels = [], []
    counts: dict[str, dict[str, Any]] = {}
    for day in days:
        landed = quarantined = 0
        files: dict[str, int] = {}
        for manifest in ordered:
            day_counts = manifest["days"].get(day)
            if day_counts is None:
                continue
            piece = paths.staged / f"date={day}" / f"{manifest['key']}.parquet"
            try:
                if day_counts["staged"]:
                    table = pq.read_table(piece, schema=schema)
                    tables.append(table)
                    labels.extend([day] * table.num_rows)
            except FileNotFoundError:
                continue
            landed += day_counts["staged"] + day_counts["quarantined"]
            quarantined += day_counts["quarantined"]
            files[manifest["name"]] = day_counts["staged"] + day_counts["quarantined"]
        counts[day] = {"landed": landed, "quarantined": quarantined, "files": files}
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    return table, labels, counts


def _split(frame: pd.DataFrame, day_of_row: Any, days: list[str]) -> dict[str, pd.DataFrame]:
    """Rows of `frame` (sorted by day) per day, each with a fresh index."""
    starts = day_of_row.searchsorted(days, side="left")
    ends = day_of_row.searchsorted(days, side="right")
    return {
        day: frame.iloc[a:b].reset_index(drop=True)
        for day, a, b in zip(days, starts, ends, strict=True)
    }


def assemble_days(
    contract: Contract,
    paths: DatasetPaths,
    days: list[str],
    manifests: list[dict[str, Any]] | None = None,
) -> dict[str, AssembledDay]:
    """`assemble_day` for many days at once: one read of their pieces, one cast, one
    de-duplication and one sort over all their rows (the rule applies within each day)."""
    import numpy as np
    import pandas as pd

    days = sorted(set(days))
    loaded = manifests if manifests is not None else load_manifests(paths)
    table, labels, counts = _read_pieces(contract, paths, days, loaded)
    frame = conform(contract, table.to_pandas())
    frame[DAY] = np.array(labels, dtype=object)
    exact = pd.Series(0, index=days, dtype="int64")
    conflicts = frame.iloc[0:0].assign(**{REASON: pd.Series(dtype=object)})
    if contract.id_columns and len(frame):
        repeated = frame.duplicated(subset=[DAY, *contract.columns], keep="first")
        exact = repeated.groupby(frame[DAY]).sum().reindex(days, fill_value=0)
        frame = frame[~repeated]
        clashing = frame.duplicated(subset=[DAY, *contract.id_columns], keep=False)
        if clashing.any():
            conflicts = frame[clashing].copy()
            conflicts[REASON] = pd.concat(
                [_conflict_reasons(contract, rows) for _, rows in conflicts.groupby(DAY)]
            )
            conflicts = conflicts.sort_values(DAY, kind="stable")
            frame = frame[~clashing]
    order = [DAY, contract.event_time.column, *contract.id_columns]
    frame = frame.sort_values(order, kind="stable", na_position="last")
    stored = _split(frame.drop(columns=DAY), frame[DAY].to_numpy(), days)
    aside = _split(conflicts.drop(columns=DAY), conflicts[DAY].to_numpy(), days)
    return {
        day: AssembledDay(
            day=day,
            frame=stored[day],
            conflicts=aside[day],
            rows_landed=counts[day]["landed"],
            rows_rule_quarantined=counts[day]["quarantined"],
            exact_duplicates=int(exact[day]),
            files=counts[day]["files"],
        )
        for day in days
    }


def assemble_partition(contract: Contract, paths: DatasetPaths, day: str) -> pd.DataFrame:
    """The rows one raw day stores (see `assemble_day`)."""
    return assemble_day(contract, paths, day).frame
