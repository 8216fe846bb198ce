"""python -m pipelines.backtest --dataset NAME [--start D] [--end D] [policy options]

Replays a dataset's history day by day through the production trigger and gate and
compares the loop's retraining policy with periodic schedules (never, every 60, 30, 14, 7,
3 days, every day; see driftloop.backtest.engine), the frontier they draw, and the cost of
each in retrains and CPU seconds. Prints the table, writes HTML, PNG and JSON under
<data root>/backtest/<dataset>/reports/ and logs them to MLflow (experiment
<dataset>-backtest).

Data: the embedded 2013 flights for `flights`; for another dataset `--source FILE`
(CSV/Parquet, ingested under the contract's rules into the backtest's cache lake), else
the production lake's raw partitions. The contract is contracts/NAME.yaml, else
examples/contracts/NAME.yaml, or `--contract PATH`.

The row `driftloop` is the self-tuning loop (driftloop.backtest.selection): on day D it
runs the policy chosen from the days before D only (the schedules and a grid of trigger
settings, replayed on the same models), first chosen after a warm-up, then weekly; the
contract's settings run as the row `fixed` (`--no-select`: only them, named driftloop).

Compare settings side by side: `--policy NAME:key=value,...` adds a trigger policy (keys:
every field of the contract's `retraining:` block, e.g. n_breaches, window, cooldown_days,
use_drift, use_estimated, use_performance, drift_threshold, performance_window_days,
performance_confidence, and gate_margin, gate_confidence); the plain options set the
`driftloop` policy.

The issue's reference figures (never 0.634 / 30 days 0.652 / 7 days 0.663 / daily 0.670)
were made with production's LightGBM defaults fitted on the whole trailing window up to
yesterday; with the reference feature set that is:

    python -m pipelines.backtest --dataset flights \
        --contract examples/contracts/flights_reference.yaml \
        --fit window --label-delay 0h --param learning_rate=0.05
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

from driftloop.backtest import engine as backtest
from driftloop.backtest.engine import BACKTEST_MODEL_PARAMS, BacktestConfig, trigger_settings
from driftloop.backtest.report import (
    log_to_mlflow,
    selection_markdown,
    signals_markdown,
    summary_markdown,
    write_report,
)
from driftloop.data.contract import load_contract
from driftloop.paths import PROJECT_ROOT, contracts_dir, data_root, default_mlflow_uri

FLIGHTS_RANGE = (date(2013, 3, 1), date(2013, 12, 31))
_BOOL = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _value(text: str) -> Any:
    lowered = text.strip().lower()
    if lowered in _BOOL:
        return _BOOL[lowered]
    if lowered in ("none", "null", ""):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_pairs(text: str) -> dict[str, Any]:
    """'a=1,b=true' -> {'a': 1, 'b': True}."""
    pairs = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected key=value, got {item!r}")
        pairs[key.strip()] = _value(value)
    return pairs


def policies_and_params(
    contract: Any, main: Any, policy_specs: list[str], param_specs: list[str]
) -> tuple[list[Any], dict[str, Any]]:
    """The trigger policies (driftloop's own `main`, then 'name:key=value,...' specs) and
    the LightGBM parameters (the backtest's, then 'key=value' overrides) of a run: the
    CLI and the `<dataset>_backtest` job read their options the same way."""
    triggers = [main]
    for spec in policy_specs:
        name, _, pairs = spec.partition(":")
        triggers.append(trigger_settings(contract, name=name.strip(), **parse_pairs(pairs)))
    params = dict(BACKTEST_MODEL_PARAMS)
    for item in param_specs:
        params |= parse_pairs(item)
    return triggers, params


def find_contract(dataset: str, explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    for folder in (contracts_dir(), PROJECT_ROOT / "examples" / "contracts"):
        for suffix in (".yaml", ".yml"):
            path = folder / f"{dataset}{suffix}"
            if path.exists():
                return path
    raise SystemExit(f"no contract {dataset}.yaml in {contracts_dir()} or examples/contracts")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.backtest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--contract", default=None, help="contract file (default: by name)")
    parser.add_argument("--source", default=None, help="history as a CSV/Parquet file")
    parser.add_argument("--start", type=date.fromisoformat, default=None)
    parser.add_argument("--end", type=date.fromisoformat, default=None)
    parser.add_argument("--data-dir", default=None, help="data root (default $DRIFTLOOP_DATA_DIR)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (default as above)")
    parser.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    group = parser.add_argument_group(
        "the fixed trigger policy (row fixed, or driftloop with --no-select; default: contract "
        "and gate)"
    )
    group.add_argument("--n-breaches", type=int, default=None)
    group.add_argument("--window", type=int, default=None, help="M of N-of-M")
    group.add_argument("--cooldown-days", type=int, default=None)
    group.add_argument("--no-drift", action="store_true", help="drift does not count")
    group.add_argument("--no-performance", action="store_true", help="performance does not count")
    group.add_argument(
        "--no-estimated", action="store_true", help="estimated performance does not count"
    )
    group.add_argument("--gate-margin", type=float, default=None)
    group.add_argument("--gate-confidence", type=float, default=None)
    group.add_argument("--drift-threshold", type=float, default=None)
    group.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="NAME:key=value,...",
        help="another trigger policy to compare (repeatable)",
    )
    select = parser.add_argument_group(
        "the self-tuning loop (row driftloop; the settings above are row fixed)"
    )
    select.add_argument(
        "--no-select",
        action="store_true",
        help="no policy selection: the row driftloop is the fixed settings",
    )
    select.add_argument(
        "--retrain-budget",
        type=float,
        default=None,
        metavar="PER_30_DAYS",
        help="most retrains per 30 days a chosen policy may launch (default: the 7-day schedule's)",
    )
    select.add_argument("--selection-warmup-days", type=int, default=None)
    select.add_argument("--selection-every-days", type=int, default=None)
    model = parser.add_argument_group("training (the same for every policy)")
    model.add_argument("--window-days", type=int, default=None)
    model.add_argument(
        "--fit",
        choices=["split", "window"],
        default=None,
        help="split: production's train (the newest days held out); window: then refit the "
        "served model on the whole window (see driftloop.backtest.policies.FIT_MODES); "
        "default: the contract's training.refit_on_window, as production trains",
    )
    model.add_argument(
        "--label-delay",
        default=None,
        metavar="DURATION",
        help="what-if: override the contract's label delay (e.g. 0h)",
    )
    model.add_argument(
        "--param", action="append", default=[], metavar="key=value", help="LightGBM parameter"
    )
    model.add_argument(
        "--workers", type=int, default=2, help="processes fitting the schedules' models"
    )
    model.add_argument(
        "--schedules",
        type=parse_pairs,
        default=None,
        help="reference schedules, e.g. never=none,every_7_days=7 (default: never, every "
        "60, 30, 14, 7, 3 days, every day)",
    )
    model.add_argument(
        "--no-model-cache",
        action="store_true",
        help="fit every model again instead of reusing the fitted models kept on disk",
    )
    return parser


def config_from_args(contract, args, start: date, end: date):

    main = trigger_settings(
        contract,
        name="driftloop" if args.no_select else "fixed",
        n_breaches=args.n_breaches,
        window=args.window,
        cooldown_days=args.cooldown_days,
        use_drift=False if args.no_drift else None,
        use_performance=False if args.no_performance else None,
        use_estimated=False if args.no_estimated else None,
        gate_margin=args.gate_margin,
        gate_confidence=args.gate_confidence,
        drift_threshold=args.drift_threshold,
    )
    triggers, params = policies_and_params(contract, main, args.policy, args.param)
    extra: dict[str, Any] = {"triggers": triggers, "model_params": params}
    extra["workers"] = args.workers
    if args.fit:
        extra["fit"] = args.fit
    extra["model_cache"] = not args.no_model_cache
    if args.window_days:
        extra["window_days"] = args.window_days
    if args.schedules is not None:
        extra["schedules"] = args.schedules
    if not args.no_select:
        extra["selected"] = "driftloop"
        extra["retrain_budget_per_30_days"] = args.retrain_budget
        if args.selection_warmup_days is not None:
            extra["selection_warmup_days"] = args.selection_warmup_days
        if args.selection_every_days is not None:
            extra["selection_every_days"] = args.selection_every_days
    return BacktestConfig.for_contract(contract, start, end, **extra)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    contract = load_contract(find_contract(args.dataset, args.contract))
    contract = backtest.with_label_delay(contract, args.label_delay)
    if contract.name != args.dataset:
        raise SystemExit(f"the contract describes {contract.name!r}, not {args.dataset!r}")
    root = data_root(args.data_dir)
    source = Path(args.source) if args.source else None
    _, info = backtest.prepare(contract, root, source)
    window = args.window_days or contract.training.window_days
    if contract.name == "flights" and source is None:
        start, end = FLIGHTS_RANGE
    else:
        start, end = backtest.default_range(contract, info, window)
    start, end = args.start or start, args.end or end
    config = config_from_args(contract, args, start, end)
    result = backtest.run_backtest(
        contract, root, config, source=source, progress=lambda m: print(m, flush=True)
    )
    files = write_report(result, backtest.backtest_paths(root, contract.name).output)
    run_id = None
    if not args.no_mlflow:
        run_id = log_to_mlflow(
            result,
            files,
            args.tracking_uri or default_mlflow_uri(root),
            artifact_root=root / "mlartifacts",
        )
    if args.json:
        body = {"summary": result.to_dict()["summary"], "timings": result.timings}
        body |= {"files": {k: str(v) for k, v in files.items()}, "mlflow_run_id": run_id}
        print(json.dumps(body, indent=2, default=str))
    else:
        print(summary_markdown(result))
        print()
        print(signals_markdown(result))
        print()
        print(selection_markdown(result))
        print(f"timings (s): {result.timings}")
        for kind, path in files.items():
            print(f"{kind}: {path}")
        if run_id:
            print(f"MLflow run {run_id} in experiment {contract.name}-backtest")
    return 0


if __name__ == "__main__":
    sys.exit(main())
