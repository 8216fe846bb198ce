"""A trigger policy's morning in the backtest: yesterday's signal as production holds it,
``decide_retrain``, and when it fires a challenger judged by the gate. Mixed into
``driftloop.backtest.engine.Backtest``, whose state it uses."""

from __future__ import annotations

import math
import time
from datetime import date, datetime, timedelta

from driftloop.backtest.result import PolicyRun
from driftloop.monitoring.trigger import WindowSignal, decide_retrain


class TriggerSteps:
    def _trigger_morning(self, p: PolicyRun, day: date, state: dict) -> dict | None:
        """A trigger policy's morning: yesterday's signal, the decision, maybe a retrain."""
        settings = p.settings
        policy = settings.policy
        today = day - timedelta(days=1)  # latest day with features, as the sensor sees it
        cutoff = datetime.combine(day, datetime.min.time())
        champion = state["champion"]
        cpu = time.process_time()
        fitting = self.timings["train"]
        started = time.perf_counter()
        # Days of the window judged under other settings (the selection switched) are
        # judged again under these, as the sensor would read them with its new policy.
        for k in range(policy.window - 1, 0, -1):
            earlier = today - timedelta(days=k)
            held = state["signals"].get(earlier)
            if held is not None and state["signal_policy"].get(earlier) != policy:
                since = state["signal_since"][earlier]
                again = self.monitor.signal(champion, earlier, since, cutoff, policy).signal
                state["signals"][earlier], state["signal_policy"][earlier] = again, policy
        if today.isoformat() in self.history.span and p.daily:
            found = self.monitor.signal(champion, today, state["since"], cutoff, policy)
            state["signals"][today] = found.signal
            state["signal_policy"][today] = policy
            state["signal_since"][today] = state["since"]
            p.daily[-1] |= {
                "drift_score": found.drift_score,
                "drift_breached": found.signal.drift_breached,
                "estimated_pool": found.estimated.value,
                "estimated_breached": found.signal.estimated_breached,
                "realised_pool": found.realised.value,
                "performance_floor": found.realised.floor,
                "performance_breached": found.signal.performance_breached,
                "any_breached": bool(
                    found.signal.drift_breached
                    or found.signal.estimated_breached
                    or found.signal.performance_breached
                ),
                "top_drifted": ", ".join(found.top_drifted),
            }
        self.timings["monitor"] += time.perf_counter() - started
        window = [today - timedelta(days=k) for k in range(policy.window - 1, -1, -1)]
        known: list[WindowSignal] = [state["signals"][d] for d in window if d in state["signals"]]
        last = state["last_retrain"]
        decision = decide_retrain(known, today, last, policy)
        p.decisions[day.isoformat()] = {
            "today": today.isoformat(),
            "last_retrain_day": last.isoformat() if last else None,
            "signals": [
                (s.day.isoformat(), s.drift_breached, s.estimated_breached, s.performance_breached)
                for s in known
            ],
            "fire": decision.fire,
            "reason": decision.reason,
        }
        event = None
        if decision.fire:
            state["last_retrain"] = today
            challenger = self.model_for(day)
            p.cpu_seconds += challenger.cpu_seconds
            gate = self._gate(challenger, champion, settings)
            event = {
                "event": "retrain",
                "promoted": gate.promote,
                "reason": decision.reason,
                "gate": gate.reasons[0] if gate.reasons else "",
                "ci_low": None if math.isnan(gate.ci_low) else gate.ci_low,
            }
            if gate.promote:
                state["champion"], state["since"] = challenger, day
        p.cpu_seconds += time.process_time() - cpu
        # The replay's own cost: the morning's CPU less any model fitted during it.
        p.replay_seconds += time.process_time() - cpu - (self.timings["train"] - fitting)
        return event
