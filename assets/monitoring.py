"""`<dataset>/drift_report` and `<dataset>/performance`: is the champion still right?

drift_report (per day D): the current window is the `window_days` days ending with D
(features + the champion's predictions; a day scored by another version is re-scored by
the champion, so both sides are the same model's). The reference is the champion's
training window with its own predictions (`driftloop.monitoring.signals.reference_data`, sampled
to 200k rows and cached per version). The per-column statistics run on every row of the
window (`driftloop.monitoring.drift.drift_table`, Evidently's rules, fast); Evidently's own HTML
page runs on a seeded sample (`evidently_sample_rows` a side). That keeps a 1M-row window well
inside 2 GB. The window reads the earlier days' partitions directly, not as a Dagster
dependency, so the partition mapping stays one to one.

performance (per day D): once the labels of D are due by the data clock (the latest event
time the lake holds, see `driftloop.monitoring.signals`) the champion's realised metrics on D's
labelled rows are compared with its holdout metric: floor = holdout - 0.05 for AUC-like
metrics, holdout + 10% for error metrics (`default_tolerance`; run config overrides).
A day whose labels are not due is skipped (no materialization) with a log line saying
when it will be; a range run materializes exactly the days that are due, one
`AssetMaterialization` each, so earlier days whose labels have just arrived are caught up.

Checks `drift` and `performance_floor` are warnings (never blocking), one result per day:
in a range run each day gets an `AssetCheckEvaluation` with its partition (the approach of
`assets/raw_data.py`). Both assets skip, like predictions, while there is no champion.
"""

# No `from __future__ import annotations`: Dagster reads the context/config annotations.
import math
import time
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    BetaWarning,
    Config,
    Definitions,
    Failure,
    IdentityPartitionMapping,
    MaterializeResult,
    MetadataValue,
    PreviewWarning,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
)
from pydantic import Field

from assets.partitions import daily_partitions, range_policy
from assets.predictions import Champion, resolve_champion, skip_outputs
from assets.raw_data import _target_materialization
from driftloop.data.contract import Contract
from driftloop.data.lake import write_parquet_atomic
from driftloop.evaluation.metrics import HIGHER_IS_BETTER, PRIMARY_METRIC, metric_names
from driftloop.monitoring.champion import (
    ChampionMonitor,
    champion_monitor,
    holdout_days,
    importance_of,
    signal_summary,
)
from driftloop.monitoring.performance import PooledPerformance
from driftloop.monitoring.signals import (
    DRIFT_SHARE_THRESHOLD,
    FEATURES_TABLE,
    MIN_LABELLED_ROWS,
    MODEL_VERSION,
    PERFORMANCE_TABLE,
    PREDICTION,
    PREDICTIONS_TABLE,
    REFERENCE_MAX_ROWS,
    DriftOutcome,
    compute_drift,
    data_clock,
    feature_kinds,
    holdout_reference,
    html_report_path,
    labelled_predictions,
    labels_due,
    labels_due_at,
    realised_performance,
    reference_data,
    trailing_days,
    training_days,
    window_frame,
    write_drift,
)
from driftloop.paths import DatasetPaths
from resources.lake import LakeResource
from resources.mlflow import MlflowResource

DRIFT_CHECK = "drift"
PERFORMANCE_CHECK = "performance_floor"


class DriftReportConfig(Config):
    window_days: int = Field(default=1, ge=1, description="Days of the current window, ending D")
    drift_share_threshold: float = Field(
        default=DRIFT_SHARE_THRESHOLD,
        gt=0,
        le=1,
        description="Share of drifted features at which the dataset counts as drifted",
    )
    prediction_drift_breaches: bool = Field(
        default=True, description="A drifted prediction alone fails the drift check"
    )
    html: bool = Field(default=True, description="Write Evidently's HTML page")
    html_latest_days: int = Field(
        default=3,
        ge=1,
        description="In a run over many days (a backfill, a catch-up), write the HTML page "
        "for the latest N days only: every day still gets its full statistics and verdict",
    )
    evidently_sample_rows: int = Field(default=20_000, ge=100, description="Rows a side")
    reference_max_rows: int = Field(default=REFERENCE_MAX_ROWS, ge=1000)
    seed: int = 0


