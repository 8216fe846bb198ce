"""orchestration: the retraining path through the dagster CLI vs the same functions in one process.

Ours: `dagster asset materialize -m pipelines.definitions --select flights/features
--partition-range FIRST...LAST` (one run over the whole range: the features asset has a
single-run backfill policy), then `dagster job execute -m pipelines.definitions -j
flights_retrain` (model, eval_report, promotion in one run with the in-process executor),
each a fresh process on a fresh Dagster instance, from the same raw lake.

Baseline: `retrain_in_process`, the framework-free functions those assets call, in the same
order and with the same arguments (features per day; `load_training_frame`, `train`,
`registry.log_training`; scoring both models on the holdout, `evaluate`, `decide`, the
report and decision files; ledger entry, tags and alias), in one fresh Python process.

Both sides: wall time of their process(es) from start to exit (interpreter start and
imports included: the CLI pays them twice, once per command), on copies of the same raw
lake (real 2013 flights) with an MLflow store and a Dagster instance that exist already
(their SQLite schemas are created before the clock starts, as in a running deployment).
Sides alternate; the figures are medians. `tests/test_benchmarks.py` checks that both sides
train the same model (same holdout metrics).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from benchmarks import child_env, median, python_child, report, row, run_child, self_peak_mb
from benchmarks.data import START, real_flights, write_raw_lake

TARGET_RATIO = 1.3
MODULE = "benchmarks.cases.orchestration"
DATASET = "flights"
# The asset's ModelConfig passes exactly these LightGBM parameters (assets/model.py).
MODEL_PARAMS = (
    "num_leaves",
    "learning_rate",
    "n_estimators",
    "min_child_samples",
    "feature_fraction",
    "lambda_l2",
    "max_depth",
    "early_stopping_rounds",
    "num_threads",
)
DAGSTER_YAML = "telemetry:\n  enabled: false\n"


# ------------------------------------------------------------------ the framework-free path


def retrain_in_process(root: Path, days: list[str], window_days: int | None = None) -> dict:
    """features -> model -> eval report -> promotion, as the assets do it, without Dagster.

    Returns the timings of each stage, the rows and what was decided.
    """
    from driftloop import ledger
    from driftloop.contract import load_contract
    from driftloop.evaluation import evaluate, render_report
    from driftloop.feature_writer import write_features
    from driftloop.features import FEATURES_TABLE
    from driftloop.gate import GateConfig, decide
    from driftloop.lake import days_between, partition_files, sql_file_list
    from driftloop.lake import write_text_atomic as write_text
    from driftloop.models import LIGHTGBM_DEFAULTS
    from driftloop.paths import PROJECT_ROOT, dataset_paths
    from driftloop.registry import (
        load_scoring_model,
        log_training,
        make_client,
        set_alias,
        version_for_alias,
    )
    from driftloop.training import TrainingConfig, load_training_frame, train

    timings: dict[str, float] = {}
    contract = load_contract(PROJECT_ROOT / "contracts" / f"{DATASET}.yaml")
    paths = dataset_paths(DATASET, root)
    uri = f"sqlite:///{root / 'mlflow.db'}"

    # 1. flights/features over the range (assets/features.py).
    started = time.perf_counter()
    feature_rows = write_features(contract, paths, days).rows
    timings["features"] = time.perf_counter() - started
    print(f"stage features {timings['features']:.1f} s", flush=True)

    # 2. flights/model (assets/model.py).
    started = time.perf_counter()
    window = window_days or contract.training.window_days
    config = TrainingConfig(
        window_days=window,
        holdout_days=contract.training.holdout_days,
        validation_days=contract.training.validation_days,
        end_date=None,
        model_kind="lightgbm",
        params={k: LIGHTGBM_DEFAULTS[k] for k in MODEL_PARAMS},
        seed=42,
    )
    frame, used_days, digests = load_training_frame(contract, paths, None, window)
    timings["load_training_frame"] = time.perf_counter() - started
    print(f"stage load_training_frame {timings['load_training_frame']:.1f} s", flush=True)
    result = train(contract, frame, config)
    del frame
    timings["train"] = result.train_seconds
    print(f"stage train {result.train_seconds:.1f} s", flush=True)
    mark = time.perf_counter()
    log_training(
        contract,
        result,
        used_days,
        digests,
        uri,
        tags={"dagster.run_id": "in-process"},
        artifact_root=root / "mlartifacts",
        source=str(paths.table(FEATURES_TABLE)),
    )
    timings["log_training"] = time.perf_counter() - mark
    print(f"stage log_training {timings['log_training']:.1f} s", flush=True)
    timings["model"] = time.perf_counter() - started
    holdout_metrics = dict(result.holdout_metrics)
    train_rows = result.rows
    best_iteration = int(getattr(result.model, "best_iteration", 0))
    del result

    # 3. flights/eval_report (assets/evaluation.py::_eval_report).
    started = time.perf_counter()
    client = make_client(uri)
    challenger = version_for_alias(client, DATASET, "challenger")
    champion = version_for_alias(client, DATASET, "champion")
    version = str(challenger.version)
    tags = dict(challenger.tags or {})
    start, end = tags["driftloop.holdout_start"], tags["driftloop.holdout_end"]
    files = partition_files(
        paths.table("features"), days_between(date.fromisoformat(start), date.fromisoformat(end))
    )
    import duckdb

    order = ", ".join(f'"{c}"' for c in ["event_time", *contract.id_columns])
    con = duckdb.connect()
    try:
        holdout = con.execute(
            f"SELECT * FROM read_parquet({sql_file_list(files)}, union_by_name = true) "
            f"ORDER BY {order}"
        ).df()
    finally:
        con.close()
    if champion is not None:
        reference_uri = f"models:/{DATASET}/{champion.version}"
        reference_name = f"champion v{champion.version}"
    else:
        reference_uri = tags["driftloop.baseline_run_model_uri"]
        reference_name = "baseline (scikit-learn)"
    challenger_uri = f"models:/{DATASET}/{version}"
    challenger_scores = load_scoring_model(challenger_uri, uri)(holdout)
    reference_scores = load_scoring_model(reference_uri, uri)(holdout)
    gate = GateConfig()
    evaluation = evaluate(
        contract,
        holdout,
        challenger_scores,
        reference_scores,
        reference_name,
        challenger_name=f"challenger v{version}",
        samples=gate.bootstrap_samples,
        confidence=gate.confidence,
        seed=gate.seed,
    )
    decision = decide(evaluation, gate, is_first=champion is None)
    html_path = paths.reports / "eval" / f"v{version}.html"
    json_path = html_path.with_suffix(".json")
    write_text(render_report(evaluation, decision, holdout=f"{start} to {end}"), html_path)
    record = {
        "dataset": DATASET,
        "challenger_version": version,
        "champion_version": None if champion is None else str(champion.version),
        "decision": decision.to_dict(),
        "evaluation": evaluation.to_dict(),
    }
    write_text(json.dumps(record, indent=2), json_path)
    client.log_artifact(challenger.run_id, str(html_path), artifact_path="eval_report")
    client.log_artifact(challenger.run_id, str(json_path), artifact_path="eval_report")
    client.set_model_version_tag(DATASET, version, "driftloop.eval_report", str(html_path))
    timings["eval_report"] = time.perf_counter() - started
    print(f"stage eval_report {timings['eval_report']:.1f} s", flush=True)

    # 4. flights/promotion (assets/evaluation.py::_promotion).
    started = time.perf_counter()
    before = None if champion is None else str(champion.version)
    ledger.append(
        paths,
        ledger.LedgerEntry(
            dataset=DATASET,
            action=decision.action,
            challenger_version=version,
            champion_before=before,
            champion_after=version if decision.promote else before,
            metric=decision.metric,
            reasons=decision.reasons,
            dagster_run_id="in-process",
            report_path=str(html_path),
        ),
    )
    client.set_model_version_tag(DATASET, version, "driftloop.gate_decision", decision.action)
    if decision.promote:
        set_alias(client, DATASET, "champion", version)
    timings["promotion"] = time.perf_counter() - started
    print(f"stage promotion {timings['promotion']:.1f} s", flush=True)
    return {
        "timings": timings,
        "feature_rows": feature_rows,
        "train_rows": train_rows,
        "holdout_metrics": holdout_metrics,
        "best_iteration": best_iteration,
        "decision": decision.action,
        "version": version,
        "peak_mb": self_peak_mb(),
    }


# ------------------------------------------------------------------------- the CLI path


def dagster_env(root: Path, home: Path) -> dict[str, str]:
    """The CLI's environment, on an instance whose storage exists already (as a running
    deployment's does: creating the SQLite schemas is not part of launching a run)."""
    if not (home / "dagster.yaml").exists():
        home.mkdir(parents=True, exist_ok=True)
        (home / "dagster.yaml").write_text(DAGSTER_YAML)
        from dagster import DagsterInstance

        with DagsterInstance.from_config(str(home)) as instance:
            instance.get_runs(limit=1)
            instance.all_instigator_state()
    return child_env(
        {
            "DRIFTLOOP_DATA_DIR": str(root),
            "DAGSTER_HOME": str(home),
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
            "DRIFTLOOP_REPLAY": "off",
        }
    )


