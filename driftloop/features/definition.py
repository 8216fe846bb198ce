"""Model features from raw partitions: one DuckDB query, point-in-time correct.

The features table has one row per raw row: the id columns, `event_time`,
`partition_date`, every name of `contract.features` in order, and `label`
(the contract's target as DOUBLE, NULL when unknown).

Rolling features aggregate, per group, values of earlier rows that were already known.
Each row contributes `value` (default: its label) from its `known_at` time (default: its
event time plus `label_delay`; never earlier than its own event time). A row at time t
sees the values that became known in [t - window, t):

- `mean` (or `target_mean`): mean of the non-NULL values (NULL when there are none);
- `count`: the number of rows whose value became known in the window.

Boundary convention: a value that becomes known exactly at t is NOT used; the lower end
t - window is included. For the default (the label), that is rows with event time in
[t - label_delay - window, t - label_delay). Nothing known at or after t can influence a
row's features, so the features of a day do not depend on anything that happens later,
and a row never sees its own outcome.

The windows are computed with prefix sums, one pass per *source* (rolling features that
share their group, value and known-at share one): per group, the values are summed by
known-at key (integer microseconds) and accumulated in key order; an ASOF join then
finds, for a row at t, the running totals just before t and just before t - window, and
their difference is exactly what became known in [t - window, t). Sorting and the ASOF
merge are O(n log n); DuckDB's RANGE window frames, the obvious alternative, grow
superlinearly with the rows (docs/performance.md).
Sums are exact for integer-valued values (labels, counts, minutes); for arbitrary doubles
a mean differs from a direct average only by rounding (relative ~1e-15 of the prefix sum).
"""

from __future__ import annotations

import logging
import math
import warnings
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

from driftloop.data.contract import ColumnType, Contract, RollingFeature
from driftloop.data.contract_sql import sandboxed_connection
from driftloop.data.event_time import with_event_time
from driftloop.data.lake import (
    blocked_marker,
    days_between,
    is_blocked,
    partition_files,
    sql_file_list,
)
from driftloop.names import RAW_TABLE
from driftloop.paths import DatasetPaths

log = logging.getLogger(__name__)

# Name under which build_features registers `extra_rows` on the DuckDB connection.
EXTRA_RELATION = "__driftloop_extra_rows"

SQL_TYPES = {
    ColumnType.numeric: "DOUBLE",
    ColumnType.categorical: "VARCHAR",
    ColumnType.boolean: "BOOLEAN",
    ColumnType.timestamp: "TIMESTAMP",
}
_MICROSECOND = timedelta(microseconds=1)


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _micros(delta: timedelta) -> int:
    return delta // _MICROSECOND


def lookback_days(contract: Contract) -> int:
    """Days before the first target day whose raw rows the rolling features may read.

    The longest window plus the label delay, rounded up to whole days, plus one day of
    margin (event times are local, so a day is not always 24 hours). Zero when the
    contract has no rolling features: then each day needs only its own rows.
    """
    if not contract.rolling_features:
        return 0
    reach = max(r.window for r in contract.rolling_features) + contract.label_delay
    return math.ceil(reach / timedelta(days=1)) + 1


def _value_sql(rolling: RollingFeature) -> str:
    return f"CAST(({rolling.value}) AS DOUBLE)" if rolling.value else "__label"


def _known_sql(contract: Contract, rolling: RollingFeature) -> str:
    """The known-at key (microseconds): never before the row's own event time, so a row
    cannot see its own value. (DuckDB's GREATEST skips NULLs: a value that never becomes
    known must stay NULL.)"""
    if rolling.known_at:
        known = f"epoch_us(CAST(({rolling.known_at}) AS TIMESTAMP))"
    else:
        known = f"__t_us + {_micros(contract.label_delay)}"
    return f"CASE WHEN ({known}) IS NULL THEN NULL ELSE GREATEST({known}, __t_us) END"


# (group_by, value SQL, known-at SQL) -> indexes into contract.rolling_features.
Sources = dict[tuple[str, str, str], list[int]]


