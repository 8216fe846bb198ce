"""The scikit-learn baseline model kind: a linear model on imputed, scaled and one-hot inputs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

from driftloop.data.contract import Task
from driftloop.training.columns import Frame, as_pandas
from driftloop.training.model_base import TabularModel, normalised

BASELINE_DEFAULTS: dict[str, Any] = {"C": 1.0, "alpha": 1.0, "max_iter": 1000}

_MISSING = "__missing__"


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
        return normalised(raw)

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
