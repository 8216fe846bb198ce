"""The edge export: a model version as ONNX plus a manifest, for scoring where neither
Python's ML stack nor the lake is (a device, a browser, another language's service).

Our LightGBM model goes through onnxmltools (its best iteration only), the scikit-learn
baseline through skl2onnx; any other pyfunc is refused. The ONNX graph takes the model's
features, not the raw request fields: rolling and derived features are the caller's to
compute (the manifest lists them). Its input is:

- LightGBM (`inputs: matrix`): one tensor `input` (float32 for a classifier, float64 for
  a regressor: `input_dtype`), rows x features in the manifest's order; a categorical
  feature is the position of its value in the feature's `categories` list, NaN when the
  value is NULL or not in the list (the rule batch scoring follows,
  `LightGBMModel.feature_matrix`); NULL numbers are NaN.
- the baseline (`inputs: columns`): one [rows, 1] tensor per feature, named after it:
  float64 for numbers (NaN for NULL), strings for categories ("__missing__" for NULL).

The output `score` is the probability of label 1 (binary) or the predicted value
(regression), as batch scoring gives it. ONNX tree ensembles compare float32 values with
float32 thresholds, so a row whose value lies between a threshold and its float32
rounding can take the other branch: docs/serving.md reports the parity measured.

The manifest (`manifest.json`) names the dataset, version, run id, kind and task, each
feature's type, categories and contract rules (nullable, min, max, allowed), and how to
build the inputs. `examples/edge_scorer.py` reads both with onnxruntime and numpy only.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftloop.data.contract import Contract
from driftloop.names import CHAMPION
from driftloop.serving.scoring_model import ScoringModel
from driftloop.training.columns import as_pandas
from driftloop.training.registry import make_client, version_for_alias

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from driftloop.paths import DatasetPaths
    from driftloop.serving.scoring_model import ScoringModel

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
OUTPUT = "score"
MISSING_CATEGORY = "__missing__"  # the baseline's token for NULL (baseline_model._MISSING)
TARGET_OPSET = 15  # the main ONNX opset of the graphs (ONNX Runtime 1.20 and later run it)
ARTIFACT_PATH = "edge"  # where the export goes in the model's MLflow run


class ExportError(ValueError):
    """The model cannot be exported (its kind, its graph)."""


@dataclass(frozen=True)
class Exported:
    """What `export_onnx` wrote."""

    folder: Path
    model_path: Path
    manifest_path: Path
    manifest: dict[str, Any]

    @property
    def size_bytes(self) -> int:
        return self.model_path.stat().st_size


def export_version(
    contract: Contract, paths: DatasetPaths, tracking_uri: str, version: str | None = None
) -> Exported:
    """Export a registered version of `contract`'s model (None: the champion) under
    `paths.models/v<N>/onnx/` and log the folder to the version's MLflow run, as the
    artifact folder `edge`."""
    client = make_client(tracking_uri)
    name = contract.name
    if version is None:
        found = version_for_alias(client, name, CHAMPION)
        if found is None:
            raise ExportError(f"{name} has no {CHAMPION} in {tracking_uri}: nothing to export")
    else:
        from mlflow.exceptions import MlflowException

        try:
            found = client.get_model_version(name, version.removeprefix("v"))
        except MlflowException as error:
            raise ExportError(f"{name} has no model version {version!r}: {error}") from error
    number = str(found.version)
    model = ScoringModel.load(
        f"models:/{name}/{number}", tracking_uri, number, str(found.run_id), paths.root
    )
    exported = export_onnx(model, contract, paths.models / f"v{number}" / "onnx")
    client.log_artifacts(str(found.run_id), str(exported.folder), ARTIFACT_PATH)
    log.info(
        "%s v%s: ONNX export in %s, logged to run %s", name, number, exported.folder, found.run_id
    )
    return exported


def export_onnx(model: ScoringModel, contract: Contract, folder: Path) -> Exported:
    """Write `model` as `folder/model.onnx` and `folder/manifest.json`."""
    import onnx

    if model.kind == "lightgbm":
        graph, inputs = _lightgbm_onnx(model), "matrix"
    elif model.kind == "baseline":
        graph, inputs = _baseline_onnx(model, contract), "columns"
    else:
        raise ExportError(
            f"{model.model_uri}: a {model.kind!r} model has no ONNX export (our lightgbm and "
            "baseline models have)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    model_path = folder / MODEL_FILE
    onnx.save_model(graph, str(model_path))
    manifest = build_manifest(model, contract, inputs)
    manifest_path = folder / MANIFEST_FILE
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return Exported(folder, model_path, manifest_path, manifest)


def build_manifest(model: ScoringModel, contract: Contract, inputs: str) -> dict[str, Any]:
    """Everything a scorer needs besides the graph: identity, inputs, encodings, rules."""
    tabular = model.tabular
    categories = getattr(tabular, "categories", {}) if inputs == "matrix" else {}
    features = []
    for name in tabular.features:
        column = contract.columns.get(name)
        categorical = name in tabular.categorical
        entry: dict[str, Any] = {
            "name": name,
            "type": "categorical" if categorical else "numeric",
            "derived": column is None,  # an extra or rolling feature: the caller computes it
        }
        if categorical and inputs == "matrix":
            entry["categories"] = [str(c) for c in categories.get(name, [])]
        if column is not None:
            entry["rules"] = {
                "nullable": column.nullable,
                "min": column.min,
                "max": column.max,
                "allowed": None if column.allowed is None else [str(a) for a in column.allowed],
                "contract_type": column.type.value,
            }
        features.append(entry)
    return {
        "format": "onnx",
        "dataset": contract.name,
        "task": contract.task.value,
        "kind": model.kind,
        "model_uri": model.model_uri,
        "model_version": model.version,
        "run_id": model.run_id,
        "inputs": inputs,
        "input_name": "input" if inputs == "matrix" else None,
        # The matrix's element type: float32 for a classifier, float64 for a regressor.
        "input_dtype": (
            "float32" if inputs == "matrix" and contract.task.value == "binary" else "float64"
        ),
        "output": OUTPUT,
        "missing_category": MISSING_CATEGORY if inputs == "columns" else None,
        "features": features,
    }


def _lightgbm_onnx(model: ScoringModel) -> Any:
    """onnxmltools' conversion of the booster cut at its best iteration, with one output
    `score` (the probability of label 1, or the value). A regressor takes float64 input
    (ONNX Runtime then sums the trees in float64; a value near 0 would otherwise lose its
    relative precision in a float32 sum); onnxmltools' classifier takes float32 only."""
    import lightgbm as lgb
    import onnxmltools
    from onnxmltools.convert.common.data_types import DoubleTensorType, FloatTensorType

    tabular = model.tabular
    binary = tabular.task.value == "binary"
    booster = lgb.Booster(model_str=tabular.booster.model_to_string(tabular.best_iteration))
    tensor = FloatTensorType if binary else DoubleTensorType
    initial = [("input", tensor([None, len(tabular.features)]))]
    graph = onnxmltools.convert_lightgbm(
        booster, initial_types=initial, zipmap=False, target_opset=TARGET_OPSET
    )
    return _single_output(graph, binary=binary)


