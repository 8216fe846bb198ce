"""A canary's online evidence as data: what the promotion cites beside the offline holdout.

The serving layer gathers it (the request log joined with the labels, per arm) and the
caller of the promotion passes it in, so the promotion and the ledger never read the
serving layer themselves.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class ArmFigures:
    """One arm's pooled figures: the rows it served, how many are labelled, the primary
    metric on those and its bootstrap interval (NaN until labels arrive)."""

    versions: list[str]
    rows: int
    labelled_rows: int
    metric: str
    value: float
    ci_low: float = math.nan
    ci_high: float = math.nan

    def text(self) -> str:
        if self.value != self.value:
            return f"no {self.metric} yet ({self.rows} rows, none labelled)"
        interval = ""
        if self.ci_low == self.ci_low and self.ci_high == self.ci_high:
            interval = f" [{self.ci_low:.4f}, {self.ci_high:.4f}]"
        return f"{self.metric} {self.value:.4f}{interval} on {self.labelled_rows} labelled rows"


@dataclass(frozen=True)
class CanaryEvidence:
    """The running canary's settings and each arm's figures over the rows served since it
    started (``days``: the event-time days those rows belong to)."""

    version: str
    share: float
    started_at: str
    settings: dict[str, Any] = field(default_factory=dict)
    days: list[str] = field(default_factory=list)
    arms: dict[str, ArmFigures] = field(default_factory=dict)

    def online_evidence(self) -> dict[str, Any]:
        return {"days": list(self.days), "arms": {a: asdict(f) for a, f in self.arms.items()}}

    def details(self) -> dict[str, Any]:
        """What a ledger entry's ``details`` holds of it."""
        return {"online_evidence": self.online_evidence(), "canary": dict(self.settings)}

    def sentence(self) -> str:
        """One sentence citing each arm's figures, for a decision's reasons."""
        parts = [
            f"{arm} (v{'/v'.join(f.versions)}) {f.text()}" for arm, f in sorted(self.arms.items())
        ]
        return f"online evidence of the canary at {self.share:.0%} since {self.started_at}: " + (
            "; ".join(parts) if parts else "no online requests logged yet"
        )
