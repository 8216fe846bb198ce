"""Sensor settings from environment variables, read when the code location loads."""

from __future__ import annotations

import os


def seconds(name: str, default: int) -> int:
    """A positive number of seconds from the environment, else the default."""
    raw = os.environ.get(name, "")
    return max(1, int(raw)) if raw.strip() else default


def switched_on(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    return raw not in {"0", "off", "false", "no"}