def group_rolling_sources(contract: Contract) -> Sources:
    """Rolling features grouped by what they aggregate: (group_by, value SQL, known-at SQL)
    -> indexes into contract.rolling_features. One prefix-sum table serves each source."""
    sources: Sources = {}
    for k, rolling in enumerate(contract.rolling_features):
        key = (rolling.group_by, _value_sql(rolling), _known_sql(contract, rolling))
        sources.setdefault(key, []).append(k)
    return sources


def _source_inputs(sources: Sources) -> list[str]:
    """Per-row inputs of each source, computed in `keys`: its value and known-at key."""
    return [
        sql
        for s, (_, value, known) in enumerate(sources)
        for sql in (f"{value} AS __v{s}", f"{known} AS __k{s}")
    ]


def _rolling_ctes(contract: Contract, sources: Sources, groups: dict[str, str]) -> list[str]:
    """Per source: its prefix sums, and (__rid, __r<k> for each of its features) for every
    row that has a group value."""
    ctes = []
    for s, ((group_by, _, _), members) in enumerate(sources.items()):
        group = groups[group_by]
        windows = dict.fromkeys(contract.rolling_features[k].window for k in members)
        lows = {w: f"__lo{s}_{j}" for j, w in enumerate(windows)}
        # Totals known before t (at) and before t - window (lo): keys in [t - w, t) remain.
        joins = "".join(
            f"\n    ASOF LEFT JOIN __cum{s} {alias}"
            f" ON q.__g = {alias}.__g AND q.__t_us - {_micros(w)} > {alias}.__key"
            for w, alias in lows.items()
        )
        outputs = []
        for k in members:
            rolling = contract.rolling_features[k]
            lo = lows[rolling.window]
            if rolling.statistic == "count":
                expr = f"COALESCE(__at.__n, 0) - COALESCE({lo}.__n, 0)"
            else:
                sum_ = f"__at.__s - COALESCE({lo}.__s, 0)"
                expr = f"({sum_}) / NULLIF(COALESCE(__at.__c, 0) - COALESCE({lo}.__c, 0), 0)"
            outputs.append(f"CAST({expr} AS DOUBLE) AS __r{k}")
        ctes.append(
            f"""__cum{s} AS (
    SELECT __g, __key,
        SUM(__s) OVER __w AS __s, SUM(__c) OVER __w AS __c, SUM(__n) OVER __w AS __n
    FROM (
        SELECT {group} AS __g, __k{s} AS __key,
            SUM(__v{s}) AS __s, COUNT(__v{s}) AS __c, COUNT(*) AS __n
        FROM keys WHERE {group} IS NOT NULL AND __k{s} IS NOT NULL
        GROUP BY ALL
    )
    WINDOW __w AS (PARTITION BY __g ORDER BY __key ROWS UNBOUNDED PRECEDING)
),
__roll{s} AS (
    SELECT q.__rid, {", ".join(outputs)}
    FROM (SELECT __rid, {group} AS __g, __t_us FROM keys WHERE __wanted AND {group} IS NOT NULL) q
    ASOF LEFT JOIN __cum{s} __at ON q.__g = __at.__g AND q.__t_us > __at.__key{joins}
)"""
        )
    return ctes


def plain_feature_sql(contract: Contract, name: str) -> str:
    """A plain or extra feature as SQL over raw columns (rolling features are windows)."""
    if name in contract.extra_features:
        return f"CAST(({contract.extra_features[name]}) AS DOUBLE)"
    kind = contract.columns[name].type
    if kind == ColumnType.categorical:
        return f"CAST({ident(name)} AS VARCHAR)"
    if kind == ColumnType.timestamp:
        return f"CAST(epoch({ident(name)}) AS DOUBLE)"
    return f"CAST({ident(name)} AS DOUBLE)"  # numeric, and boolean as 0.0 / 1.0


