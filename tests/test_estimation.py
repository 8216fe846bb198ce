"""Performance estimated before labels arrive, checked against exact computations.

CBPE's expected confusion matrix must equal an enumeration of every labelling of a small
chunk weighted by its probability; its expected ROC AUC must be within 0.01 of the exact
expectation of the AUC (over labellings with both classes) on 12-row chunks. DLE must
follow a regression model's error where its inputs move. The pooled floor must come from
the holdout's sampling noise at the pool's size.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from driftloop.data.contract import Contract
from driftloop.monitoring.estimation import (
    BinaryEstimator,
    RegressionEstimator,
    expected_confusion,
    expected_roc_auc,
)
from driftloop.monitoring.performance import (
    FloorCache,
    bootstrap_floor,
    judge,
    metric_value,
    sorted_roc_auc,
)

AUC_TOLERANCE = 0.01


def _enumerate(p: np.ndarray):
    """Every labelling of the chunk with its probability."""
    for bits in itertools.product([0.0, 1.0], repeat=p.size):
        labels = np.array(bits)
        yield labels, float(np.prod(np.where(labels == 1, p, 1 - p)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_expected_confusion_matrix_equals_exact_enumeration(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.random(10)
    p = np.clip(scores + rng.normal(0, 0.2, 10), 0.01, 0.99)
    exact = dict.fromkeys(("tp", "fp", "tn", "fn"), 0.0)
    for labels, weight in _enumerate(p):
        predicted = scores >= 0.5
        exact["tp"] += weight * np.sum(predicted & (labels == 1))
        exact["fp"] += weight * np.sum(predicted & (labels == 0))
        exact["tn"] += weight * np.sum(~predicted & (labels == 0))
        exact["fn"] += weight * np.sum(~predicted & (labels == 1))
    expected = expected_confusion(p, scores, 0.5)
    for key, value in exact.items():
        assert expected[key] == pytest.approx(value, abs=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_expected_roc_auc_is_within_tolerance_of_the_exact_expectation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = np.round(rng.random(12), 1)  # ties included
    p = np.clip(scores + rng.normal(0, 0.15, 12), 0.02, 0.98)
    total = weights = 0.0
    for labels, weight in _enumerate(p):
        if labels.sum() in (0, labels.size):
            continue  # AUC undefined with one class
        total += weight * metric_value("roc_auc", labels, scores)
        weights += weight
    assert expected_roc_auc(p, scores) == pytest.approx(total / weights, abs=AUC_TOLERANCE)


def test_cbpe_calibrates_on_the_holdout_and_tracks_a_shifted_chunk() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(0, 1, 20_000)
    labels = (rng.random(x.size) < 1 / (1 + np.exp(-2 * x))).astype(float)
    scores = 1 / (1 + np.exp(-x))  # a ranking model whose scores are not calibrated
    estimator = BinaryEstimator.fit(labels[:10_000], scores[:10_000])
    holdout_auc = metric_value("roc_auc", labels[:10_000], scores[:10_000])
    # A chunk where the inputs moved to the flat tail: realised AUC falls; CBPE follows.
    x_new = rng.normal(2.0, 0.5, 5_000)
    y_new = (rng.random(x_new.size) < 1 / (1 + np.exp(-2 * x_new))).astype(float)
    s_new = 1 / (1 + np.exp(-x_new))
    realised = metric_value("roc_auc", y_new, s_new)
    estimated = estimator.estimate(s_new)
    assert abs(estimated - realised) < abs(holdout_auc - realised) / 2
    confusion = estimator.expected_confusion(s_new)
    assert sum(confusion.values()) == pytest.approx(s_new.size)


def test_dle_follows_the_error_where_the_inputs_move(flights_contract: Contract) -> None:
    rng = np.random.default_rng(9)
    contract = flights_contract.model_copy(update={"features": ["distance"]})
    distance = rng.uniform(100, 2000, 8_000)
    noise = rng.normal(0, 1, distance.size) * distance / 200  # the error grows with distance
    truth = distance / 10 + noise
    holdout = pd.DataFrame({"distance": distance})
    estimator = RegressionEstimator.fit(contract, holdout, truth, distance / 10)
    far = pd.DataFrame({"distance": rng.uniform(1500, 2000, 2_000)})
    far_truth = far["distance"] / 10 + rng.normal(0, 1, 2_000) * far["distance"] / 200
    realised = metric_value("rmse", far_truth, far["distance"] / 10)
    holdout_rmse = metric_value("rmse", truth, distance / 10)
    estimated = estimator.estimate(far, far["distance"].to_numpy() / 10)
    assert abs(estimated - realised) < abs(holdout_rmse - realised) / 2


def test_fast_auc_equals_scikit_learn() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 500).astype(float)
    scores = np.round(rng.random(500), 2)
    order = np.argsort(scores, kind="stable")
    expected = roc_auc_score(labels, scores)
    assert sorted_roc_auc(labels[order], scores[order]) == pytest.approx(expected, abs=1e-12)
    assert math.isnan(metric_value("roc_auc", np.ones(5), scores[:5]))


def test_the_floor_widens_as_the_pool_shrinks() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, 5_000)
    labels = (rng.random(x.size) < 1 / (1 + np.exp(-1.5 * x))).astype(float)
    holdout = metric_value("roc_auc", labels, x)
    small = bootstrap_floor("roc_auc", labels, x, 24, 0.95)
    large = bootstrap_floor("roc_auc", labels, x, 2_000, 0.95)
    assert small < large < holdout
    # Lower is better for RMSE: the floor lies above the holdout value.
    assert bootstrap_floor("rmse", x, x + rng.normal(0, 1, x.size), 50, 0.95) > 1.0
    floors = FloorCache("roc_auc", labels, x, 0.95)
    verdict = judge("realised", "roc_auc", holdout - 0.2, holdout, 2_000, 7, floors)
    assert verdict.breached and "below the floor" in verdict.sentence()
    assert not judge("realised", "roc_auc", holdout, holdout, 2_000, 7, floors).breached
    assert not judge("realised", "roc_auc", 0.1, holdout, 5, 1, floors).breached  # too few
