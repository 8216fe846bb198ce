"""Row-level rules of a contract: cast every column and collect the rows that break a rule."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

from driftloop.data.contract import ColumnType, Contract
from driftloop.data.contract_sql import DERIVED_EVENT_TIME
from driftloop.data.event_time import compute_event_time, event_time_inputs_text
from driftloop.data.reading import Reject, cast_column, example, examples, fmt_rule_value


@dataclass
class Violations:
    """Row-level problems of one file: per rule, the bad row positions and their values."""

    reasons: pd.Series  # per row, '; '-joined reasons ('' when the row is fine)
    rules: dict[str, list] = field(default_factory=dict)  # rule text -> offending values

    def add(self, mask: pd.Series, rule: str, shown: pd.Series) -> None:
        if not mask.any():
            return
        texts = rule + ": value " + shown[mask].map(example)
        joined = self.reasons[mask].where(self.reasons[mask] == "", self.reasons[mask] + "; ")
        self.reasons[mask] = joined + texts
        self.rules.setdefault(rule, []).extend(shown[mask].tolist())

    @property
    def bad(self) -> pd.Series:
        return self.reasons != ""

    def lines(self) -> list[str]:
        import pandas as pd

        out = []
        for rule, values in self.rules.items():
            shown = ", ".join(examples(pd.Series(values, dtype=object)))
            out.append(f"{rule}: {len(values)} row(s), e.g. {shown}")
        return out


def cast_and_check(contract: Contract, raw: pd.DataFrame) -> tuple[pd.DataFrame, Violations]:
    """Cast every contract column and collect row-level rule violations."""
    import pandas as pd

    cast: dict[str, pd.Series] = {}
    violations = Violations(reasons=pd.Series("", index=raw.index, dtype=object))
    event_column = contract.event_time.column
    for name, column in contract.columns.items():
        if name == DERIVED_EVENT_TIME and contract.event_time.expression is not None:
            continue  # computed from the other columns below
        # An optional column the file lacks is all null (and still meets nullable rules).
        original = raw[name] if name in raw else pd.Series(None, index=raw.index, dtype=object)
        values = cast_column(original, column, contract)
        uncastable = original.notna() & values.isna()
        if uncastable.any() and uncastable.sum() == original.notna().sum():
            # Not one value fits: the column itself is of the wrong type.
            raise Reject(
                f"column '{name}' is not castable to {column.type.value}",
                [
                    f"column '{name}' declared {column.type.value}: "
                    f"{int(uncastable.sum())} value(s) cannot be cast, "
                    f"e.g. {', '.join(examples(original[uncastable]))}"
                ],
            )
        what = "event time" if name == event_column else column.type.value
        violations.add(uncastable, f"column '{name}' not castable to {what}", original)
        cast[name] = values

        if not column.nullable or name == event_column:
            rule = "event time is null" if name == event_column else "rule nullable=false"
            violations.add(original.isna(), f"column '{name}' {rule}", original.astype(object))
        if column.type == ColumnType.numeric:
            if column.min is not None:
                violations.add(
                    values < column.min,
                    f"column '{name}' rule min={fmt_rule_value(column.min)}",
                    values.map(fmt_rule_value),
                )
            if column.max is not None:
                violations.add(
                    values > column.max,
                    f"column '{name}' rule max={fmt_rule_value(column.max)}",
                    values.map(fmt_rule_value),
                )
        if column.allowed is not None:
            if column.type == ColumnType.boolean:
                allowed = {bool(v) for v in column.allowed}
                outside = values.notna() & ~values.isin(list(allowed))
            else:
                allowed_text = {str(v) for v in column.allowed}
                outside = values.notna() & ~values.isin(allowed_text)
            violations.add(outside, f"column '{name}' rule allowed", values.astype(object))
    if contract.event_time.expression is not None:
        cast[event_column] = _derived_event_time(contract, cast, raw.index, violations)
    # A row dated outside the contract's partitions has no partition to live in.
    event = cast[event_column]
    start, end = contract.partitions.start, contract.partitions.end
    outside_range = event < pd.Timestamp(start)
    rule = f"partitions.start={start}"
    if end is not None:
        outside_range |= event >= pd.Timestamp(end)
        rule = f"partitions [{start}, {end})"
    violations.add(outside_range, f"column '{event_column}' rule {rule}", event.astype(object))
    return pd.DataFrame(cast, index=raw.index), violations


def _derived_event_time(
    contract: Contract, cast: dict[str, pd.Series], index: pd.Index, violations: Violations
) -> pd.Series:
    """The event time computed by `event_time.expression` over the cast columns."""
    import pandas as pd

    frame = pd.DataFrame(cast, index=index)
    try:
        event = compute_event_time(contract, frame)
    except Exception as error:  # e.g. an expression DuckDB cannot evaluate on these types
        first = str(error).splitlines()[0]
        raise Reject(
            "event_time.expression cannot be computed for this file",
            [f"{contract.event_time.expression!r}: {first}"],
        ) from error
    rule = f"event_time.expression ({contract.event_time.expression}) gives no time"
    violations.add(event.isna(), rule, event_time_inputs_text(contract, frame))
    return event
