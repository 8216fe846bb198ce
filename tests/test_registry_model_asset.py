"""MLflow logging/registration on a real SQLite store, and <dataset>/model in real Dagster."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import AssetKey, DagsterInstance, materialize

from assets.model import build, model_config_class
from driftloop.data.contract import Contract, Task
from driftloop.names import CHALLENGER
from driftloop.paths import dataset_paths
from driftloop.serving.scoring_model import ScoringModel
from driftloop.training import lightgbm_model
from driftloop.training.mlflow_logging import split_digest
from driftloop.training.model_loading import load_scoring_model
from driftloop.training.models import make_model
from driftloop.training.registry import (
    GATE_MODEL_NAME,
    GATE_MODEL_TAG,
    set_alias,
    store_id,
    version_for_alias,
)
from driftloop.training.train import TrainingConfig, load_training_frame, train
from resources.lake import LakeResource
from resources.mlflow import MlflowResource, mlflow_ui_base
from tests.test_training import FAST, SHOPS, synthetic_contract, write_features

REQUIRED_TAGS = (
    "dagster.run_id",
    "dagster.partitions",
    "code_version",
    "driftloop.train_days",
    "driftloop.holdout_start",
    "driftloop.holdout_end",
    "driftloop.baseline_run_model_uri",
    "driftloop.primary_metric",
    "driftloop.holdout_primary",
    "driftloop.baseline_holdout_primary",
    "driftloop.partition_digests",
)


def check_scoring_inputs(
    score, baseline, holdout: pd.DataFrame, folder: Path, expected: np.ndarray
) -> None:
    """Arrow tables (as read from Parquet, categorical columns dictionary-encoded, sliced)
    score like the pandas frame; a missing or mistyped input column is named."""
    path = folder / "holdout.parquet"
    pq.write_table(pa.Table.from_pandas(holdout, preserve_index=False), path)
    for table in (pq.read_table(path), pq.read_table(path, read_dictionary=["shop"])):
        np.testing.assert_array_equal(score(table), expected)
        np.testing.assert_array_equal(score(table.slice(5, 40)), expected[5:45])
        np.testing.assert_array_equal(baseline(table), baseline(holdout))
    with pytest.raises(KeyError, match=r"lacks model input columns \['x2'\]"):
        score(holdout.drop(columns=["x2"]))
    with pytest.raises(KeyError, match="x2"):
        score(pq.read_table(path, columns=["x1", "x3", "shop"]))
    mistyped = holdout.assign(x1=holdout["x1"].astype(str).astype("string"))
    with pytest.raises(TypeError, match="'x1' holds string"):
        score(mistyped)
    # Python objects in a numeric column are taken value by value.
    as_objects = holdout.assign(x1=holdout["x1"].astype(object))
    np.testing.assert_array_equal(score(as_objects), expected)


def test_lightgbm_scores_arrow_and_pandas_alike_in_blocks(
    tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The matrix built from Arrow columns (dictionary-encoded or plain, several chunks,
    NULLs, categories unseen in training) equals the pandas-built one, and scoring block
    by block equals bare Booster.predict on the whole matrix."""
    contract = synthetic_contract(tmp_path)
    paths = dataset_paths(contract.name, data_root)
    days = write_features(paths, Task.binary, days=10, rows=300, seed=3)
    frame, _, _ = load_training_frame(contract, paths, None, window_days=10)
    model = make_model("lightgbm", contract, FAST)
    model.fit(frame[frame["partition_date"] < days[6]], frame[frame["partition_date"] == days[6]])
    late = frame[frame["partition_date"] > days[6]].reset_index(drop=True)  # shop "new" here
    assert "new" in set(late["shop"]) and late["shop"].isna().any() and late["x3"].isna().any()
    matrix = model._matrix(late).to_numpy()
    bare = model.booster.predict(matrix, num_iteration=model.best_iteration)
    path = tmp_path / "late.parquet"
    pq.write_table(pa.Table.from_pandas(late, preserve_index=False), path, row_group_size=97)
    plain = pq.read_table(path)
    encoded = pq.read_table(path, read_dictionary=["shop"])
    assert plain.column("x1").num_chunks > 1 and encoded.column("shop").num_chunks > 1
    for table in (plain, encoded):
        np.testing.assert_array_equal(model.feature_matrix(table), matrix)
    monkeypatch.setattr(lightgbm_model, "PREDICT_BLOCK_ROWS", 64)
    for rows, offset in ((late, 0), (plain, 0), (encoded, 0), (encoded.slice(50, 300), 50)):
        np.testing.assert_array_equal(model.predict(rows), bare[offset : offset + len(rows)])