class PerformanceConfig(Config):
    tolerance: float | None = Field(
        default=None,
        ge=0,
        description="Allowed loss vs the holdout metric; default 0.05 absolute for "
        "higher-is-better metrics, 10% relative for error metrics",
    )
    relative_tolerance: bool | None = Field(
        default=None, description="Tolerance as a fraction of the holdout value"
    )
    min_labelled_rows: int = Field(
        default=MIN_LABELLED_ROWS, ge=1, description="Fewer labels than this never breach"
    )
    threshold: float = Field(default=0.5, description="Decision threshold (binary)")


def _spec(key: AssetKey, name: str, description: str, contract: Contract) -> AssetCheckSpec:
    with warnings.catch_warnings():
        # partitions_def on a check spec is a preview in 1.13: one result per day.
        warnings.simplefilter("ignore", PreviewWarning)
        return AssetCheckSpec(
            name,
            asset=key,
            blocking=False,
            description=description,
            partitions_def=daily_partitions(contract),
        )


def build_monitoring(contract: Contract) -> Definitions:
    name = contract.name
    predictions_key = AssetKey([name, "predictions"])
    drift_key = AssetKey([name, "drift_report"])
    performance_key = AssetKey([name, "performance"])
    partitions = daily_partitions(contract)
    dep = AssetDep(predictions_key, partition_mapping=IdentityPartitionMapping())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BetaWarning)  # backfill_policy is beta in 1.13
        drift_report = asset(
            key=drift_key,
            group_name=name,
            partitions_def=partitions,
            deps=[dep],
            backfill_policy=range_policy(),
            output_required=False,
            check_specs=[
                _spec(
                    drift_key,
                    DRIFT_CHECK,
                    "Calibrated importance-weighted drift score below the retraining "
                    "policy's drift_threshold",
                    contract,
                )
            ],
            description=(
                f"{name}: data and prediction drift of the trailing window against the "
                "champion's training window; Evidently HTML (sampled), per-column table "
                "and summary.json per day."
            ),
            kinds={"evidently", "parquet"},
        )(_drift_compute(contract, drift_key))
        performance = asset(
            key=performance_key,
            group_name=name,
            partitions_def=partitions,
            deps=[dep],
            backfill_policy=range_policy(),
            output_required=False,
            check_specs=[
                _spec(
                    performance_key,
                    PERFORMANCE_CHECK,
                    "The champion's realised primary metric, pooled over the trailing days, "
                    "stays above the floor its holdout's bootstrap sets at that row count",
                    contract,
                )
            ],
            description=(
                f"{name}: the champion's realised metrics on each day once its labels are "
                f"due (end of day + label delay {contract.label_delay}, by the lake's data "
                "clock), against its holdout metric."
            ),
            kinds={"parquet"},
        )(_performance_compute(contract, performance_key))
    return Definitions(assets=[drift_report, performance])


build = build_monitoring


# ---------------------------------------------------------------------------- drift


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _drift_table_metadata(table: "pd.DataFrame") -> MetadataValue:
    schema = TableSchema(
        columns=[
            TableColumn("column", "string"),
            TableColumn("kind", "string"),
            TableColumn("method", "string"),
            TableColumn("score", "float"),
            TableColumn("threshold", "float"),
            TableColumn("drifted", "bool"),
        ]
    )
    records = [
        TableRecord(
            {
                "column": str(row.column),
                "kind": str(row.kind),
                "method": str(row.method),
                "score": _nan_to_none(round(float(row.score), 6)),
                "threshold": _nan_to_none(float(row.threshold)),
                "drifted": bool(row.drifted),
            }
        )
        for row in table.sort_values("strength", ascending=False, na_position="last").itertuples()
    ]
    return MetadataValue.table(records, schema=schema)


def _drift_description(outcome: DriftOutcome) -> str:
    s = outcome.summary
    verdict = "drift that matters" if outcome.breached else "no drift that matters"
    ranked = [r["column"] for r in s.get("ranked_features", [])[:3]]
    text = (
        f"{s['day']}: {verdict}: calibrated drift score {s['drift_score']:.2f} (breaches at "
        f"{s['drift_threshold']:.2f})" + (f", most: {', '.join(ranked)}" if ranked else "")
    )
    estimated = s.get("estimated") or {}
    if isinstance(estimated.get("value"), float) and math.isfinite(estimated["value"]):
        text += (
            f"; estimated {estimated['metric']} {estimated['value']:.4f} over "
            f"{estimated['days']} days (floor {estimated['floor']:.4f})"
        )
    return text + (
        f"; per-column tests: {s['share_drifted']:.0%} of features drifted, prediction "
        f"drifted: {s['prediction_drifted']}"
    )


