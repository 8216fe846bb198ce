"""What a backtest found: per policy its daily metric, retrains and their reasons, value capture,
retrain cost and CPU seconds, the periodic frontier, the signals' breach shares and the
accuracy of the performance estimate."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from driftloop.backtest.policies import DAILY, STATIC, BacktestConfig, TriggerSettings

SIGNALS = ("drift", "estimated", "performance")


@dataclass
class PolicyRun:
    name: str
    # "schedule", "trigger", "candidate" (a trigger the selection judges) or "selected"
    # (the self-tuning loop: the candidate chosen from earlier days, re-chosen weekly)
    kind: str
    every: int | None = None
    settings: TriggerSettings | None = None
    daily: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    # Trigger policies: per day, what the trigger was shown and what it decided.
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)
    cpu_seconds: float = 0.0  # fits of its models plus, for triggers, its monitoring
    replay_seconds: float = 0.0  # CPU of its mornings without model fits (a replay's cost)
    # The self-tuning loop: each choice (PolicyChoice.to_dict()) in day order.
    selections: list[dict[str, Any]] = field(default_factory=list)
    in_force: str = ""  # the self-tuning loop: the candidate it runs (name)

    @property
    def retrains(self) -> int:
        return sum(1 for e in self.events if e["event"] == "retrain")

    @property
    def promotions(self) -> int:
        return sum(1 for e in self.events if e["event"] == "retrain" and e["promoted"])

    def breach_shares(self) -> dict[str, float]:
        """Per signal, the share of days it breached (of the days it had a verdict)."""
        shares = {}
        for signal in SIGNALS:
            known = [
                r[f"{signal}_breached"]
                for r in self.daily
                if r.get(f"{signal}_breached") is not None
            ]
            shares[signal] = float(np.mean(known)) if known else math.nan
        any_known = [r["any_breached"] for r in self.daily if r.get("any_breached") is not None]
        shares["any"] = float(np.mean(any_known)) if any_known else math.nan
        return shares

    def estimate_errors(self) -> dict[str, float]:
        """Mean absolute error of the daily estimate and of the constant guess "the holdout
        metric" against the realised daily metric, on the days all three are known."""
        rows = [
            r
            for r in self.daily
            if all(
                isinstance(r.get(k), float) and math.isfinite(r[k])
                for k in ("metric", "estimated", "holdout_metric")
            )
        ]
        if not rows:
            return {"estimate_mae": math.nan, "holdout_guess_mae": math.nan, "estimate_days": 0}
        realised = np.array([r["metric"] for r in rows])
        estimated = np.array([r["estimated"] for r in rows])
        holdout = np.array([r["holdout_metric"] for r in rows])
        return {
            "estimate_mae": float(np.mean(np.abs(estimated - realised))),
            "holdout_guess_mae": float(np.mean(np.abs(holdout - realised))),
            "estimate_days": len(rows),
        }


def value_capture(metric: float, static: float, daily: float, higher_is_better: bool) -> float:
    """(metric - static) / (daily - static), sign-adjusted: the share of the gain of
    retraining every day that a policy keeps (NaN when retraining daily gains nothing)."""
    sign = 1.0 if higher_is_better else -1.0
    gain = sign * (daily - static)
    if not math.isfinite(gain) or gain <= 0:
        return math.nan
    return sign * (metric - static) / gain


def retrain_cost(retrains: int, daily_retrains: int) -> float:
    return retrains / daily_retrains if daily_retrains else math.nan


def frontier_points(summary: pd.DataFrame) -> list[tuple[float, float]]:
    """The periodic frontier: (retrain cost, value capture) of the schedules, never at
    (0, 0) and every day at (1, 1) by definition, sorted by cost; a schedule that captures
    less than a cheaper one does not lower the line (the line is the best capture seen so
    far as cost grows)."""
    points = [(0.0, 0.0), (1.0, 1.0)]
    for row in summary.to_dict(orient="records"):
        if row["kind"] != "schedule" or row["policy"] in (STATIC, DAILY):
            continue
        cost, capture = row["retrain_cost"], row["value_capture"]
        if math.isfinite(cost) and math.isfinite(capture):
            points.append((float(cost), float(capture)))
    points.sort()
    best = -math.inf
    line = []
    for cost, capture in points:
        best = max(best, capture)
        line.append((cost, best))
    return line


