"""Reproducible training on a time split of the features table (no Dagster, no MLflow).

The split is by `partition_date`: the earliest days train, the next days validate
(early stopping, search), and the most recent days are the holdout that the model, the
baseline and later the gate are judged on. Same data + same config = same model.
"""

from __future__ import annotations

import hashlib
import random
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from driftloop.data.contract import Contract, Task
from driftloop.data.lake import existing_partitions, is_blocked, partition_files, sql_file_list
from driftloop.metrics import PRIMARY_METRIC, compute_metrics, is_better
from driftloop.names import DAY, FEATURES_TABLE, LABEL
from driftloop.paths import DatasetPaths
from driftloop.training.model_base import TabularModel
from driftloop.training.models import make_model

# The baseline is a yardstick (a linear model): past a few hundred thousand rows its fit
# barely changes while its cost (time, and memory for one-hot columns) keeps growing, so it
# learns from a seeded sample of the training rows beyond this many.
BASELINE_MAX_ROWS = 300_000

# The random search draws from this small LightGBM space; anything not drawn keeps the
# configured value.
SEARCH_SPACE: dict[str, list[Any]] = {
    "num_leaves": [7, 15, 31, 63],
    "learning_rate": [0.03, 0.05, 0.1, 0.2],
    "min_child_samples": [10, 20, 50, 100],
    "feature_fraction": [0.6, 0.8, 1.0],
    "lambda_l2": [0.0, 1.0, 10.0],
}


@dataclass
class TrainingConfig:
    window_days: int = 60
    holdout_days: int = 7
    validation_days: int = 7
    end_date: date | None = None
    model_kind: str = "lightgbm"
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 42
    search_trials: int = 0
    search_time_budget_s: float = 0.0
    # The configured kind and the baseline are both fitted; the one better on the
    # validation days becomes the model (see ``train``). Off: the configured kind always.
    choose_kind: bool = True
    # The model that serves is refitted on the whole window (``refit_on_window``).
    refit_on_window: bool = False

    @classmethod
    def for_contract(cls, contract: Contract, **overrides: Any) -> TrainingConfig:
        """The contract's training window defaults, with any field overridden."""
        defaults = {
            "window_days": contract.training.window_days,
            "holdout_days": contract.training.holdout_days,
            "validation_days": contract.training.validation_days,
            "refit_on_window": contract.training.refit_on_window,
        }
        return cls(**{**defaults, **overrides})


@dataclass
class Split:
    """Three disjoint, time-ordered sets of labelled rows."""

    train: pd.DataFrame
    valid: pd.DataFrame
    holdout: pd.DataFrame
    train_days: list[str]
    valid_days: list[str]
    holdout_days: list[str]

    @property
    def rows(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid), "holdout": len(self.holdout)}

    def ranges(self) -> dict[str, tuple[str, str]]:
        """(first day, last day) of each set."""
        return {
            "train": (self.train_days[0], self.train_days[-1]),
            "valid": (self.valid_days[0], self.valid_days[-1]),
            "holdout": (self.holdout_days[0], self.holdout_days[-1]),
        }


@dataclass
class TrainingResult:
    model: TabularModel
    baseline: TabularModel | None  # None: trained with with_baseline=False
    task: Task
    features: list[str]
    primary_metric: str
    holdout_metrics: dict[str, float]
    baseline_holdout_metrics: dict[str, float]  # {} without a baseline
    valid_metrics: dict[str, float]
    baseline_valid_metrics: dict[str, float]  # {} without a baseline
    split: Split
    best_params: dict[str, Any]
    trials: list[dict[str, Any]]
    feature_importance: dict[str, float]
    train_seconds: float
    config: TrainingConfig
    holdout_scores: np.ndarray = field(repr=False)
    baseline_holdout_scores: np.ndarray | None = field(repr=False)
    # Per kind fitted, its validation primary metric (what chose the model's kind).
    kind_valid: dict[str, float] = field(default_factory=dict)
    # With ``config.refit_on_window``: the split model that the holdout scores and metrics
    # come from (the gate judges it); ``model`` is its refit on the whole window.
    evaluated: TabularModel | None = None

    @property
    def rows(self) -> dict[str, int]:
        return self.split.rows

    @property
    def train_days(self) -> list[str]:
        return self.split.train_days

    @property
    def valid_days(self) -> list[str]:
        return self.split.valid_days

    @property
    def holdout_days(self) -> list[str]:
        return self.split.holdout_days

    @property
    def rows_per_second(self) -> float:
        """Training throughput: train + validation rows over the wall time of train()."""
        rows = self.split.rows["train"] + self.split.rows["valid"]
        return rows / self.train_seconds if self.train_seconds > 0 else 0.0


