"""Column checks of a raw partition: schema, nulls, numeric ranges and allowed values."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

from driftloop.data.check_outcome import CheckOutcome, example_values, outcome, plain, sources
from driftloop.data.contract import ColumnType, Contract


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


def check_null_fractions(contract: Contract, frame: pd.DataFrame) -> CheckOutcome:
    found = _Findings(frame)
    rows = len(frame)
    for name, column in contract.columns.items():
        if name not in frame:
            continue
        nulls = frame[name].isna()
        count = int(nulls.sum())
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
                name, nulls, f"column '{name}' rule {rule}: {count} of {rows} null ({fraction:.1%})"
            )
    return found.outcome(
        "null_fractions", "nullable / max_null_fraction", "null fractions within the contract"
    )


def check_value_ranges(contract: Contract, frame: pd.DataFrame) -> CheckOutcome:
    import pandas as pd

    found = _Findings(frame)
    for name, column in contract.columns.items():
        if name not in frame or column.type != ColumnType.numeric:
            continue
        if column.min is None and column.max is None:
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


def check_allowed_values(contract: Contract, frame: pd.DataFrame) -> CheckOutcome:
    found = _Findings(frame)
    for name, column in contract.columns.items():
        if name not in frame or column.allowed is None:
            continue
        values = frame[name]
        if column.type == ColumnType.boolean:
            allowed: set[Any] = {bool(v) for v in column.allowed}
            outside = values.notna() & ~values.astype(object).isin(allowed)
        else:
            allowed = {str(v) for v in column.allowed}
            outside = values.notna() & ~values.astype(object).map(str).isin(allowed)
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
