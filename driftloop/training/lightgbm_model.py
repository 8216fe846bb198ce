"""The LightGBM model kind: gradient boosted trees, early-stopped, bit-for-bit repeatable."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

from driftloop.data.contract import Task
from driftloop.training.columns import (
    Frame,
    category_codes,
    is_arrow_table,
    numeric_values,
    row_slice,
)
from driftloop.training.model_base import TabularModel, normalised

# Sensible defaults for the data sizes here (thousands to a few million rows).
LIGHTGBM_DEFAULTS: dict[str, Any] = {
    "num_leaves": 31,
    "learning_rate": 0.05,
    "n_estimators": 300,
    "min_child_samples": 20,
    "feature_fraction": 0.9,
    "bagging_fraction": 1.0,
    "bagging_freq": 0,
    "lambda_l2": 0.0,
    "max_depth": -1,
    "early_stopping_rounds": 30,
    # Fixed so results do not depend on the machine's core count. One thread: on a busy
    # 2-core machine OpenMP's spin-waiting can make 2 threads slower than 1
    # (docs/performance.md, LightGBM threads).
    "num_threads": 1,
}

# The parameters a training run can set (the model asset's config, the retraining benchmark).
RUN_PARAMS = (
    "num_leaves",
    "learning_rate",
    "n_estimators",
    "min_child_samples",
    "feature_fraction",
    "lambda_l2",
    "max_depth",
    "early_stopping_rounds",
    "num_threads",
)

# LightGBM scores this many rows at a time: 64k rows x 24 features is 12.5 MB of matrix,
# small enough for the allocator to reuse and for the caches to hold much of it.
PREDICT_BLOCK_ROWS = 65_536


class LightGBMModel(TabularModel):
    """Gradient boosted trees, early-stopped on the validation days, bit-for-bit repeatable."""

    name: ClassVar[str] = "lightgbm"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params = {**LIGHTGBM_DEFAULTS, **self.params}
        self.categories: dict[str, list[str]] = {}
        self.booster: Any = None
        self.best_iteration = 0

    def feature_matrix(self, frame: Frame, out: np.ndarray | None = None) -> np.ndarray:
        """The model's input: rows x features, float64, column-major (into `out` if given,
        an F-ordered float64 array of that shape).

        Numeric as float64; each categorical as the code of its training category. Values
        not seen in training (and NULLs) become NaN, which LightGBM sends down the
        'missing' branch instead of guessing which known category they resemble.
        Column-major because each feature is one contiguous write and LightGBM reads that
        layout as it is (no copy); it is also the layout of `DataFrame.to_numpy()`.
        """
        import numpy as np

        self._check_columns(frame)
        arrow = is_arrow_table(frame)
        if out is None:
            out = np.empty((len(frame), len(self.features)), dtype=np.float64, order="F")
        categorical = set(self.categorical)
        for j, name in enumerate(self.features):
            # An Arrow column goes chunk by chunk into its slot (no concatenated copy).
            parts = frame.column(name).chunks if arrow else [frame[name]]
            start = 0
            for values in parts:
                if name in categorical:
                    codes = category_codes(values, self.categories[name])
                else:
                    codes = numeric_values(values)
                out[start : start + len(codes), j] = codes
                start += len(codes)
        return out

    def _matrix(self, frame: Frame) -> pd.DataFrame:
        """`feature_matrix` with the feature names (what training hands LightGBM)."""
        import pandas as pd

        return pd.DataFrame(self.feature_matrix(frame), columns=self.features, copy=False)

    def _lgb_params(self) -> dict[str, Any]:
        p = dict(self.params)
        for key in ("n_estimators", "early_stopping_rounds"):
            p.pop(key, None)
        objective = "binary" if self.task == Task.binary else "regression"
        return {
            **p,
            "objective": objective,
            "metric": "binary_logloss" if self.task == Task.binary else "l2",
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }

    def fit(self, train: pd.DataFrame, valid: pd.DataFrame, label: str = "label") -> None:
        import lightgbm as lgb  # heavy: imported on use

        self._check_columns(train)
        self.categories = {
            c: sorted(train[c].dropna().astype(str).unique().tolist()) for c in self.categorical
        }
        x_train, y_train = self._matrix(train), self._label(train, label)
        train_set = lgb.Dataset(
            x_train, y_train, categorical_feature=self.categorical or "auto", free_raw_data=True
        )
        rounds = int(self.params["n_estimators"])
        callbacks = []
        valid_sets = []
        if valid is not None and len(valid) > 0:
            valid_set = lgb.Dataset(
                self._matrix(valid), self._label(valid, label), reference=train_set
            )
            valid_sets = [valid_set]
            stop = int(self.params.get("early_stopping_rounds") or 0)
            if stop > 0:
                callbacks.append(lgb.early_stopping(stop, verbose=False))
        self.booster = lgb.train(
            self._lgb_params(),
            train_set,
            num_boost_round=rounds,
            valid_sets=valid_sets,
            callbacks=callbacks,
        )
        best = self.booster.best_iteration
        self.best_iteration = int(best) if best and best > 0 else self.booster.current_iteration()
        self.fitted = True

    def predict(self, frame: Frame, threads: int = 0) -> np.ndarray:
        import numpy as np

        self._check_fitted()
        # LightGBM's own default (0) is one thread per core; its thread count is a process
        # global, so callers predicting in several threads at once pass the same value.
        thread_params = {"num_threads": threads} if threads > 0 else {}
        # Hand LightGBM the float64 matrix itself: given a DataFrame it re-checks the dtypes
        # and copies it into one. Built and scored a block of rows at a time in one reused
        # buffer: a whole-partition matrix is hundreds of MB of fresh memory, and the
        # kernel zeroing its pages cost about as much as building it. Each row's score
        # does not depend on the block (tests/test_benchmarks.py compares the scores
        # with bare Booster.predict on the whole pandas-built matrix).
        rows = len(frame)
        scores = np.empty(rows, dtype=np.float64)
        buffer = np.empty((min(rows, PREDICT_BLOCK_ROWS), len(self.features)), order="F")
        for start in range(0, rows, PREDICT_BLOCK_ROWS):
            block = row_slice(frame, start, PREDICT_BLOCK_ROWS)
            out = buffer if len(block) == len(buffer) else None
            matrix = self.feature_matrix(block, out)
            predicted = self.booster.predict(
                matrix, num_iteration=self.best_iteration, **thread_params
            )
            scores[start : start + len(block)] = np.asarray(predicted).ravel()
        return scores

    def _blocks(self, frame: Frame, **options: Any) -> np.ndarray:
        """Booster.predict with `options`, a block of rows at a time, stacked."""
        import numpy as np

        self._check_fitted()
        parts = [
            np.asarray(
                self.booster.predict(
                    self.feature_matrix(row_slice(frame, start, PREDICT_BLOCK_ROWS)),
                    num_iteration=self.best_iteration,
                    **options,
                )
            )
            for start in range(0, len(frame), PREDICT_BLOCK_ROWS)
        ]
        width = len(self.features) + 1 if options.get("pred_contrib") else None
        if not parts:
            return np.empty((0, width) if width else 0, dtype=np.float64)
        return np.concatenate(parts).astype(np.float64, copy=False)

    def contributions(self, frame: Frame) -> np.ndarray:
        """LightGBM's own (TreeSHAP) contributions, `pred_contrib=True`."""
        return self._blocks(frame, pred_contrib=True)

    def raw_score(self, frame: Frame) -> np.ndarray:
        return self._blocks(frame, raw_score=True).ravel()

    def feature_importance(self) -> dict[str, float]:
        self._check_fitted()
        gains = self.booster.feature_importance(
            importance_type="gain", iteration=self.best_iteration
        )
        return normalised(dict(zip(self.features, map(float, gains), strict=True)))
