"""`<dataset>/drift_report` (here) and `<dataset>/performance` (`assets.monitoring_performance`):
is the champion still right?

drift_report (per day D): the day breaches on the calibrated, importance-weighted drift
score of D against the champion's own day-to-day variation inside its training window
(`driftloop.monitoring.calibrated_drift`, judged by the contract's `retraining:` block);
the drifted features are ranked by their weight in that score. Beside it, the
performance of the trailing days estimated before labels arrive (CBPE / DLE,
`driftloop.monitoring.estimation`) against the champion's floor. The predictions are read
from what the predictions asset wrote (a day scored by another version is re-scored by
the champion, so both sides are the same model's). The Evidently-compatible per-column
tests (`driftloop.monitoring.drift`) run on every row of the `window_days` window against
the champion's reference (`driftloop.monitoring.reference`, sampled to 200k rows, cached
per version) and Evidently's own HTML page on a seeded sample, for people to read.

Check `drift` is a warning (never blocking), one result per day: in a range run each day
gets an `AssetCheckEvaluation` with its partition (the approach of `assets/raw_data.py`).
Both assets skip, like predictions, while there is no champion.
"""

# No `from __future__ import annotations`: Dagster reads the context/config annotations.
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    BetaWarning,
    Config,
    Definitions,
    IdentityPartitionMapping,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from assets.automation import keep_current, store_retry_policy
from assets.cost import measured_step
from assets.monitoring_checks import (
    calibrated_metadata,
    champion_monitor_for,
    check_results,
    check_spec,
    day_span,
    drift_table_metadata,
    require_features,
)
from assets.monitoring_performance import (
    PERFORMANCE_CHECK,
    PerformanceConfig,
    performance_compute,
)
from assets.partitions import daily_partitions, range_policy
from assets.predictions import Champion, resolve_champion, skip_outputs
from driftloop.data.contract import Contract
from driftloop.data.unseen import read_unseen_categories
from driftloop.monitoring.champion import (
    ChampionMonitor,
    holdout_days,
    signal_summary,
)
from driftloop.monitoring.drift_outcome import (
    DriftOutcome,
    compute_drift,
    html_report_path,
    write_drift,
)
from driftloop.monitoring.reference import reference_data
from driftloop.monitoring.signals import (
    DRIFT_SHARE_THRESHOLD,
    PREDICTION,
    REFERENCE_MAX_ROWS,
    feature_kinds,
    trailing_days,
    training_days,
    window_frame,
)
from driftloop.paths import DatasetPaths
from resources.lake import LakeResource
from resources.mlflow import MlflowResource

