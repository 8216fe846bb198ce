"""Quick fits on the sample: the rolling means of the target worth proposing, and columns
that predict the target almost perfectly together with their own recent history.

Both fit the training layer's LightGBM model (few rounds) on the sample and score a later
or held-out part of it; the rolling features are computed by the feature definition
itself, so what is measured here is what the loop will compute.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from driftloop.data.contract import Contract, RollingFeature, Task
from driftloop.drafting.profiling import LEAK_AUC, LEAK_R2
from driftloop.features.definition import build_features
from driftloop.names import DAY, LABEL
from driftloop.paths import DatasetPaths
from driftloop.training.lightgbm_model import LightGBMModel

if TYPE_CHECKING:
    import pandas as pd

# Enough rows to rank a handful of candidates in seconds on one core.
QUICK_ROWS = 60_000
QUICK_PARAMS = {
    "n_estimators": 200,
    "learning_rate": 0.1,
    "early_stopping_rounds": 20,
    "num_threads": 1,
}
WINDOWS = ("1d", "7d")
MAX_GROUPS = 3
MAX_ROLLING = 2
# A rolling feature is kept when it lowers the quick fit's holdout loss (RMSE, or 1 - ROC
# AUC) by at least this share: smaller gains are within a sample's noise.
MIN_GAIN = 0.01
MIN_DAYS = 10


@dataclass
class RollingChoice:
    features: list[RollingFeature]
    why: dict[str, str]  # rolling feature name -> why it was chosen
    summary: str  # what was measured, for the block's comment


def _loss(task: Task, label: pd.Series, scores: object) -> float:
    """RMSE (regression) or 1 - ROC AUC (binary): lower is better for both."""
    import numpy as np
    import pandas as pd

    y = label.to_numpy(dtype=float)
    s = np.asarray(scores, dtype=float)
    if task == Task.regression:
        return float(np.sqrt(np.mean((y - s) ** 2)))
    ranks = pd.Series(s).rank().to_numpy()
    positives = y == 1
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    auc = (ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return float(1 - auc)


def quick_loss(
    task: Task,
    parts: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
    features: list[str],
    categorical: list[str],
) -> float:
    """The holdout loss of a small LightGBM fit on (train, valid, holdout)."""
    train, valid, holdout = parts
    model = LightGBMModel(features, [c for c in categorical if c in features], task, QUICK_PARAMS)
    model.fit(train, valid)
    return _loss(task, holdout[LABEL], model.predict(holdout))


def _sample_features(contract: Contract, rows: pd.DataFrame) -> pd.DataFrame:
    """The features table of the sample's rows, built by the feature definition."""
    import tempfile

    days = rows[contract.event_time.column].dt.date
    # The rows are all extra rows: the lake's missing partitions are expected, not news.
    quiet = logging.getLogger("driftloop.features.definition")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory() as folder:
            paths = DatasetPaths(Path(folder), contract.name)
            return build_features(contract, paths, days.min(), days.max(), extra_rows=rows)
    finally:
        quiet.setLevel(level)


