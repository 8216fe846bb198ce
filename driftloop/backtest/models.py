"""The backtest's models: one per training day, fitted by production's ``train`` on the rows
whose labels were due by that day's midnight, shared by every policy, cached on disk by
what determines them, and fitted ahead of the day loop in worker processes when the
schedules make the days known.

The first model (with no champion yet) is the better of LightGBM and the scikit-learn
baseline by the gate's own rule: LightGBM serves when the gate would promote it over the
baseline, else the baseline does, as in production.
"""

from __future__ import annotations

import hashlib
import pickle
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from driftloop.backtest.data import features_identity
from driftloop.backtest.policies import FIT_MODES, BacktestConfig
from driftloop.data.contract import Contract
from driftloop.evaluation.comparison import evaluate
from driftloop.evaluation.gate import GateConfig, decide
from driftloop.metrics import PRIMARY_METRIC
from driftloop.names import DAY
from driftloop.training.train import TrainingConfig, refit_on_window, time_split, train

CACHE_VERSION = "3"  # 3: fit="window" refits with the rounds the validation days chose


@dataclass
class TrainedModel:
    """A model trained at ``cutoff`` (00:00 of ``day``, the first day it may serve)."""

    id: str
    day: date
    cutoff: datetime
    model: Any
    window: list[str]  # every day of its training frame (train, validation, holdout)
    holdout: pd.DataFrame | None  # None until needed (Backtest.holdout)
    holdout_scores: np.ndarray
    holdout_metric: float
    rows: int
    latest_label_due: datetime  # the latest label-due time among its training rows
    seconds: float
    first_gate: dict[str, Any] | None = None  # the first model only: gate vs the baseline
    # fit="window": the split model the holdout scores came from (``model`` is its refit).
    evaluated: Any = None
    kind: str = "lightgbm"  # the served model's kind (the first may be the baseline)
    cpu_seconds: float = 0.0  # CPU time of the fit (all its threads)
    importance: dict[str, float] | None = None
    from_cache: bool = False  # loaded from the model cache rather than fitted by this run


class History:
    """The features frame with per-day row ranges and per-row label-due times."""

    def __init__(self, contract: Contract, features: pd.DataFrame) -> None:
        self.contract = contract
        self.frame = features
        days = features[DAY].to_numpy()
        self.days = sorted(set(days.tolist()))
        starts = np.searchsorted(days, self.days, side="left")
        ends = np.searchsorted(days, self.days, side="right")
        self.span = {d: (int(a), int(b)) for d, a, b in zip(self.days, starts, ends, strict=True)}
        event = pd.to_datetime(features["event_time"]).to_numpy("datetime64[ns]")
        self.due = event + np.timedelta64(contract.label_delay)
        self.labelled = features["label"].notna().to_numpy()

    def day_rows(self, day: str) -> pd.DataFrame:
        a, b = self.span.get(day, (0, 0))
        return self.frame.iloc[a:b]

    def training_frame(self, cutoff: datetime, window_days: int) -> pd.DataFrame:
        """Rows of the last ``window_days`` days with labels due by ``cutoff`` (strictly
        before the cutoff's day), only those rows: the production window, honestly."""
        day = cutoff.date().isoformat()
        end = int(np.searchsorted(self.frame[DAY].to_numpy(), day, side="left"))
        due = self.labelled[:end] & (self.due[:end] <= np.datetime64(cutoff))
        rows = np.flatnonzero(due)
        if len(rows) == 0:
            return self.frame.iloc[0:0]
        row_days = self.frame[DAY].to_numpy()[rows]
        keep = sorted(set(row_days.tolist()))[-window_days:]
        return self.frame.iloc[rows[row_days >= keep[0]]]


