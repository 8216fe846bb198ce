"""The retraining path without Dagster: the framework-free functions the retrain assets call,
in the same order and with the same arguments (the orchestration case's baseline)."""

from __future__ import annotations

import json
import time
from datetime import date
from pathlib import Path

from benchmarks import self_peak_mb

DATASET = "flights"


def retrain_in_process(root: Path, days: list[str], window_days: int | None = None) -> dict:
    """features -> model -> eval report -> promotion, as the assets do it, without Dagster.

    Returns the timings of each stage, the rows and what was decided.
    """
    from driftloop.data.contract import load_contract
    from driftloop.data.lake import days_between, partition_files, sql_file_list
    from driftloop.data.lake import write_text_atomic as write_text
    from driftloop.evaluation import ledger
    from driftloop.evaluation.challenger import report_paths
    from driftloop.evaluation.comparison import evaluate, render_report
    from driftloop.evaluation.gate import GateConfig, decide
    from driftloop.features.writer import write_features
    from driftloop.names import FEATURES_TABLE
    from driftloop.paths import PROJECT_ROOT, dataset_paths
    from driftloop.training.lightgbm_model import LIGHTGBM_DEFAULTS, RUN_PARAMS
    from driftloop.training.registry import (
        RegisteredVersion,
        load_scoring_model,
        log_training,
        make_client,
        set_alias,
        version_for_alias,
    )
    from driftloop.training.train import TrainingConfig, load_training_frame, train

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
        params={k: LIGHTGBM_DEFAULTS[k] for k in RUN_PARAMS},
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
    html_path, json_path = report_paths(
        paths,
        RegisteredVersion(DATASET, version, challenger.run_id, f"models:/{DATASET}/{version}"),
    )
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