DRIFT_CHECK = "drift"


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
            automation_condition=keep_current(),
            retry_policy=store_retry_policy(),
            check_specs=[
                check_spec(
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
        )(measured_step(name, "drift_report")(_drift_compute(contract, drift_key)))
        performance = asset(
            key=performance_key,
            group_name=name,
            partitions_def=partitions,
            deps=[dep],
            backfill_policy=range_policy(),
            output_required=False,
            automation_condition=keep_current(retry_failed=False),
            retry_policy=store_retry_policy(),
            check_specs=[
                check_spec(
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
        )(measured_step(name, "performance")(performance_compute(contract, performance_key)))
    return Definitions(assets=[drift_report, performance])


build = build_monitoring


# ---------------------------------------------------------------------------- drift


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
        require_features(name, paths, days)
        started = time.perf_counter()
        reference = reference_data(
            contract,
            paths,
            champion.number,
            champion.tags,
            champion.score,
            max_rows=config.reference_max_rows,
        )
        monitor = champion_monitor_for(contract, paths, champion, mlflow, reference)
        run = DriftRun(context, contract, paths, champion, config, reference, monitor, {})
        outcomes: dict[str, DriftOutcome] = {}
        # Rendering Evidently's page is the slow part of a day; a 60-day backfill needs the
        # verdicts of every day but a person reads the pages of the latest few.
        html_days = set(sorted(days)[-config.html_latest_days :]) if config.html else set()
        for day in days:
            outcomes[day] = _drift_day(run, day, html=day in html_days)

        yield MaterializeResult(
            metadata={
                "champion_version": champion.number,
                "window_days": config.window_days,
                "reference_days": MetadataValue.json(day_span(training_days(champion.tags))),
                "breached_days": MetadataValue.json([d for d, o in outcomes.items() if o.breached]),
                "seconds": round(time.perf_counter() - started, 3),
            }
        )
        yield from check_results(
            context,
            key,
            DRIFT_CHECK,
            {
                day: (not o.breached, _drift_description(o), _drift_check_metadata(o))
                for day, o in outcomes.items()
            },
        )

    return drift_report


@dataclass
class DriftRun:
    """What every day of one drift_report run shares: the champion, its reference and
    monitor, and the feature frames read so far (each day's window overlaps the last)."""

    context: AssetExecutionContext
    contract: Contract
    paths: DatasetPaths
    champion: Champion
    config: DriftReportConfig
    reference: "pd.DataFrame"
    monitor: ChampionMonitor
    frames: dict[str, "pd.DataFrame"]


def _drift_day(run: DriftRun, day: str, html: bool) -> DriftOutcome:
    """One day's drift: the per-column tests, the calibrated verdict, the HTML page, the
    files and the day's metadata."""
    context, contract, paths, champion = run.context, run.contract, run.paths, run.champion
    config, reference, monitor, frames = run.config, run.reference, run.monitor, run.frames
    name = contract.name
    window = trailing_days(day, config.window_days)
    current, sources = window_frame(contract, paths, window, champion.number, champion.score)
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
    report = _html_page(context, contract, paths, config, reference, current, day) if html else None
    if report is not None:
        outcome.summary["report_path"] = str(report)
    files = write_drift(paths, outcome)
    rows = (len(reference), len(current))
    meta = _drift_day_metadata(paths, day, outcome, champion.number, rows, files, report)
    context.add_asset_metadata(meta, partition_key=day)
    context.log.info(_drift_description(outcome))
    return outcome


def _drift_day_metadata(
    paths: DatasetPaths,
    day: str,
    outcome: DriftOutcome,
    version: str,
    rows: tuple[int, int],
    files: tuple[Path, Path],
    report: Path | None,
) -> dict[str, Any]:
    """A day's drift metadata: the verdicts, the column table and the files written."""
    table_path, summary_file = files
    s = outcome.summary
    meta: dict[str, Any] = calibrated_metadata(s)
    meta |= {
        "share_drifted": float(s["share_drifted"]),
        "dataset_drifted": bool(s["dataset_drifted"]),
        "prediction_drifted": bool(s["prediction_drifted"]),
        "prediction_drift_score": float(s["prediction_drift_score"] or 0.0),
        "breached": bool(s["breached"]),
        "champion_version": version,
        "reference_rows": rows[0],
        "current_rows": rows[1],
        "columns": drift_table_metadata(outcome.table),
        "top_drifted_features": MetadataValue.json(s["ranked_features"]),
        # Values of free categorical features no earlier raw day held (scored as missing).
        "unseen_categories": MetadataValue.json(read_unseen_categories(paths, day)),
        "table_path": MetadataValue.path(str(table_path)),
        "summary_path": MetadataValue.path(str(summary_file)),
    }
    if report is not None:
        meta["report_path"] = MetadataValue.path(str(report))
        meta["report_url"] = MetadataValue.url(report.resolve().as_uri())
    return meta


def _html_page(
    context: AssetExecutionContext,
    contract: Contract,
    paths: DatasetPaths,
    config: DriftReportConfig,
    reference: "pd.DataFrame",
    current: "pd.DataFrame",
    day: str,
) -> Any:
    """Evidently's page of the day (on a seeded sample), or None without rows."""
    if len(current) == 0 or len(reference) == 0:
        # Evidently refuses a side without values; the statistics say "skipped".
        context.log.warning(f"{contract.name} {day}: no rows in the window: no HTML report")
        return None
    from driftloop.monitoring.drift_report import evidently_html

    columns = {**feature_kinds(contract), PREDICTION: "numeric"}
    return evidently_html(
        reference,
        current,
        columns,
        html_report_path(paths, day),
        sample_rows=config.evidently_sample_rows,
        seed=config.seed,
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


__all__ = ["DriftReportConfig", "PerformanceConfig", "build_monitoring"]