def _baseline_onnx(model: ScoringModel, contract: Contract) -> Any:
    """skl2onnx's conversion of the baseline's pipeline, one input per feature, numbers in
    float64: a linear model has no thresholds to round, so it keeps batch's precision.
    ONNX's Imputer takes float32 only, so the median imputation is a Where(IsNaN) per
    numeric input in front of a copy of the pipeline without its imputer."""
    import copy

    import numpy as np
    from onnx import helper, numpy_helper
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType

    tabular = model.tabular
    pipeline = copy.deepcopy(tabular.pipeline)
    prepare = pipeline.named_steps["prepare"]
    numeric_steps = prepare.named_transformers_["numeric"]
    medians = numeric_steps.named_steps["impute"].statistics_
    numeric_steps.steps = [s for s in numeric_steps.steps if s[0] != "impute"]
    initial = [
        (
            name,
            StringTensorType([None, 1])
            if name in tabular.categorical
            else DoubleTensorType([None, 1]),
        )
        for name in tabular.features
    ]
    binary = tabular.task.value == "binary"
    estimator = pipeline.named_steps["model"]
    options = {id(estimator): {"zipmap": False}} if binary else None
    graph = convert_sklearn(
        pipeline, initial_types=initial, options=options, target_opset=TARGET_OPSET
    )
    imputing = []
    for name, median in zip(tabular.numeric, medians, strict=True):
        raw = f"{name}__raw"
        for node in graph.graph.node:
            node.input[:] = [raw if i == name else i for i in node.input]
        constant = numpy_helper.from_array(np.array(median, dtype="float64"))
        constant.name = f"{name}__median"
        graph.graph.initializer.append(constant)
        imputing += [
            helper.make_node("IsNaN", [name], [f"{name}__nan"]),
            helper.make_node("Where", [f"{name}__nan", constant.name, name], [raw]),
        ]
    nodes = imputing + list(graph.graph.node)
    del graph.graph.node[:]
    graph.graph.node.extend(nodes)
    return _single_output(graph, binary=binary)


