"""One loaded model version, as every scoring path uses it: batch predictions, the online
endpoint, the stream consumer and the compiled and exported forms.

`ScoringModel.load` resolves a model URI once (`driftloop.training.model_loading`, which
caches the pyfunc per version) and keeps what callers need to know about it beside the
scorer: its version and run, its input columns (those logged as strings apart, so a
reader can decode them dictionary-encoded), its kind (our `lightgbm` or `baseline`
TabularModel, else `pyfunc`), the training categories of its categorical features, the
direct input path of our LightGBM model for requests of a few rows (`TreeInput`), and the
compiled form of its trees (`driftloop.serving.compiled`), which every path scores with
when it can be had (else LightGBM's own predict, with a log line saying why).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftloop.paths import data_root, dataset_paths
from driftloop.serving.compiled import (
    CompiledTrees,
    CompileUnavailable,
    compile_trees,
    log_compiled,
)
from driftloop.training.lightgbm_model import PREDICT_BLOCK_ROWS, LightGBMModel
from driftloop.training.model_loading import (
    cached_pyfunc,
    check_input_types,
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
_REGISTERED = re.compile(r"^models:/(?P<name>[^/@]+)[/@]")


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
    compiled: CompiledTrees | None = None

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
        matrix = self.matrix(columns, rows)
        if self.compiled is not None:
            return self.compiled.predict(matrix, 1)
        return self.booster.predict(matrix, num_iteration=self.iteration, num_threads=1)


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
    # The compiled trees (our LightGBM model only), else None and `compiled_reason` says why.
    compiled: CompiledTrees | None = None
    compiled_reason: str = ""
    loaded_at: float = field(default_factory=time.time)
    _score: Any = field(default=None, repr=False)
    _buffers: threading.local = field(default_factory=threading.local, repr=False)

    @classmethod
    def load(
        cls,
        model_uri: str,
        tracking_uri: str | None = None,
        version: str = "",
        run_id: str = "",
        root: Path | None = None,
    ) -> ScoringModel:
        """Load `model_uri` (models:/<name>/<v>, models:/<name>@<alias>, runs:/...);
        `version` and `run_id` name it in responses and logs. Our LightGBM model's trees
        are compiled (cached under the data root `root`, default DRIFTLOOP_DATA_DIR's)."""
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
        if isinstance(tabular, LightGBMModel) and tabular.booster is not None:
            model._compile(tracking_uri, data_root() if root is None else root)
        return model

    def _compile(self, tracking_uri: str | None, root: Path) -> None:
        """Compile the trees (or find them compiled); on failure say why and keep
        LightGBM's predict."""
        match = _REGISTERED.match(self.model_uri)
        name = match["name"] if match else "_runs"
        models = dataset_paths(name, root).models
        cache = models / f"v{self.version}" / "compiled" if self.version.isdigit() else models
        identity = {"model_uri": self.model_uri, "model_version": self.version}
        try:
            compiled = compile_trees(self.tabular, cache, identity | {"run_id": self.run_id})
        except CompileUnavailable as error:
            self.compiled_reason = str(error)
            log.warning("%s: scoring with LightGBM's predict (%s)", self.model_uri, error)
            return
        if compiled.built:
            log.info(
                "%s: trees compiled in %.1f s into %s",
                self.model_uri,
                compiled.manifest.get("build_seconds", 0.0),
                compiled.folder,
            )
            log_compiled(compiled, tracking_uri, self.run_id)
        self.compiled = compiled
        if self.tree_input is not None:
            self.tree_input.compiled = compiled

    def predict(self, frame: pd.DataFrame | pa.Table, threads: int = 0) -> np.ndarray:
        """One score per row of a DataFrame or an Arrow table (extra columns are ignored);
        `threads` caps the model's prediction threads (0: its library's default)."""
        if self.compiled is not None:
            return self._predict_compiled(frame, threads)
        return self._score(frame, threads)

    def _predict_compiled(self, frame: pd.DataFrame | pa.Table, threads: int) -> np.ndarray:
        """The compiled trees on `LightGBMModel.feature_matrix`, a block of rows at a time
        in a row-major buffer (the layout the compiled code reads; a short last block is a
        view of its first rows, so it is never copied into that layout)."""
        import os

        import numpy as np

        from driftloop.training.columns import column_names, row_slice

        tabular = self.tabular
        missing = [f for f in tabular.features if f not in set(column_names(frame))]
        if missing:
            raise KeyError(f"{self.model_uri}: the frame lacks model input columns {missing}")
        check_input_types(self.model_uri, frame, [(n, "double") for n in tabular.numeric])
        rows = len(frame)
        threads = threads if threads > 0 else os.cpu_count() or 1
        scores = np.empty(rows, dtype=np.float64)
        buffer = self._block_buffer(min(rows, PREDICT_BLOCK_ROWS))
        for start in range(0, rows, PREDICT_BLOCK_ROWS):
            block = row_slice(frame, start, PREDICT_BLOCK_ROWS)
            matrix = tabular.feature_matrix(block, buffer[: len(block)])
            scores[start : start + len(block)] = self.compiled.predict(matrix, threads)
        return scores

    def _block_buffer(self, rows: int) -> np.ndarray:
        """This thread's row-major block buffer, of at least `rows` rows: kept between
        calls, because a fresh one is fresh pages of memory every batch (the kernel zeroes
        each page on first touch)."""
        import numpy as np

        buffer = getattr(self._buffers, "matrix", None)
        if buffer is None or len(buffer) < rows:
            buffer = np.empty((rows, len(self.tabular.features)), dtype=np.float64)
            self._buffers.matrix = buffer
        return buffer

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
