"""One loaded model version, as every scoring path uses it: batch predictions, the online
endpoint, the stream consumer and the compiled and exported forms.

`ScoringModel.load` resolves a model URI once (`driftloop.training.model_loading`, which
caches the pyfunc per version) and keeps what callers need to know about it beside the
scorer: its version and run, its input columns (those logged as strings apart, so a
reader can decode them dictionary-encoded), its kind (our `lightgbm` or `baseline`
TabularModel, else `pyfunc`), the training categories of its categorical features, and
the direct input path of our LightGBM model for requests of a few rows (`TreeInput`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from driftloop.training.lightgbm_model import LightGBMModel
from driftloop.training.model_loading import (
    cached_pyfunc,
    frame_scorer,
    input_columns,
    tabular_of,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

log = logging.getLogger(__name__)

# The kind of a model that is not one of our TabularModels (scored through MLflow).
PYFUNC_KIND = "pyfunc"


@dataclass
class TreeInput:
    """How our LightGBM model reads its input, for requests of a few rows: its matrix is
    built straight from the columns (numbers as they are; a category as its position among
    the training categories, NaN when unseen or NULL: `LightGBMModel.feature_matrix`'s
    rule), skipping the pandas frame and MLflow's input checks a batch needs."""

    features: list[str]
    positions: dict[str, dict[str, float]]
    booster: Any
    iteration: int

    def matrix(self, columns: dict[str, Any], rows: int) -> np.ndarray:
        """The rows x features float64 matrix of feature columns."""
        import numpy as np

        matrix = np.empty((rows, len(self.features)), dtype=np.float64)
        for j, name in enumerate(self.features):
            position = self.positions.get(name)
            if position is None:
                matrix[:, j] = columns[name]
            else:
                matrix[:, j] = [position.get(v, np.nan) for v in columns[name]]
        return matrix

    def predict(self, columns: dict[str, Any], rows: int) -> Any:
        return self.booster.predict(
            self.matrix(columns, rows), num_iteration=self.iteration, num_threads=1
        )


@dataclass
class ScoringModel:
    """A registered model version, loaded: `predict(frame)` for tables, `predict_columns`
    for the online path's feature columns. Callable as `model(frame, threads)` too, so it
    is a `driftloop.monitoring.signals.ScoreFn`."""

    model_uri: str
    version: str
    run_id: str
    pyfunc: Any
    features: list[str]
    # Inputs logged as strings (categorical features): read them dictionary-encoded.
    string_features: list[str]
    kind: str
    # The TabularModel inside the pyfunc (ours only), else None.
    tabular: Any
    # Training categories per categorical feature (our own models only), so a value the
    # model never saw is counted instead of passing silently as missing.
    categories: dict[str, frozenset[str]] = field(default_factory=dict)
    tree_input: TreeInput | None = None
    loaded_at: float = field(default_factory=time.time)
    _score: Any = field(default=None, repr=False)

    @classmethod
    def load(
        cls,
        model_uri: str,
        tracking_uri: str | None = None,
        version: str = "",
        run_id: str = "",
    ) -> ScoringModel:
        """Load `model_uri` (models:/<name>/<v>, models:/<name>@<alias>, runs:/...);
        `version` and `run_id` name it in responses and logs."""
        from mlflow.types import DataType

        loaded = cached_pyfunc(model_uri, tracking_uri)
        columns = input_columns(loaded)
        tabular = tabular_of(loaded)
        model = cls(
            model_uri=model_uri,
            version=str(version),
            run_id=str(run_id),
            pyfunc=loaded,
            features=[name for name, _ in columns],
            string_features=[n for n, k in columns if k == DataType.string],
            kind=tabular.name if tabular is not None else PYFUNC_KIND,
            tabular=tabular,
            _score=frame_scorer(model_uri, loaded),
        )
        model.categories = _training_categories(tabular)
        model.tree_input = _tree_input(model_uri, tabular)
        return model

    def predict(self, frame: pd.DataFrame | pa.Table, threads: int = 0) -> np.ndarray:
        """One score per row of a DataFrame or an Arrow table (extra columns are ignored);
        `threads` caps the model's prediction threads (0: its library's default)."""
        return self._score(frame, threads)

    __call__ = predict

    def predict_columns(self, columns: dict[str, Any], rows: int) -> Any:
        """Scores of rows given as feature columns (float64 arrays; categories as lists of
        str or None). One request, one thread: the server's workers are the parallelism."""
        if self.tree_input is not None:
            return self.tree_input.predict(columns, rows)
        import pandas as pd

        return self.predict(pd.DataFrame(columns), threads=1)


def _training_categories(tabular: Any) -> dict[str, frozenset[str]]:
    """The categories our LightGBM model was trained with, per feature (else {}: the
    baseline's one-hot encoder ignores unknown values by design)."""
    categories = tabular.categories if isinstance(tabular, LightGBMModel) else {}
    return {name: frozenset(map(str, values)) for name, values in categories.items()}


def _tree_input(model_uri: str, tabular: Any) -> TreeInput | None:
    """The direct input path of our LightGBM model, else None (MLflow's predict is used)."""
    if not isinstance(tabular, LightGBMModel) or tabular.booster is None:
        return None
    try:
        positions = {
            name: {str(c): float(i) for i, c in enumerate(tabular.categories[name])}
            for name in tabular.categorical
        }
        return TreeInput(list(tabular.features), positions, tabular.booster, tabular.best_iteration)
    except (AttributeError, KeyError):  # a model saved by another version: MLflow's path
        log.warning("%s: scoring through MLflow's predict", model_uri)
        return None
