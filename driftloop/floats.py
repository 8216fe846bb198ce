"""Floats from loosely typed values (tags, JSON, ledger rows): None where there is no number."""

from __future__ import annotations

import math
from typing import Any


def optional_float(value: Any) -> float | None:
    """`value` as a float; None for NaN and for what is not a number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def json_float(value: Any) -> float | None:
    """A float for JSON: None for NaN, infinity or what is not a number."""
    number = optional_float(value)
    return None if number is None or math.isinf(number) else number
