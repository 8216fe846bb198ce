"""The retraining-policy backtest: history replayed day by day through the production code.

Framework-free (no Dagster). For every day D of [start, end] and every policy:

1. In the morning of D (time T = D 00:00, the data's clock) the policy may retrain. A model
   trained at T sees only rows whose labels were due by then (``event time + label delay
   <= T``), the last ``window_days`` days of them, through ``training.train``
   (``driftloop.backtest.models``).
   - schedule policies (never / every k days) retrain on their schedule and always replace
     the model (no gate), as a cron job does;
   - trigger policies first compute yesterday's signal as production holds it at T
     (``driftloop.backtest.monitor``: calibrated drift of D-1, performance estimated over
     the trailing days, realised over the days whose labels were due by T), then ask
     ``decide_retrain`` with "today" = D-1 and the day of the last retrain launched. When
     it fires, a challenger is trained and ``evaluation.evaluate`` + ``gate.decide`` judge
     it against the champion on the challenger's holdout.
2. The champion scores D; the day's realised metric (and, for trigger policies, the day's
   estimated metric) is recorded for the report.

Everything that is the same for every policy is computed once: the raw rows and features
(``driftloop.backtest.data``), and a model trained at T, which is the same for every policy
that retrains at T (cached on disk by what determines it).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from driftloop.backtest.data import (  # noqa: F401 - the backtest's public entry points
    BacktestPaths,
    backtest_paths,
    default_range,
    file_source_id,
    flights_source,
    load_features,
    prepare,
    prepare_raw,
    raw_source_id,
    warmup_start,
    with_label_delay,
)
from driftloop.backtest.models import History, ModelFitter, Prefetch, TrainedModel
from driftloop.backtest.monitor import Monitor
from driftloop.backtest.policies import (  # noqa: F401
    BACKTEST_MODEL_PARAMS,
    DAILY,
    FIT_MODES,
    REFERENCE_SCHEDULES,
    STATIC,
    BacktestConfig,
    TriggerSettings,
    trigger_settings,
)
from driftloop.backtest.result import (  # noqa: F401
    BacktestResult,
    PolicyRun,
    frontier_at,
    frontier_points,
    retrain_cost,
    value_capture,
)
from driftloop.data.contract import Contract
from driftloop.data.lake import days_between
from driftloop.evaluation.comparison import evaluate
from driftloop.evaluation.gate import decide
from driftloop.metrics import HIGHER_IS_BETTER, PRIMARY_METRIC
from driftloop.monitoring.performance import metric_value
from driftloop.monitoring.trigger import WindowSignal, decide_retrain

log = logging.getLogger(__name__)
MODELS_CACHE = "models_cache"


class Backtest:
    """One run: ``Backtest(contract, features, config).run()``."""

    def __init__(
        self,
        contract: Contract,
        features: pd.DataFrame,
        config: BacktestConfig,
        progress: Callable[[str], None] | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        if config.end < config.start:
            raise ValueError(f"the backtest ends ({config.end}) before it starts ({config.start})")
        names = [*config.schedules, *(t.name for t in config.triggers)]
        if len(set(names)) != len(names):
            raise ValueError(f"policy names must be unique, got {names}")
        self.contract = contract
        self.config = config
        self.history = History(contract, features)
        self.fitter = ModelFitter(contract, self.history, config, cache_dir)
        self.metric = PRIMARY_METRIC[contract.task]
        self.higher = HIGHER_IS_BETTER[self.metric]
        self.progress = progress or (lambda message: log.info(message))
        self.models: dict[str, TrainedModel] = {}
        self.scores: dict[tuple[str, str], np.ndarray] = {}
        self.performance: dict[tuple[str, str], dict] = {}
        self.provenance: dict[str, dict] = {}
        self.timings = {"train": 0.0, "score": 0.0, "monitor": 0.0, "gate": 0.0}
        self.timings["models_from_cache"] = 0  # a count, not seconds
        self.trainings = 0
        self.prefetch: Prefetch | None = None
        self.monitor = Monitor(
            contract, self.history, self.fitter, self._scores, config.reference_rows
        )

    def holdout(self, model: TrainedModel) -> pd.DataFrame:
        return self.fitter.holdout(model)

    def model_for(self, day: date, first: bool = False) -> TrainedModel:
        """The model trained at 00:00 of ``day``: one per day, shared by every policy."""
        key = day.isoformat()
        if key in self.models:
            return self.models[key]
        if not first and self.prefetch is not None and self.prefetch.has(key):
            trained = self.prefetch.get(key)
        else:
            trained = self.fitter.load_or_fit(day, first=first)
        # A cached model's fit cost is its policies' (CPU seconds), not this run's time.
        if trained.from_cache:
            self.timings["models_from_cache"] += 1
        else:
            self.timings["train"] += trained.seconds
        self.trainings += 1
        self.models[key] = trained
        self.provenance[trained.id] = {
            "cutoff": trained.cutoff.isoformat(sep=" "),
            "window": [trained.window[0], trained.window[-1]],
            "rows": trained.rows,
            "latest_label_due": trained.latest_label_due.isoformat(sep=" "),
            f"holdout_{self.metric}": trained.holdout_metric,
            "kind": trained.kind,
        }
        return trained

    def _scores(self, model: TrainedModel, day: str) -> np.ndarray:
        key = (model.id, day)
        if key not in self.scores:
            started = time.perf_counter()
            rows = self.history.day_rows(day)
            self.scores[key] = (
                model.model.predict(rows) if len(rows) else np.empty(0, dtype="float64")
            )
            self.timings["score"] += time.perf_counter() - started
        return self.scores[key]

    def _realised(self, model: TrainedModel, day: str) -> dict:
        """The day's realised metric of ``model`` on its labelled rows."""
        key = (model.id, day)
        if key not in self.performance:
            rows = self.history.day_rows(day)
            labels = rows["label"].to_numpy(dtype="float64", na_value=math.nan)
            known = ~np.isnan(labels)
            scores = self._scores(model, day)
            self.performance[key] = {
                "value": metric_value(self.metric, labels[known], scores[known]),
                "labelled_rows": int(known.sum()),
            }
        return self.performance[key]

    def _gate(self, challenger: TrainedModel, champion: TrainedModel, settings: TriggerSettings):

        started = time.perf_counter()
        gate = settings.gate
        holdout = self.holdout(challenger)
        result = evaluate(
            self.contract,
            holdout,
            challenger.holdout_scores,
            # Like with like: with fit="window" the challenger's holdout scores come from
            # its split model, so the champion's split model answers, not its refit (which
            # learnt from fresher days than the challenger's scored model ever saw).
            (champion.model if champion.evaluated is None else champion.evaluated).predict(holdout),
            f"champion {champion.id}",
            challenger_name=f"challenger {challenger.id}",
            samples=gate.bootstrap_samples,
            confidence=gate.confidence,
            seed=gate.seed,
        )
        decision = decide(result, gate, is_first=False)
        self.timings["gate"] += time.perf_counter() - started
        return decision

    # -- the loop

    def run(self) -> BacktestResult:
        config = self.config
        started = time.perf_counter()
        policies = [
            PolicyRun(name, "schedule", every=every) for name, every in config.schedules.items()
        ] + [PolicyRun(t.name, "trigger", settings=t) for t in config.triggers]
        days = days_between(config.start, config.end)
        planned = [
            d
            for d in days[1:]
            if any(
                k is not None and (date.fromisoformat(d) - config.start).days % k == 0
                for k in config.schedules.values()
            )
        ]
        planned = [d for d in planned if not self.fitter.cached(date.fromisoformat(d))]
        if config.workers > 1 and len(planned) > 1:
            self.prefetch = Prefetch(self.fitter, planned, config.workers)
        try:
            return self._loop(policies, days, started)
        finally:
            if self.prefetch is not None:
                self.prefetch.close()
                self.prefetch = None

    def _trigger_morning(self, p: PolicyRun, day: date, state: dict) -> dict | None:
        """A trigger policy's morning: yesterday's signal, the decision, maybe a retrain."""
        settings = p.settings
        policy = settings.policy
        today = day - timedelta(days=1)  # latest day with features, as the sensor sees it
        cutoff = datetime.combine(day, datetime.min.time())
        champion = state["champion"]
        cpu = time.process_time()
        started = time.perf_counter()
        if today.isoformat() in self.history.span and p.daily:
            found = self.monitor.signal(champion, today, state["since"], cutoff, policy)
            state["signals"][today] = found.signal
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
        return event

    def _loop(self, policies: list[PolicyRun], days: list[str], started: float):
        config = self.config
        first = self.model_for(config.start, first=True)
        state = {
            # The first model is a retrain launched on the first morning: the cooldown counts
            # from it, as the production sensor's cursor does from its first training run.
            p.name: {
                "champion": first,
                "since": config.start,
                "last_retrain": config.start - timedelta(days=1),
                "signals": {},
            }
            for p in policies
        }
        for index, day_text in enumerate(days):
            day = date.fromisoformat(day_text)
            for p in policies:
                event = None
                own = state[p.name]
                if p.kind == "schedule":
                    if p.every is not None and (day - config.start).days % p.every == 0:
                        # On the first day this is the first model itself (same window).
                        own["champion"] = self.model_for(day)
                        if day > config.start:
                            p.cpu_seconds += own["champion"].cpu_seconds
                        event = {"event": "retrain", "promoted": True, "reason": "schedule"}
                elif day > config.start:
                    event = self._trigger_morning(p, day, own)
                if event is not None:
                    event |= {"day": day_text, "model": self.models[day_text].id}
                    p.events.append(event)
                model = own["champion"]
                row = {
                    "day": day_text,
                    "model": model.id,
                    "model_kind": model.kind,
                    "holdout_metric": model.holdout_metric,
                    "retrain": event is not None and event["event"] == "retrain",
                    "promoted": bool(event and event.get("promoted")),
                    "metric": math.nan,
                    "labelled_rows": 0,
                }
                if self.history.span.get(day_text) is not None:
                    perf = self._realised(model, day_text)
                    row |= {"metric": perf["value"], "labelled_rows": perf["labelled_rows"]}
                    self.provenance[model.id].setdefault("scored_days", []).append(day_text)
                    if p.kind == "trigger":
                        row["estimated"] = self.monitor.daily_estimate(model, day_text)
                p.daily.append(row)
            self._evict(day, state)
            if index % 30 == 0 or index == len(days) - 1:
                self.progress(
                    f"{self.contract.name} backtest {day_text} ({index + 1}/{len(days)} days, "
                    f"{self.trainings} models, {time.perf_counter() - started:.0f}s)"
                )
        self.timings["loop"] = time.perf_counter() - started
        self.timings["models_trained"] = self.trainings  # a count, not seconds
        self.timings = {k: round(v, 2) for k, v in self.timings.items()}
        first_model = {"id": first.id, **self.provenance[first.id], "gate": first.first_gate}
        return BacktestResult(
            dataset=self.contract.name,
            metric=self.metric,
            higher_is_better=self.higher,
            config=config,
            policies=policies,
            first_model=first_model,
            timings=self.timings,
            scored_models=self.provenance,
            label_delay=str(self.contract.label_delay),
        )

    def _evict(self, day: date, state: dict[str, dict]) -> None:
        """Drop models no policy serves any more (a model is only trained for its day), and
        scores older than any pool a trigger policy may still read."""
        live = {s["champion"].id for s in state.values()}
        for key in [k for k, m in self.models.items() if m.id not in live and m.day <= day]:
            model = self.models.pop(key)
            self.monitor.forget(model.id)
            for score_key in [k for k in self.scores if k[0] == model.id]:
                del self.scores[score_key]
        keep_days = max([t.policy.performance_window_days for t in self.config.triggers] or [1])
        oldest = (day - timedelta(days=keep_days + 1)).isoformat()
        for key in [k for k in self.scores if k[1] < oldest]:
            del self.scores[key]


