"""Choosing the retraining policy from a dataset's own history (framework-free).

The candidates are the periodic schedules (every 60, 30, 14, 7, 3 days, every day) and a
small grid of trigger settings around the defaults (cooldown, N-of-M, the signals that
count, the gate's confidence). The backtest engine replays them all on the same cached
daily models; ``choose_policy`` then looks only at the days before a given day and picks:

1. **within the retrain budget**: at most the contract's retrains per 30 days, by default
   as many as the 7-day schedule launched over the same days;
2. **the highest value capture, judged on a plateau**: a trigger candidate counts with the
   lowest capture of itself and its grid neighbours (one setting one step away), so a
   setting whose neighbours collapse loses to a slightly lower but flat one; a schedule
   counts with its own capture (it has no setting to be slightly wrong about);
3. **fewer retrains on a tie**: every candidate within ``TIE`` of the best score is a tie,
   and the one with the fewest retrains wins (then the one listed first).

When retraining every day did not pay on those days (its mean daily gain over never
retraining is within two standard errors of zero: a stationary stream so far, where
capture is 0 over 0), the trigger candidate with the fewest retrains wins, and among
equally cheap ones the first listed (the shortest cooldown): with no gain shown yet a
schedule only spends retrains on the calendar, while a quiet trigger spends nothing until
its signals breach and still answers a change that starts after the choice. The flatness
reported is the spread (highest minus lowest capture) of the chosen candidate and its
neighbours.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any

import numpy as np

from driftloop.backtest.policies import DAILY, STATIC, TriggerSettings
from driftloop.backtest.result import PolicyRun, value_capture
from driftloop.data.retraining import TriggerPolicy

# Differences of value capture below this are noise on a few months of history: take the
# cheaper candidate. The plateau tolerance of the issue (neighbours within 0.02) is the
# flatness the result reports.
TIE = 0.01
PLATEAU = 0.02
# The candidate schedules: name -> every k days (the reference schedules but never).
CANDIDATE_SCHEDULES: dict[str, int] = {
    "every_60_days": 60,
    "every_30_days": 30,
    "every_14_days": 14,
    "every_7_days": 7,
    "every_3_days": 3,
    DAILY: 1,
}
BUDGET_SCHEDULE = "every_7_days"
# The trigger grid: each axis in order, neighbours are one step apart on one axis.
GRID_AXES: dict[str, list[dict[str, Any]]] = {
    "cooldown": [{"cooldown_days": d} for d in (3, 7, 14, 28)],
    "n_of_m": [{"n_breaches": 1, "window": 1}, {"n_breaches": 2, "window": 3}],
    "signals": [{}, {"use_drift": False}],
    "gate": [{"gate_confidence": 0.8}, {"gate_confidence": 0.9}],
}


@dataclass(frozen=True)
class Candidate:
    """A policy the selection may choose: a schedule (``every``) or trigger ``settings``;
    ``grid`` is its position on GRID_AXES (triggers only)."""

    name: str
    every: int | None = None
    settings: TriggerSettings | None = None
    grid: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        if self.settings is None:
            return {"name": self.name, "kind": "schedule", "every_days": self.every}
        return {"kind": "trigger", **self.settings.to_dict(), "name": self.name}


def trigger_grid(base: TriggerSettings) -> list[Candidate]:
    """The trigger candidates: every combination of GRID_AXES applied to ``base``."""
    out = []
    axes = list(GRID_AXES.values())
    for position in itertools.product(*(range(len(a)) for a in axes)):
        update: dict[str, Any] = {}
        for axis, index in zip(axes, position, strict=True):
            update |= axis[index]
        gate = base.gate
        if "gate_confidence" in update:
            gate = replace(gate, confidence=update.pop("gate_confidence"))
        policy = TriggerPolicy(**{**base.policy.model_dump(), **update})
        name = "t" + "".join(str(i) for i in position)
        out.append(Candidate(name, settings=TriggerSettings(name, policy, gate), grid=position))
    return out


def candidates(base: TriggerSettings) -> list[Candidate]:
    """The schedules, then the trigger grid around ``base``."""
    schedules = [Candidate(name, every=k) for name, k in CANDIDATE_SCHEDULES.items()]
    return [*schedules, *trigger_grid(base)]


def neighbours(candidate: Candidate, pool: list[Candidate]) -> list[Candidate]:
    if not candidate.grid:
        return []
    return [
        other
        for other in pool
        if other.grid
        and sum(abs(a - b) for a, b in zip(other.grid, candidate.grid, strict=True)) == 1
    ]


@dataclass
class PolicyChoice:
    """What the selection chose on the days before ``before``, and why."""

    chosen: Candidate
    before: date
    days: int  # days of history judged
    budget_retrains: float  # most retrains allowed over those days
    table: list[dict[str, Any]] = field(default_factory=list)
    flatness: float = math.nan  # capture spread of the chosen and its neighbours
    capture_defined: bool = True
    cpu_seconds: float = 0.0  # the replays that judged the candidates

    def to_dict(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen.to_dict(),
            "before": self.before.isoformat(),
            "days": self.days,
            "budget_retrains": self.budget_retrains,
            "flatness": None if math.isnan(self.flatness) else self.flatness,
            "on_plateau": bool(self.flatness <= PLATEAU) if math.isfinite(self.flatness) else None,
            "capture_defined": self.capture_defined,
            "cpu_seconds": round(self.cpu_seconds, 1),
            "table": self.table,
        }


def _history(run: PolicyRun, before: date) -> tuple[dict[str, float], int]:
    """The run's daily metrics of the days before ``before``, and its retrains then."""
    cut = before.isoformat()
    metrics = {
        r["day"]: r["metric"]
        for r in run.daily
        if r["day"] < cut and isinstance(r["metric"], float) and math.isfinite(r["metric"])
    }
    retrains = sum(1 for r in run.daily if r["day"] < cut and r["retrain"])
    # The first model (trained on the first morning) is every policy's, not a choice.
    if run.daily and run.daily[0]["retrain"]:
        retrains -= 1
    return metrics, retrains


