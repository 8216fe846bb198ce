"""MLflow logging of one training run (no Dagster): params, metrics, datasets, pyfunc models.

Layout of one training run (experiment = dataset name, artifacts under
<data root>/mlartifacts/<dataset> for a local store):
  params   configuration and the model's parameters as used
  metrics  holdout_*, valid_*, baseline_holdout_*, baseline_valid_*, train_seconds, ...
  inputs   mlflow.data datasets: training, validation, evaluation (holdout) rows
  models   "model" (registered as <dataset>, alias challenger), pyfunc:
           predict(DataFrame of contract.features) -> scores, logged with an input example
  artifacts feature_importance.{json,csv,png}, data/partitions.json, split.json,
           search/trials.json, holdout/predictions.parquet
The scikit-learn baseline is logged in a run of its own nested under the training run
(its "model" the same way), so it can be registered and promoted like any other model.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftloop.data.contract import Contract
from driftloop.faults import fault_point
from driftloop.names import CHALLENGER, DAY
from driftloop.processes import process_token
from driftloop.training.model_loading import quiet_pyfunc
from driftloop.training.provenance import PACKAGE_DIR, code_version, requirements, source_hash
from driftloop.training.registry import (
    GATE_MODEL_NAME,
    GATE_MODEL_TAG,
    MODEL_NAME,
    PROCESS_TAG,
    RegisteredVersion,
    experiment_id_for,
    make_client,
    set_alias,
    store_id,
    using_tracking_uri,
)

if TYPE_CHECKING:
    import pandas as pd

    from driftloop.training.train import TrainingResult


def pyfunc_wrapper(model: Any) -> Any:
    """A PythonModel around a TabularModel: predict(DataFrame) -> 1-D float scores."""
    import mlflow.pyfunc
    import pandas as pd

    # Defined here so mlflow stays a lazy import; cloudpickle stores the class by value.
    class TabularPyfunc(mlflow.pyfunc.PythonModel):
        # The logged signature validates inputs; skip MLflow's type-hint based wrapping.
        _skip_type_hint_validation = True

        def __init__(self, tabular: Any) -> None:
            self.tabular = tabular

        # No type hints: MLflow would try (and fail) to derive a schema from them.
        def predict(self, context, model_input, params=None):
            frame = model_input
            if not isinstance(frame, pd.DataFrame):
                frame = pd.DataFrame(frame)
            return self.tabular.predict(frame)

    return TabularPyfunc(model)


def _finite(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _day_range(days: list[str]) -> str:
    return f"{days[0]}..{days[-1]}" if days else ""


def training_tags(
    contract: Contract,
    result: TrainingResult,
    days: list[str],
    digests: dict[str, str],
    run_id: str,
    extra: dict[str, str],
) -> dict[str, str]:
    """Tags set on the run and on the registered version (the gate and ledger read them)."""
    primary = result.primary_metric
    digest_json = json.dumps(dict(sorted(digests.items())), separators=(",", ":"))
    # dagster.run_id comes from `extra` (the asset passes its run id).
    tags = {
        "dagster.partitions": _day_range(days),
        "code_version": code_version(),
        "driftloop.source_hash": source_hash(),
        "driftloop.dataset": contract.name,
        "driftloop.task": contract.task.value,
        "driftloop.model_kind": result.model.name,
        "driftloop.train_days": _day_range(result.train_days),
        "driftloop.valid_days": _day_range(result.valid_days),
        "driftloop.holdout_start": result.holdout_days[0],
        "driftloop.holdout_end": result.holdout_days[-1],
        "driftloop.training_run_id": run_id,
        "driftloop.primary_metric": primary,
        "driftloop.holdout_primary": repr(result.holdout_metrics[primary]),
        "driftloop.baseline_holdout_primary": repr(result.baseline_holdout_metrics[primary]),
        "driftloop.data_digest": hashlib.sha256(digest_json.encode()).hexdigest(),
        # Whole map when it fits a tag comfortably; always in data/partitions.json.
        "driftloop.partition_digests": digest_json if len(digest_json) <= 5000 else "see artifact",
    }
    tags.update({k: str(v) for k, v in extra.items()})
    return tags


def _log_importance(importance: dict[str, float]) -> None:
    import mlflow

    ordered = dict(sorted(importance.items(), key=lambda kv: -kv[1]))
    mlflow.log_dict(ordered, "feature_importance.json")
    csv = "feature,importance\n" + "".join(f"{k},{v:.8g}\n" for k, v in ordered.items())
    mlflow.log_text(csv, "feature_importance.csv")
    try:
        # The object API needs no pyplot and no global backend switch.
        from matplotlib.figure import Figure
    except ImportError:
        return
    names = list(ordered)[:30][::-1]
    figure = Figure(figsize=(7, 0.28 * len(names) + 1.2))
    axes = figure.add_subplot()
    axes.barh(names, [ordered[n] for n in names])
    axes.set_xlabel("share of total gain" if names else "")
    axes.set_title("Feature importance")
    figure.tight_layout()
    mlflow.log_figure(figure, "feature_importance.png")


def dataset_schema(frame: pd.DataFrame) -> Any:
    """The schema MLflow would infer for a pandas dataset, without visiting every cell.

    MLflow's own inference visits every value of every text column in Python, which is
    slow at a million rows. Column types come from a sample instead, and the
    `required` flags from vectorised null checks of the whole frame: the same schema.
    """
    from mlflow.models import infer_signature
    from mlflow.types.schema import ColSpec, Schema

    has_nulls = frame.isna().any()
    sample = infer_signature(frame.head(1000)).inputs
    return Schema(
        [
            ColSpec(spec.type, spec.name, required=not bool(has_nulls[spec.name]))
            for spec in sample.inputs
        ]
    )


def split_digest(digests: dict[str, str], days: list[str]) -> str:
    """A dataset digest from the sha256 of the split's partition files.

    MLflow's own pandas digest maps a Python function over every cell of the frame (slow at
    millions of rows, docs/performance.md); the files' hashes, computed anyway for
    provenance, identify the rows at least as well.
    """
    joined = json.dumps({d: digests.get(d, "") for d in days}, sort_keys=True)
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


def _log_datasets(
    contract: Contract, result: TrainingResult, digests: dict[str, str], source: str | None
) -> None:
    import mlflow

    parts = [
        ("training", result.split.train, result.train_days),
        ("validation", result.split.valid, result.valid_days),
        ("evaluation", result.split.holdout, result.holdout_days),
    ]
    # Each split's frame as it is (the features table's columns: ids, event_time, day,
    # features, label); selecting columns of a 10M-row training set would copy gigabytes.
    for context, frame, part_days in parts:
        with warnings.catch_warnings():
            # A local folder matches two equivalent source kinds; MLflow warns, then picks one.
            warnings.filterwarnings("ignore", message=".*interpreted in multiple ways")
            dataset = mlflow.data.from_pandas(
                frame,
                source=source,
                targets="label",
                name=f"{contract.name}/features[{_day_range(part_days)}]",
                digest=split_digest(digests, part_days),
            )
        # Pre-filled cached property: MLflow reads it when the input is logged.
        dataset.__dict__["schema"] = dataset_schema(frame)
        mlflow.log_input(
            dataset,
            context=context,
            tags={"partitions": _day_range(part_days), "days": str(len(part_days))},
        )


def _log_baseline(
    contract: Contract,
    result: TrainingResult,
    tags: dict[str, str],
    model_args: dict[str, Any],
    experiment_id: str,
) -> str:
    """The baseline in a run of its own nested under the training run (same data, same
    split): its metrics under the same names as any model's, its pyfunc as "model"."""
    import mlflow

    primary = result.primary_metric
    with mlflow.start_run(
        experiment_id=experiment_id,
        nested=True,
        run_name=f"{contract.name}-baseline-{result.holdout_days[-1]}",
    ) as run:
        baseline_tags = tags | {
            "driftloop.model_kind": result.baseline.name,
            "driftloop.holdout_primary": repr(result.baseline_holdout_metrics[primary]),
            "driftloop.trained_beside": tags.get("driftloop.training_run_id", ""),
        }
        baseline_tags.pop("driftloop.baseline_run_model_uri", None)
        mlflow.set_tags(baseline_tags)
        metrics = {f"holdout_{k}": v for k, v in result.baseline_holdout_metrics.items()}
        metrics |= {f"valid_{k}": v for k, v in result.baseline_valid_metrics.items()}
        metrics |= {f"rows_{k}": float(v) for k, v in result.rows.items()}
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if _finite(v)})
        with quiet_pyfunc():
            mlflow.pyfunc.log_model(
                name=MODEL_NAME, python_model=pyfunc_wrapper(result.baseline), **model_args
            )
        return run.info.run_id