def _split_by_day(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame] | None:
    """Oldest days train, then 15% of days validate, the newest 20% are the holdout."""
    days = sorted(frame[DAY].unique())
    if len(days) < MIN_DAYS:
        return None
    n_hold, n_valid = max(2, len(days) // 5), max(1, len(days) * 3 // 20)
    hold, valid = set(days[-n_hold:]), set(days[-(n_hold + n_valid) : -n_hold])
    day = frame[DAY]
    return frame[~day.isin(hold | valid)], frame[day.isin(valid)], frame[day.isin(hold)]


def choose_rolling(contract: Contract, rows: pd.DataFrame, groups: list[str]) -> RollingChoice:
    """Rolling means of the target by the given groups (the categorical columns that
    predict it best first) over WINDOWS, kept greedily while each lowers the quick fit's
    holdout loss by MIN_GAIN; `rows` are the sample's rows as the raw table holds them."""
    event = contract.event_time.column
    rows = rows.sort_values(event)
    days = rows[event].dt.strftime("%Y-%m-%d")
    per_day = days.value_counts().sort_index(ascending=False).cumsum()
    rows = rows[days.isin(per_day[per_day <= QUICK_ROWS].index)]  # the latest days
    taken = set(contract.columns) | set(contract.extra_features)
    candidates = [
        RollingFeature(name=f"{g}_target_mean_{w}", group_by=g, window=w)
        for g in groups[:MAX_GROUPS]
        for w in WINDOWS
        if f"{g}_target_mean_{w}" not in taken
    ]
    if not candidates:
        return RollingChoice([], {}, "no categorical column to group the target's history by")
    names = [c.name for c in candidates]
    trial = contract.model_copy(
        update={"rolling_features": candidates, "features": [*contract.features, *names]}
    )
    frame = _sample_features(trial, rows)
    frame = frame[frame[LABEL].notna()]
    parts = _split_by_day(frame)
    if parts is None:
        return RollingChoice([], {}, f"the sample has fewer than {MIN_DAYS} labelled days")
    categorical = contract.categorical_features
    chosen: list[str] = []
    best = quick_loss(contract.task, parts, contract.features, categorical)
    start = best
    why: dict[str, str] = {}
    metric = "RMSE" if contract.task == Task.regression else "1 - ROC AUC"
    for _ in range(MAX_ROLLING):
        losses = {
            c.name: quick_loss(
                contract.task, parts, [*contract.features, *chosen, c.name], categorical
            )
            for c in candidates
            if c.name not in chosen
        }
        if not losses:
            break
        name = min(losses, key=lambda n: losses[n])
        if not losses[name] <= best * (1 - MIN_GAIN):
            break
        why[name] = f"quick fit's holdout {metric} {best:.4g} -> {losses[name]:.4g}"
        chosen.append(name)
        best = losses[name]
    summary = (
        f"quick LightGBM fits on the sample's latest {len(frame)} labelled rows (holdout: its "
        f"last days): {metric} {start:.4g} without, {best:.4g} with the chosen; tried "
        f"{', '.join(c.name for c in candidates)}; kept a feature only when it lowered "
        f"the loss by {MIN_GAIN:.0%}"
    )
    return RollingChoice([c for c in candidates if c.name in chosen], why, summary)


def history_leaks(
    frame: pd.DataFrame, names: list[str], label: pd.Series, task: Task, times: pd.Series
) -> dict[str, str]:
    """Numeric columns that predict the target almost perfectly together with their own
    recent history (the value, the previous row's value, the mean over the previous day,
    and the differences to both): the target is then a function of the column's course,
    known only once the column is (e.g. 'above its previous day's mean')."""
    import numpy as np
    import pandas as pd

    order = np.argsort(pd.to_datetime(times).to_numpy(), kind="stable")
    index = pd.DatetimeIndex(pd.to_datetime(times).to_numpy()[order])
    y = label.to_numpy(dtype=float)[order]
    rng = np.random.default_rng(0)
    part = rng.choice(4, size=len(y))  # 0, 1: train; 2: valid; 3: test
    part[rng.permutation(len(y))[QUICK_ROWS:]] = -1  # a large sample: QUICK_ROWS rows fit
    limit, metric = (LEAK_R2, "R^2") if task == Task.regression else (LEAK_AUC, "ROC AUC")
    found: dict[str, str] = {}
    for name in names:
        x = pd.Series(frame[name].to_numpy(dtype=float)[order], index=index)
        history = pd.DataFrame(
            {
                "x": x.to_numpy(),
                "lag": x.shift(1).to_numpy(),
                "day_mean": x.rolling("1D", closed="left").mean().to_numpy(),
                LABEL: y,
            }
        )
        history["above_mean"] = history["x"] - history["day_mean"]
        history["step"] = history["x"] - history["lag"]
        keep = ~np.isnan(y)
        sets = [history[keep & np.isin(part, p)] for p in ([0, 1], [2], [3])]
        if min(len(s) for s in sets) < 30:
            continue
        if task == Task.binary and sets[2][LABEL].nunique() < 2:
            continue
        loss = quick_loss(task, (sets[0], sets[1], sets[2]), [c for c in history if c != LABEL], [])
        if task == Task.regression:
            variance = float(sets[2][LABEL].var(ddof=0))
            score = 1 - loss**2 / variance if variance > 0 else 0.0
        else:
            score = 1 - loss
        if score >= limit:
            found[name] = (
                f"predicts the target almost perfectly together with its own recent history "
                f"(the value, the previous row's, the previous day's mean: {metric} "
                f"{score:.3f} >= {limit}): most likely the target is computed from it"
            )
    return found
