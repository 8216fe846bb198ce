"""Performance estimated before labels arrive: CBPE for binary tasks, DLE for regression.

Binary (confidence-based performance estimation, NannyML's CBPE): an isotonic regression
fitted on the champion's holdout maps its scores to calibrated probabilities p. For a row
predicted positive (score >= threshold) the expected true positives are p and the expected
false positives 1 - p; for a row predicted negative the expected false negatives are p and
true negatives 1 - p. Summed over a chunk this is the expected confusion matrix (exact by
linearity of expectation). The expected ROC AUC sorts the chunk by score and traces the
expected true- and false-positive rates (cumulative sums of p and 1 - p over the expected
positives and negatives), as CBPE does; it is a ratio of expectations, so it differs
slightly from the expectation of the AUC (tests bound the gap).

Regression (direct loss estimation, NannyML's DLE): a small LightGBM model learns the
squared error of the champion on its holdout from the features and the prediction; the
estimated RMSE of a chunk is the square root of the mean predicted squared error (MAE:
the same with the absolute error).

Both assume that what changed is the inputs, not the relation between inputs and target
(no concept drift); realised performance, once labels arrive, catches the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

from driftloop.data.contract import ColumnType, Contract, Task

DLE_PARAMS: dict[str, Any] = {
    "objective": "regression",
    "learning_rate": 0.05,
    "num_leaves": 8,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbose": -1,
    "seed": 7,
    "deterministic": True,
    "num_threads": 1,
}
DLE_ROUNDS = 100


@dataclass
class BinaryEstimator:
    """CBPE: isotonic calibration of the champion's scores, fitted on its holdout."""

    x: np.ndarray  # isotonic breakpoints (scores)
    y: np.ndarray  # calibrated probabilities at the breakpoints
    threshold: float = 0.5

    @classmethod
    def fit(cls, labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5):
        import numpy as np
        from sklearn.isotonic import IsotonicRegression

        labels = np.asarray(labels, dtype="float64")
        scores = np.asarray(scores, dtype="float64")
        known = ~np.isnan(labels)
        if known.sum() == 0:
            raise ValueError("the holdout has no labelled rows to calibrate on")
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        iso.fit(scores[known], labels[known])
        return cls(np.asarray(iso.X_thresholds_), np.asarray(iso.y_thresholds_), threshold)

    def calibrated(self, scores: np.ndarray) -> np.ndarray:
        import numpy as np

        return np.interp(np.asarray(scores, dtype="float64"), self.x, self.y)

    def expected_confusion(self, scores: np.ndarray) -> dict[str, float]:
        return expected_confusion(self.calibrated(scores), scores, self.threshold)

    def estimate(self, scores: np.ndarray) -> float:
        """The expected ROC AUC of the chunk."""
        return expected_roc_auc(self.calibrated(scores), scores)