def _log_params_and_metrics(contract: Contract, result: TrainingResult, days: list[str]) -> None:
    import mlflow

    config = result.config
    params = {
        "model_kind": result.model.name,
        "configured_kind": config.model_kind,
        "choose_kind": config.choose_kind,
        "seed": config.seed,
        "window_days": config.window_days,
        "holdout_days": config.holdout_days,
        "validation_days": config.validation_days,
        "end_date": config.end_date.isoformat() if config.end_date else "latest",
        "search_trials": config.search_trials,
        "search_time_budget_s": config.search_time_budget_s,
        "n_features": len(contract.features),
        "partitions": len(days),
    }
    params |= {f"model.{k}": v for k, v in sorted(result.best_params.items())}
    mlflow.log_params(params)

    metrics = {f"holdout_{k}": v for k, v in result.holdout_metrics.items()}
    metrics |= {f"valid_{k}": v for k, v in result.valid_metrics.items()}
    metrics |= {f"baseline_holdout_{k}": v for k, v in result.baseline_holdout_metrics.items()}
    metrics |= {f"baseline_valid_{k}": v for k, v in result.baseline_valid_metrics.items()}
    metrics |= {f"rows_{k}": float(v) for k, v in result.rows.items()}
    metrics |= {"train_seconds": result.train_seconds, "rows_per_second": result.rows_per_second}
    if getattr(result.model, "best_iteration", 0):
        metrics["best_iteration"] = float(result.model.best_iteration)
    mlflow.log_metrics({k: float(v) for k, v in metrics.items() if _finite(v)})
    for trial in result.trials:
        value = trial.get(f"valid_{result.primary_metric}")
        if value is not None and _finite(value):
            mlflow.log_metric(f"search_valid_{result.primary_metric}", value, trial["trial"])


