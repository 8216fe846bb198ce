"""The named checks of a raw partition and the plain outcome each one returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

from driftloop.data.raw_table import SOURCE_FILE

MAX_EXAMPLES = 5
ROW_COUNT_LOW = 0.3
ROW_COUNT_HIGH = 3.0

# name -> (blocking, what the check means); the order is the order of reporting.
CHECKS: dict[str, tuple[bool, str]] = {
    "schema": (True, "Every contract column is present with its declared type."),
    "null_fractions": (True, "No nulls in nullable=false columns; nulls within max_null_fraction."),
    "value_ranges": (True, "Numeric values within the contract's min/max."),
    "allowed_values": (True, "Categorical/boolean values among the contract's allowed values."),
    "duplicate_ids": (True, "The id columns identify each row once."),
    "event_time_in_partition": (True, "Every event time falls on the partition's local day."),
    "row_count": (False, "Row count within 0.3x-3x of the trailing partitions' mean (warning)."),
    "unseen_categories": (
        False,
        "Values of free categorical features that no earlier partition held (warning).",
    ),
}
CHECK_NAMES = list(CHECKS)
BLOCKING_CHECKS = [name for name, (blocking, _) in CHECKS.items() if blocking]


@dataclass
class CheckOutcome:
    name: str
    passed: bool
    blocking: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def outcome(name: str, passed: bool, description: str, **metadata: Any) -> CheckOutcome:
    return CheckOutcome(
        name=name,
        passed=passed,
        blocking=CHECKS[name][0],
        description=description,
        metadata={k: v for k, v in metadata.items() if v is not None},
    )


def plain(value: Any) -> Any:
    """A JSON-friendly scalar for metadata (timestamps and numpy types become str/float/int)."""
    import pandas as pd

    if value is None or (not isinstance(value, str | list | dict) and pd.isna(value)):
        return "null"
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return int(value) if float(value).is_integer() else float(value)
    if hasattr(value, "item"):  # numpy scalars
        return plain(value.item())
    return str(value)


def example_values(values: pd.Series) -> list[Any]:
    import pandas as pd

    return [plain(v) for v in pd.unique(values.astype(object))[:MAX_EXAMPLES]]


def sources(frame: pd.DataFrame, mask: pd.Series) -> dict[str, int]:
    """Failing rows per landed file: where to look upstream."""
    if SOURCE_FILE not in frame:
        return {}
    counts = frame.loc[mask, SOURCE_FILE].fillna("(unknown)").astype(str).value_counts()
    return {str(k): int(v) for k, v in counts.items()}