def expected_confusion(p: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Expected TP, FP, TN, FN when row i is positive with probability p[i], independently."""
    import numpy as np

    p = np.asarray(p, dtype="float64")
    positive = np.asarray(scores, dtype="float64") >= threshold
    return {
        "tp": float(p[positive].sum()),
        "fp": float((1 - p[positive]).sum()),
        "tn": float((1 - p[~positive]).sum()),
        "fn": float(p[~positive].sum()),
    }


def expected_roc_auc(p: np.ndarray, scores: np.ndarray) -> float:
    """CBPE's ROC AUC: the area under the curve of expected TPR against expected FPR.

    Tied scores move together (one step of the curve), as they do for a labelled AUC.
    NaN when the chunk expects no positives or no negatives.
    """
    import numpy as np

    p = np.asarray(p, dtype="float64")
    scores = np.asarray(scores, dtype="float64")
    positives, negatives = p.sum(), (1 - p).sum()
    if p.size == 0 or positives <= 0 or negatives <= 0:
        return math.nan
    order = np.argsort(-scores, kind="stable")
    s, q = scores[order], p[order]
    last_of_tie = np.r_[s[1:] != s[:-1], True]
    tpr = np.r_[0.0, np.cumsum(q)[last_of_tie] / positives]
    fpr = np.r_[0.0, np.cumsum(1 - q)[last_of_tie] / negatives]
    area = float(np.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2.0))
    # The curve pairs every row with itself too (p(1-p), counted as a tie); a labelled AUC
    # only pairs distinct rows, so those terms are taken out of both sides of the ratio.
    own = float(np.sum(p * (1 - p)))
    pairs = positives * negatives - own
    if pairs <= 0:
        return area
    return (area * positives * negatives - own / 2.0) / pairs


@dataclass
class RegressionEstimator:
    """DLE: a small LightGBM model of the champion's squared error on its holdout."""

    booster: Any
    columns: list[str]
    categories: dict[str, list[str]]
    metric: str = "rmse"

    @classmethod
    def fit(
        cls,
        contract: Contract,
        holdout: pd.DataFrame,
        labels: np.ndarray,
        predictions: np.ndarray,
        metric: str = "rmse",
    ):
        import lightgbm as lgb
        import numpy as np

        labels = np.asarray(labels, dtype="float64")
        predictions = np.asarray(predictions, dtype="float64")
        known = ~np.isnan(labels)
        if known.sum() < 2:
            raise ValueError("the holdout has fewer than 2 labelled rows to learn the error on")
        columns = list(contract.features)
        categorical = [
            c
            for c in columns
            if contract.feature_type(c) in (ColumnType.categorical, ColumnType.boolean)
        ]
        categories = {
            c: sorted(holdout[c].dropna().astype(str).unique().tolist()) for c in categorical
        }
        estimator = cls(None, columns, categories, metric)
        error = predictions - labels
        target = np.abs(error) if metric == "mae" else error**2
        matrix = estimator._matrix(holdout, predictions)
        data = lgb.Dataset(matrix[known], label=target[known], free_raw_data=True)
        estimator.booster = lgb.train(DLE_PARAMS, data, num_boost_round=DLE_ROUNDS)
        return estimator

    def _matrix(self, frame: pd.DataFrame, predictions: np.ndarray) -> np.ndarray:
        import numpy as np
        import pandas as pd

        parts = []
        for column in self.columns:
            if column in self.categories:
                values = frame[column].astype("string")
                codes = pd.Categorical(values, categories=self.categories[column]).codes
                parts.append(np.where(codes < 0, np.nan, codes).astype("float64"))
            else:
                parts.append(pd.to_numeric(frame[column], errors="coerce").to_numpy("float64"))
        parts.append(np.asarray(predictions, dtype="float64"))
        return np.column_stack(parts)

    def estimate(self, frame: pd.DataFrame, predictions: np.ndarray) -> float:
        import numpy as np

        if len(frame) == 0:
            return math.nan
        predicted = np.clip(self.booster.predict(self._matrix(frame, predictions)), 0.0, None)
        mean = float(np.mean(predicted))
        return mean if self.metric == "mae" else math.sqrt(mean)


def fit_estimator(
    contract: Contract,
    metric: str,
    holdout: pd.DataFrame,
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float = 0.5,
) -> BinaryEstimator | RegressionEstimator | None:
    """The estimator of the champion's ``metric`` (None when there is none for it)."""
    if contract.task == Task.binary:
        return BinaryEstimator.fit(labels, scores, threshold) if metric == "roc_auc" else None
    if metric in ("rmse", "mae"):
        return RegressionEstimator.fit(contract, holdout, labels, scores, metric)
    return None


def estimate(
    estimator: BinaryEstimator | RegressionEstimator | None,
    frame: pd.DataFrame,
    scores: np.ndarray,
) -> float:
    """The estimated metric of a chunk (NaN without an estimator)."""
    if estimator is None:
        return math.nan
    if isinstance(estimator, BinaryEstimator):
        return estimator.estimate(scores)
    return estimator.estimate(frame, scores)
