"""The retraining trigger's decision under the contract's ``retraining:`` policy
(``driftloop.data.retraining.TriggerPolicy``).

Three daily signals can breach: calibrated importance-weighted drift
(``driftloop.monitoring.calibrated_drift``), performance estimated before labels arrive and
realised performance once they have (both pooled over a trailing window,
``driftloop.monitoring.performance``). A single noisy day never retrains; a breach on
``n_breaches`` of the last ``window`` days does, but not within ``cooldown_days`` of the
last retrain launched, whether the gate promoted its challenger or refused it (a refused
challenger says retraining did not pay yet; trying again the next day would not either).
The sensor gathers one ``WindowSignal`` per daily partition and asks ``decide_retrain``;
the backtest replays history through the same function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, timedelta

from driftloop.data.retraining import TriggerPolicy


@dataclass(frozen=True)
class WindowSignal:
    """One daily window's verdicts. ``performance_breached`` is None until labels arrive,
    ``estimated_breached`` None when the day has no estimate."""

    day: date
    drift_breached: bool
    performance_breached: bool | None = None
    estimated_breached: bool | None = None
    detail: str = ""  # the day's inputs in words, quoted in the decision when it breached


@dataclass(frozen=True)
class TriggerDecision:
    fire: bool
    reason: str
    breached_days: list[date] = field(default_factory=list)
    cooldown_until: date | None = None  # first day a retrain may fire again, if in cooldown


def _kinds(signals: list[WindowSignal], policy: TriggerPolicy) -> set[str]:
    kinds: set[str] = set()
    for signal in signals:
        if policy.use_drift and signal.drift_breached:
            kinds.add("drift")
        if policy.use_performance and signal.performance_breached is True:
            kinds.add("performance")
        if policy.use_estimated and signal.estimated_breached is True:
            kinds.add("estimated performance")
    return kinds


def decide_retrain(
    signals: list[WindowSignal],
    today: date,
    last_retrain_day: date | None,
    policy: TriggerPolicy | None = None,
) -> TriggerDecision:
    """Whether to launch a retraining run today, and why, in words a person can read.

    - The window is the ``policy.window`` calendar days ending with ``today``; a day with
      no signal counts as not breached, signals after ``today`` are ignored, several
      signals for one day count once (breached if any breached).
    - Days on or before ``last_retrain_day`` do not count: they judged the previous model
      and reference, so they must not re-trigger.
    - Within ``cooldown_days`` of the last retrain launched (promoted or refused by the
      gate) it never fires; ``cooldown_until`` is the first day it may fire again (last
      retrain + cooldown_days).
    - The reason depends only on these inputs, so two ticks that see the same signals say
      the same sentence.
    """
    policy = policy or TriggerPolicy()
    first_day = today - timedelta(days=policy.window - 1)
    by_day: dict[date, list[WindowSignal]] = {}
    for signal in signals:
        if first_day <= signal.day <= today:
            by_day.setdefault(signal.day, []).append(signal)
    counted_from = first_day
    if last_retrain_day is not None and last_retrain_day >= first_day:
        counted_from = last_retrain_day + timedelta(days=1)
    breached = {
        day: kinds
        for day, day_signals in sorted(by_day.items())
        if day >= counted_from and (kinds := _kinds(day_signals, policy))
    }
    breached_days = list(breached)

    what = _describe(breached, policy, first_day, today)
    details = [s.detail for d in breached for s in by_day[d] if s.detail]
    if details:
        what += f"; latest: {details[-1]}"
    if last_retrain_day is None:
        history = "never retrained"
    else:
        history = f"last retrain launched {last_retrain_day.isoformat()}"
    if counted_from > first_day:
        history += " (earlier days judged the previous model and do not count)"

    if last_retrain_day is not None:
        cooldown_until = last_retrain_day + timedelta(days=policy.cooldown_days)
        if today < cooldown_until:
            return TriggerDecision(
                fire=False,
                reason=f"no retrain: cooldown until {cooldown_until.isoformat()} "
                f"({policy.cooldown_days} days after the retrain launched on "
                f"{last_retrain_day.isoformat()}, whether or not the gate promoted it); {what}",
                breached_days=breached_days,
                cooldown_until=cooldown_until,
            )
    if len(breached_days) >= policy.n_breaches:
        return TriggerDecision(
            fire=True, reason=f"retrain: {what}; {history}", breached_days=breached_days
        )
    return TriggerDecision(
        fire=False,
        reason=f"no retrain: {what}, needs {policy.n_breaches}; {history}",
        breached_days=breached_days,
    )


def _describe(
    breached: dict[date, set[str]], policy: TriggerPolicy, first_day: date, today: date
) -> str:
    """'drift on 3 of the last 5 days (2013-05-30, 2013-05-31, 2013-06-01)'."""
    span = f"the last {policy.window} days" if policy.window > 1 else "today"
    if not breached:
        watched = " or ".join(
            k
            for k, on in (
                ("drift", policy.use_drift),
                ("estimated performance", policy.use_estimated),
                ("performance", policy.use_performance),
            )
            if on
        )
        return f"no {watched} breach in {span} ({first_day.isoformat()} to {today.isoformat()})"
    all_kinds = set().union(*breached.values())
    if len(all_kinds) == 1:
        label = next(iter(all_kinds))
        days = ", ".join(day.isoformat() for day in breached)
    else:
        label = "breaches"
        days = ", ".join(f"{day.isoformat()} {'+'.join(sorted(k))}" for day, k in breached.items())
    return f"{label} on {len(breached)} of {span} ({days})"


def performance_breached(
    realised: float,
    reference: float,
    higher_is_better: bool,
    tolerance: float,
    *,
    relative: bool = False,
) -> bool:
    """Whether the realised metric fell below the floor set by the champion's holdout metric.

    The floor is ``reference - tolerance`` (``reference + tolerance`` for a lower-is-better
    metric such as log loss); with ``relative=True`` the tolerance is a fraction of
    ``|reference|``. Exactly at the floor is not a breach. A realised value that could not
    be computed (NaN, e.g. a day with a single class) is not a breach: unknown is not bad.
    """
    if tolerance < 0 or math.isnan(tolerance):
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    if math.isnan(reference):
        raise ValueError("the reference metric is NaN")
    if math.isnan(realised):
        return False
    margin = tolerance * abs(reference) if relative else tolerance
    if higher_is_better:
        return realised < reference - margin
    return realised > reference + margin
