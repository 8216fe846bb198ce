"""What a draft holds: every value of the contract with why it was chosen, for rendering."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Line:
    """One value of the contract and why it was chosen."""

    value: str
    why: str


@dataclass
class Draft:
    name: str
    sample: Path
    rows: int
    event_time: dict[str, Line]
    target: dict[str, Line]
    task: Line
    label_delay: Line
    start: Line
    end: Line
    id_columns: Line
    columns: dict[str, Line]
    extra_features: dict[str, Line]
    features: dict[str, str]  # name -> why it is in
    left_out: dict[str, str]  # name -> why it is not
    slices: Line
    training: dict[str, Line]
    groups: list[str] = field(default_factory=list)  # categorical features, most telling first
    rolling: list[Line] = field(default_factory=list)  # rolling features' YAML, each with why
    rolling_summary: str = "not measured"
    notes: list[str] = field(default_factory=list)