def retrain_cli(root: Path, home: Path, days: list[str]) -> dict[str, Any]:
    """The two CLI commands; their wall times and peak RSS."""
    dagster = str(Path(sys.executable).with_name("dagster"))
    env = dagster_env(root, home)
    commands = {
        "features": [
            dagster, "asset", "materialize", "-m", "pipelines.definitions",
            "--select", f"{DATASET}/features", "--partition-range", f"{days[0]}...{days[-1]}",
        ],
        "retrain_job": [
            dagster, "job", "execute", "-m", "pipelines.definitions", "-j", f"{DATASET}_retrain",
        ],
    }  # fmt: skip
    out: dict[str, Any] = {"timings": {}, "peak_mb": 0.0}
    for name, command in commands.items():
        run = run_child(command, env=env)
        if run.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{run.log[-4000:]}")
        out["timings"][name] = run.seconds
        out["peak_mb"] = max(out["peak_mb"], run.peak_memory_mb)
    return out


def registered_holdout_metrics(root: Path, version: str = "1") -> dict[str, float]:
    """The holdout metrics MLflow holds for a registered version of the flights model."""
    from driftloop.registry import make_client

    client = make_client(f"sqlite:///{root / 'mlflow.db'}")
    run_id = client.get_model_version(DATASET, version).run_id
    metrics = client.get_run(run_id).data.metrics
    return {k.removeprefix("holdout_"): v for k, v in metrics.items() if k.startswith("holdout_")}