def _log_artifacts(
    contract: Contract,
    result: TrainingResult,
    days: list[str],
    digests: dict[str, str],
    source: str | None,
) -> None:
    import mlflow

    _log_importance(result.feature_importance)
    _log_datasets(contract, result, digests, source)
    mlflow.log_dict(
        {"days": days, "digests": dict(sorted(digests.items()))}, "data/partitions.json"
    )
    mlflow.log_dict(
        {k: list(v) for k, v in result.split.ranges().items()} | {"rows": result.rows},
        "split.json",
    )
    if result.trials:
        mlflow.log_dict({"trials": result.trials}, "search/trials.json")
    holdout = result.split.holdout
    keep = [c for c in [*contract.id_columns, DAY, "label"] if c in holdout]
    predictions = holdout[keep].assign(
        score=result.holdout_scores, baseline_score=result.baseline_holdout_scores
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "predictions.parquet"
        predictions.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), "holdout")


def log_training(
    contract: Contract,
    result: TrainingResult,
    days: list[str],
    digests: dict[str, str],
    tracking_uri: str,
    tags: dict[str, str] | None = None,
    *,
    artifact_root: Path | None = None,
    source: str | None = None,
) -> RegisteredVersion:
    """Log one training run, register its model as <dataset> and point `challenger` at it.

    `tags` (e.g. dagster.run_id) are added to the computed tags on the run and the
    version; `source` is where the training data came from (the features table folder).
    The runs carry the logging process's token (driftloop.process), so a run its process
    left RUNNING when it died can be ended by the reconciler.
    """
    import mlflow
    from mlflow.models import infer_signature

    client = make_client(tracking_uri)
    experiment_id = experiment_id_for(client, contract.name, tracking_uri, artifact_root)
    features = list(contract.features)
    # Rows first, then columns: selecting columns of the whole training set copies it.
    sample = result.split.train.head(2000)[features].reset_index(drop=True)
    model_args = {
        "signature": infer_signature(sample, result.model.predict(sample)),
        "input_example": sample.head(5),
        "code_paths": [str(PACKAGE_DIR)],  # the pickled model refers to driftloop.training
        "pip_requirements": requirements(),
    }

    with (
        using_tracking_uri(tracking_uri),
        mlflow.start_run(
            experiment_id=experiment_id,
            run_name=f"{contract.name}-{result.model.name}-{days[-1]}",
            tags={PROCESS_TAG: process_token()},
        ) as run,
    ):
        run_id = run.info.run_id
        all_tags = training_tags(contract, result, days, digests, run_id, tags or {})
        mlflow.set_tags(all_tags)
        _log_params_and_metrics(contract, result, days)
        _log_artifacts(contract, result, days, digests, source)
        fault_point("mlflow_logging")
        with quiet_pyfunc():
            logged = mlflow.pyfunc.log_model(
                name=MODEL_NAME, python_model=pyfunc_wrapper(result.model), **model_args
            )
        if result.evaluated is not None:
            # The split model the holdout judged: the gate scores it, not the refit that
            # serves (the refit learnt from the holdout days).
            with quiet_pyfunc():
                mlflow.pyfunc.log_model(
                    name=GATE_MODEL_NAME,
                    python_model=pyfunc_wrapper(result.evaluated),
                    **model_args,
                )
            gate_link = {GATE_MODEL_TAG: f"runs:/{run_id}/{GATE_MODEL_NAME}"}
            mlflow.set_tags(gate_link)
            all_tags |= gate_link
        baseline_run_id = ""
        if result.baseline is not None:
            baseline_tags = all_tags | {PROCESS_TAG: process_token()}
            baseline_run_id = _log_baseline(
                contract, result, baseline_tags, model_args, experiment_id
            )
            baseline_uri = f"runs:/{baseline_run_id}/{MODEL_NAME}"
            links = {"driftloop.baseline_run_id": baseline_run_id}
            links["driftloop.baseline_run_model_uri"] = baseline_uri
            mlflow.set_tags(links)
            all_tags |= links
        version = mlflow.register_model(logged.model_uri, contract.name, tags=all_tags).version

    if not client.get_registered_model(contract.name).description:
        client.update_registered_model(
            contract.name, description=contract.description or f"{contract.name} model"
        )
    set_alias(client, contract.name, CHALLENGER, version)
    return RegisteredVersion(
        model_name=contract.name,
        version=str(version),
        run_id=run_id,
        model_uri=f"models:/{contract.name}/{version}",
        experiment_id=experiment_id,
        baseline_model_uri=f"runs:/{baseline_run_id}/{MODEL_NAME}" if baseline_run_id else "",
        baseline_run_id=baseline_run_id,
        store_id=store_id(client, contract.name) or "",
        model_kind=result.model.name,
    )
