"""The edge export and the compiled trees: LightGBM (binary, regression) and the baseline
as ONNX, scored on a real features partition by ONNX Runtime and by the standalone example
scorer, against batch scoring; LightGBM's trees compiled (TL2cgen), equal to its own
predict; both logged to the version's MLflow run."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from driftloop.data.contract import Task
from driftloop.paths import PROJECT_ROOT, dataset_paths, default_mlflow_uri
from driftloop.serving.edge import ExportError, OnnxScorer, export_onnx, parity
from driftloop.serving.scoring_model import ScoringModel
from driftloop.training.mlflow_logging import log_training
from driftloop.training.registry import make_client, set_alias
from driftloop.training.train import TrainingConfig, load_training_frame, train
from tests.test_training import FAST, synthetic_contract, write_features


def edge_scorer_module():
    spec = importlib.util.spec_from_file_location(
        "edge_scorer", PROJECT_ROOT / "examples" / "edge_scorer.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["edge_scorer"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("task", [Task.binary, Task.regression])
def test_onnx_export_scores_a_partition_as_batch_does(
    task: Task,
    data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from pipelines.export import main

    contract = synthetic_contract(tmp_path, task, name=f"edge_{task.value}")
    monkeypatch.setenv("DRIFTLOOP_CONTRACTS_DIR", str(tmp_path))
    paths = dataset_paths(contract.name, data_root)
    days = write_features(paths, task, days=10, rows=2000, seed=7)
    frame, used, digests = load_training_frame(contract, paths, None, window_days=30)
    # The split model serves (no refit on the window), so the holdout's shop "new" is one it
    # never saw: the export must encode an unknown category as batch scoring does.
    config = TrainingConfig.for_contract(
        contract, params=FAST, holdout_days=3, validation_days=2, refit_on_window=False
    )
    uri = default_mlflow_uri(data_root)
    registered = log_training(contract, train(contract, frame, config), used, digests, uri)
    client = make_client(uri)

    with pytest.raises(SystemExit, match="no champion"):
        main(["--dataset", contract.name, "--format", "onnx"])
    set_alias(client, contract.name, "champion", registered.version)
    main(["--dataset", contract.name, "--format", "onnx"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["model_version"] == registered.version
    assert summary["run_id"] == registered.run_id and summary["kind"] == "lightgbm"
    folder = Path(summary["model"]).parent
    assert folder == paths.models / f"v{registered.version}" / "onnx"
    logged = {a.path for a in client.list_artifacts(registered.run_id, "edge")}
    assert logged == {"edge/model.onnx", "edge/manifest.json"}
    manifest = json.loads(Path(summary["manifest"]).read_text())
    assert [f["name"] for f in manifest["features"]] == contract.features
    shop = next(f for f in manifest["features"] if f["name"] == "shop")
    assert shop["type"] == "categorical" and shop["categories"] == ["a", "b", "c", "d", "e", "f"]
    assert manifest["task"] == task.value and manifest["inputs"] == "matrix"

    # The last day is a real partition with NULLs and a shop never seen in training.
    table = pq.read_table(paths.partition_file("features", days[-1]))
    champion = ScoringModel.load(registered.model_uri, uri, registered.version, registered.run_id)
    expected = champion.predict(table)
    checked = parity(expected, OnnxScorer(folder).predict(table), task.value)
    print(f"{task.value} lightgbm: {checked.describe()}")
    assert checked.ok, checked.describe()

    # The compiled trees: LightGBM's own scores, built once per version, logged to its run.
    monkeypatch.setenv("DRIFTLOOP_COMPILED", "on")
    version, run_id = registered.version, registered.run_id
    compiled = ScoringModel.load(registered.model_uri, uri, version, run_id, data_root)
    assert compiled.compiled is not None and compiled.compiled.built
    assert compiled.compiled.folder.parent == paths.models / f"v{version}" / "compiled"
    np.testing.assert_allclose(compiled.predict(table), expected, rtol=0, atol=1e-12)
    rows = table.slice(0, 40).select(contract.features).to_pydict()
    columns = {
        n: v if n in compiled.tree_input.positions else np.array(v, dtype=float)
        for n, v in rows.items()
    }
    one_by_one = compiled.predict_columns(columns, 40)
    np.testing.assert_allclose(one_by_one, expected[:40], rtol=0, atol=1e-12)
    cached = ScoringModel.load(registered.model_uri, uri, version, run_id, data_root)
    assert cached.compiled is not None and not cached.compiled.built
    logged = {a.path for a in client.list_artifacts(run_id, "compiled")}
    assert {"compiled/model.so", "compiled/compiled.json"} <= logged
    monkeypatch.setenv("DRIFTLOOP_COMPILED", "off")
    with caplog.at_level("WARNING", logger="driftloop.serving.scoring_model"):
        plain = ScoringModel.load(registered.model_uri, uri, version, run_id, data_root)
    assert plain.compiled is None and "scoring with LightGBM's predict" in caplog.text

    # The standalone scorer (onnxruntime and numpy only) gives the same scores from rows.
    example = edge_scorer_module()
    edge = example.EdgeScorer(folder)
    rows = table.select(contract.features).to_pylist()
    standalone = edge.score(rows)
    np.testing.assert_allclose(standalone, OnnxScorer(folder).predict(table), rtol=0, atol=1e-7)
    with pytest.raises(example.RowError, match="row 1: feature 'x2' is missing"):
        edge.score([rows[0], {k: v for k, v in rows[1].items() if k != "x2"}])

    # The baseline of the same run: one input per feature, numbers in float64.
    baseline = ScoringModel.load(registered.baseline_model_uri, uri, "b", registered.run_id)
    exported = export_onnx(baseline, contract, tmp_path / "baseline")
    assert exported.manifest["inputs"] == "columns" and exported.manifest["kind"] == "baseline"
    checked = parity(
        baseline.predict(table), OnnxScorer(exported.folder).predict(table), task.value
    )
    print(f"{task.value} baseline: {checked.describe()}")
    assert checked.ok and checked.worst_error < 1e-9, checked.describe()
    np.testing.assert_allclose(
        example.EdgeScorer(exported.folder).score(rows),
        baseline.predict(table),
        rtol=1e-9,
    )


def test_parity_counts_rows_and_names_the_worst() -> None:
    expected = np.array([0.1, 0.5, 0.9, 0.2])
    checked = parity(expected, expected + np.array([0, 2e-4, 0, 5e-5]), "binary")
    assert (checked.within, checked.worst_row, checked.ok) == (3, 1, False)
    assert "3/4 rows" in checked.describe() and "worst row 1" in checked.describe()
    relative = parity(np.array([100.0, 1e-3]), np.array([100.005, 1e-3]), "regression")
    assert relative.relative and relative.worst_row == 0 and relative.within == 1
    with pytest.raises(ValueError, match="3 scores for 4 rows"):
        parity(expected, expected[:3], "binary")


def test_a_model_of_another_kind_is_refused(tmp_path: Path) -> None:
    from driftloop.data.contract import load_contract

    model = ScoringModel("models:/x/1", "1", "r", None, [], [], "pyfunc", None)
    contract = load_contract(PROJECT_ROOT / "contracts" / "flights.yaml")
    with pytest.raises(ExportError, match="'pyfunc' model has no ONNX export"):
        export_onnx(model, contract, tmp_path)