def _single_output(graph: Any, binary: bool) -> Any:
    """The graph with one output, `score` [rows]: column 1 of the probabilities (binary)
    or the flattened values (regression)."""
    import onnx
    from onnx import TensorProto, helper

    outputs = [o.name for o in graph.graph.output]
    source = (
        next((o for o in outputs if "prob" in o.lower()), outputs[-1]) if binary else outputs[0]
    )
    kind = next(o.type.tensor_type.elem_type for o in graph.graph.output if o.name == source)
    nodes = []
    if binary:
        nodes.append(
            helper.make_node(
                "Constant", [], ["_one"], value=helper.make_tensor("v", TensorProto.INT64, [1], [1])
            )
        )
        nodes.append(helper.make_node("Gather", [source, "_one"], ["_picked"], axis=1))
        flat_from = "_picked"
    else:
        flat_from = source
    nodes.append(
        helper.make_node(
            "Constant", [], ["_shape"], value=helper.make_tensor("s", TensorProto.INT64, [1], [-1])
        )
    )
    nodes.append(helper.make_node("Reshape", [flat_from, "_shape"], [OUTPUT]))
    graph.graph.node.extend(nodes)
    del graph.graph.output[:]
    graph.graph.output.append(helper.make_tensor_value_info(OUTPUT, kind, [None]))
    onnx.checker.check_model(graph)
    return graph


class OnnxScorer:
    """An exported model scored by ONNX Runtime from feature tables, the inputs built
    as the manifest says (the parity test and the compiled-model comparison use it)."""

    def __init__(self, folder: Path, threads: int = 1) -> None:
        import onnxruntime as ort

        self.manifest = json.loads((folder / MANIFEST_FILE).read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"]
        )
        self.features = [f["name"] for f in self.manifest["features"]]
        self._positions = {
            f["name"]: {c: float(i) for i, c in enumerate(f["categories"])}
            for f in self.manifest["features"]
            if "categories" in f
        }

    def inputs(self, frame: pd.DataFrame | pa.Table) -> dict[str, np.ndarray]:
        import numpy as np

        frame = as_pandas(frame, self.features)
        if self.manifest["inputs"] == "matrix":
            dtype = np.dtype(self.manifest["input_dtype"])
            matrix = np.empty((len(frame), len(self.features)), dtype=dtype)
            for j, name in enumerate(self.features):
                if name in self._positions:
                    position = self._positions[name]
                    values = frame[name].astype(object)
                    matrix[:, j] = [
                        np.nan if v is None or v != v else position.get(str(v), np.nan)
                        for v in values
                    ]
                else:
                    matrix[:, j] = _numbers(frame[name])
            return {self.manifest["input_name"]: matrix}
        feeds = {}
        for f in self.manifest["features"]:
            values = frame[f["name"]]
            if f["type"] == "categorical":
                text = values.astype("string").fillna(MISSING_CATEGORY).astype(object)
                feeds[f["name"]] = np.asarray(text, dtype=object).reshape(-1, 1)
            else:
                feeds[f["name"]] = _numbers(values).reshape(-1, 1)
        return feeds

    def predict(self, frame: pd.DataFrame | pa.Table) -> np.ndarray:
        import numpy as np

        [scores] = self.session.run([OUTPUT], self.inputs(frame))
        return np.asarray(scores, dtype=np.float64).ravel()


def _numbers(values: Any) -> Any:
    import pandas as pd

    return pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()


# Parity with batch scoring (ONNX trees run in float32): binary probabilities within
# 1e-4 absolute, regression values within 1e-5 relative, on at least 99.9% of rows.
BINARY_ABS_TOLERANCE = 1e-4
REGRESSION_REL_TOLERANCE = 1e-5
PARITY_SHARE = 0.999


@dataclass(frozen=True)
class Parity:
    """How far another scorer's scores are from batch scoring's, row by row."""

    rows: int
    within: int  # rows within the tolerance
    worst_row: int
    worst_expected: float
    worst_got: float
    worst_error: float  # absolute (binary) or relative (regression)
    relative: bool

    @property
    def share(self) -> float:
        return self.within / self.rows if self.rows else 1.0

    @property
    def ok(self) -> bool:
        return self.share >= PARITY_SHARE

    def describe(self) -> str:
        unit = "relative" if self.relative else "absolute"
        return (
            f"{self.within}/{self.rows} rows ({self.share:.4%}) within tolerance; worst row "
            f"{self.worst_row}: {self.worst_got!r} against {self.worst_expected!r} "
            f"({self.worst_error:.3g} {unit})"
        )


def parity(expected: np.ndarray, got: np.ndarray, task: str) -> Parity:
    """Compare `got` with batch scoring's `expected`, the task's tolerance."""
    import numpy as np

    expected = np.asarray(expected, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    if expected.shape != got.shape:
        raise ValueError(f"{len(got)} scores for {len(expected)} rows")
    relative = task != "binary"
    error = np.abs(got - expected)
    if relative:
        error = error / np.maximum(np.abs(expected), np.finfo(np.float64).tiny)
    tolerance = REGRESSION_REL_TOLERANCE if relative else BINARY_ABS_TOLERANCE
    worst = int(np.argmax(error)) if len(error) else 0
    return Parity(
        rows=len(expected),
        within=int(np.sum(error <= tolerance)),
        worst_row=worst,
        worst_expected=float(expected[worst]) if len(error) else 0.0,
        worst_got=float(got[worst]) if len(error) else 0.0,
        worst_error=float(error[worst]) if len(error) else 0.0,
        relative=relative,
    )
