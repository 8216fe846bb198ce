"""The retraining path without Dagster: the framework-free functions the retrain assets call,
in the same order and with the same arguments (the orchestration case's baseline)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from benchmarks import self_peak_mb

DATASET = "flights"
RUN_ID = "in-process"  # stands for the Dagster run id the assets pass along


def retrain_in_process(root: Path, days: list[str], window_days: int | None = None) -> dict:
    """features -> model -> eval report -> promotion, as the assets do it, without Dagster:
    `write_features` (assets/features.py), `train_and_register` under the retrain lock
    (assets/model.py), `evaluate_trained` (assets/evaluation.py) and `promote`.

    Returns the timings of each stage, the rows and what was decided.
    """
    from driftloop.data.contract import load_contract
    from driftloop.evaluation.challenger import evaluate_trained, report_paths
    from driftloop.evaluation.gate import GateConfig
    from driftloop.evaluation.promotion import check_store, promote
    from driftloop.features.writer import write_features
    from driftloop.paths import PROJECT_ROOT, dataset_paths
    from driftloop.training.lightgbm_model import LIGHTGBM_DEFAULTS, RUN_PARAMS
    from driftloop.training.registry import make_client
    from driftloop.training.retrain import train_and_register
    from driftloop.training.retrain_lock import acquire, release
    from driftloop.training.train import TrainingConfig

    timings: dict[str, float] = {}
    contract = load_contract(PROJECT_ROOT / "contracts" / f"{DATASET}.yaml")
    paths = dataset_paths(DATASET, root)
    uri = f"sqlite:///{root / 'mlflow.db'}"

    def stage(name: str, started: float) -> None:
        timings[name] = time.perf_counter() - started
        print(f"stage {name} {timings[name]:.1f} s", flush=True)

    started = time.perf_counter()
    feature_rows = write_features(contract, paths, days).rows
    stage("features", started)

    started = time.perf_counter()
    config = TrainingConfig(
        window_days=window_days or contract.training.window_days,
        holdout_days=contract.training.holdout_days,
        validation_days=contract.training.validation_days,
        end_date=None,
        model_kind="lightgbm",
        params={k: LIGHTGBM_DEFAULTS[k] for k in RUN_PARAMS},
        seed=42,
    )
    client = make_client(uri)
    check_store(paths, client, DATASET)
    acquire(paths, RUN_ID, lambda holder: False)
    trained = train_and_register(
        contract,
        paths,
        config,
        uri,
        {"dagster.run_id": RUN_ID},
        artifact_root=root / "mlartifacts",
    )
    timings["train"] = trained.result.train_seconds
    stage("model", started)

    started = time.perf_counter()
    model = trained.registered
    outcome = evaluate_trained(contract, paths, client, uri, model, GateConfig(), RUN_ID)
    stage("eval_report", started)

    started = time.perf_counter()
    record = json.loads(report_paths(paths, model)[1].read_text())
    done = promote(contract, paths, client, model, record, RUN_ID)
    release(paths, RUN_ID)
    stage("promotion", started)

    result = trained.result
    return {
        "timings": timings,
        "feature_rows": feature_rows,
        "train_rows": result.rows,
        "holdout_metrics": dict(result.holdout_metrics),
        "best_iteration": int(getattr(result.model, "best_iteration", 0)),
        "decision": outcome.evaluation.decision.action if outcome.evaluation else None,
        "version": model.version,
        "champion_after": done.champion_after.version if done.champion_after else None,
        "peak_mb": self_peak_mb(),
    }
