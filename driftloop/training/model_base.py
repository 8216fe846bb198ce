"""The TabularModel interface every model kind implements, and the helpers the kinds share.

A TabularModel is built from the contract's feature list, the categorical subset and the
task. It owns all of its preprocessing (category maps, imputation), so a pickled model
scores a features-table frame on its own - that is what the MLflow pyfunc wraps.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

from driftloop.data.contract import Task
from driftloop.training.columns import Frame, column_names


class TabularModel(ABC):
    """fit on a train/valid pair of features-table frames; predict one score per row."""

    name: ClassVar[str] = "tabular"

    def __init__(
        self,
        features: list[str],
        categorical: list[str],
        task: Task,
        params: dict[str, Any] | None = None,
        seed: int = 42,
    ) -> None:
        unknown = [c for c in categorical if c not in features]
        if unknown:
            raise ValueError(f"categorical features {unknown} are not in the feature list")
        self.features = list(features)
        self.categorical = [f for f in features if f in set(categorical)]
        self.numeric = [f for f in features if f not in set(categorical)]
        self.task = Task(task)
        self.params = dict(params or {})
        self.seed = int(seed)
        self.fitted = False

    @abstractmethod
    def fit(self, train: pd.DataFrame, valid: pd.DataFrame, label: str = "label") -> None: ...

    @abstractmethod
    def predict(self, frame: Frame, threads: int = 0) -> np.ndarray:
        """Probability of label 1 (binary) or the predicted value (regression), 1-D float64.

        `frame` is a pandas DataFrame or a pyarrow Table with (at least) the features;
        `threads` caps the threads the model predicts with (0: its library's default)."""

    @abstractmethod
    def feature_importance(self) -> dict[str, float]:
        """Importance per contract feature, non-negative, summing to 1 (0s if none)."""

    @abstractmethod
    def contributions(self, frame: Frame) -> np.ndarray:
        """Each feature's additive contribution to each row's raw score (log-odds for
        binary, the prediction for regression): rows x (features + 1), the last column the
        bias; a row sums to `raw_score`."""

    @abstractmethod
    def raw_score(self, frame: Frame) -> np.ndarray:
        """The score before the link function (log-odds for binary), 1-D float64."""

    def _check_columns(self, frame: Frame) -> None:
        present = set(column_names(frame))
        missing = [f for f in self.features if f not in present]
        if missing:
            raise KeyError(f"{self.name} model: frame lacks feature columns {missing}")

    def _numeric(self, frame: pd.DataFrame) -> pd.DataFrame:
        import pandas as pd

        return frame[self.numeric].apply(pd.to_numeric, errors="coerce").astype("float64")

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError(f"{self.name} model: call fit() before predict()")

    @staticmethod
    def _label(frame: pd.DataFrame, label: str) -> np.ndarray:
        import numpy as np
        import pandas as pd

        y = pd.to_numeric(frame[label], errors="coerce").to_numpy(dtype="float64")
        if np.isnan(y).any():
            raise ValueError(f"label column {label!r} has NULLs: drop unlabelled rows first")
        return y

    def __repr__(self) -> str:
        return f"{type(self).__name__}(task={self.task.value}, features={len(self.features)})"


def normalised(raw: dict[str, float]) -> dict[str, float]:
    total = sum(raw.values())
    if total <= 0 or not math.isfinite(total):
        return dict.fromkeys(raw, 0.0)
    return {k: float(v / total) for k, v in raw.items()}
