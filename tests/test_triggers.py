"""The retraining trigger: N of the last M days, cooldown, readable and consistent reasons."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from pydantic import ValidationError

from driftloop.data.retraining import TriggerPolicy
from driftloop.monitoring.trigger import (
    WindowSignal,
    decide_retrain,
    performance_breached,
)

POLICY = TriggerPolicy(n_breaches=3, window=5, cooldown_days=7)
D = date(2013, 6, 1)


def drift_on(*days: date) -> list[WindowSignal]:
    return [WindowSignal(day=d, drift_breached=True, performance_breached=None) for d in days]


def quiet(*days: date) -> list[WindowSignal]:
    return [WindowSignal(day=d, drift_breached=False, performance_breached=False) for d in days]


def day(offset: int) -> date:
    return D + timedelta(days=offset)


def test_defaults() -> None:
    policy = TriggerPolicy()
    assert policy.n_breaches <= policy.window
    assert policy.use_drift and policy.use_performance and policy.use_estimated


def test_one_breached_day_does_not_fire() -> None:
    signals = quiet(day(-4), day(-3), day(-2), day(-1)) + drift_on(D)
    decision = decide_retrain(signals, today=D, last_retrain_day=None, policy=POLICY)
    assert not decision.fire
    assert decision.breached_days == [D]
    assert "drift on 1 of the last 5 days (2013-06-01)" in decision.reason
    assert "needs 3" in decision.reason


def test_n_of_m_fires_and_names_the_days() -> None:
    signals = drift_on(day(-4), day(-2), D) + quiet(day(-3), day(-1))
    decision = decide_retrain(signals, today=D, last_retrain_day=date(2013, 5, 20), policy=POLICY)
    assert decision.fire
    assert decision.breached_days == [day(-4), day(-2), D]
    assert decision.reason == (
        "retrain: drift on 3 of the last 5 days (2013-05-28, 2013-05-30, 2013-06-01); "
        "last retrain launched 2013-05-20"
    )


def test_breaches_outside_the_window_or_in_the_future_do_not_count() -> None:
    # Two old breaches (6 and 5 days ago) plus one today: only today is in the window.
    signals = drift_on(day(-6), day(-5), D, day(1), day(2))
    decision = decide_retrain(signals, today=D, last_retrain_day=None, policy=POLICY)
    assert not decision.fire
    assert decision.breached_days == [D]


def test_several_signals_for_one_day_count_once() -> None:
    signals = drift_on(D, D, D) + drift_on(day(-1))
    decision = decide_retrain(signals, today=D, last_retrain_day=None, policy=POLICY)
    assert not decision.fire
    assert decision.breached_days == [day(-1), D]


def test_performance_breaches_count_and_unknown_performance_does_not() -> None:
    signals = [
        WindowSignal(day(-2), drift_breached=False, performance_breached=True),
        WindowSignal(day(-1), drift_breached=True, performance_breached=None),
        WindowSignal(D, drift_breached=True, performance_breached=True),
    ]
    decision = decide_retrain(signals, today=D, last_retrain_day=None, policy=POLICY)
    assert decision.fire
    assert "breaches on 3 of the last 5 days" in decision.reason
    assert "2013-05-30 performance" in decision.reason
    assert "2013-06-01 drift+performance" in decision.reason
    assert "never retrained" in decision.reason

    drift_only = POLICY.model_copy(update={"use_performance": False})
    decision = decide_retrain(signals, today=D, last_retrain_day=None, policy=drift_only)
    assert not decision.fire
    assert decision.breached_days == [day(-1), D]

    unknown = [WindowSignal(day(-k), False, None) for k in range(5)]
    assert not decide_retrain(unknown, today=D, last_retrain_day=None, policy=POLICY).fire


def test_cooldown_holds_then_releases() -> None:
    last_retrain = date(2013, 5, 30)
    # Drift every day from the retrain on: enough breaches, but within the cooldown.
    signals = drift_on(*(last_retrain + timedelta(days=k) for k in range(1, 15)))
    held = decide_retrain(signals, date(2013, 6, 5), last_retrain, POLICY)
    assert not held.fire
    assert held.cooldown_until == date(2013, 6, 6)
    assert held.reason.startswith("no retrain: cooldown until 2013-06-06")
    assert "retrain launched on 2013-05-30, whether or not the gate promoted it" in held.reason
    assert len(held.breached_days) >= 3  # the breaches are there; only the cooldown holds

    released = decide_retrain(signals, date(2013, 6, 6), last_retrain, POLICY)
    assert released.fire
    assert released.cooldown_until is None
    assert released.breached_days == [date(2013, 6, d) for d in range(2, 7)]
    assert released.reason.endswith("last retrain launched 2013-05-30")


def test_days_before_the_last_retrain_do_not_retrigger() -> None:
    policy = TriggerPolicy(n_breaches=3, window=5, cooldown_days=1)
    # Three breaches before the retrain on day(-2); one after it.
    signals = drift_on(day(-4), day(-3), day(-2), D)
    decision = decide_retrain(signals, today=D, last_retrain_day=day(-2), policy=policy)
    assert not decision.fire
    assert decision.breached_days == [D]
    assert "do not count" in decision.reason


def test_no_breach_reason() -> None:
    decision = decide_retrain(quiet(D), today=D, last_retrain_day=None, policy=POLICY)
    assert not decision.fire
    assert decision.breached_days == []
    assert (
        "no drift or estimated performance or performance breach in the last 5 days "
        "(2013-05-28 to 2013-06-01)"
    ) in decision.reason


def test_policy_validation() -> None:
    with pytest.raises(ValidationError, match="exceeds window"):
        TriggerPolicy(n_breaches=6, window=5)
    with pytest.raises(ValidationError, match="at least one"):
        TriggerPolicy(use_drift=False, use_performance=False, use_estimated=False)
    with pytest.raises(ValidationError):
        TriggerPolicy(cooldown=3)  # typo of cooldown_days: refused, not ignored


def test_performance_breached() -> None:
    # ROC AUC: higher is better, floor = champion's holdout AUC - tolerance.
    assert performance_breached(0.60, 0.65, higher_is_better=True, tolerance=0.02)
    assert not performance_breached(0.64, 0.65, higher_is_better=True, tolerance=0.02)
    assert not performance_breached(0.63, 0.65, higher_is_better=True, tolerance=0.02)  # at floor
    # Log loss: lower is better, ceiling = reference + tolerance.
    assert performance_breached(0.50, 0.40, higher_is_better=False, tolerance=0.05)
    assert not performance_breached(0.42, 0.40, higher_is_better=False, tolerance=0.05)
    # Relative tolerance: 10% of the reference.
    assert performance_breached(8.9, 10.0, True, 0.1, relative=True)
    assert not performance_breached(9.1, 10.0, True, 0.1, relative=True)
    # Unknown realised metric is not a breach; a negative tolerance is a mistake.
    assert not performance_breached(float("nan"), 0.65, True, 0.02)
    with pytest.raises(ValueError):
        performance_breached(0.6, 0.65, True, -0.01)


def test_window_of_one_day_fires_on_a_breach_today() -> None:
    policy = TriggerPolicy(n_breaches=1, window=1, cooldown_days=0, use_drift=False)
    signals = [WindowSignal(D, drift_breached=False, performance_breached=True)]
    decision = decide_retrain(signals, today=D, last_retrain_day=None, policy=policy)
    assert decision.fire
    assert "performance on 1 of today (2013-06-01)" in decision.reason
    # The next day, with the retrain of today behind it and a new breach, it fires again.
    again = [WindowSignal(day(1), drift_breached=False, performance_breached=True)]
    assert decide_retrain(again, today=day(1), last_retrain_day=D, policy=policy).fire


def test_estimated_performance_counts_and_the_day_is_quoted() -> None:
    policy = TriggerPolicy(n_breaches=2, window=3, cooldown_days=7)
    signals = [
        WindowSignal(day(-1), False, None, estimated_breached=True, detail="yesterday's inputs"),
        WindowSignal(D, False, None, estimated_breached=True, detail="today's inputs"),
    ]
    decision = decide_retrain(signals, today=D, last_retrain_day=None, policy=policy)
    assert decision.fire
    assert "estimated performance on 2 of the last 3 days" in decision.reason
    assert "latest: today's inputs" in decision.reason
    off = TriggerPolicy(n_breaches=2, window=3, use_estimated=False)
    assert not decide_retrain(signals, today=D, last_retrain_day=None, policy=off).fire


def test_the_same_inputs_give_the_same_sentence() -> None:
    policy = TriggerPolicy(n_breaches=2, window=3, cooldown_days=7)
    signals = drift_on(day(-1)) + quiet(day(-2), D)
    first = decide_retrain(signals, today=D, last_retrain_day=day(-20), policy=policy)
    second = decide_retrain(list(reversed(signals)), D, day(-20), policy)
    assert first.reason == second.reason
    assert first.reason == (
        "no retrain: drift on 1 of the last 3 days (2013-05-31), needs 2; "
        "last retrain launched 2013-05-12"
    )