def time_split(
    frame: pd.DataFrame,
    holdout_days: int,
    validation_days: int,
    order_by: list[str] | None = None,
) -> Split:
    """Split labelled rows by day: oldest -> train, then validation, newest -> holdout.

    Days are the distinct `partition_date`s that have at least one labelled row, so days
    whose labels are not known yet neither shrink the holdout nor count as training days.
    Rows are sorted by day, `event_time` and `order_by` (e.g. the id columns) so that the
    order the files were read in cannot change the model.
    """
    if holdout_days < 1 or validation_days < 1:
        raise ValueError("holdout_days and validation_days must both be at least 1")
    for column in (DAY, LABEL):
        if column not in frame.columns:
            raise KeyError(f"time_split: the frame has no {column!r} column")
    # Masks over the frame rather than a copy of its labelled rows: on a 10M-row window
    # every copy costs gigabytes.
    has_label = frame[LABEL].notna().to_numpy()
    day_of_row = frame[DAY].astype(str)
    days = sorted(day_of_row[has_label].unique().tolist())
    needed = holdout_days + validation_days + 1
    if len(days) < needed:
        raise ValueError(
            f"time_split: {len(days)} day(s) with labelled rows, but holdout_days="
            f"{holdout_days} + validation_days={validation_days} + at least 1 training day "
            f"needs {needed}; train on a longer window or shorten the holdout/validation"
        )
    holdout = days[-holdout_days:]
    valid = days[-(holdout_days + validation_days) : -holdout_days]
    train = days[: -(holdout_days + validation_days)]
    keys = [DAY] + [c for c in ["event_time", *(order_by or [])] if c in frame.columns]

    def rows(chosen: list[str]) -> pd.DataFrame:
        wanted = np.flatnonzero(has_label & day_of_row.isin(chosen).to_numpy())
        if len(wanted) and wanted[-1] - wanted[0] + 1 == len(wanted):
            # Contiguous (labelled rows in day order, as load_training_frame reads them):
            # a view of the frame, no copy.
            part = frame.iloc[wanted[0] : wanted[-1] + 1]
        else:
            part = frame.iloc[wanted]
        return _sorted(part, keys)

    return Split(rows(train), rows(valid), rows(holdout), train, valid, holdout)


