"""python -m pipelines.status --dataset flights [--json]

A warning first while the promotion ledger and the registry disagree (each problem in
full, and what repairs it: python -m pipelines.reconcile), then champion and challenger
(versions, key metrics, gate outcome), the last ledger entries with their whole first
reasons, the latest drift verdict and realised performance, and the last triggered retrain.
Reads the same stores as the Dagster code location: $DRIFTLOOP_DATA_DIR and
$MLFLOW_TRACKING_URI (default: SQLite under the data root).
"""

from __future__ import annotations

import argparse
import json
import sys

from driftloop import cost
from driftloop.backtest import in_force
from driftloop.monitoring.status_section import format_monitoring_text, latest_monitoring
from driftloop.paths import data_root, dataset_paths, default_mlflow_uri
from driftloop.status import LEDGER_LIMIT, collect, format_text, register_section
from driftloop.stores import exit_code
from driftloop.training.registry import make_client
from pipelines.retrain_history import format_retrain_history, retrain_history


def register_sections() -> None:
    """The sections after registry and ledger, each collected by the module that owns it."""
    register_section("monitoring", lambda ctx: latest_monitoring(ctx.paths), format_monitoring_text)
    register_section("triggers", lambda ctx: retrain_history(ctx.dataset), format_retrain_history)
    register_section("policy", lambda ctx: in_force.status(ctx.paths), in_force.format_status)
    register_section(
        "cost", lambda ctx: cost.status(ctx.paths.root, ctx.dataset), cost.format_status
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.status", description=__doc__)
    parser.add_argument("--dataset", required=True, help="dataset (contract) name")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument(
        "--ledger", type=int, default=LEDGER_LIMIT, help="how many ledger entries to show"
    )
    parser.add_argument("--data-dir", default=None, help="data root (default $DRIFTLOOP_DATA_DIR)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (default as above)")
    args = parser.parse_args(argv)
    return exit_code(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    register_sections()
    root = data_root(args.data_dir)
    client = make_client(args.tracking_uri or default_mlflow_uri(root))
    status = collect(client, dataset_paths(args.dataset, root), args.dataset, args.ledger)
    if args.json:
        print(json.dumps(status, indent=2, default=str))
    else:
        print(format_text(status))
    return 0


if __name__ == "__main__":
    sys.exit(main())