def feature_sql(
    contract: Contract,
    raw_files: list[Path],
    start: date,
    end: date,
    *,
    extra_relation: str | None = None,
) -> str:
    """One DuckDB query: features of the rows of raw_files whose event day is in [start, end].

    `raw_files` should cover the lookback days too (see `lookback_days`). With
    `extra_relation` (a table or view of raw-schema rows on the same connection) those
    rows join the source before the window computation, and all of them are returned
    whatever their day.
    """
    columns = contract.columns
    # Contract SQL may say `event_time` for the row's event time, whatever column holds it.
    typed = ", ".join(
        [
            *(f"CAST({ident(n)} AS {SQL_TYPES[c.type]}) AS {ident(n)}" for n, c in columns.items()),
            f"CAST({ident(contract.event_time.column)} AS TIMESTAMP) AS event_time",
        ]
    )
    sources = []
    if raw_files:
        reader = f"read_parquet({sql_file_list(raw_files)}, union_by_name = true)"
        sources.append(f"SELECT {typed}, FALSE AS __extra FROM {reader}")
    if extra_relation:
        sources.append(f"SELECT {typed}, TRUE AS __extra FROM {ident(extra_relation)}")
    if not sources:
        empty = ", ".join(
            [
                *(f"CAST(NULL AS {SQL_TYPES[c.type]}) AS {ident(n)}" for n, c in columns.items()),
                "CAST(NULL AS TIMESTAMP) AS event_time",
            ]
        )
        sources.append(f"SELECT {empty}, FALSE AS __extra WHERE FALSE")
    source = "\n    UNION ALL\n    ".join(sources)

    event = ident(contract.event_time.column)
    # An id column that is also a feature appears once, as the feature.
    ids = [ident(i) for i in contract.id_columns if i not in contract.features]
    rolling = {r.name for r in contract.rolling_features}
    rolling_sources = group_rolling_sources(contract)
    groups = {
        g: f"__group_{k}"
        for k, g in enumerate(dict.fromkeys(r.group_by for r in contract.rolling_features))
    }
    first_day, last_day = _lit(start.isoformat()), _lit(end.isoformat())
    # `keys` is the narrow part the rolling features need: what is sorted, summed and
    # joined stays small; the wide columns are read once more, at the end, for the output.
    keys_list = ",\n        ".join(
        [
            "__rid",
            "__t_us",
            *(f"{ident(g)} AS {alias}" for g, alias in groups.items()),
            *_source_inputs(rolling_sources),
            # Only the rows returned need their windows looked up; lookback rows only feed
            # the sums. (The day filter cannot go in a WHERE before the sums.)
            f"(__extra OR CAST({event} AS DATE) BETWEEN DATE {first_day} AND DATE {last_day})"
            " AS __wanted",
        ]
    )
    rolling_index = {r.name: k for k, r in enumerate(contract.rolling_features)}
    source_of = {k: s for s, members in enumerate(rolling_sources.values()) for k in members}
    output_list = ",\n    ".join(
        [
            *ids,
            f"{event} AS event_time",
            f"strftime(CAST({event} AS DATE), '%Y-%m-%d') AS partition_date",
            *(
                f"__roll{source_of[rolling_index[f]]}.__r{rolling_index[f]} AS {ident(f)}"
                if f in rolling
                else f"{plain_feature_sql(contract, f)} AS {ident(f)}"
                for f in contract.features
            ),
            "__label AS label",
        ]
    )
    joins = "".join(f"\nLEFT JOIN __roll{s} USING (__rid)" for s in range(len(rolling_sources)))
    rolling_ctes = "".join(f",\n{cte}" for cte in _rolling_ctes(contract, rolling_sources, groups))
    # Without ids, every output column breaks ties so the order stays deterministic.
    order = ["event_time", *ids] if ids else ["event_time", *map(ident, contract.features), "label"]
    return f"""WITH source AS (
    {source}
),
-- Materialized: the rolling CTEs and the output all read it, so it is computed once.
numbered AS MATERIALIZED (
    SELECT *,
        CAST({contract.target.sql} AS DOUBLE) AS __label,
        epoch_us({event}) AS __t_us,
        row_number() OVER () AS __rid
    FROM source
    WHERE {event} IS NOT NULL
),
keys AS MATERIALIZED (
    SELECT
        {keys_list}
    FROM numbered
){rolling_ctes}
SELECT
    {output_list}
FROM numbered{joins}
WHERE __extra
    OR CAST({event} AS DATE) BETWEEN DATE {first_day} AND DATE {last_day}
ORDER BY {", ".join(order)}"""