def test_model_asset_definition(flights_contract: Contract) -> None:
    defs = build(flights_contract)
    key = AssetKey(["flights", "model"])
    (spec,) = defs.get_assets_def(key).specs
    assert spec.group_name == "flights"
    assert AssetKey(["flights", "features"]) in {d.asset_key for d in spec.deps}
    assert spec.partitions_def is None
    config = model_config_class(flights_contract)()
    assert (config.window_days, config.holdout_days, config.validation_days) == (60, 7, 7)
    assert config.end_date == "" and config.model_kind == "lightgbm"


@pytest.mark.slow
def test_log_training_registers_a_challenger_and_the_asset_materializes(
    data_root: Path,
    tmp_path: Path,
    dagster_instance: DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # so a stray ./mlruns would show up here
    contract = synthetic_contract(tmp_path)
    paths = dataset_paths(contract.name, data_root)
    days = write_features(paths, Task.binary, days=14, rows=600, seed=5)
    frame, used, digests = load_training_frame(contract, paths, None, window_days=30)
    config = TrainingConfig.for_contract(contract, params=FAST, holdout_days=3, validation_days=2)
    result = train(contract, frame, config)

    mlflow = MlflowResource()
    assert mlflow.uri() == f"sqlite:///{data_root / 'mlflow.db'}"
    client = mlflow.client()
    assert version_for_alias(client, contract.name, CHALLENGER) is None  # no model yet

    registered = mlflow.log_training(
        contract, result, used, digests, tags={"dagster.run_id": "test-run"}
    )
    assert (registered.model_name, registered.version) == ("synth", "1")
    assert registered.model_uri == "models:/synth/1"
    challenger = version_for_alias(client, "synth", CHALLENGER)
    assert challenger is not None and str(challenger.version) == "1"
    assert challenger.run_id == registered.run_id
    assert version_for_alias(client, "synth", "champion") is None

    # Tags on the run and the version.
    run = client.get_run(registered.run_id)
    for tags in (run.data.tags, challenger.tags):
        missing = [t for t in REQUIRED_TAGS if t not in tags]
        assert not missing, missing
        assert tags["dagster.run_id"] == "test-run"
        assert tags["dagster.partitions"] == f"{days[0]}..{days[-1]}"
        assert tags["driftloop.holdout_start"] == days[-3]
        assert tags["driftloop.holdout_end"] == days[-1]
        assert tags["driftloop.primary_metric"] == "roc_auc"
        assert float(tags["driftloop.holdout_primary"]) == result.holdout_metrics["roc_auc"]
        assert json.loads(tags["driftloop.partition_digests"]) == digests
        assert tags["driftloop.baseline_run_id"] == registered.baseline_run_id
        assert tags["driftloop.baseline_run_model_uri"] == registered.baseline_model_uri

    # The baseline is a run of its own beside the model's (nested under it), with its
    # metrics under the same names as any model's, ready to register like any model; both
    # runs carry the process that logged them, for the reconciler.
    assert registered.baseline_model_uri == f"runs:/{registered.baseline_run_id}/model"
    baseline_run = client.get_run(registered.baseline_run_id)
    assert baseline_run.data.tags["mlflow.parentRunId"] == registered.run_id
    assert baseline_run.data.tags["driftloop.model_kind"] == "baseline"
    assert baseline_run.data.metrics["holdout_roc_auc"] == pytest.approx(
        result.baseline_holdout_metrics["roc_auc"]
    )
    assert run.data.tags["driftloop.process"].split(":")[1] == str(os.getpid())
    assert registered.store_id == store_id(client, "synth") and registered.store_id
    # The input example docs/loop.md promises is logged beside the model.
    model_files = {a.path for a in client.list_artifacts(registered.run_id, "model")}
    assert "model/input_example.json" in model_files, model_files

    # Metrics and params.
    metrics = run.data.metrics
    assert metrics["holdout_roc_auc"] == pytest.approx(result.holdout_metrics["roc_auc"])
    assert "baseline_holdout_roc_auc" in metrics and "valid_log_loss" in metrics
    assert run.data.params["model.num_leaves"] == "15"

    # Dataset inputs: the training rows, named by their partitions, plus valid/holdout.
    inputs = run.inputs.dataset_inputs
    contexts = {
        next(t.value for t in i.tags if t.key == "mlflow.data.context"): i.dataset for i in inputs
    }
    assert set(contexts) == {"training", "validation", "evaluation"}
    assert contexts["training"].name == f"synth/features[{days[0]}..{days[-6]}]"
    # Digests name the partition files' bytes (MLflow's own maps over every cell).
    assert contexts["training"].digest == split_digest(digests, result.train_days)
    assert contexts["evaluation"].digest == split_digest(digests, result.holdout_days)

    # Artifacts under <data root>/mlartifacts/<dataset>, nothing in ./mlruns.
    assert run.info.artifact_uri.startswith((data_root / "mlartifacts" / "synth").as_uri())
    names = {a.path for a in client.list_artifacts(registered.run_id)}
    assert {"feature_importance.json", "feature_importance.csv", "data", "split.json"} <= names
    assert not (tmp_path / "mlruns").exists()

    # The registered pyfunc scores exactly like the in-memory model; the baseline too. The
    # store named is used even when the environment points elsewhere.
    holdout = result.split.holdout
    store = mlflow.uri()
    with monkeypatch.context() as elsewhere:
        elsewhere.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'elsewhere.db'}")
        score = ScoringModel.load("models:/synth@challenger", store)
        baseline = load_scoring_model(registered.baseline_model_uri, store)
    expected = result.model.predict(holdout)
    np.testing.assert_array_equal(score(holdout), expected)
    assert score.features == contract.features
    assert score.string_features == ["shop"]
    # The served model is the refit on the whole window: it knows the holdout's shops too.
    assert score.kind == "lightgbm" and set(score.categories["shop"]) >= set(SHOPS)
    assert set(score.categories["shop"]) == set(result.model.categories["shop"])
    np.testing.assert_array_equal(baseline(holdout), result.baseline.predict(holdout))
    # The gate judges the split model, logged beside it: its holdout scores are the ones
    # the version's holdout metric was computed from.
    gate_uri = client.get_model_version("synth", "1").tags[GATE_MODEL_TAG]
    assert gate_uri == f"runs:/{registered.run_id}/{GATE_MODEL_NAME}"
    gate_scores = load_scoring_model(gate_uri, store)(holdout)
    np.testing.assert_array_equal(gate_scores, result.holdout_scores)
    assert not np.array_equal(gate_scores, expected)
    check_scoring_inputs(score, baseline, holdout, tmp_path, expected)

    # A version is loaded once per process: the alias and the number give the same model.
    again = ScoringModel.load("models:/synth/1", mlflow.uri())
    assert again.pyfunc is score.pyfunc
    assert again.pyfunc.unwrap_python_model().tabular.booster is not None

    set_alias(client, "synth", "champion", 1)
    assert str(mlflow.version_for_alias("synth", "champion").version) == "1"

    # The Dagster asset trains again and registers version 2 as the challenger.
    defs = build(contract)
    asset = defs.get_assets_def(AssetKey(["synth", "model"]))
    op_config = {
        "window_days": 12,
        "holdout_days": 3,
        "validation_days": 2,
        "n_estimators": 40,
        "learning_rate": 0.1,
        "num_leaves": 15,
        "early_stopping_rounds": 10,
    }
    run_result = materialize(
        [asset],
        instance=dagster_instance,
        resources={"lake": LakeResource(data_dir=str(data_root)), "mlflow": MlflowResource()},
        run_config={"ops": {"synth__model": {"config": op_config}}},
    )
    assert run_result.success
    (materialization,) = run_result.asset_materializations_for_node("synth__model")
    meta = {k: v.value for k, v in materialization.metadata.items()}
    assert meta["model_version"] == "2"
    assert meta["partitions"] == f"{days[2]}..{days[-1]} (12 days)"
    assert meta["holdout_roc_auc"] > meta["baseline_holdout_roc_auc"]
    experiment = client.get_run(meta["mlflow_run_id"]).info.experiment_id
    ui = mlflow_ui_base(MlflowResource().uri())  # the local store: the configured MLflow UI
    assert meta["mlflow_run"] == f"{ui}/#/experiments/{experiment}/runs/{meta['mlflow_run_id']}"
    assert meta["mlflow_model_version"] == f"{ui}/#/models/synth/versions/2"
    assert meta["rows_per_second"] > 0 and meta["train_seconds"] > 0
    assert {r.data["feature"] for r in meta["feature_importance"].records} == set(contract.features)
    version2 = version_for_alias(client, "synth", CHALLENGER)
    assert str(version2.version) == "2" and version2.run_id == meta["mlflow_run_id"]
    assert version2.tags["dagster.run_id"] == run_result.run_id
    assert str(version_for_alias(client, "synth", "champion").version) == "1"  # untouched
