"""A small model interface over LightGBM and a scikit-learn baseline, both deterministic.

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

from driftloop.data.contract import Contract, Task
from driftloop.training.columns import (
    Frame,
    as_pandas,
    category_codes,
    column_names,
    is_arrow_table,
    numeric_values,
    row_slice,
)

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
    # 2-core machine, OpenMP spin-waiting made 2 threads about 10x slower than 1 here.
    "num_threads": 1,
}

BASELINE_DEFAULTS: dict[str, Any] = {"C": 1.0, "alpha": 1.0, "max_iter": 1000}

# LightGBM scores this many rows at a time: 64k rows x 24 features is 12.5 MB of matrix,
# small enough for the allocator to reuse and for the caches to hold much of it.
PREDICT_BLOCK_ROWS = 65_536

_MISSING = "__missing__"


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


def _normalised(raw: dict[str, float]) -> dict[str, float]:
    total = sum(raw.values())
    if total <= 0 or not math.isfinite(total):
        return dict.fromkeys(raw, 0.0)
    return {k: float(v / total) for k, v in raw.items()}


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
        return _normalised(dict(zip(self.features, map(float, gains), strict=True)))


class BaselineModel(TabularModel):
    """Linear model on imputed, scaled numerics and one-hot categoricals: the bar to beat."""

    name: ClassVar[str] = "baseline"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params = {**BASELINE_DEFAULTS, **self.params}
        self.pipeline: Any = None

    def _frame(self, frame: Frame) -> pd.DataFrame:
        self._check_columns(frame)
        frame = as_pandas(frame, self.features)  # scikit-learn's transformers take pandas
        out = self._numeric(frame)
        for column in self.categorical:
            # One explicit token for NULL so 'missing' is a category the model can weigh.
            out[column] = frame[column].astype("string").fillna(_MISSING).astype(object)
        return out[self.features]

    def fit(self, train: pd.DataFrame, valid: pd.DataFrame, label: str = "label") -> None:
        # Heavy: imported on use.
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression, Ridge
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        numeric = Pipeline(
            [
                ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                ("scale", StandardScaler()),
            ]
        )
        steps = [("numeric", numeric, self.numeric)]
        if self.categorical:
            onehot = OneHotEncoder(handle_unknown="ignore", min_frequency=5)
            steps.append(("categorical", onehot, self.categorical))
        if self.task == Task.binary:
            estimator = LogisticRegression(
                C=float(self.params["C"]),
                max_iter=int(self.params["max_iter"]),
                random_state=self.seed,
            )
        else:
            estimator = Ridge(alpha=float(self.params["alpha"]), random_state=self.seed)
        self.pipeline = Pipeline([("prepare", ColumnTransformer(steps)), ("model", estimator)])
        self.pipeline.fit(self._frame(train), self._label(train, label))
        self.fitted = True

    def predict(self, frame: Frame, threads: int = 0) -> np.ndarray:
        """`threads` is accepted for the interface; scikit-learn's linear models predict
        in one thread."""
        import numpy as np

        self._check_fitted()
        x = self._frame(frame)
        if self.task == Task.binary:
            scores = self.pipeline.predict_proba(x)[:, 1]
        else:
            scores = self.pipeline.predict(x)
        return np.asarray(scores, dtype="float64").ravel()

    def _owners(self) -> list[int]:
        """The feature (its index) each transformed column belongs to."""
        prepare = self.pipeline.named_steps["prepare"]
        owners = []
        for output in prepare.get_feature_names_out():
            block, _, rest = output.partition("__")
            if block == "numeric":
                owners.append(self.features.index(rest))
            else:
                # One-hot names are "<feature>_<category>"; the longest matching prefix wins.
                owner = max((f for f in self.categorical if rest.startswith(f + "_")), key=len)
                owners.append(self.features.index(owner))
        return owners

    def _coefficients(self) -> np.ndarray:
        import numpy as np

        return np.asarray(self.pipeline.named_steps["model"].coef_, dtype="float64").reshape(-1)

    def feature_importance(self) -> dict[str, float]:
        """Sum of |coefficient| over each feature's (scaled or one-hot) columns."""
        import numpy as np

        self._check_fitted()
        raw = dict.fromkeys(self.features, 0.0)
        for owner, weight in zip(self._owners(), np.abs(self._coefficients()), strict=True):
            raw[self.features[owner]] += float(weight)
        return _normalised(raw)

    def contributions(self, frame: Frame) -> np.ndarray:
        """Coefficient times transformed input (scaled numeric, one-hot category), summed
        over each feature's columns; the bias is the intercept."""
        import numpy as np
        from scipy import sparse

        self._check_fitted()
        x = self.pipeline.named_steps["prepare"].transform(self._frame(frame))
        owners = np.asarray(self._owners())
        # Transformed columns -> features: a 0/1 matrix, so the product stays sparse-aware.
        assign = sparse.csr_matrix(
            (np.ones(len(owners)), (np.arange(len(owners)), owners)),
            shape=(len(owners), len(self.features)),
        )
        weighted = sparse.csr_matrix(x).multiply(self._coefficients()[None, :])
        per_feature = np.asarray((sparse.csr_matrix(weighted) @ assign).todense())
        intercept = float(np.ravel(self.pipeline.named_steps["model"].intercept_)[0])
        bias = np.full((per_feature.shape[0], 1), intercept)
        return np.hstack([per_feature, bias]).astype(np.float64)

    def raw_score(self, frame: Frame) -> np.ndarray:
        import numpy as np

        self._check_fitted()
        x = self._frame(frame)
        if self.task == Task.binary:
            return np.asarray(self.pipeline.decision_function(x), dtype="float64").ravel()
        return np.asarray(self.pipeline.predict(x), dtype="float64").ravel()


MODEL_KINDS: dict[str, type[TabularModel]] = {"lightgbm": LightGBMModel, "baseline": BaselineModel}


def make_model(
    kind: str, contract: Contract, params: dict[str, Any] | None = None, seed: int = 42
) -> TabularModel:
    """A fresh, unfitted model of this kind for the contract's features and task."""
    try:
        cls = MODEL_KINDS[kind]
    except KeyError:
        raise ValueError(
            f"unknown model kind {kind!r}; expected one of {sorted(MODEL_KINDS)}"
        ) from None
    return cls(contract.features, contract.categorical_features, contract.task, params, seed)
