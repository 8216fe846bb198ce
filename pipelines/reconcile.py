"""python -m pipelines.reconcile --dataset flights [--adopt-store [--reason TEXT]]

Does at once what the dataset's reconcile sensor does every minute: runs whose process is gone
end as failed (Dagster runs of the project's instance, the dataset's MLflow runs), and the
champion alias is put back in line with the promotion ledger. With --adopt-store, records
that the current MLflow store replaces the one the ledger was written against (after a
store was lost or moved), so promotions can go on. Reads $DRIFTLOOP_DATA_DIR,
$MLFLOW_TRACKING_URI and $DAGSTER_HOME as the code location does.
"""

from __future__ import annotations

import argparse
import json
import sys

from driftloop.evaluation.reconcile import (
    adopt_store,
    check,
    end_dead_mlflow_runs,
    reconcile_registry,
)
from driftloop.paths import data_root, dataset_paths, default_mlflow_uri
from driftloop.stores import exit_code
from driftloop.training.registry import make_client
from pipelines.instance import instance_at, project_dagster_home
from sensors.reconcile import fail_dead_runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.reconcile", description=__doc__)
    parser.add_argument("--dataset", required=True, help="dataset (contract) name")
    parser.add_argument("--adopt-store", action="store_true", help="adopt this MLflow store")
    parser.add_argument("--reason", default="", help="why, recorded in the ledger")
    parser.add_argument("--data-dir", default=None, help="data root (default $DRIFTLOOP_DATA_DIR)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (default as above)")
    args = parser.parse_args(argv)
    return exit_code(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    root = data_root(args.data_dir)
    paths = dataset_paths(args.dataset, root)
    client = make_client(args.tracking_uri or default_mlflow_uri(root))
    done: dict[str, object] = {}
    with instance_at(project_dagster_home(root)) as instance:
        done["dagster_runs_failed"] = fail_dead_runs(instance)
    done["mlflow_runs_ended"] = end_dead_mlflow_runs(client, args.dataset)
    if args.adopt_store:
        try:
            done["adopted"] = str(adopt_store(paths, client, args.dataset, args.reason))
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    done["repairs"] = reconcile_registry(paths, client, args.dataset).actions
    after = check(paths, client, args.dataset)
    done["consistency"] = after.to_dict()
    print(json.dumps(done, indent=2, default=str))
    return 0 if after.agree else 1


if __name__ == "__main__":
    sys.exit(main())