# ---------------------------------------------------------------------------- setup


def prepare_raw(folder: Path, days: int, start: date = START) -> tuple[Path, list[str]]:
    """A data root holding the raw partitions of `days` days of real flights."""
    from driftloop.contract import load_contract
    from driftloop.paths import PROJECT_ROOT, dataset_paths

    contract = load_contract(PROJECT_ROOT / "contracts" / f"{DATASET}.yaml")
    root = folder / "raw_root"
    written = write_raw_lake(contract, dataset_paths(DATASET, root), real_flights(start, days))
    # An existing MLflow store (schemas created) for both sides, as in a running deployment.
    from driftloop.registry import make_client

    make_client(f"sqlite:///{root / 'mlflow.db'}").search_experiments()
    return root, written


def fresh_copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def child_main(argv: list[str]) -> None:
    root, first, last, *rest = argv
    window = int(rest[0]) if rest else None
    start, end = date.fromisoformat(first), date.fromisoformat(last)
    days = [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]
    report(retrain_in_process(Path(root), days, window))


def run(quick: bool) -> list[dict]:
    n_days, reps = (20, 1) if quick else (60, 2)
    cli_seconds, own_seconds, cli_peak, own_peak = [], [], [], []
    details: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-orchestration-") as tmp:
        folder = Path(tmp)
        source, days = prepare_raw(folder, n_days)
        for rep in range(reps):
            # Alternate which side goes first.
            for side in ("cli", "own") if rep % 2 == 0 else ("own", "cli"):
                root = fresh_copy(source, folder / f"{side}{rep}")
                if side == "cli":
                    dagster_env(root, folder / f"home{rep}")  # instance storage, untimed
                    result = retrain_cli(root, folder / f"home{rep}", days)
                    cli_seconds.append(sum(result["timings"].values()))
                    cli_peak.append(result["peak_mb"])
                    details["cli_timings"] = result["timings"]
                    details["cli_metrics"] = registered_holdout_metrics(root)
                else:
                    run_ = python_child(MODULE, str(root), days[0], days[-1])
                    own_seconds.append(run_.seconds)
                    own_peak.append(run_.peak_memory_mb)
                    details["own_timings"] = run_.result["timings"]
                    details["own_metrics"] = registered_holdout_metrics(root)
                    details["rows"] = run_.result["feature_rows"]
                shutil.rmtree(root, ignore_errors=True)
    ours, theirs = median(cli_seconds), median(own_seconds)
    ratio = ours / theirs
    same = details["cli_metrics"] == details["own_metrics"]
    met = ratio <= TARGET_RATIO
    cli_t = details["cli_timings"]
    note = (
        f"dagster CLI {ours:.1f} s (features {cli_t['features']:.1f} s + retrain job "
        f"{cli_t['retrain_job']:.1f} s) vs one Python process {theirs:.1f} s (stages "
        + ", ".join(f"{k} {v:.1f}" for k, v in details["own_timings"].items())
        + f" s); medians of {reps} alternating run(s) each. Both trained the same model: "
        f"{'yes' if same else 'NO'} (holdout roc_auc {details['cli_metrics'].get('roc_auc')}"
        f" vs {details['own_metrics'].get('roc_auc')})."
    )
    if not met:
        note += (
            " Missed: each CLI command starts an interpreter, imports dagster and loads the "
            "code location, opens the instance and records events; a persistent code server "
            "(`dagster dev`, `dagster code-server start`) removes the per-command start-up."
        )
    return [
        row(
            case="orchestration",
            figure=round(ours, 2),
            unit="s",
            baseline=round(theirs, 2),
            ratio=round(ratio, 3),
            peak_memory_mb=round(max(cli_peak), 1),
            size=f"{n_days} days of flights, {details['rows']:,} rows",
            target="<= 1.3x the framework-free path",
            met=met and same,
            note=note,
            baseline_peak_memory_mb=round(max(own_peak), 1),
        )
    ]


if __name__ == "__main__":
    child_main(sys.argv[1:])