def choose_policy(
    runs: dict[str, PolicyRun],
    pool: list[Candidate],
    before: date,
    higher_is_better: bool,
    budget_per_30_days: float | None = None,
) -> PolicyChoice:
    """Choose among ``pool`` from their replays ``runs`` (by name; ``never`` and
    ``every_day`` must be among them) using only the days before ``before``."""
    histories = {name: _history(run, before) for name, run in runs.items()}
    common = set.intersection(*(set(m) for m, _ in histories.values()))
    days = len(common)
    if days == 0:
        raise ValueError(f"no day before {before} with a metric for every candidate")
    means = {n: float(np.mean([m[d] for d in common])) for n, (m, _) in histories.items()}
    span = len({r["day"] for r in runs[STATIC].daily if r["day"] < before.isoformat()})
    if budget_per_30_days is None:
        budget = float(histories[BUDGET_SCHEDULE][1])
    else:
        budget = budget_per_30_days * span / 30
    capture = {
        n: value_capture(means[n], means[STATIC], means[DAILY], higher_is_better) for n in means
    }
    # Capture means something only when retraining every day paid on these days: its mean
    # daily gain over never retraining is more than two standard errors above zero.
    sign = 1.0 if higher_is_better else -1.0
    order = sorted(common)
    gains = sign * (
        np.array([histories[DAILY][0][d] for d in order])
        - np.array([histories[STATIC][0][d] for d in order])
    )
    spread = gains.std(ddof=1) / math.sqrt(days) if days > 1 else math.inf
    defined = math.isfinite(capture[DAILY]) and gains.mean() > 2 * spread
    table = []
    for c in pool:
        retrains = histories[c.name][1]
        own = capture[c.name]
        around = [capture[o.name] for o in neighbours(c, pool)]
        score = min([own, *around]) if defined else math.nan
        table.append(
            {
                "candidate": c.name,
                "kind": "trigger" if c.settings else "schedule",
                "retrains": retrains,
                "value_capture": own,
                "plateau_capture": score,
                "spread": (max([own, *around]) - min([own, *around])) if around else 0.0,
                "within_budget": retrains <= budget,
            }
        )
    allowed = [row for row in table if row["within_budget"]] or [
        min(table, key=lambda row: row["retrains"])
    ]
    if defined:
        best = max(row["plateau_capture"] for row in allowed)
        ties = [row for row in allowed if row["plateau_capture"] >= best - TIE]
    else:
        # No gain from retraining shown yet: a trigger, which retrains only on evidence.
        ties = [row for row in allowed if row["kind"] == "trigger"] or allowed
    pick = min(ties, key=lambda row: row["retrains"])  # min keeps the first listed on a tie
    chosen = next(c for c in pool if c.name == pick["candidate"])
    for row in table:
        row["chosen"] = row["candidate"] == chosen.name
    return PolicyChoice(
        chosen=chosen,
        before=before,
        days=days,
        budget_retrains=budget,
        table=table,
        flatness=pick["spread"] if defined else math.nan,
        capture_defined=defined,
    )