def _drift_check_metadata(outcome: DriftOutcome) -> dict[str, Any]:
    s = outcome.summary
    return {
        "drift_score": float(s["drift_score"]),
        "share_drifted": float(s["share_drifted"]),
        "dataset_drifted": bool(s["dataset_drifted"]),
        "prediction_drifted": bool(s["prediction_drifted"]),
        "prediction_drift_score": float(s["prediction_drift_score"] or 0.0),
        "top_columns": MetadataValue.json([r["column"] for r in s["ranked_features"]]),
    }


def _drift_compute(contract: Contract, key: AssetKey) -> Callable[..., Iterator[Any]]:
    name = contract.name

    def drift_report(
        context: AssetExecutionContext,
        config: DriftReportConfig,
        lake: LakeResource,
        mlflow: MlflowResource,
    ) -> Iterator[Any]:
        paths = lake.paths(name)
        days = sorted(context.partition_keys)
        champion = resolve_champion(context, name, mlflow)
        if champion is None:
            yield from skip_outputs(context)
            return
        absent = [d for d in days if not paths.partition_file(FEATURES_TABLE, d).exists()]
        if absent:
            raise Failure(
                description=f"{name}: no features partition for {', '.join(absent)}; "
                f"materialize {name}/features and {name}/predictions first"
            )
        started = time.perf_counter()
        reference = reference_data(
            contract,
            paths,
            champion.number,
            champion.tags,
            champion.score,
            max_rows=config.reference_max_rows,
        )
        columns = {**feature_kinds(contract), PREDICTION: "numeric"}
        monitor = _champion_monitor(contract, paths, champion, mlflow, reference)
        frames: dict[str, pd.DataFrame] = {}
        outcomes: dict[str, DriftOutcome] = {}
        # Rendering Evidently's page costs seconds a day; a 60-day backfill needs the
        # verdicts of every day but a person reads the pages of the latest few.
        html_days = set(sorted(days)[-config.html_latest_days :]) if config.html else set()
        for day in days:
            window = trailing_days(day, config.window_days)
            current, sources = window_frame(
                contract, paths, window, champion.number, champion.score
            )
            rescored = [d for d, source in sources.items() if source == "scored"]
            if rescored:
                context.log.warning(
                    f"{name} {day}: predictions of {rescored} were not by champion "
                    f"v{champion.number} (or absent): scored them now for the drift window"
                )
            outcome = compute_drift(
                contract,
                reference,
                current,
                day=day,
                version=champion.number,
                window=[d for d in window if d in sources],
                drift_share_threshold=config.drift_share_threshold,
                prediction_drift_breaches=config.prediction_drift_breaches,
            )
            _calibrate_outcome(contract, paths, champion, monitor, outcome, day, frames)
            report = None
            if day in html_days and (len(current) == 0 or len(reference) == 0):
                # Evidently refuses a side without values; the statistics above say "skipped".
                context.log.warning(f"{name} {day}: no rows in the window: no HTML report")
            elif day in html_days:
                from driftloop.monitoring.drift_report import evidently_html

                report = evidently_html(
                    reference,
                    current,
                    columns,
                    html_report_path(paths, day),
                    sample_rows=config.evidently_sample_rows,
                    seed=config.seed,
                )
                outcome.summary["report_path"] = str(report)
            table_path, summary_file = write_drift(paths, outcome)
            outcomes[day] = outcome
            s = outcome.summary
            meta: dict[str, Any] = _calibrated_metadata(s)
            meta |= {
                "share_drifted": float(s["share_drifted"]),
                "dataset_drifted": bool(s["dataset_drifted"]),
                "prediction_drifted": bool(s["prediction_drifted"]),
                "prediction_drift_score": float(s["prediction_drift_score"] or 0.0),
                "breached": bool(s["breached"]),
                "champion_version": champion.number,
                "reference_rows": len(reference),
                "current_rows": len(current),
                "columns": _drift_table_metadata(outcome.table),
                "top_drifted_features": MetadataValue.json(s["ranked_features"]),
                "table_path": MetadataValue.path(str(table_path)),
                "summary_path": MetadataValue.path(str(summary_file)),
            }
            if report is not None:
                meta["report_path"] = MetadataValue.path(str(report))
                meta["report_url"] = MetadataValue.url(report.resolve().as_uri())
            context.add_asset_metadata(meta, partition_key=day)
            context.log.info(_drift_description(outcome))

        yield MaterializeResult(
            metadata={
                "champion_version": champion.number,
                "window_days": config.window_days,
                "reference_days": MetadataValue.json(_span(training_days(champion.tags))),
                "breached_days": MetadataValue.json([d for d, o in outcomes.items() if o.breached]),
                "seconds": round(time.perf_counter() - started, 3),
            }
        )
        yield from _check_results(
            context,
            key,
            DRIFT_CHECK,
            {
                day: (not o.breached, _drift_description(o), _drift_check_metadata(o))
                for day, o in outcomes.items()
            },
        )

    return drift_report


