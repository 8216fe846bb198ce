"""Score rows with a driftloop edge export, with onnxruntime and numpy only.

    python examples/edge_scorer.py <export folder> rows.json

The folder is what `python -m pipelines.export --dataset NAME --format onnx` wrote
(model.onnx and manifest.json); rows.json is a list of objects, one per row, holding the
model's features by name (null for a missing value). Each row is checked against the
contract's rules in the manifest (nullable, min, max, allowed) before it is scored; the
scores are printed as JSON, one per row, with the time scoring took.

Copy this file and the two exported files to the device: nothing else of driftloop is
needed.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort


class RowError(ValueError):
    """A row that breaks the contract's rules: names the row, the feature and the rule."""


class EdgeScorer:
    """model.onnx and manifest.json of one export, loaded once; `score(rows)` per call."""

    def __init__(self, folder: str | Path, threads: int = 1) -> None:
        folder = Path(folder)
        self.manifest = json.loads((folder / "manifest.json").read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.features = self.manifest["features"]
        self.positions = {
            f["name"]: {c: float(i) for i, c in enumerate(f["categories"])}
            for f in self.features
            if "categories" in f
        }

    @property
    def version(self) -> str:
        return self.manifest["model_version"]

    def check(self, rows: list[dict[str, Any]]) -> None:
        """Raise RowError for the first value the contract's rules refuse."""
        for i, row in enumerate(rows):
            for feature in self.features:
                name, rules = feature["name"], feature.get("rules")
                if name not in row:
                    raise RowError(f"row {i}: feature {name!r} is missing")
                value = row[name]
                if rules is None:
                    continue
                if value is None:
                    if not rules["nullable"]:
                        raise RowError(f"row {i}: {name!r} may not be null")
                    continue
                if rules["allowed"] is not None and str(value) not in rules["allowed"]:
                    raise RowError(f"row {i}: {name!r} = {value!r} is not an allowed value")
                if feature["type"] == "numeric":
                    number = float(value)
                    if rules["min"] is not None and number < rules["min"]:
                        raise RowError(f"row {i}: {name!r} = {value!r} is below {rules['min']}")
                    if rules["max"] is not None and number > rules["max"]:
                        raise RowError(f"row {i}: {name!r} = {value!r} is above {rules['max']}")

    def inputs(self, rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        """The graph's inputs, built as the manifest says."""
        if self.manifest["inputs"] == "matrix":
            dtype = np.dtype(self.manifest["input_dtype"])
            matrix = np.empty((len(rows), len(self.features)), dtype=dtype)
            for j, feature in enumerate(self.features):
                name = feature["name"]
                position = self.positions.get(name)
                for i, row in enumerate(rows):
                    value = row[name]
                    if value is None:
                        matrix[i, j] = math.nan
                    elif position is not None:
                        matrix[i, j] = position.get(str(value), math.nan)
                    else:
                        matrix[i, j] = float(value)
            return {self.manifest["input_name"]: matrix}
        missing = self.manifest["missing_category"]
        feeds = {}
        for feature in self.features:
            name = feature["name"]
            if feature["type"] == "categorical":
                values = [missing if r[name] is None else str(r[name]) for r in rows]
                feeds[name] = np.array(values, dtype=object).reshape(-1, 1)
            else:
                values = [math.nan if r[name] is None else float(r[name]) for r in rows]
                feeds[name] = np.array(values, dtype=np.float64).reshape(-1, 1)
        return feeds

    def score(self, rows: list[dict[str, Any]]) -> np.ndarray:
        """Probability of label 1 (binary) or the value (regression), one per row."""
        self.check(rows)
        [scores] = self.session.run([self.manifest["output"]], self.inputs(rows))
        return np.asarray(scores, dtype=np.float64).ravel()


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit("usage: python examples/edge_scorer.py <export folder> rows.json")
    scorer = EdgeScorer(argv[0])
    rows = json.loads(Path(argv[1]).read_text())
    started = time.perf_counter()
    scores = scorer.score(rows)
    seconds = time.perf_counter() - started
    print(
        json.dumps({"model_version": scorer.version, "scores": scores.tolist(), "seconds": seconds})
    )


if __name__ == "__main__":
    main(sys.argv[1:])
