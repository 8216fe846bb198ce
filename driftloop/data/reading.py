"""Reading a landed file and casting its columns to the contract's types."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

from driftloop.data.contract import Column, ColumnType, Contract

CSV_SUFFIXES = {".csv"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
NA_STRINGS = ["NA", ""]
MAX_EXAMPLES = 5
# A reason file holds at most this much text, whatever the file looked like.
MAX_REASON_CHARS = 4000
MAX_DETAIL_CHARS = 300
MAX_DETAILS = 20
MAX_NAMES_SHOWN = 30

# Ends with 'Z' or a UTC offset after a time part: '2013-01-01T10:15:00Z', '... 05:15-05:00'.
_TZ_SUFFIX = re.compile(r"\d[T ]\d.*(?:Z|[+-]\d{2}:?\d{2})$")
_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0"}


class Reject(Exception):
    """The whole file is unusable; `details` are the lines of its reason file."""

    def __init__(self, reason: str, details: list[str] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details or []


def example(value: object) -> str:
    import pandas as pd

    if value is None or (isinstance(value, float) and value != value) or value is pd.NaT:
        return "null"
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def examples(values: pd.Series) -> list[str]:
    import pandas as pd

    return [example(v) for v in pd.unique(values.astype(object))[:MAX_EXAMPLES]]


def fmt_rule_value(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def shown_names(names: list[str]) -> str:
    """A list of column names for a reason, cut to the first few."""
    shown = [n if len(n) <= 40 else n[:37] + "..." for n in names[:MAX_NAMES_SHOWN]]
    more = f" and {len(names) - MAX_NAMES_SHOWN} more" if len(names) > MAX_NAMES_SHOWN else ""
    return f"{shown}{more}"


def bounded(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 20] + f"... ({len(text)} chars)"


def read_landed(path: Path, contract: Contract) -> pd.DataFrame:
    """The landed file as a frame of the contract's columns (CSV as strings, Parquet typed)."""
    import pandas as pd
    import pyarrow.parquet as pq

    suffix = path.suffix.lower()
    try:
        if suffix in PARQUET_SUFFIXES:
            table = pq.read_table(path)
            frame = table.to_pandas()
        else:
            # Strings only: casting is ours, so a bad cell is reported instead of guessed at.
            frame = pd.read_csv(
                path, dtype=str, keep_default_na=False, na_values=NA_STRINGS, encoding="utf-8"
            )
    except FileNotFoundError:
        raise
    except pd.errors.EmptyDataError as error:
        raise Reject("empty file: no header and no rows") from error
    except Exception as error:  # corrupt Parquet, binary CSV, bad encoding...
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise Reject(f"unreadable {suffix.lstrip('.')} file: {bounded(first)}") from error
    frame.columns = [str(c).strip() for c in frame.columns]
    if len(frame) == 0:
        raise Reject("empty file: no rows", [f"columns found: {shown_names(list(frame.columns))}"])
    missing = [c for c in contract.required_columns if c not in frame.columns]
    if missing:
        raise Reject(
            f"missing required column(s) {missing}",
            [
                f"required by the contract: {missing}",
                f"columns found in the file: {shown_names(list(frame.columns))}",
            ],
        )
    return frame


def parse_timestamps(values: pd.Series, contract: Contract) -> pd.Series:
    """Naive local timestamps in the contract's zone; NaT where a value cannot be parsed."""
    import pandas as pd

    zone = contract.event_time.timezone
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert(zone).dt.tz_localize(None).astype("datetime64[ns]")
    if pd.api.types.is_datetime64_dtype(values.dtype):
        return values.astype("datetime64[ns]")
    result = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    present = values.notna()
    if not present.any():
        return result
    if not (pd.api.types.is_string_dtype(values.dtype) or values.dtype == object):
        return result  # numbers are not timestamps: leave NaT, reported as not castable
    text = values[present].astype(str).str.strip()
    aware = text.str.contains(_TZ_SUFFIX)
    if aware.any():
        parsed = pd.to_datetime(text[aware], utc=True, errors="coerce", format="ISO8601")
        result[parsed.index] = parsed.dt.tz_convert(zone).dt.tz_localize(None)
    naive = text[~aware]
    if len(naive):
        parsed = pd.to_datetime(naive, errors="coerce", format="ISO8601")
        retry = parsed.isna()
        if retry.any():  # other layouts ('01/02/2013 05:15'), value by value
            parsed[retry] = pd.to_datetime(naive[retry], errors="coerce", format="mixed")
        result[parsed.index] = parsed
    return result


def cast_column(values: pd.Series, column: Column, contract: Contract) -> pd.Series:
    """Cast one column; values that cannot be cast become null (the caller reports them)."""
    import pandas as pd

    if column.type == ColumnType.numeric:
        if pd.api.types.is_bool_dtype(values.dtype):
            return values.astype("float64")
        return pd.to_numeric(values, errors="coerce").astype("float64")
    if column.type == ColumnType.boolean:
        if pd.api.types.is_bool_dtype(values.dtype):
            return values.astype("boolean")
        text = values.astype(str).str.strip().str.lower()
        out = pd.Series(pd.NA, index=values.index, dtype="boolean")
        out[text.isin(_TRUE) & values.notna()] = True
        out[text.isin(_FALSE) & values.notna()] = False
        return out
    if column.type == ColumnType.categorical:
        if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):  # the fast case
            text = values.astype(object).where(values.notna(), None)
            # '3.0' -> '3': a CSV written from integer codes with NULLs spells them as floats.
            whole = text.str.fullmatch(r"-?\d+\.0+", na=False)
            if whole.any():
                text = text.where(~whole, text.str.replace(r"\.0+$", "", regex=True))
            return text
        if pd.api.types.is_float_dtype(values.dtype):
            # 3.0 -> '3': integers stored as floats (NULLs force that) keep their spelling.
            text = values.map(lambda v: fmt_rule_value(v) if pd.notna(v) else None)
        else:
            text = values.map(lambda v: str(v) if pd.notna(v) else None)
        return text.astype(object)
    return parse_timestamps(values, contract)
