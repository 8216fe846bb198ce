"""A contract's event time: the landed columns it is computed from and its value per row,
evaluated in the contract SQL sandbox (``driftloop.data.contract_sql``) when the contract
gives an expression."""

from __future__ import annotations

from typing import TYPE_CHECKING

from driftloop.data.contract import Contract
from driftloop.data.contract_sql import DERIVED_EVENT_TIME, check_expression, sandboxed_connection

if TYPE_CHECKING:
    import pandas as pd


def event_time_inputs(contract: Contract) -> list[str]:
    """The landed columns the event time is computed from, in contract order."""
    if contract.event_time.expression is None:
        return [contract.event_time.column]
    used = check_expression(contract.event_time.expression)
    return [n for n in contract.columns if n in used and n != DERIVED_EVENT_TIME]


def compute_event_time(contract: Contract, frame: pd.DataFrame) -> pd.Series:
    """The event time of each row of a raw-typed frame (naive, in the contract's zone).

    For a contract with `event_time.column` this is that column; with an expression, the
    expression is evaluated by DuckDB in the sandbox over the frame's columns. Used by
    ingestion, the feature query's extra rows and online requests alike, so every path
    computes the same instant. NaT where the expression gives NULL or fails for the row.
    """
    import pandas as pd

    if contract.event_time.expression is None:
        return frame[contract.event_time.column]
    inputs = frame[event_time_inputs(contract)].reset_index(drop=True)
    con = sandboxed_connection()
    try:
        con.register("__rows", inputs)
        # TRY: a row whose values the expression cannot convert gets NULL, reported per row.
        sql = f"SELECT TRY(CAST(({contract.event_time.expression}) AS TIMESTAMP)) FROM __rows"
        values = con.execute(sql).fetchdf().iloc[:, 0]
    finally:
        con.close()
    values = pd.to_datetime(values)
    if getattr(values.dt, "tz", None) is not None:
        values = values.dt.tz_convert(contract.timezone).dt.tz_localize(None)
    return pd.Series(values.to_numpy(), index=frame.index, dtype="datetime64[ns]")


def event_time_inputs_text(contract: Contract, frame: pd.DataFrame) -> pd.Series:
    """Per row, the values the event time is computed from ('dep_date=x, dep_hour=5')."""
    parts = [name + "=" + frame[name].astype(str) for name in event_time_inputs(contract)]
    text = parts[0]
    for part in parts[1:]:
        text = text + ", " + part
    return text


def with_event_time(contract: Contract, frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with the derived event-time column filled in (unchanged for a column)."""
    if contract.event_time.expression is None:
        return frame
    out = frame.copy()
    out[DERIVED_EVENT_TIME] = compute_event_time(contract, frame)
    return out
