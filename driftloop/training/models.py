"""The model kinds by name (LightGBM by default, a scikit-learn baseline) and their factory.

Each kind implements ``driftloop.training.model_base.TabularModel``. The classes are
importable from here as well, so a model pickled under this module's name loads.
"""

from __future__ import annotations

from typing import Any

from driftloop.data.contract import Contract
from driftloop.training.baseline_model import BaselineModel
from driftloop.training.lightgbm_model import LightGBMModel
from driftloop.training.model_base import TabularModel

__all__ = ["MODEL_KINDS", "BaselineModel", "LightGBMModel", "TabularModel", "make_model"]

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
