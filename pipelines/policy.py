"""python -m pipelines.policy --dataset NAME [--source FILE] [--end D] [--retrain-budget N]

Chooses the retraining policy from the dataset's history on demand (what the
`<dataset>/retraining_policy` asset does weekly): replays the history so far with the
periodic schedules and the trigger grid (driftloop.backtest.selection) on the backtest's
cached daily models, prints the comparison, keeps the choice as
<data root>/reports/<dataset>/retraining_policy/<day>.json and current.json (what the
retrain sensor runs unless the contract writes retraining settings) and logs it to MLflow
(experiment <dataset>-policy).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

from driftloop.paths import data_root, dataset_paths, default_mlflow_uri
from pipelines.backtest import find_contract


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.policy", description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--contract", default=None, help="contract file (default: by name)")
    parser.add_argument("--source", default=None, help="history as a CSV/Parquet file")
    parser.add_argument("--end", type=date.fromisoformat, default=None, help="last day judged")
    parser.add_argument(
        "--retrain-budget",
        type=float,
        default=None,
        metavar="PER_30_DAYS",
        help="most retrains per 30 days (default: the 7-day schedule's)",
    )
    parser.add_argument(
        "--min-history-days",
        type=int,
        default=None,
        help="choose only from at least this many days after the first training window "
        "(default: the walk-forward's warm-up)",
    )
    parser.add_argument("--data-dir", default=None, help="data root (default $DRIFTLOOP_DATA_DIR)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (default as above)")
    parser.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    parser.add_argument("--json", action="store_true", help="print the choice as JSON")
    args = parser.parse_args(argv)

    from driftloop.backtest.in_force import (
        TooLittleHistory,
        choose_from_history,
        log_choice,
        policy_folder,
        write_choice,
    )
    from driftloop.backtest.report import render_frontier
    from driftloop.backtest.selection import table_order
    from driftloop.data.contract import load_contract

    contract = load_contract(find_contract(args.dataset, args.contract))
    root = data_root(args.data_dir)
    paths = dataset_paths(contract.name, root)
    try:
        choice, result = choose_from_history(
            contract,
            root,
            end=args.end,
            budget_per_30_days=args.retrain_budget,
            source=Path(args.source) if args.source else None,
            progress=lambda m: print(m, flush=True),
            min_days=args.min_history_days,
        )
    except TooLittleHistory as error:
        print(f"no choice yet: {error} (--min-history-days chooses sooner)", file=sys.stderr)
        return 1
    version = write_choice(paths, choice, result.config.end)
    frontier = render_frontier(result, policy_folder(paths) / f"{result.config.end}_frontier.png")
    run_id = None
    if not args.no_mlflow:
        uri = args.tracking_uri or default_mlflow_uri(root)
        run_id = log_choice(contract.name, version, frontier, choice, uri, root / "mlartifacts")
    if args.json:
        print(json.dumps(choice.to_dict() | {"version": str(version)}, indent=2, default=str))
        return 0
    print(f"chosen: {choice.chosen.name} {json.dumps(choice.chosen.to_dict(), default=str)}")
    print(
        f"judged on {choice.days} days before {choice.before}; budget {choice.budget_retrains:.1f} "
        f"retrains; flatness {choice.flatness:.3f}; selection CPU {choice.cpu_seconds:.0f} s"
    )
    for row in sorted(choice.table, key=table_order):
        print(
            f"  {row['candidate']:<14} {row['kind']:<8} retrains {row['retrains']:>3}  capture "
            f"{row['value_capture']:.3f}  plateau {row['plateau_capture']:.3f}"
            f"{'' if row['within_budget'] else '  (over budget)'}"
        )
    print(f"kept: {version}" + (f"; MLflow run {run_id}" if run_id else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