def _prepare_extra_rows(contract: Contract, rows: pd.DataFrame) -> pd.DataFrame:
    """Raw-schema rows from outside the lake: add absent columns, localize the event time."""
    import pandas as pd

    frame = rows.copy()
    for name in contract.columns:
        if name not in frame.columns:
            frame[name] = None  # e.g. the outcome columns of an online request
    for name, column in contract.columns.items():
        if column.type != ColumnType.timestamp:
            continue
        values = pd.to_datetime(frame[name])
        if values.dt.tz is not None:
            values = values.dt.tz_convert(contract.timezone).dt.tz_localize(None)
        frame[name] = values
    return with_event_time(contract, frame)[list(contract.columns)]


def build_features(
    contract: Contract,
    paths: DatasetPaths,
    start: date,
    end: date,
    con: duckdb.DuckDBPyConnection | None = None,
    extra_rows: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The features table for event days [start, end] (plus every row of `extra_rows`).

    Reads raw partitions from `start - lookback_days(contract)` to `end`. A blocked day
    inside [start, end] is an error; a blocked lookback day is skipped with a warning
    (the rolling features of the first days then see fewer rows). Days without a raw
    partition contribute no rows. The query is in `frame.attrs["sql"]`.
    """
    if end < start:
        raise ValueError(f"{contract.name}: features range ends ({end}) before it starts ({start})")
    raw_dir = paths.table(RAW_TABLE)
    target_days = days_between(start, end)
    blocked = [d for d in target_days if is_blocked(raw_dir, d)]
    if blocked:
        raise ValueError(
            f"{contract.name}: raw partition(s) {', '.join(blocked)} failed blocking checks "
            f"(see {blocked_marker(raw_dir, blocked[0])}); no features are built for a "
            "blocked day. Fix and re-ingest the data, or choose days that are not blocked."
        )
    lookback = lookback_days(contract)
    lookback_range = (
        days_between(start - timedelta(days=lookback), start - timedelta(days=1))
        if lookback
        else []
    )
    skipped = [d for d in lookback_range if is_blocked(raw_dir, d)]
    if skipped:
        message = (
            f"{contract.name}: skipping blocked lookback raw partition(s) {', '.join(skipped)}; "
            f"rolling features of the first days after them see fewer rows"
        )
        log.warning(message)
        warnings.warn(message, stacklevel=2)
    missing = [d for d in target_days if not paths.partition_file(RAW_TABLE, d).exists()]
    if missing:
        log.warning("%s: no raw partition for %s", contract.name, ", ".join(missing))
    files = partition_files(raw_dir, [d for d in lookback_range if d not in skipped] + target_days)

    has_extra = extra_rows is not None and len(extra_rows) > 0
    sql = feature_sql(
        contract, files, start, end, extra_relation=EXTRA_RELATION if has_extra else None
    )
    own = con is None
    # Contract SQL runs in the sandbox: the connection reads this table's files and nothing else.
    connection = sandboxed_connection([str(raw_dir.resolve())]) if con is None else con
    try:
        if has_extra:
            connection.register(EXTRA_RELATION, _prepare_extra_rows(contract, extra_rows))
        # Through Arrow: about twice as fast as .df() on the string columns.
        frame = connection.sql(sql).to_arrow_table().to_pandas()
    finally:
        if has_extra:
            connection.unregister(EXTRA_RELATION)
        if own:
            connection.close()
    frame.attrs["sql"] = sql
    frame.attrs["skipped_lookback_days"] = skipped
    frame.attrs["missing_days"] = missing
    return frame
