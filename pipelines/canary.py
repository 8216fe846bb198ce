"""python -m pipelines.canary {start,change,stop,status} --dataset flights [...]

    python -m pipelines.canary start --dataset flights --share 0.2   # the challenger
    python -m pipelines.canary start --dataset flights --share 0.2 --version 3
    python -m pipelines.canary change --dataset flights --share 0.5
    python -m pipelines.canary stop --dataset flights --reason "enough evidence"
    python -m pipelines.canary status --dataset flights

Each change is a ledger entry (canary_started / canary_changed / canary_stopped, the
settings in its details); servers read the canary from the ledger. `status` shows, and
stopping records, the online evidence gathered so far: every row served since the canary
started, whatever its event-time day, pooled per arm (rows, labelled rows, the realised
metric and its 90% bootstrap interval).
Reads $DRIFTLOOP_DATA_DIR and $MLFLOW_TRACKING_URI as the code location does.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from datetime import UTC, datetime

from driftloop.paths import contracts_dir, data_root, dataset_paths, default_mlflow_uri


def _start(args: argparse.Namespace, paths, client) -> dict:
    from driftloop.names import CHALLENGER, CHAMPION
    from driftloop.serving import canary
    from driftloop.training.registry import version_for_alias

    champion = version_for_alias(client, args.dataset, CHAMPION)
    if champion is None:
        raise ValueError(f"{args.dataset} has no champion: a canary needs one to compare with")
    if args.version:
        from mlflow.exceptions import MlflowException

        try:
            version = client.get_model_version(args.dataset, args.version.removeprefix("v"))
        except MlflowException as error:
            raise ValueError(f"{args.dataset} has no version {args.version!r}") from error
    else:
        version = version_for_alias(client, args.dataset, CHALLENGER)
        if version is None:
            raise ValueError(f"{args.dataset} has no challenger: pass --version")
    if str(version.version) == str(champion.version):
        raise ValueError(f"v{version.version} already is the champion of {args.dataset}")
    started = canary.Canary(
        dataset=args.dataset,
        version=str(version.version),
        share=canary.check_share(args.share),
        run_id=version.run_id,
        champion_version=str(champion.version),
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    return asdict(canary.start(paths, started, args.reason))


def run(args: argparse.Namespace) -> dict:
    from driftloop.data.contract import load_contracts
    from driftloop.serving import canary
    from driftloop.training.registry import make_client

    root = data_root(args.data_dir)
    paths = dataset_paths(args.dataset, root)
    if args.command == "change":
        return asdict(canary.change(paths, args.share, args.reason))
    if args.command in ("stop", "status"):
        contract = load_contracts(contracts_dir()).get(args.dataset)
        if contract is None:
            raise ValueError(f"no contract named {args.dataset!r} in {contracts_dir()}")
        evidence = canary.running_evidence(contract, paths)
        proof = evidence.online_evidence() if evidence else {"days": [], "arms": {}}
        if args.command == "status":
            running = canary.active_canary(paths)
            return {"canary": asdict(running) if running else None, "online_evidence": proof}
        return asdict(canary.stop(paths, args.reason, evidence)) | {"online_evidence": proof}
    client = make_client(args.tracking_uri or default_mlflow_uri(root))
    return _start(args, paths, client)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.canary", description=__doc__)
    parser.add_argument("command", choices=["start", "change", "stop", "status"])
    parser.add_argument("--dataset", required=True, help="dataset (contract) name")
    parser.add_argument("--share", type=float, default=0.1, help="share of row ids, (0, 1]")
    parser.add_argument("--version", default="", help="model version (default: challenger)")
    parser.add_argument("--reason", default="", help="why, in words, recorded in the ledger")
    parser.add_argument("--data-dir", default=None, help="data root (default $DRIFTLOOP_DATA_DIR)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (default as above)")
    args = parser.parse_args(argv)
    try:
        result = run(args)
    except ValueError as error:
        print(f"canary {args.command}: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