def run_backtest(
    contract: Contract,
    data_root: Path,
    config: BacktestConfig,
    *,
    source: pd.DataFrame | Path | None = None,
    source_id: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> BacktestResult:
    """Prepare the raw data (see ``prepare``), build the features once, replay."""
    say = progress or (lambda message: log.info(message))
    started = time.perf_counter()
    paths, info = prepare(contract, data_root, source, source_id)
    if "rows" in info:
        say(
            f"{contract.name}: cache lake {paths.table('raw')}: {info['rows']} rows in "
            f"{info['days']} days ({info['quarantined_rows']} rows quarantined, "
            f"{len(info['blocked_days'])} blocked days)"
        )
    timings = {"raw": round(time.perf_counter() - started, 2)}
    t0 = time.perf_counter()
    first = warmup_start(contract, config.start, config.window_days)
    lake = backtest_paths(data_root, contract.name).lake
    features = load_features(contract, paths, first, config.end, lake / "features_cache")
    timings["features"] = round(time.perf_counter() - t0, 2)
    say(f"{contract.name}: {len(features)} feature rows {first}..{config.end}")
    cache = lake / MODELS_CACHE if config.model_cache else None
    result = Backtest(contract, features, config, progress=say, cache_dir=cache).run()
    result.raw = info
    result.timings = {**timings, **result.timings}
    result.timings["total"] = round(time.perf_counter() - started, 2)
    return result
