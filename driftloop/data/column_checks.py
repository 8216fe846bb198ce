"""Column checks of a raw partition: schema, nulls, numeric ranges and allowed values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

from driftloop.data.check_outcome import CheckOutcome, example_values, outcome, plain, sources
from driftloop.data.contract import Column, ColumnType, Contract


def _expected_dtype(kind: ColumnType) -> str:
    return {
        ColumnType.numeric: "float64",
        ColumnType.categorical: "string",
        ColumnType.boolean: "bool",
        ColumnType.timestamp: "naive timestamp",
    }[kind]


def _dtype_ok(series: pd.Series, kind: ColumnType) -> bool:
    import pandas as pd

    dtype = series.dtype
    if kind == ColumnType.numeric:
        return pd.api.types.is_float_dtype(dtype)
    if kind == ColumnType.boolean:
        return pd.api.types.is_bool_dtype(dtype)
    if kind == ColumnType.timestamp:
        return pd.api.types.is_datetime64_dtype(dtype) and not isinstance(dtype, pd.DatetimeTZDtype)
    if isinstance(dtype, pd.StringDtype):
        return True
    # object columns must hold only strings (or nulls); an empty one is fine.
    return pd.api.types.is_object_dtype(dtype) and bool(series.dropna().map(type).eq(str).all())


def check_schema(contract: Contract, frame: pd.DataFrame) -> CheckOutcome:
    table, missing, wrong = [], [], []
    for name, column in contract.columns.items():
        present = name in frame
        ok = present and _dtype_ok(frame[name], column.type)
        table.append(
            {
                "column": name,
                "expected": _expected_dtype(column.type),
                "actual": str(frame[name].dtype) if present else "missing",
                "ok": bool(ok),
            }
        )
        if not present:
            missing.append(name)
        elif not ok:
            wrong.append(name)
    passed = not missing and not wrong
    if passed:
        description = f"all {len(contract.columns)} contract columns present with their types"
    else:
        parts = []
        if missing:
            parts.append(f"missing column(s) {missing}")
        if wrong:
            parts.append(f"wrong type in column(s) {wrong}")
        description = "; ".join(parts)
    return outcome(
        "schema",
        passed,
        description,
        columns=missing + wrong,
        rule="columns and types",
        failing_rows=len(frame) if not passed else 0,
        table=table,
    )


class _Findings:
    """What a per-column row rule found: a table row per column, and for each failing column
    its problem, its example values and its rows."""

    def __init__(self, frame: pd.DataFrame) -> None:
        import pandas as pd

        self.frame = frame
        self.table: list[dict[str, Any]] = []
        self.failing: list[str] = []
        self.problems: list[str] = []
        self.examples: dict[str, Any] = {}
        self.bad_rows = pd.Series(False, index=frame.index)

    def fail(self, column: str, rows: pd.Series, problem: str, example: Any = None) -> None:
        self.failing.append(column)
        self.bad_rows |= rows
        self.problems.append(problem)
        if example is not None:
            self.examples[column] = example

    def outcome(self, name: str, rule: str, ok_text: str) -> CheckOutcome:
        """Which columns failed, how many rows, from which files."""
        passed = not self.failing
        return outcome(
            name,
            passed,
            ok_text if passed else "; ".join(self.problems),
            columns=self.failing,
            rule=rule,
            failing_rows=int(self.bad_rows.sum()),
            examples=self.examples or None,
            source_files=sources(self.frame, self.bad_rows) if not passed else None,
            table=self.table,
        )


def check_null_fractions(
    contract: Contract, frame: pd.DataFrame, counted: Mapping[str, int] | None = None
) -> CheckOutcome:
    """`counted`: the nulls per column, when computed already for many days at once."""
    found = _Findings(frame)
    rows = len(frame)
    for name, column in contract.columns.items():
        if name not in frame:
            continue
        count = int(counted[name]) if counted is not None else int(frame[name].isna().sum())
        fraction = count / rows if rows else 0.0
        limit = 0.0 if not column.nullable else column.max_null_fraction
        ok = limit is None or (count == 0 if limit == 0.0 else fraction <= limit)
        found.table.append(
            {
                "column": name,
                "nulls": count,
                "fraction": round(fraction, 4),
                "limit": "not nullable" if not column.nullable else plain(limit),
                "ok": ok,
            }
        )
        if not ok:
            rule = "nullable=false" if not column.nullable else f"max_null_fraction={limit}"
            found.fail(
                name,
                frame[name].isna(),
                f"column '{name}' rule {rule}: {count} of {rows} null ({fraction:.1%})",
            )
    return found.outcome(
        "null_fractions", "nullable / max_null_fraction", "null fractions within the contract"
    )


def check_value_ranges(
    contract: Contract, frame: pd.DataFrame, counted: Mapping[str, tuple] | None = None
) -> CheckOutcome:
    """`counted`: per column (observed min, observed max, rows outside), when computed
    already for many days at once; the rows are looked at only for a failing column."""
    import pandas as pd

    found = _Findings(frame)
    for name, column in contract.columns.items():
        if name not in frame or column.type != ColumnType.numeric:
            continue
        if column.min is None and column.max is None:
            continue
        if counted is not None and not counted[name][2]:
            low, high, _ = counted[name]
            found.table.append(
                {
                    "column": name,
                    "min": plain(column.min),
                    "max": plain(column.max),
                    "observed_min": plain(low),
                    "observed_max": plain(high),
                    "outside": 0,
                }
            )
            continue
        values = pd.to_numeric(frame[name], errors="coerce")
        never = pd.Series(False, index=frame.index)
        below = values < column.min if column.min is not None else never
        above = values > column.max if column.max is not None else never
        outside = below | above
        count = int(outside.sum())
        found.table.append(
            {
                "column": name,
                "min": plain(column.min),
                "max": plain(column.max),
                "observed_min": plain(values.min()),
                "observed_max": plain(values.max()),
                "outside": count,
            }
        )
        if count:
            example = example_values(values[outside])
            found.fail(
                name,
                outside,
                f"column '{name}' rule min={plain(column.min)} max={plain(column.max)}: "
                f"{count} row(s) outside, e.g. {example}",
                example,
            )
    return found.outcome("value_ranges", "min/max", "numeric values within min/max")


def allowed_set(column: Column) -> set[Any]:
    """The allowed values as the column's values compare with them."""
    if column.type == ColumnType.boolean:
        return {bool(v) for v in column.allowed or []}
    return {str(v) for v in column.allowed or []}


