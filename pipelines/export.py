"""`python -m pipelines.export --dataset flights --format onnx`: the champion for the edge.

    uv run python -m pipelines.export --dataset flights --format onnx [--version N]

Writes the version (default: the champion) as ONNX plus a manifest under
<data root>/models/<dataset>/v<N>/onnx/ and logs both to the version's MLflow run (the
artifact folder `edge`); `examples/edge_scorer.py` scores with them using onnxruntime and
numpy only (docs/serving.md, edge). Settings: DRIFTLOOP_DATA_DIR, MLFLOW_TRACKING_URI,
DRIFTLOOP_CONTRACTS_DIR, as everywhere else.
"""

from __future__ import annotations

import argparse
import json
import logging

from driftloop.serving.edge import ExportError, export_version
from driftloop.serving.installation import installation

FORMATS = ("onnx",)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.export", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--dataset", required=True, help="the dataset (contract name)")
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="the export format")
    parser.add_argument("--version", default=None, help="model version (default: the champion)")
    parser.add_argument("--data-dir", default=None, help="data root (default $DRIFTLOOP_DATA_DIR)")
    parser.add_argument("--tracking-uri", default=None, help="default $MLFLOW_TRACKING_URI")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("mlflow").setLevel(logging.WARNING)

    place = installation(args.dataset, args.data_dir, args.tracking_uri)
    try:
        exported = export_version(place.contract, place.paths, place.tracking_uri, args.version)
    except ExportError as error:
        raise SystemExit(str(error)) from error
    manifest = exported.manifest
    summary = {
        "dataset": manifest["dataset"],
        "model_version": manifest["model_version"],
        "run_id": manifest["run_id"],
        "kind": manifest["kind"],
        "model": str(exported.model_path),
        "manifest": str(exported.manifest_path),
        "bytes": exported.size_bytes,
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