def scheduled_gate(settings: TriggerSettings) -> TriggerSettings:
    """The gate of a chosen schedule's retrains: its candidate was replayed replacing the
    model on every retrain and chosen for it, so a retrain is refused only when the
    challenger is confidently worse (``GateConfig.require``), as in production
    (``driftloop.backtest.in_force.gate_in_force``)."""
    return replace(settings, gate=replace(settings.gate, require="not_worse"))


def table_order(row: dict[str, Any]) -> tuple[bool, float, int]:
    """Sort key of a choice's table: the chosen first, then by plateau capture (undefined
    last), then by retrains."""
    plateau = row["plateau_capture"]
    finite = isinstance(plateau, float) and math.isfinite(plateau)
    return (not row["chosen"], -plateau if finite else math.inf, row["retrains"])


class SelectionSteps:
    """The backtest engine's steps for the self-tuning loop (``BacktestConfig.selected``):
    the candidates it replays, the weekly choice and the loop's morning. Mixed into
    ``driftloop.backtest.engine.Backtest``, whose state they use."""

    def _selection_policies(self, policies: list[PolicyRun]) -> list[PolicyRun]:
        """The selection's trigger candidates (kind "candidate") and the self-tuning loop
        (kind "selected"), which starts with the first trigger's settings."""
        config = self.config
        missing = [n for n in (STATIC, *CANDIDATE_SCHEDULES) if n not in config.schedules]
        if missing or not config.triggers:
            raise ValueError(
                f"the policy selection needs the schedules {missing} and a trigger to start with"
            )
        self.pool = candidates(config.triggers[0])
        known = {p.name for p in policies}
        extra = [
            PolicyRun(c.name, "candidate", settings=c.settings)
            for c in self.pool
            if c.settings is not None and c.name not in known
        ]
        selected = PolicyRun(config.selected, "selected", settings=config.triggers[0])
        return [*extra, selected]

    def _select(self, p: PolicyRun, day: date, runs: dict[str, PolicyRun]) -> None:
        """Choose the policy of ``p`` from the candidates' days before ``day``."""
        cpu = time.process_time()
        # Only days whose labels were all due by this morning are judged (a day's realised
        # metric is known once its last label is).
        known_before = day - timedelta(
            days=math.ceil(self.contract.label_delay / timedelta(days=1))
        )
        choice = choose_policy(
            runs, self.pool, known_before, self.higher, self.config.retrain_budget_per_30_days
        )
        cut = day.isoformat()
        # A selection costs the candidates' replays (models come from the cache): their
        # mornings' CPU up to this day, since the previous choice, plus the choosing.
        names = {c.name for c in self.pool}
        spent = sum(r.replay_seconds for n, r in runs.items() if n in names)
        choice.cpu_seconds = spent - self.replays_judged + time.process_time() - cpu
        self.replays_judged = spent
        p.selections.append(choice.to_dict() | {"day": cut})
        chosen = choice.chosen
        p.settings, p.every, p.in_force = chosen.settings, chosen.every, chosen.name

    def _selected_morning(self, p: PolicyRun, day: date, state: dict) -> dict | None:
        """The self-tuning loop's morning: the chosen trigger's morning, or a chosen
        schedule's retrain, judged by the gate as production judges it (promoted unless
        confidently worse: ``scheduled_gate``)."""
        if p.settings is not None:
            return self._trigger_morning(p, day, state)
        last = state["last_retrain"]
        if (day - timedelta(days=1) - last).days < p.every:
            return None
        state["last_retrain"] = day - timedelta(days=1)
        cpu = time.process_time()
        challenger = self.model_for(day)
        gate = self._gate(challenger, state["champion"], scheduled_gate(self.config.triggers[0]))
        if gate.promote:
            state["champion"], state["since"] = challenger, day
        p.cpu_seconds += challenger.cpu_seconds + time.process_time() - cpu
        return {
            "event": "retrain",
            "promoted": gate.promote,
            "reason": f"schedule: every {p.every} days (chosen)",
            "gate": gate.reasons[0] if gate.reasons else "",
            "ci_low": None if math.isnan(gate.ci_low) else gate.ci_low,
        }
