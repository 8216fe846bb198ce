"""Several processes opening a fresh SQLite MLflow store at once all succeed."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from driftloop.training.registry import make_client, using_tracking_uri


def _open_store(uri: str) -> None:
    make_client(uri).search_registered_models()


@pytest.mark.slow
def test_concurrent_first_use_of_a_sqlite_store(tmp_path: Path) -> None:
    # A run and a sensor did this for real: "table ... already exists" failed the run.
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_open_store, args=(uri,)) for _ in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0, 0, 0, 0]


def test_fast_dataset_schema_equals_mlflows_inference() -> None:
    """The schema logged with each training dataset is exactly what MLflow would infer."""
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature

    from driftloop.training.mlflow_logging import dataset_schema

    rng = np.random.default_rng(0)
    n = 5000
    frame = pd.DataFrame(
        {
            "flight_id": [f"f{i}" for i in range(n)],
            "carrier": rng.choice(["AA", "UA", "B6"], n).astype(object),
            "distance": rng.uniform(100, 3000, n),
            "temp": rng.normal(50, 10, n),
            "label": rng.integers(0, 2, n).astype(float),
        }
    )
    # Missing values only after the sample the fast path infers types from.
    frame.loc[4000, "temp"] = np.nan
    frame.loc[4500, "carrier"] = None
    fast = dataset_schema(frame)
    assert fast == infer_signature(frame).inputs
    assert {spec.name: spec.required for spec in fast.inputs} == {
        "flight_id": True,
        "carrier": False,
        "distance": True,
        "temp": False,
        "label": True,
    }


def test_only_a_process_first_client_of_a_store_probes_it(tmp_path: Path, monkeypatch) -> None:
    # Each probe is a registry query; steps make several clients per run.
    from mlflow import MlflowClient

    probes: list[int] = []
    real = MlflowClient.search_registered_models

    def counted(self, *args, **kwargs):
        probes.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "search_registered_models", counted)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = make_client(uri)
    first.create_registered_model("m")
    later = [make_client(uri) for _ in range(3)]
    assert len(probes) == 1
    assert [c.get_registered_model("m").name for c in later] == ["m"] * 3


@pytest.mark.parametrize("outside", [None, "sqlite:///outside.db"])
def test_using_a_tracking_uri_points_mlflow_there_and_then_back_at_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outside: str | None
) -> None:
    import mlflow

    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(key, raising=False)
    if outside is not None:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", outside)
    inside = f"sqlite:///{tmp_path / 'inside.db'}"
    with using_tracking_uri(inside):
        assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == (inside, inside)
    assert os.environ.get("MLFLOW_TRACKING_URI") == outside
    assert "MLFLOW_REGISTRY_URI" not in os.environ
    if outside is not None:
        assert mlflow.get_tracking_uri().endswith("outside.db")
        # The environment leads again: a later change of it is followed.
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'later.db'}")
        assert mlflow.get_tracking_uri().endswith("later.db")
    else:
        assert mlflow.get_tracking_uri() != inside