def _sorted(part: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """`part` in `keys` order with a fresh index; no second copy when already in order
    (load_training_frame reads rows sorted)."""
    # The order from the key columns alone (a small copy), as sort_values would sort.
    order = part[keys].reset_index(drop=True).sort_values(keys, kind="stable").index.to_numpy()
    if not np.array_equal(order, np.arange(len(part))):
        part = part.iloc[order]
    # set_axis(copy=False) keeps a view a view (reset_index would copy every column).
    return part.set_axis(pd.RangeIndex(len(part)), axis=0, copy=False)


def _sample_params(rng: random.Random, base: dict[str, Any]) -> dict[str, Any]:
    return {**base, **{k: rng.choice(v) for k, v in SEARCH_SPACE.items()}}


def _rows_for(kind: str, rows: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The rows a model of `kind` fits on: all of them, or for the baseline a seeded sample
    of at most BASELINE_MAX_ROWS in their order."""
    if kind == "baseline" and len(rows) > BASELINE_MAX_ROWS:
        return rows.sample(n=BASELINE_MAX_ROWS, random_state=seed).sort_index()
    return rows


def _fit(kind: str, contract: Contract, params: dict[str, Any], seed: int, split: Split):
    model = make_model(kind, contract, params, seed)
    model.fit(_rows_for(kind, split.train, seed), split.valid, label=LABEL)
    return model


def refit_on_window(
    contract: Contract, split: Split, model: TabularModel, seed: int
) -> TabularModel:
    """`model`'s configuration fitted again on every labelled row of the window: the
    training, validation and holdout days, with the number of boosting rounds the
    validation days chose.

    `train` holds out the newest days to choose the model and to judge it, so the model it
    returns never learnt from its freshest two weeks; under a moving concept that is the
    part of the window that matters most. The refit learns from them too. It cannot be
    judged on the holdout it saw, so the gate keeps judging the split model (the refit's
    configuration is the one the split model validated) and the refit is what serves.
    """
    rows = pd.concat([split.train, split.valid, split.holdout], ignore_index=True)
    params = dict(model.params)
    if model.name == "lightgbm":
        # No days are left to stop on: the rounds the validation days chose, no stopping.
        params["n_estimators"] = max(1, model.best_iteration)
        params["early_stopping_rounds"] = 0
    refit = make_model(model.name, contract, params, seed)
    refit.fit(_rows_for(model.name, rows, seed), None, label=LABEL)
    return refit


def train(
    contract: Contract,
    frame: pd.DataFrame,
    config: TrainingConfig,
    *,
    with_baseline: bool = True,
) -> TrainingResult:
    """Fit the model (with the optional bounded random search) and the baseline; score both.

    The search is seeded; with a time budget the number of trials depends on the machine,
    so set only `search_trials` when a run must be repeatable. With `config.choose_kind`
    (the default) and a baseline, the kind better on the validation days is the model
    (`kind_valid` records both), so a retrain can replace a champion of either kind.
    `with_baseline=False` skips the baseline (its fields are None / {}) for callers that
    never compare with it: on a 60-day flights window it takes 2-3 times as long as the
    LightGBM fit.
    """
    started = time.perf_counter()
    split = time_split(
        frame, config.holdout_days, config.validation_days, order_by=contract.id_columns
    )
    task = contract.task
    primary = PRIMARY_METRIC[task]

    def score(model: TabularModel, part: pd.DataFrame) -> dict[str, float]:
        return compute_metrics(task, part[LABEL], model.predict(part))

    trials: list[dict[str, Any]] = []
    best_params = dict(config.params)
    if config.model_kind == "lightgbm" and config.search_trials > 0:
        rng = random.Random(config.seed)
        candidates, seen = [dict(config.params)], set()
        best_model, best_value = None, float("nan")
        for trial in range(config.search_trials):
            elapsed = time.perf_counter() - started
            budget = config.search_time_budget_s
            if trial > 0 and budget > 0 and elapsed >= budget:
                break
            if trial >= len(candidates):
                # Draw a configuration not tried yet (a few attempts, then accept a repeat).
                for _ in range(20):
                    params = _sample_params(rng, config.params)
                    if repr(sorted(params.items())) not in seen:
                        break
                candidates.append(params)
            params = candidates[trial]
            seen.add(repr(sorted(params.items())))
            t0 = time.perf_counter()
            model = _fit(config.model_kind, contract, params, config.seed, split)
            value = score(model, split.valid)[primary]
            trials.append(
                {
                    "trial": trial,
                    "params": params,
                    f"valid_{primary}": value,
                    "best_iteration": getattr(model, "best_iteration", None),
                    "seconds": round(time.perf_counter() - t0, 3),
                }
            )
            if best_model is None or is_better(primary, value, best_value):
                best_model, best_value, best_params = model, value, params
        model = best_model
    else:
        model = _fit(config.model_kind, contract, config.params, config.seed, split)
    if hasattr(model, "params"):
        # Record what was actually used, defaults included.
        best_params = dict(model.params)

    baseline = _fit("baseline", contract, {}, config.seed, split) if with_baseline else None
    valid_metrics = score(model, split.valid)
    kind_valid = {model.name: valid_metrics[primary]}
    if baseline is not None and baseline is not model:
        baseline_valid = score(baseline, split.valid)
        kind_valid[baseline.name] = baseline_valid[primary]
        # Model selection on the validation days, so the holdout stays an unbiased judge
        # for the gate: a retrain can then replace a champion of either kind with a
        # fresh model of the kind that fits the recent concept best.
        if config.choose_kind and is_better(
            primary, baseline_valid[primary], valid_metrics[primary]
        ):
            model, valid_metrics = baseline, baseline_valid
    holdout_scores = model.predict(split.holdout)
    baseline_scores = None if baseline is None else baseline.predict(split.holdout)
    result = TrainingResult(
        model=model,
        baseline=baseline,
        task=task,
        features=list(contract.features),
        primary_metric=primary,
        holdout_metrics=compute_metrics(task, split.holdout[LABEL], holdout_scores),
        baseline_holdout_metrics=(
            {} if baseline is None else compute_metrics(task, split.holdout[LABEL], baseline_scores)
        ),
        valid_metrics=valid_metrics,
        baseline_valid_metrics={} if baseline is None else score(baseline, split.valid),
        split=split,
        best_params=best_params,
        trials=trials,
        feature_importance=model.feature_importance(),
        train_seconds=0.0,
        config=config,
        holdout_scores=holdout_scores,
        baseline_holdout_scores=baseline_scores,
        kind_valid=kind_valid,
    )
    if config.refit_on_window:
        result.evaluated, result.model = model, refit_on_window(contract, split, model, config.seed)
        result.feature_importance = result.model.feature_importance()
    result.train_seconds = time.perf_counter() - started
    return result


def file_sha256(path) -> str:
    """sha256 of a file's bytes: the provenance of one partition."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_training_frame(
    contract: Contract, paths: DatasetPaths, end: date | None, window_days: int
) -> tuple[pd.DataFrame, list[str], dict[str, str]]:
    """The labelled rows of the last `window_days` existing features partitions up to `end`
    (default: latest), in day, event time and id order (each file is sorted).

    Returns the rows (DuckDB over the Parquet files), the days used and each day's file
    sha256, so a run records exactly which bytes it trained on.
    """
    import duckdb  # light, but only needed here

    table = paths.table(FEATURES_TABLE)
    days = [d for d in existing_partitions(table) if not is_blocked(table, d)]
    if end is not None:
        days = [d for d in days if d <= end.isoformat()]
    if window_days < 1:
        raise ValueError("window_days must be at least 1")
    days = days[-window_days:]
    if not days:
        until = f" up to {end.isoformat()}" if end else ""
        raise FileNotFoundError(
            f"no {contract.name} features partitions{until} under {table}: "
            f"materialize {contract.name}/features first"
        )
    files = partition_files(table, days)
    con = duckdb.connect()
    try:
        # hive_partitioning off: partition_date is a real column, and the folder's
        # date=... must not add a second one.
        # Through Arrow: repeated strings (day, carrier, ...) become one Python object
        # each instead of one per row (GBs at 10M rows). Files are read in day order and
        # each is sorted, so the rows arrive in time_split's order and it copies nothing.
        frame = (
            con.sql(
                f"SELECT * FROM read_parquet({sql_file_list(files)}, hive_partitioning = false, "
                f"union_by_name = true) WHERE {LABEL} IS NOT NULL"
            )
            .to_arrow_table()
            .to_pandas()
        )
    finally:
        con.close()
    frame[DAY] = frame[DAY].astype(str)
    digests = {d: file_sha256(f) for d, f in zip(days, files, strict=True)}
    return frame, days, digests