def frontier_at(points: list[tuple[float, float]], cost: float) -> float:
    """The periodic line's value capture at ``cost``: straight lines between neighbours."""
    costs = [p[0] for p in points]
    captures = [p[1] for p in points]
    return float(np.interp(cost, costs, captures))


@dataclass
class BacktestResult:
    dataset: str
    metric: str
    higher_is_better: bool
    config: BacktestConfig
    policies: list[PolicyRun]
    first_model: dict[str, Any]
    timings: dict[str, float]
    scored_models: dict[str, dict[str, Any]]  # model id -> provenance (test (b), report)
    raw: dict[str, Any] = field(default_factory=dict)  # what the raw data was
    label_delay: str = ""  # the contract's, or the what-if override it ran with

    def daily_frame(self) -> pd.DataFrame:
        rows = [{"policy": p.name, **r} for p in self.policies for r in p.daily]
        return pd.DataFrame(rows)

    def summary(self) -> pd.DataFrame:
        """Per policy: mean daily realised metric, retrains, promotions, value capture,
        retrain cost (relative to never and every day retraining), CPU seconds; for
        trigger policies the periodic line at their cost, the signals' breach shares and
        the estimate's error."""
        daily = self.daily_frame()
        wide = daily.pivot(index="day", columns="policy", values="metric")
        wide = wide.dropna()  # the same days for every policy
        means = {p.name: float(wide[p.name].mean()) for p in self.policies}
        static = means.get(STATIC, math.nan)
        best = means.get(DAILY, math.nan)
        daily_retrains = next((p.retrains for p in self.policies if p.name == DAILY), 0)
        rows = []
        for p in self.policies:
            rows.append(
                {
                    "policy": p.name,
                    "kind": p.kind,
                    f"mean_{self.metric}": means[p.name],
                    "retrains": p.retrains,
                    "promotions": p.promotions,
                    "value_capture": value_capture(
                        means[p.name], static, best, self.higher_is_better
                    ),
                    "retrain_cost": retrain_cost(p.retrains, daily_retrains),
                    "cpu_seconds": round(p.cpu_seconds, 1),
                    "days": len(wide),
                }
            )
        summary = pd.DataFrame(rows)
        line = frontier_points(summary)
        extra = []
        for p, row in zip(self.policies, rows, strict=True):
            info: dict[str, Any] = {}
            if p.kind in ("trigger", "candidate", "selected"):
                info["frontier_capture"] = frontier_at(line, row["retrain_cost"])
                info["above_frontier"] = bool(row["value_capture"] > info["frontier_capture"])
                info |= {f"breach_share_{k}": v for k, v in p.breach_shares().items()}
                info |= p.estimate_errors()
            extra.append(info)
        return pd.concat([summary, pd.DataFrame(extra)], axis=1)

    def to_dict(self) -> dict[str, Any]:
        summary = self.summary()
        daily = self.daily_frame()
        return {
            "dataset": self.dataset,
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "config": self.config.to_dict(),
            "summary": records(summary),
            "frontier": frontier_points(summary),
            "first_model": self.first_model,
            "events": {p.name: p.events for p in self.policies},
            "selections": {p.name: p.selections for p in self.policies if p.selections},
            "daily": records(daily.drop(columns=["signals"], errors="ignore")),
            "timings": self.timings,
            "raw": self.raw,
            "label_delay": self.label_delay,
        }


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for row in frame.to_dict(orient="records"):
        clean = {}
        for k, v in row.items():
            if isinstance(v, float | np.floating):
                clean[k] = None if not math.isfinite(v) else float(v)
            elif isinstance(v, np.integer | np.bool_):
                clean[k] = v.item()
            else:
                clean[k] = v
        out.append(clean)
    return out
