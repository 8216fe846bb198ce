"""Reading a model's input columns from a pandas frame or an Arrow table, column by column."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

# What a model scores: a pandas frame, or an Arrow table read straight from Parquet (the
# batch scorer's path: no Python string objects, categorical columns dictionary-encoded).
Frame: TypeAlias = "pd.DataFrame | pa.Table"


def is_arrow_table(frame: Any) -> bool:
    """A pyarrow Table (not a pandas DataFrame), told by its `column_names`, so callers that
    only hold pandas frames never import pyarrow to ask."""
    return hasattr(frame, "column_names")


def column_names(frame: Frame) -> list[str]:
    """Column names of a pandas DataFrame or a pyarrow Table."""
    names = getattr(frame, "column_names", None)  # pyarrow.Table
    return list(names) if names is not None else list(frame.columns)


def as_pandas(frame: Frame, columns: list[str]) -> pd.DataFrame:
    """The given columns as pandas (an Arrow table is converted, only those columns)."""
    if is_arrow_table(frame):
        return frame.select(columns).to_pandas()
    return frame


def row_slice(frame: Frame, start: int, count: int) -> Frame:
    """Rows start..start+count of a DataFrame or an Arrow table (a view, not a copy)."""
    if is_arrow_table(frame):
        return frame.slice(start, count)
    return frame.iloc[start : start + count]


def _is_arrow(values: Any) -> bool:
    import pyarrow as pa

    return isinstance(values, pa.Array | pa.ChunkedArray)


def numeric_values(values: pd.Series | pa.Array | pa.ChunkedArray) -> np.ndarray:
    """One numeric feature as float64: NULL, and values that are not numbers, -> NaN.

    The same rule as `pd.to_numeric(errors="coerce")`, without a copy when the column is
    float64 already (every numeric column of the features table is).
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    if _is_arrow(values):
        kind = values.type
        if pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_boolean(kind):
            # Arrow casts in C and turns NULL into NaN in to_numpy; one float64 chunk
            # without NULL is not even copied.
            if kind != pa.float64():
                values = values.cast(pa.float64())
            return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)
        if pa.types.is_null(kind):
            return np.full(len(values), np.nan)
        values = values.to_pandas()  # rare types (strings, dates): pandas' own rules below
    if values.dtype == np.float64:
        return values.to_numpy()
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def category_codes(
    values: pd.Series | pa.Array | pa.ChunkedArray, categories: list[str]
) -> np.ndarray:
    """One categorical feature as the float64 position of each value in `categories`.

    Values are compared as strings; NULL and values not among the categories become NaN.
    Arrow string columns are matched through their dictionary (each distinct value is
    looked up once, then one integer gather per row); pandas columns of plain `str`
    objects skip the cast to the string dtype (a full copy that changes nothing).
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    if _is_arrow(values):
        kind = values.type
        value_kind = kind.value_type if pa.types.is_dictionary(kind) else kind
        if pa.types.is_string(value_kind) or pa.types.is_large_string(value_kind):
            return _arrow_category_codes(values, categories)
        values = values.to_pandas()  # booleans, numbers: pandas' string rules, as in training
    if not (values.dtype == object and pd.api.types.infer_dtype(values) in ("string", "empty")):
        values = values.astype("string")
    codes = pd.Categorical(values, categories=categories).codes
    return np.where(codes < 0, np.nan, codes).astype(np.float64)


def _arrow_category_codes(values: pa.Array | pa.ChunkedArray, categories: list[str]) -> np.ndarray:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    known = pa.array(categories, type=pa.string())
    parts = []
    for chunk in values.chunks if isinstance(values, pa.ChunkedArray) else [values]:
        if not pa.types.is_dictionary(chunk.type):
            chunk = chunk.dictionary_encode()
        dictionary = chunk.dictionary.cast(pa.string())
        # Code of each dictionary entry (NaN if unseen in training), plus NaN for NULL rows.
        lookup = pc.index_in(dictionary, value_set=known).to_numpy(zero_copy_only=False)
        lookup = np.append(lookup.astype(np.float64), np.nan)
        indices = pc.fill_null(chunk.indices, len(dictionary)).to_numpy()
        parts.append(lookup[indices])
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.float64)
