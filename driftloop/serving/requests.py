"""What a scoring or event request may carry, derived from the contract, and its validation.

Request fields (`RequestSchema`, nothing declared twice):
  required  the columns the features read from the row itself: the event-time column,
            each feature that is a column, every column the `extra_features` SQL refers
            to (found by DuckDB's own parser, `json_serialize_sql`), and the `group_by`
            column of each rolling feature. A required field must be present; it may be
            null when the contract's column is nullable.
  optional  the id columns (type-checked when given, never used for scoring).
  ignored   everything else, in particular the outcome columns (the target's and the
            rolling `value` / `known_at` inputs), which a client does not know at request
            time. Fields the contract does not know are ignored, as MLflow's server does.

Types follow the contract: numeric -> a finite JSON number (not a string, not a bool;
min/max checked; NaN, Infinity and numbers too large for a double are refused, as the
contract has no way to allow them), categorical -> a string (one of `allowed` when the
contract lists them), boolean -> true/false, timestamp -> an ISO 8601 string between
`EARLIEST` and `LATEST` (naive = the contract's zone; with an offset it is converted).
Every problem becomes a `RequestError` naming the row and the field; the HTTP layer
answers 400 (body shape, not JSON), 413 (too many rows or bytes) or 422 (a field's value).
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from driftloop.data.contract import ColumnType, Contract
from driftloop.data.contract_sql import DERIVED_EVENT_TIME
from driftloop.data.event_time import (
    compute_event_time,
    event_time_inputs,
    event_time_inputs_text,
)
from driftloop.serving.errors import MAX_REPORTED_ERRORS, Problem, RequestError, fail, shown

__all__ = ["Problem", "RequestError", "RequestSchema", "Rows", "fail", "parse_request"]

log = logging.getLogger(__name__)

DEFAULT_MAX_ROWS = 1000
# Outside these, a timestamp is a typo or an attack, and pandas' nanosecond range ends.
EARLIEST = datetime(1900, 1, 1)
LATEST = datetime(2200, 1, 1)
_ISO = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}:?\d{2})?$"
)


def sql_columns(expression: str) -> set[str] | None:
    """Column names an SQL expression refers to (DuckDB's parser), None if it cannot tell."""
    import duckdb

    try:
        con = duckdb.connect()
        try:
            text = con.execute("SELECT json_serialize_sql(?)", [f"SELECT {expression}"]).fetchall()
        finally:
            con.close()
        tree = json.loads(text[0][0])
    except (duckdb.Error, json.JSONDecodeError, IndexError):
        return None
    if tree.get("error"):
        return None
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("class") == "COLUMN_REF" and node.get("column_names"):
                found.add(node["column_names"][-1])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(tree)
    return found


@dataclass(frozen=True)
class RequestSchema:
    """What a request row carries: see the module docstring."""

    contract: Contract
    required: tuple[str, ...]
    optional: tuple[str, ...]
    ignored: tuple[str, ...]
    max_rows: int = DEFAULT_MAX_ROWS

    @classmethod
    def from_contract(cls, contract: Contract, max_rows: int = DEFAULT_MAX_ROWS) -> RequestSchema:
        columns = contract.columns
        needed = set(event_time_inputs(contract))
        needed |= {name for name in contract.features if name in columns}
        for name, expression in contract.extra_features.items():
            refs = sql_columns(expression)
            if refs is None:  # cannot tell: ask for every column (safe, if stricter)
                log.warning("%s: cannot parse extra feature %s; all columns required", name, name)
                refs = set(columns)
            needed |= {r for r in refs if r in columns}
        needed |= {r.group_by for r in contract.rolling_features}
        required = tuple(n for n in columns if n in needed)
        optional = tuple(n for n in contract.id_columns if n not in needed)
        ignored = tuple(
            n for n in columns if n not in needed and n not in optional and n != DERIVED_EVENT_TIME
        )
        return cls(contract, required, optional, ignored, max_rows)

    def describe(self) -> dict[str, Any]:
        columns = self.contract.columns

        def spec(name: str) -> dict[str, Any]:
            column = columns[name]
            out: dict[str, Any] = {"type": column.type.value, "nullable": column.nullable}
            if column.allowed is not None:
                out["allowed"] = [str(v) for v in column.allowed]
            if column.min is not None:
                out["min"] = column.min
            if column.max is not None:
                out["max"] = column.max
            return out

        return {
            "dataset": self.contract.name,
            "required": {n: spec(n) for n in self.required},
            "optional": {n: spec(n) for n in self.optional},
            "ignored": list(self.ignored),
            "max_rows": self.max_rows,
            "timezone": self.contract.event_time.timezone,
            "timestamps": {"earliest": EARLIEST.isoformat(), "latest": LATEST.isoformat()},
        }


@dataclass
class Rows:
    """Validated request rows, column by column: naive datetimes in the contract's zone,
    floats, strings, booleans or None."""

    count: int
    columns: dict[str, list[Any]]


def records_of(payload: Any, max_rows: int) -> list[Any]:
    """The rows of an MLflow-style body, as a list of (unchecked) records."""
    if not isinstance(payload, dict):
        fail(400, "the body must be a JSON object with 'dataframe_records' or 'dataframe_split'")
    formats = [k for k in ("dataframe_records", "dataframe_split") if k in payload]
    if len(formats) != 1:
        keys = shown(sorted(payload)[:10])
        fail(
            400,
            "give exactly one of 'dataframe_records' (a list of objects) or 'dataframe_split' "
            f"({{'columns': [...], 'data': [[...]]}}); got keys {keys}",
        )
    kind = formats[0]
    if kind == "dataframe_records":
        records = payload[kind]
        if not isinstance(records, list):
            fail(400, "must be a list of objects, one per row", field=kind)
    else:
        split = payload[kind]
        if not isinstance(split, dict) or not isinstance(split.get("columns"), list):
            fail(400, "must be an object with 'columns' (a list of names) and 'data'", kind)
        names = split["columns"]
        if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
            fail(400, "'columns' must be distinct strings", field=f"{kind}.columns")
        data = split.get("data")
        if not isinstance(data, list):
            fail(400, "must be a list of rows (lists)", field=f"{kind}.data")
        records = []
        for i, row in enumerate(data[: max_rows + 1]):
            if not isinstance(row, list) or len(row) != len(names):
                fail(400, f"must be a list of {len(names)} values (one per column)", kind, i)
            records.append(dict(zip(names, row, strict=True)))
        records += data[max_rows + 1 :]  # counted below, never parsed
    if not records:
        fail(400, "the request has no rows", field=kind)
    if len(records) > max_rows:
        fail(413, f"{len(records)} rows; at most {max_rows} rows per request", field=kind)
    return records


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {type(value).__name__} {shown(value)}")
    try:
        number = float(value)
    except OverflowError as error:
        raise ValueError(f"{shown(value)} is too large for a number") from error
    if not math.isfinite(number):
        raise ValueError(f"{shown(value)} is not a finite number (NaN and infinities are refused)")
    return number


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def parse_timestamp(value: Any, timezone: str) -> datetime:
    """An ISO 8601 string -> a naive datetime in `timezone`, or ValueError saying why."""
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO 8601 date-time string, got {type(value).__name__}")
    if not _ISO.match(value):  # fromisoformat also takes forms a client rarely means
        raise ValueError(f"{shown(value)} is not an ISO 8601 date-time (YYYY-MM-DD HH:MM[:SS])")
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError as error:
        raise ValueError(f"{shown(value)} is not a valid date-time ({error})") from error
    if stamp.tzinfo is not None:
        try:
            stamp = stamp.astimezone(_zone(timezone)).replace(tzinfo=None)
        except OverflowError as error:
            raise ValueError(f"{shown(value)} is out of range") from error
    if not EARLIEST <= stamp < LATEST:
        raise ValueError(
            f"{shown(value)} is outside the supported range [{EARLIEST.date()}, {LATEST.date()})"
        )
    return stamp


def check_value(contract: Contract, name: str, value: Any) -> Any:
    """The cleaned value of one field, or ValueError with a readable reason."""
    column = contract.columns[name]
    if value is None:
        if not column.nullable:
            raise ValueError("must not be null")
        return None
    kind = column.type
    if kind == ColumnType.numeric:
        number = _number(value)
        if column.min is not None and number < column.min:
            raise ValueError(f"{shown(value)} is below the minimum {column.min:g}")
        if column.max is not None and number > column.max:
            raise ValueError(f"{shown(value)} is above the maximum {column.max:g}")
        return number
    if kind == ColumnType.categorical:
        if isinstance(value, int) and not isinstance(value, bool) and name in contract.id_columns:
            if abs(value) >= 10**30:
                raise ValueError(f"{shown(value)} is too long for an id")
            value = str(value)  # numeric ids are common; the lake stores them as strings
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {type(value).__name__} {shown(value)}")
        if column.allowed is not None and value not in {str(a) for a in column.allowed}:
            allowed = ", ".join(str(a) for a in column.allowed)
            raise ValueError(f"{shown(value)} is not an allowed value (allowed: {allowed})")
        return value
    if kind == ColumnType.boolean:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {type(value).__name__} {shown(value)}")
        return value
    return parse_timestamp(value, contract.event_time.timezone)


def parse_request(payload: Any, schema: RequestSchema) -> Rows:
    """Validated request rows. Raises RequestError naming every (row, field) problem found,
    up to a cap."""
    contract = schema.contract
    records = records_of(payload, schema.max_rows)
    problems: list[Problem] = []
    names = (*schema.required, *schema.optional)
    cleaned: dict[str, list[Any]] = {n: [] for n in names}
    required = set(schema.required)
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            problems.append(Problem(None, i, "must be a JSON object of field: value"))
            continue
        for name in names:
            if name not in record:
                if name in required:
                    problems.append(Problem(name, i, "is missing (a required field)"))
                cleaned[name].append(None)
                continue
            try:
                cleaned[name].append(check_value(contract, name, record[name]))
            except ValueError as error:
                problems.append(Problem(name, i, str(error)))
                cleaned[name].append(None)
        if len(problems) > MAX_REPORTED_ERRORS:
            break
    if problems:
        raise RequestError(422, problems)
    rows = Rows(len(records), cleaned)
    if contract.event_time.expression is not None:
        derive_event_time(contract, rows)
    return rows


def derive_event_time(contract: Contract, rows: Rows) -> None:
    """Fill the derived event-time column from `event_time.expression`, as ingestion does
    (one sandboxed function computes it everywhere); a row it gives no time is a 422."""

    inputs = event_time_inputs(contract)
    frame = raw_frame(contract, {n: rows.columns[n] for n in inputs}, rows.count)
    times = compute_event_time(contract, frame)
    unknown = [i for i, t in enumerate(times) if t is None or t != t]  # NaT != NaT
    if unknown:
        text = event_time_inputs_text(contract, frame)
        message = f"event_time.expression ({contract.event_time.expression}) gives no time for "
        raise RequestError(422, [Problem("event_time", i, message + text[i]) for i in unknown])
    rows.columns[DERIVED_EVENT_TIME] = [t.to_pydatetime() for t in times]


def raw_frame(contract: Contract, values: dict[str, list[Any]], rows: int) -> Any:
    """Given columns in their lake dtypes (a pandas DataFrame); other columns are left out."""
    import pandas as pd

    frame = pd.DataFrame(index=range(rows))
    for name, data in values.items():
        kind = contract.columns[name].type
        if kind == ColumnType.numeric:
            frame[name] = pd.Series(data, dtype="float64")
        elif kind == ColumnType.boolean:
            frame[name] = pd.Series(data, dtype="boolean")
        elif kind == ColumnType.timestamp:
            frame[name] = pd.to_datetime(pd.Series(data, dtype=object))
        else:
            frame[name] = pd.Series(data, dtype=object)
    return frame


def parse_events(payload: Any, contract: Contract, max_rows: int) -> list[dict[str, Any]]:
    """Validated event records: each names its row by the id columns and carries any of the
    contract's columns (the facts known so far); unknown fields are refused."""
    records = records_of(payload, max_rows)
    problems: list[Problem] = []
    events: list[dict[str, Any]] = []
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            problems.append(Problem(None, i, "must be a JSON object of field: value"))
            continue
        event: dict[str, Any] = {}
        for name, value in record.items():
            if name not in contract.columns:
                problems.append(Problem(name, i, "is not a column of the contract"))
                continue
            try:
                event[name] = check_value(contract, name, value)
            except ValueError as error:
                problems.append(Problem(name, i, str(error)))
        for name in contract.id_columns:
            if event.get(name) is None and not any(p.field == name for p in problems):
                problems.append(Problem(name, i, "is missing (an event names its row by its id)"))
        events.append(event)
        if len(problems) > MAX_REPORTED_ERRORS:
            break
    if problems:
        raise RequestError(422, problems)
    return events


def raw_record(row: Any, schema: RequestSchema) -> dict[str, Any]:
    """A JSON-ready request record of a stored raw row (a pandas Series or a dict): its
    required and optional fields."""
    import pandas as pd

    record: dict[str, Any] = {}
    for name in (*schema.required, *schema.optional):
        value = row[name]
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            record[name] = None
        elif isinstance(value, pd.Timestamp | datetime | date):
            record[name] = pd.Timestamp(value).isoformat()
        elif isinstance(value, bool):
            record[name] = value
        elif isinstance(value, int | float):
            record[name] = float(value)
        else:
            record[name] = value.item() if hasattr(value, "item") else value
    return record


def epoch_us(stamp: datetime) -> int:
    """Microseconds of a naive datetime since 1970-01-01 (DuckDB's epoch_us of a TIMESTAMP)."""
    return (stamp - _EPOCH) // _MICROSECOND


_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)
