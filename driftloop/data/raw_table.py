"""The raw table's shape: contract columns cast to stable types, plus the landed file's name."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

from driftloop.data.contract import ColumnType, Contract

SOURCE_FILE = "_source_file"
REASON = "_reason"


def raw_schema(contract: Contract) -> pa.Schema:
    """Arrow schema of staged pieces and raw partitions: contract columns + `_source_file`."""
    import pyarrow as pa

    arrow = {
        ColumnType.numeric: pa.float64(),
        ColumnType.categorical: pa.string(),
        ColumnType.boolean: pa.bool_(),
        # Microseconds: DuckDB's native TIMESTAMP, so downstream SQL needs no casts.
        ColumnType.timestamp: pa.timestamp("us"),
    }
    fields = [pa.field(n, arrow[c.type]) for n, c in contract.columns.items()]
    return pa.schema([*fields, pa.field(SOURCE_FILE, pa.string())])


def conform(contract: Contract, frame: pd.DataFrame) -> pd.DataFrame:
    """Stable pandas dtypes for a raw frame, whatever it was read from (also when empty).

    numeric -> float64, categorical -> object (str/None), boolean -> nullable 'boolean',
    timestamp -> datetime64[ns] (naive, contract zone), `_source_file` -> object.
    """
    import pandas as pd

    out = {}
    for name, column in contract.columns.items():
        values = frame[name] if name in frame else pd.Series([None] * len(frame), dtype=object)
        values = values.reset_index(drop=True)
        if column.type == ColumnType.numeric:
            out[name] = values.astype("float64")
        elif column.type == ColumnType.categorical:
            out[name] = values.astype(object).where(values.notna(), None)
        elif column.type == ColumnType.boolean:
            out[name] = values.astype("boolean")
        else:
            out[name] = values.astype("datetime64[ns]")
    source = frame[SOURCE_FILE] if SOURCE_FILE in frame else pd.Series([None] * len(frame))
    out[SOURCE_FILE] = source.reset_index(drop=True).astype(object)
    return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))


def to_arrow(contract: Contract, frame: pd.DataFrame) -> pa.Table:
    import pyarrow as pa

    return pa.Table.from_pandas(
        conform(contract, frame), schema=raw_schema(contract), preserve_index=False
    )


def source_file_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Rows per landed file in a raw frame."""
    if SOURCE_FILE not in frame or not len(frame):
        return {}
    return dict(Counter(frame[SOURCE_FILE].dropna().astype(str)))