def not_allowed(values: pd.Series, column: Column) -> pd.Series:
    """Rows of `values` with a value outside the column's allowed ones (nulls are allowed)."""
    objects = values.astype(object)
    if column.type != ColumnType.boolean:
        objects = objects.map(str)
    return values.notna() & ~objects.isin(allowed_set(column))


def check_allowed_values(
    contract: Contract, frame: pd.DataFrame, counted: Mapping[str, int] | None = None
) -> CheckOutcome:
    """`counted`: rows with other values per column, when computed already for many days."""
    found = _Findings(frame)
    for name, column in contract.columns.items():
        if name not in frame or column.allowed is None:
            continue
        if counted is not None and not counted[name]:
            allowed_count = len(allowed_set(column))
            found.table.append({"column": name, "allowed": allowed_count, "not_allowed": 0})
            continue
        values = frame[name]
        allowed = allowed_set(column)
        outside = not_allowed(values, column)
        count = int(outside.sum())
        found.table.append({"column": name, "allowed": len(allowed), "not_allowed": count})
        if count:
            example = example_values(values[outside])
            found.fail(
                name,
                outside,
                f"column '{name}' rule allowed: {count} row(s) with other values, e.g. {example}",
                example,
            )
    return found.outcome("allowed_values", "allowed", "categorical values among the allowed ones")