def _champion_monitor(
    contract: Contract,
    paths: DatasetPaths,
    champion: Champion,
    mlflow: MlflowResource,
    reference: "pd.DataFrame | None",
) -> ChampionMonitor:
    """The champion's calibration (given its reference), estimator and holdout (cached per
    version)."""
    days = holdout_days(champion.tags)
    holdout, _ = window_frame(
        contract, paths, days, champion.number, champion.score, with_label=True
    )
    client = mlflow.client()
    return champion_monitor(
        contract,
        paths,
        champion.number,
        champion.tags,
        reference,
        importance_of(client, champion.version.run_id),
        holdout,
        holdout[PREDICTION].to_numpy(dtype="float64") if len(holdout) else [],
        contract.retraining,
    )


def _calibrate_outcome(
    contract: Contract,
    paths: DatasetPaths,
    champion: Champion,
    monitor: ChampionMonitor,
    outcome: DriftOutcome,
    day: str,
    frames: dict[str, "pd.DataFrame"],
) -> None:
    """The day's calibrated drift and the estimate over the trailing pool, into the summary:
    the day breaches on the calibrated score (the Evidently-style share stays beside it)."""
    import pandas as pd

    policy = contract.retraining
    after = max(holdout_days(champion.tags) or [""])
    pool_days = [d for d in trailing_days(day, policy.performance_window_days) if d > after]
    for d in [*pool_days, day]:
        if d not in frames:
            frames[d] = window_frame(contract, paths, [d], champion.number, champion.score)[0]
    pool = [frames[d] for d in pool_days if len(frames[d])]
    pooled = pd.concat(pool, ignore_index=True) if pool else frames[day].iloc[0:0]
    scores = pooled[PREDICTION].to_numpy(dtype="float64")
    estimated = monitor.estimated(pooled, scores, len(pool), policy.performance_confidence)
    calibrated = signal_summary(monitor.drift(frames[day]), estimated, policy)
    outcome.summary["evidently_breached"] = outcome.summary["breached"]
    outcome.summary.update(calibrated)
    outcome.summary["breached"] = calibrated["drift_breached"]


def _calibrated_metadata(summary: dict[str, Any]) -> dict[str, Any]:
    estimated = summary["estimated"]
    meta: dict[str, Any] = {
        "drift_score": float(summary["drift_score"]),
        "drift_threshold": float(summary["drift_threshold"]),
        "prediction_excess": float(summary["prediction_excess"]),
        "estimated_breached": bool(summary["estimated_breached"]),
        "estimated_pool_rows": int(estimated["rows"]),
        "ranked_features": _ranked_table(summary["ranked_features"]),
    }
    for key in ("value", "floor", "reference"):
        value = estimated[key]
        if isinstance(value, float) and math.isfinite(value):
            meta[f"estimated_{estimated['metric']}_{key}".replace("_value", "")] = value
    return meta


def _ranked_table(rows: list[dict[str, Any]]) -> MetadataValue:
    schema = TableSchema(
        columns=[
            TableColumn("column", "string"),
            TableColumn("weight", "float", description="the champion's importance share"),
            TableColumn("excess", "float", description="distance / calibrated bound - 1"),
            TableColumn("contribution", "float", description="weight x excess"),
        ]
    )
    records = [
        TableRecord({k: (round(float(v), 6) if k != "column" else str(v)) for k, v in r.items()})
        for r in rows
    ]
    return MetadataValue.table(records, schema=schema)


def _span(days: list[str]) -> list[str]:
    return [days[0], days[-1]] if days else []


