"""The contract's rolling features as per-row contributions, and the tables that answer a window.

`driftloop.features.definition` groups rolling features into sources (features that share
their group, value and known-at expression); here each source's SQL, the definition's own
fragments, is run on raw rows to give each row's contribution (group, known-at key in
microseconds, value), and a group's contributions become a `Table`: sorted keys with
prefix sums, so the values known in [t - window, t) are two binary searches away.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from driftloop.data.contract import Contract
from driftloop.features.definition import SQL_TYPES, group_rolling_sources, ident

ID_SEPARATOR = "\x1f"  # between the id columns of a row with several


@dataclass(frozen=True)
class Window:
    feature: str
    window_us: int
    count: bool  # the `count` statistic; else the mean of the values


@dataclass(frozen=True)
class Source:
    """Rolling features that aggregate the same thing: one prefix-sum table per group."""

    group_by: str
    value_sql: str
    known_sql: str
    windows: tuple[Window, ...]


def rolling_sources(contract: Contract) -> list[Source]:
    """The definition's sources (group, value, known-at) with the windows read from each."""
    out = []
    for (group_by, value, known), members in group_rolling_sources(contract).items():
        windows = tuple(
            Window(
                contract.rolling_features[k].name,
                contract.rolling_features[k].window // timedelta(microseconds=1),
                contract.rolling_features[k].statistic == "count",
            )
            for k in members
        )
        out.append(Source(group_by, value, known, windows))
    return out


def contributions_sql(contract: Contract, sources: list[Source], relation: str) -> str:
    """Per raw row of `relation`: its id, and per source its group, value and known-at key,
    by the definition's own expressions (the row's label, its event time in microseconds)."""
    event = ident(contract.event_time.column)
    cast = {n: f"CAST({ident(n)} AS {SQL_TYPES[c.type]})" for n, c in contract.columns.items()}
    if contract.event_time.expression is not None:
        # An event record carries the expression's inputs; a stored row, the stored time.
        computed = f"TRY(CAST(({contract.event_time.expression}) AS TIMESTAMP))"
        cast[contract.event_time.column] = f"COALESCE({event}, {computed})"
    typed = ", ".join(
        [
            *(f"{sql} AS {ident(n)}" for n, sql in cast.items()),
            # Contract SQL may say `event_time` for the row's event time, as in batch.
            f"CAST({cast[contract.event_time.column]} AS TIMESTAMP) AS event_time",
        ]
    )
    ids = [f"CAST({ident(i)} AS VARCHAR)" for i in contract.id_columns] or ["NULL"]
    row_id = ids[0] if len(ids) == 1 else f"concat_ws('{ID_SEPARATOR}', {', '.join(ids)})"
    outputs = [f"{row_id} AS __id"]
    for s, source in enumerate(sources):
        outputs += [
            f"{ident(source.group_by)} AS __g{s}",
            f"{source.value_sql} AS __v{s}",
            f"{source.known_sql} AS __k{s}",
        ]
    return f"""WITH source AS (SELECT {typed} FROM {ident(relation)}),
numbered AS (
    SELECT *, CAST({contract.target.sql} AS DOUBLE) AS __label, epoch_us({event}) AS __t_us
    FROM source WHERE {event} IS NOT NULL
)
SELECT {", ".join(outputs)} FROM numbered"""


# One row's part in one source: (group, key, value or None).
Part = tuple[Any, int, float | None]


@dataclass
class Table:
    """Sorted known-at keys of one group with prefix sums (index i: totals of keys[:i])."""

    keys: list[int]
    sums: list[float]
    counts: list[int]  # values that are not NULL
    rows: list[int]  # every row, NULL value or not (the `count` statistic)

    @classmethod
    def build(cls, parts: Iterable[tuple[int, float | None]]) -> Table:
        keys, sums, counts, rows = [], [0.0], [0], [0]
        s = c = 0
        for n, (key, value) in enumerate(sorted(parts, key=lambda p: p[0]), start=1):
            if value is not None:
                s += value
                c += 1
            keys.append(key)
            sums.append(s)
            counts.append(c)
            rows.append(n)
        return cls(keys, sums, counts, rows)

    def before(self, t: int) -> tuple[float, int, int]:
        i = bisect_left(self.keys, t)
        return self.sums[i], self.counts[i], self.rows[i]


EMPTY = Table([], [0.0], [0], [0])


def connect() -> Any:
    """A DuckDB connection for contract SQL over registered rows."""
    import duckdb

    # Contract SQL reads the rows it is given, never files or the network; one thread, as
    # the queries are small and the server's workers are the parallelism.
    return duckdb.connect(config={"enable_external_access": False, "threads": 1})
