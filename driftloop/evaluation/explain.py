"""Explanations from the model's own additive contributions: per row, overall and per slice.

A contribution is a feature's share of a row's raw score (log-odds for binary models):
LightGBM's TreeSHAP values (`pred_contrib=True`) for the trees, coefficient times
transformed input for the linear baseline. A row's contributions plus its bias sum to its
raw score, so "why" and "what" never disagree. Global importance is the mean absolute
contribution, overall and within each slice of the eval report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from driftloop.training.model_base import TabularModel
from driftloop.training.model_loading import cached_pyfunc

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from driftloop.training.columns import Frame
    from driftloop.training.model_base import TabularModel

DEFAULT_TOP = 5


@dataclass
class Explanation:
    """Contributions of each feature (rows x features) and the bias of each row."""

    features: list[str]
    values: np.ndarray
    bias: np.ndarray

    def __len__(self) -> int:
        return len(self.bias)

    def raw_score(self) -> np.ndarray:
        return self.values.sum(axis=1) + self.bias

    def rows(self, mask: np.ndarray) -> Explanation:
        return Explanation(self.features, self.values[mask], self.bias[mask])


def explain(model: TabularModel, frame: Frame) -> Explanation:
    """The model's contributions for every row of a features frame or Arrow table."""
    matrix = model.contributions(frame)
    return Explanation(list(model.features), matrix[:, :-1], matrix[:, -1])


def tabular_model(model_uri: str, tracking_uri: str | None = None) -> TabularModel | None:
    """Our TabularModel inside a logged pyfunc (None for a model of another kind)."""
    loaded = cached_pyfunc(model_uri, tracking_uri)
    try:
        inner = loaded.unwrap_python_model()
    except Exception:  # MLflow raises for flavours that are not a PythonModel
        return None
    model = getattr(inner, "tabular", None)
    return model if isinstance(model, TabularModel) else None


def mean_abs(explanation: Explanation, rows: np.ndarray | None = None) -> dict[str, float]:
    """Mean absolute contribution of each feature (over ``rows``, default all), largest first."""
    import numpy as np

    values = explanation.values if rows is None else explanation.values[rows]
    means = np.abs(values).mean(axis=0) if len(values) else np.zeros(len(explanation.features))
    ranked = sorted(zip(explanation.features, map(float, means), strict=True), key=lambda p: -p[1])
    return dict(ranked)


def importance_table(
    explanation: Explanation, groups: dict[tuple[str, str], np.ndarray] | None = None
) -> pd.DataFrame:
    """Long table: slice, value, rows, feature, mean_abs_contribution. The overall rows
    have slice "(all)"; ``groups`` maps (slice column, value) to row indices."""
    import numpy as np
    import pandas as pd

    records = []
    everything = {("(all)", ""): np.arange(len(explanation))}
    for (column, value), idx in {**everything, **(groups or {})}.items():
        for feature, importance in mean_abs(explanation, idx).items():
            records.append(
                {
                    "slice": column,
                    "value": value,
                    "rows": len(idx),
                    "feature": feature,
                    "mean_abs_contribution": importance,
                }
            )
    columns = ["slice", "value", "rows", "feature", "mean_abs_contribution"]
    return pd.DataFrame(records, columns=columns)


def top_contributions(explanation: Explanation, k: int = DEFAULT_TOP) -> list[list[dict[str, Any]]]:
    """Per row, the ``k`` features with the largest absolute contribution, largest first."""
    import numpy as np

    k = max(0, min(k, len(explanation.features)))
    order = np.argsort(-np.abs(explanation.values), axis=1, kind="stable")[:, :k]
    return [
        [{"feature": explanation.features[j], "contribution": float(row[j])} for j in picks]
        for row, picks in zip(explanation.values, order, strict=True)
    ]


def top_contributions_json(explanation: Explanation, k: int = DEFAULT_TOP) -> list[str]:
    """`top_contributions` as one compact JSON string per row (a Parquet column)."""
    import json

    return [
        json.dumps({c["feature"]: round(c["contribution"], 6) for c in row})
        for row in top_contributions(explanation, k)
    ]