def _check_results(
    context: AssetExecutionContext,
    key: AssetKey,
    check: str,
    results: dict[str, tuple[bool, str, dict[str, Any]]],
    asset_output_yielded: bool = True,
) -> Iterator[Any]:
    """One WARN result per day: AssetCheckResult in a one-day run (the run's partition);
    else the check output once and an AssetCheckEvaluation per day with its partition."""
    if AssetCheckKey(key, check) not in context.selected_asset_check_keys:
        return
    if context.has_partition_key and asset_output_yielded and len(results) == 1:
        passed, description, metadata = next(iter(results.values()))
        yield AssetCheckResult(
            check_name=check,
            passed=passed,
            severity=AssetCheckSeverity.WARN,
            description=description,
            metadata=metadata,
        )
        return
    yield from skip_outputs(context)
    for day, (passed, description, metadata) in results.items():
        yield AssetCheckEvaluation(
            asset_key=key,
            check_name=check,
            passed=passed,
            metadata=metadata,
            target_materialization_data=_target_materialization(context, key, day),
            severity=AssetCheckSeverity.WARN,
            description=description,
            blocking=False,
            partition=day,
        )


# ---------------------------------------------------------------------- performance


def _performance_description(row: dict[str, Any]) -> str:
    metric, value = row["primary_metric"], row["value"]
    day = f"{row['day']}: the day's {metric} " + (
        "undefined" if math.isnan(value) else f"{value:.4f}"
    )
    day += f" on {row['labelled_rows']} labels (v{row['model_version']})"
    pooled = row["pooled_value"]
    if math.isnan(pooled):
        return f"{day}; champion v{row['champion_version']}: no labelled pool yet: not judged"
    relation = "below" if HIGHER_IS_BETTER[metric] else "above"
    state = f"{relation} the floor" if row["breached"] else "within the floor"
    return (
        f"{day}; champion v{row['champion_version']} over the last {row['pooled_days']} "
        f"labelled days ({row['pooled_rows']} rows): {metric} {pooled:.4f} {state} "
        f"{row['pooled_floor']:.4f} (holdout {row['pooled_reference']:.4f}, floor from its "
        "bootstrap at that row count)"
    )


def _model_that_scored(
    paths: DatasetPaths,
    day: str,
    champion: Champion,
    models: dict[str, Champion],
    client: Any,
    mlflow: MlflowResource,
) -> Champion:
    """The version whose predictions are stored for ``day`` (the champion when unscored)."""
    import pyarrow.parquet as pq

    path = paths.partition_file(PREDICTIONS_TABLE, day)
    if not path.exists():
        return champion
    versions = set(pq.read_table(path, columns=[MODEL_VERSION]).column(0).to_pylist())
    if len(versions) != 1:
        return champion
    number = str(versions.pop())
    if number not in models:
        version = client.get_model_version(champion.name, number)
        models[number] = Champion(champion.name, version, mlflow)
    return models[number]


def _pooled_realised(
    contract: Contract,
    paths: DatasetPaths,
    champion: Champion,
    monitor: ChampionMonitor,
    day: str,
    clock: Any,
) -> PooledPerformance:
    """The champion's realised metric over the trailing days whose labels are due (after
    its holdout), against the floor at the pool's size."""
    import numpy as np

    policy = contract.retraining
    after = max(holdout_days(champion.tags) or [""])
    days = [
        d
        for d in trailing_days(day, policy.performance_window_days)
        if d > after and labels_due(contract, d, clock)
    ]
    frames = [
        labelled_predictions(contract, paths, d, champion.number, champion.score) for d in days
    ]
    frames = [f for f in frames if len(f)]
    labels = np.concatenate(
        [f["label"].to_numpy("float64", na_value=np.nan) for f in frames] or [[]]
    )
    scores = np.concatenate([f[PREDICTION].to_numpy("float64") for f in frames] or [[]])
    return monitor.realised(labels, scores, len(frames), policy.performance_confidence)