def features_fingerprint(features: pd.DataFrame) -> str:
    """A digest of the features frame (its values and columns), for the model cache's key."""
    digest = hashlib.sha256(",".join(map(str, features.columns)).encode())
    digest.update(pd.util.hash_pandas_object(features, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


class ModelFitter:
    """Fits, caches and hands out the model trained at 00:00 of each day."""

    def __init__(
        self,
        contract: Contract,
        history: History,
        config: BacktestConfig,
        cache_dir: Path | None = None,
    ) -> None:
        if config.fit not in FIT_MODES:
            raise ValueError(f"fit must be one of {FIT_MODES}, got {config.fit!r}")
        self.contract = contract
        self.history = history
        self.config = config
        self.metric = PRIMARY_METRIC[contract.task]
        self.cache_dir = cache_dir
        self._key = ""
        if cache_dir is not None:
            fields = {
                "contract": features_identity(contract),
                "config": {
                    k: v
                    for k, v in config.to_dict().items()
                    if k in ("window_days", "holdout_days", "validation_days", "model_kind")
                    or k in ("model_params", "seed", "fit")
                },
                "features": features_fingerprint(history.frame),
                "version": CACHE_VERSION,
            }
            text = repr(sorted((k, repr(v)) for k, v in fields.items()))
            self._key = hashlib.sha256(text.encode()).hexdigest()[:16]

    def _cache_file(self, day: date, first: bool) -> Path | None:
        if self.cache_dir is None:
            return None
        gate = self.config.triggers[0].gate if self.config.triggers else GateConfig()
        # A first model's file holds its gate's verdict, which the bootstrap's scheme
        # (whole holdout days since the day-cluster bootstrap) decides as well.
        tail = f"_first_{gate.margin}_{gate.confidence}_days" if first else ""
        return self.cache_dir / self._key / f"{day.isoformat()}{tail}.pkl"

    def cached(self, day: date) -> bool:
        path = self._cache_file(day, first=False)
        return path is not None and path.exists()

    def load_or_fit(self, day: date, first: bool = False) -> TrainedModel:
        path = self._cache_file(day, first)
        if path is not None and path.exists():
            with path.open("rb") as handle:
                cached = pickle.load(handle)
            cached.from_cache = True
            return cached
        trained = self.fit_first(day) if first else self.fit_day(day)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            temp = path.with_suffix(".tmp")
            holdout, trained.holdout = trained.holdout, None
            with temp.open("wb") as handle:
                pickle.dump(trained, handle, protocol=pickle.HIGHEST_PROTOCOL)
            temp.replace(path)
            trained.holdout = holdout
        return trained

    def training_config(self):

        c = self.config
        return TrainingConfig(
            window_days=c.window_days,
            holdout_days=c.holdout_days,
            validation_days=c.validation_days,
            model_kind=c.model_kind,
            params=dict(c.model_params),
            seed=c.seed,
            # The backtest refits itself (``served``), keeping the split model for the gate.
            refit_on_window=False,
        )

    def split(self, day: date):
        """The production time split of the training frame of a model trained at ``day``."""
        cutoff = datetime.combine(day, datetime.min.time())
        frame = self.history.training_frame(cutoff, self.config.window_days)
        config = self.config
        split = time_split(
            frame, config.holdout_days, config.validation_days, order_by=self.contract.id_columns
        )
        return frame, split

    def fit_day(self, day: date) -> TrainedModel:
        """Fit the model of ``day`` (not the first) with production's ``train``: LightGBM
        and the baseline, the kind better on the validation days serves (as in production,
        so a retrain can replace a champion of either kind). The holdout frame is not kept
        (it would travel back from a worker process and stay in memory): ``holdout``
        re-derives it on demand."""
        started, cpu = time.perf_counter(), time.process_time()
        cutoff = datetime.combine(day, datetime.min.time())
        frame = self.history.training_frame(cutoff, self.config.window_days)
        result = train(self.contract, frame, self.training_config())
        trained = self._trained(day, frame, result, started, keep=False)
        trained.cpu_seconds = time.process_time() - cpu
        return trained

    def served(self, split: Any, model: Any) -> Any:
        """The model that serves: ``model`` itself, or with ``fit="window"`` its refit on
        every labelled row of the window (``refit_on_window``, as production's training
        does; see FIT_MODES)."""
        if self.config.fit == "split":
            return model
        return refit_on_window(self.contract, split, model, self.config.seed)

    def _trained(
        self, day: date, frame: pd.DataFrame, result: Any, started: float, keep: bool = True
    ) -> TrainedModel:
        """A ``TrainingResult`` as the backtest keeps it (with the served model)."""
        served = self.served(result.split, result.model)
        due = self.history.due[frame.index.to_numpy()]
        return TrainedModel(
            id=f"m{day.isoformat()}",
            day=day,
            cutoff=datetime.combine(day, datetime.min.time()),
            model=served,
            window=sorted(frame[DAY].unique().tolist()),
            holdout=result.split.holdout if keep else None,
            holdout_scores=result.holdout_scores,
            holdout_metric=float(result.holdout_metrics[self.metric]),
            rows=len(frame),
            latest_label_due=pd.Timestamp(due.max()).to_pydatetime(),
            seconds=time.perf_counter() - started,
            evaluated=None if served is result.model else result.model,
            kind=result.model.name,
            importance=dict(result.feature_importance),
        )

    def holdout(self, model: TrainedModel) -> pd.DataFrame:
        if model.holdout is None:
            model.holdout = self.split(model.day)[1].holdout
        return model.holdout

    def fit_first(self, day: date) -> TrainedModel:
        """The first model: LightGBM and the baseline through ``train``; the gate's rule for
        a first model decides which serves (the baseline when LightGBM is refused)."""
        started, cpu = time.perf_counter(), time.process_time()
        cutoff = datetime.combine(day, datetime.min.time())
        frame = self.history.training_frame(cutoff, self.config.window_days)
        result = train(self.contract, frame, self.training_config())
        gate_config = self.config.triggers[0].gate if self.config.triggers else GateConfig()
        evaluation = evaluate(
            self.contract,
            result.split.holdout,
            result.holdout_scores,
            result.baseline_holdout_scores,
            "baseline (scikit-learn)",
            samples=gate_config.bootstrap_samples,
            confidence=gate_config.confidence,
            seed=gate_config.seed,
        )
        decision = decide(evaluation, gate_config, is_first=True)
        trained = self._trained(day, frame, result, started)
        trained.first_gate = decision.to_dict()
        if not decision.promote and result.baseline is not None:
            trained.model = self.served(result.split, result.baseline)
            trained.evaluated = None if trained.model is result.baseline else result.baseline
            trained.kind = "baseline"
            trained.holdout_scores = result.baseline_holdout_scores
            trained.holdout_metric = float(result.baseline_holdout_metrics[self.metric])
            trained.importance = dict(result.baseline.feature_importance())
        trained.first_gate["served"] = trained.kind
        trained.cpu_seconds = time.process_time() - cpu
        return trained


# A forked worker's view of the backtest (set in the parent just before the fork).
_WORKER: ModelFitter | None = None


def _fit_in_worker(day: str) -> TrainedModel:
    assert _WORKER is not None
    trained = _WORKER.load_or_fit(date.fromisoformat(day))
    trained.holdout = None
    return trained


class Prefetch:
    """Fits the models the schedules will need ahead of the day loop, in worker processes.

    Which days the reference schedules retrain is known before the loop, and a model
    depends only on its day, so they can be fitted in parallel; at most ``2 x workers``
    are in flight or waiting, so memory stays bounded. Workers are forked before the
    parent fits anything (LightGBM's OpenMP state must not cross a fork).
    """

    def __init__(self, fitter: ModelFitter, days: list[str], workers: int) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        global _WORKER
        _WORKER = fitter
        self.pending = list(days)
        self.futures: dict[str, Any] = {}
        self.ahead = 2 * workers
        context = multiprocessing.get_context("fork")
        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
        self._top_up()

    def _top_up(self) -> None:
        while self.pending and len(self.futures) < self.ahead:
            day = self.pending.pop(0)
            self.futures[day] = self.pool.submit(_fit_in_worker, day)

    def has(self, day: str) -> bool:
        return day in self.futures or day in self.pending

    def get(self, day: str) -> TrainedModel:
        if day not in self.futures:
            self.pending.remove(day)
            self.futures[day] = self.pool.submit(_fit_in_worker, day)
        trained = self.futures.pop(day).result()
        # Days skipped over (not needed after all) are dropped.
        for earlier in [d for d in self.futures if d < day]:
            self.futures.pop(earlier).cancel()
        self._top_up()
        return trained

    def close(self) -> None:
        global _WORKER
        self.pool.shutdown(wait=True, cancel_futures=True)
        _WORKER = None
