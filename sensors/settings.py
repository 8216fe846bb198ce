"""Sensor settings from environment variables, read when the code location loads."""

from __future__ import annotations

import os

OFF = {"0", "off", "false", "no"}


def positive_int(name: str, default: int) -> int:
    """A whole number of at least 1 from the environment variable `name`, else the default."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return max(1, int(raw))
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected a whole number, e.g. {default}") from None


def seconds(name: str, default: int) -> int:
    """A positive number of seconds from the environment, else the default."""
    return positive_int(name, default)


def switched_on(name: str, default: bool) -> bool:
    """False when the variable says off (0, off, false, no), True when it says anything else."""
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    return raw not in OFF