def _performance_compute(contract: Contract, key: AssetKey) -> Callable[..., Iterator[Any]]:
    name = contract.name
    primary = PRIMARY_METRIC[contract.task]

    def performance(
        context: AssetExecutionContext,
        config: PerformanceConfig,
        lake: LakeResource,
        mlflow: MlflowResource,
    ) -> Iterator[Any]:
        import pandas as pd  # on use: loading the code location must not import pandas

        paths = lake.paths(name)
        days = sorted(context.partition_keys)
        champion = resolve_champion(context, name, mlflow)
        if champion is None:
            yield from skip_outputs(context)
            return
        clock = data_clock(contract, paths)
        due = [d for d in days if labels_due(contract, d, clock)]
        for day in days:
            if day not in due:
                context.log.info(
                    f"{name} {day}: labels not due yet: due at "
                    f"{labels_due_at(contract, day).isoformat(sep=' ')} (end of day + label "
                    f"delay {contract.label_delay}); the lake's data clock is at "
                    f"{clock.isoformat(sep=' ') if clock else '(no raw data)'}: skipped"
                )
        if not due:
            yield from skip_outputs(context)
            return
        absent = [d for d in due if not paths.partition_file(FEATURES_TABLE, d).exists()]
        if absent:
            raise Failure(
                description=f"{name}: no features partition for {', '.join(absent)}; "
                f"materialize {name}/features and {name}/predictions first"
            )
        client = mlflow.client()
        models: dict[str, Champion] = {champion.number: champion}
        rows: dict[str, dict[str, Any]] = {}
        monitor = _champion_monitor(contract, paths, champion, mlflow, None)
        for day in due:
            # Realised performance is that of the model that scored the day, judged
            # against its own holdout: a later champion may have trained on this day.
            model = _model_that_scored(paths, day, champion, models, client, mlflow)
            reference = holdout_reference(client, model.version, primary)
            if math.isnan(reference):
                context.log.warning(
                    f"{name} v{model.number}: no holdout_{primary} on its run or tags: "
                    "metrics are recorded but nothing can breach"
                )
            trained_on = set(training_days(model.tags))
            frame, sources = window_frame(
                contract, paths, [day], model.number, model.score, with_label=True
            )
            row = realised_performance(
                contract,
                day,
                frame["label"].to_numpy(dtype="float64", na_value=math.nan),
                frame[PREDICTION].to_numpy(dtype="float64"),
                version=model.number,
                reference=reference,
                tolerance=config.tolerance,
                relative=config.relative_tolerance,
                min_labelled_rows=config.min_labelled_rows,
                threshold=config.threshold,
            )
            pooled = _pooled_realised(contract, paths, champion, monitor, day, clock)
            row |= {
                "daily_breached": bool(row["breached"]),
                "breached": bool(pooled.breached),
                "champion_version": champion.number,
                **{f"pooled_{k}": v for k, v in pooled.to_dict().items() if k != "breached"},
                "scored_from": sources.get(day, "scored"),
                "in_training_window": day in trained_on,
                "data_clock": clock.isoformat(sep=" ") if clock else None,
                "labels_due_at": labels_due_at(contract, day).isoformat(sep=" "),
            }
            path = write_parquet_atomic(
                pd.DataFrame([row]), paths.partition_file(PERFORMANCE_TABLE, day)
            )
            rows[day] = row
            metadata: dict[str, Any] = {
                name_: float(row[name_]) for name_ in metric_names(contract.task)
            }
            metadata |= {
                "model_version": model.number,
                "rows": int(row["rows"]),
                "labelled_rows": int(row["labelled_rows"]),
                "reference": float(row["reference"]),
                "floor": float(row["floor"]),
                "breached": bool(row["breached"]),
                "pooled_value": float(row["pooled_value"]),
                "pooled_floor": float(row["pooled_floor"]),
                "pooled_rows": int(row["pooled_rows"]),
                "pooled_days": int(row["pooled_days"]),
                "primary_metric": primary,
                "path": MetadataValue.path(str(path)),
            }
            context.log.info(_performance_description(row))
            yield AssetMaterialization(asset_key=key, partition=day, metadata=metadata)

        yield from _check_results(
            context,
            key,
            PERFORMANCE_CHECK,
            {
                day: (
                    not row["breached"],
                    _performance_description(row),
                    {
                        "value": float(row["pooled_value"]),
                        "floor": float(row["pooled_floor"]),
                        "reference": float(row["pooled_reference"]),
                        "pooled_rows": int(row["pooled_rows"]),
                        "daily_value": float(row["value"]),
                    },
                )
                for day, row in rows.items()
            },
            asset_output_yielded=False,
        )

    return performance


__all__ = ["Champion", "DriftReportConfig", "PerformanceConfig", "build_monitoring"]
