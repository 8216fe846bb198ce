"""The drafted target: a column or SQL as given, a two-valued column as 'column = positive'."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from driftloop.data.contract_sql import check_expression, sandboxed_connection

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class TargetChoice:
    key: str  # "column" or "expression", as the contract's target block says it
    value: str  # the column name or the SQL
    why: str
    sql: str  # the target as SQL over the sample's columns
    components: set[str]


def evaluate(frame: pd.DataFrame, sql: str) -> pd.Series:
    """One SQL expression over the sample's rows, in the contract SQL sandbox."""
    con = sandboxed_connection()
    try:
        con.register("sample", frame)
        return con.execute(f"SELECT {sql} AS value FROM sample").fetchdf()["value"]
    finally:
        con.close()


def _literal(value: object) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(float(value)) if isinstance(value, float) else repr(value)


def _positive_expression(column: str, values: pd.Series, positive: str | None) -> tuple[str, str]:
    """(SQL, why) for a two-valued column: the given positive value, else the rarer one."""
    counts = values.value_counts()
    by_text = {str(v): v for v in counts.index}
    if positive is not None:
        if positive not in by_text:
            raise ValueError(
                f"--positive {positive!r} is not a value of target column {column!r} "
                f"(its values: {', '.join(sorted(by_text))})"
            )
        chosen, why = by_text[positive], "positive class given with --positive"
    else:
        # The rarer value is the event worth predicting (a churn, a fault, a late flight).
        chosen = counts.sort_values(kind="stable").index[0]
        share = counts[chosen] / counts.sum()
        why = (
            f"positive class = the rarer value {str(chosen)!r} ({share:.1%} of rows); "
            "--positive VALUE chooses the other"
        )
    return f"{json.dumps(column)} = {_literal(chosen)}", why


def resolve_target(frame: pd.DataFrame, target: str, positive: str | None) -> TargetChoice:
    """The target as the contract will say it, checked on the sample (no raw tracebacks:
    a target the sample cannot compute is a ValueError saying what to give instead)."""
    import duckdb
    import pandas as pd

    if target in frame.columns:
        values = frame[target].dropna()
        distinct = values.nunique()
        numeric = pd.api.types.is_numeric_dtype(values.dtype)
        if distinct == 0:
            raise ValueError(f"the target column {target!r} is NULL on every row of the sample")
        zero_one = numeric and set(values.astype(float).unique()) <= {0.0, 1.0}
        if positive is None and (zero_one or (numeric and distinct > 2)):
            return TargetChoice(
                "column", target, "given with --target", json.dumps(target), {target}
            )
        if distinct == 2 or (positive is not None and distinct <= 2):
            sql, why = _positive_expression(target, values, positive)
            return TargetChoice("expression", sql, why, f"({sql})", {target})
        if positive is not None:
            raise ValueError(
                f"--positive applies to a two-valued target; {target!r} has {distinct}"
            )
        shown = ", ".join(repr(str(v)) for v in values.value_counts().index[:5])
        raise ValueError(
            f"target column {target!r} has {distinct} text values ({shown}, ...): multiclass "
            f"targets are not supported yet; give a binary target as SQL, e.g. "
            f'--target "{target} = {_literal(str(values.iloc[0]))}"'
        )
    if positive is not None:
        raise ValueError("--positive applies to a target column, not to a SQL target")
    components = check_expression(target)
    try:
        evaluate(frame, f"CAST(({target}) AS DOUBLE)")
    except duckdb.Error as error:
        raise ValueError(
            f"the target {target!r} cannot be computed as a number on the sample's rows "
            f"({str(error).splitlines()[0]}): give a column, or SQL giving a number or a "
            "condition, e.g. --target \"COLUMN = 'VALUE'\" for a text column"
        ) from None
    return TargetChoice("expression", target, "given with --target", f"({target})", components)
