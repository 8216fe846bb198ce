"""Eval report and promotion: the challenger against the champion, through the gate.

``<dataset>/eval_report`` scores the challenger and the current champion (or, for the
first model, the scikit-learn baseline trained on the same split) on the challenger's
holdout days, runs the paired bootstrap and the gate, and writes
``reports/<dataset>/eval/v<version>.html`` with the decision as ``v<version>.json``
beside it. ``<dataset>/promotion`` applies that decision: ledger entry first, version
tags next, and the ``champion`` alias last, so a crash never leaves a model
half-promoted (re-running finishes the job without a second ledger entry).

No ``from __future__ import annotations`` here: Dagster reads the config annotation.
"""

import json
import math
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from driftloop.evaluation.gate import GateConfig

from dagster import (
    AssetExecutionContext,
    AssetKey,
    Config,
    Definitions,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from assets.partitions import ONE_RUN
from driftloop.data.contract import Contract
from driftloop.data.lake import days_between, partition_files, sql_file_list, write_text_atomic
from driftloop.evaluation import ledger
from driftloop.names import CHALLENGER, CHAMPION
from driftloop.paths import DatasetPaths

MAX_TAG = 5000  # MLflow tag values are limited; full reasons live in the ledger and report


class EvalReportConfig(Config):
    """The gate's settings (defaults: driftloop.evaluation.gate.GateConfig)."""

    margin: float = Field(
        default=0.0, description="the CI lower bound of the improvement must exceed this"
    )
    confidence: float = Field(default=0.95, description="two-sided bootstrap interval level")
    min_slice_rows: int = Field(default=500, description="smaller slices are not gated")
    slice_tolerance: float = Field(
        default=0.02, description="a slice may be worse by at most this (metric units)"
    )
    bootstrap_samples: int = Field(default=300, description="paired bootstrap resamples")
    seed: int = Field(default=20130101, description="bootstrap seed (reproducible results)")

    def gate(self) -> "GateConfig":
        from driftloop.evaluation.gate import (
            GateConfig,  # imports the evaluation stack: on use only
        )

        return GateConfig(**self.model_dump())


def report_paths(paths: DatasetPaths, version: str) -> tuple[Path, Path]:
    """(HTML report, decision JSON) of one model version."""
    base = paths.reports / "eval" / f"v{version}"
    return base.with_suffix(".html"), base.with_suffix(".json")


def read_holdout(contract: Contract, paths: DatasetPaths, start: str, end: str) -> "pd.DataFrame":
    """The features-table rows of the holdout days [start, end], in a stable order."""
    import duckdb

    days = days_between(date.fromisoformat(start), date.fromisoformat(end))
    files = partition_files(paths.table("features"), days)
    if not files:
        raise Failure(
            f"{contract.name}: no features partitions for the holdout {start}..{end} under "
            f"{paths.table('features')}; materialize {contract.name}/features for those days"
        )
    order = ", ".join(f'"{c}"' for c in ["event_time", *contract.id_columns])
    con = duckdb.connect()
    try:
        return con.execute(
            f"SELECT * FROM read_parquet({sql_file_list(files)}, union_by_name = true) "
            f"ORDER BY {order}"
        ).df()
    finally:
        con.close()


def _md_table(frame: "pd.DataFrame", signed: tuple[str, ...] = ()) -> str:
    import numpy as np

    def cell(column: str, value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        if isinstance(value, float | np.floating):
            return f"{value:+.4f}" if column in signed else f"{value:.4f}"
        return str(value).replace("|", "\\|")

    head = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = [
        "| " + " | ".join(cell(c, row[c]) for c in frame.columns) + " |"
        for row in frame.to_dict(orient="records")
    ]
    return "\n".join([head, rule, *rows])


def _reasons_md(reasons: list[str]) -> str:
    return "\n".join(f"- {r}" for r in reasons) or "-"


def _floats(**values: float) -> dict[str, MetadataValue]:
    return {k: MetadataValue.float(float(v)) for k, v in values.items() if math.isfinite(v)}


def _eval_report(
    context: AssetExecutionContext, contract: Contract, config: EvalReportConfig
) -> MaterializeResult:
    from driftloop.evaluation.comparison import evaluate, render_report
    from driftloop.evaluation.gate import decide
    from driftloop.training.registry import load_scoring_model, version_for_alias

    name = contract.name
    paths = context.resources.lake.paths(name)
    mlflow_resource = context.resources.mlflow
    tracking_uri = mlflow_resource.uri()
    client = mlflow_resource.client()

    challenger = version_for_alias(client, name, CHALLENGER)
    if challenger is None:
        message = f"no model version of {name!r} has the alias 'challenger': nothing to evaluate"
        context.log.info(message)
        return MaterializeResult(metadata={"status": message})
    version = str(challenger.version)
    champion = version_for_alias(client, name, CHAMPION)
    if champion is not None and str(champion.version) == version:
        message = f"challenger v{version} already is the champion: nothing to evaluate"
        context.log.info(message)
        return MaterializeResult(metadata={"status": message, "challenger_version": version})

    tags = dict(challenger.tags or {})
    missing = [
        t
        for t in ("driftloop.holdout_start", "driftloop.holdout_end")
        + (() if champion else ("driftloop.baseline_run_model_uri",))
        if not tags.get(t)
    ]
    if missing:
        raise Failure(f"{name} v{version} lacks the version tag(s) {missing} set by training")
    start, end = tags["driftloop.holdout_start"], tags["driftloop.holdout_end"]
    holdout = read_holdout(contract, paths, start, end)

    if champion is not None:
        reference_uri = f"models:/{name}/{champion.version}"
        reference_name = f"champion v{champion.version}"
    else:
        reference_uri = tags["driftloop.baseline_run_model_uri"]
        reference_name = "baseline (scikit-learn)"
    challenger_uri = f"models:/{name}/{version}"
    context.log.info(
        f"scoring {challenger_uri} and {reference_uri} on {len(holdout):,} rows ({start}..{end})"
    )
    challenger_scores = load_scoring_model(challenger_uri, tracking_uri)(holdout)
    reference_scores = load_scoring_model(reference_uri, tracking_uri)(holdout)
    from driftloop.evaluation.explain import explain, tabular_model

    model = tabular_model(challenger_uri, tracking_uri)
    explanation = explain(model, holdout) if model is not None else None

    gate_config = config.gate()
    result = evaluate(
        contract,
        holdout,
        challenger_scores,
        reference_scores,
        reference_name,
        challenger_name=f"challenger v{version}",
        samples=gate_config.bootstrap_samples,
        confidence=gate_config.confidence,
        seed=gate_config.seed,
        explanation=explanation,
    )
    decision = decide(result, gate_config, is_first=champion is None)

    html_path, json_path = report_paths(paths, version)
    html = render_report(
        result,
        decision,
        holdout=f"{start} to {end}",
        **{"challenger model": challenger_uri, "reference model": reference_uri},
        **{"dagster run": context.run_id},
    )
    write_text_atomic(html, html_path)
    record = {
        "dataset": name,
        "challenger_version": version,
        "champion_version": None if champion is None else str(champion.version),
        "reference": reference_name,
        "reference_uri": reference_uri,
        "holdout_start": start,
        "holdout_end": end,
        "evaluated_at": datetime.now(UTC).isoformat(),
        "dagster_run_id": context.run_id,
        "report_path": str(html_path),
        "gate_config": config.model_dump(),
        "decision": decision.to_dict(),
        "evaluation": result.to_dict(),
    }
    write_text_atomic(json.dumps(record, indent=2), json_path)

    if challenger.run_id:
        client.log_artifact(challenger.run_id, str(html_path), artifact_path="eval_report")
        client.log_artifact(challenger.run_id, str(json_path), artifact_path="eval_report")
    client.set_model_version_tag(name, version, "driftloop.eval_report", str(html_path))

    slices = result.slices.drop(columns=["estimable"])
    metadata: dict[str, Any] = {
        "decision": "promote" if decision.promote else "reject",
        "reasons": MetadataValue.md(_reasons_md(decision.reasons)),
        "challenger_version": version,
        "reference": reference_name,
        "metric": result.metric,
        **_floats(diff=result.diff, ci_low=decision.ci_low, ci_high=decision.ci_high),
        "confidence": decision.confidence,
        "holdout": f"{start}..{end}",
        "rows": result.n_rows,
        "overall_metrics": MetadataValue.md(_md_table(result.overall, signed=("diff",))),
        "slices": MetadataValue.md(_md_table(slices, signed=("diff", "ci_low", "ci_high"))),
        "report_path": MetadataValue.path(str(html_path)),
        "report_url": MetadataValue.url(html_path.resolve().as_uri()),
        "decision_path": MetadataValue.path(str(json_path)),
        "challenger_model_version": MetadataValue.url(
            mlflow_resource.model_version_url(name, version)
        ),
    }
    if result.calibration is not None:
        metadata["calibration"] = MetadataValue.md(_md_table(result.calibration))
    context.log.info(f"{name} v{version}: {'promote' if decision.promote else 'reject'}")
    return MaterializeResult(metadata=metadata)


def _v(version: str | None) -> str:
    return "(none)" if version is None else f"v{version}"


def _already_recorded(paths: DatasetPaths, version: str, action: str, before: str | None) -> bool:
    """This exact decision is in the ledger already (a re-run after a crash, or a repeat)."""
    frame = ledger.read(paths)
    if frame.empty:
        return False
    same = (frame["challenger_version"] == version) & (frame["action"] == action)
    if before is None:
        same &= frame["champion_before"].isna()
    else:
        same &= frame["champion_before"] == before
    if not same.any():
        return False
    # Only if nothing happened to the champion since (a rollback re-opens the question).
    last = frame.index[same][-1]
    later = frame.loc[last + 1 :]
    return not later["action"].isin(["promoted", "rollback"]).any()


def _promotion(context: AssetExecutionContext, contract: Contract) -> MaterializeResult:
    from driftloop.training.registry import set_alias, version_for_alias

    name = contract.name
    paths = context.resources.lake.paths(name)
    client = context.resources.mlflow.client()

    challenger = version_for_alias(client, name, CHALLENGER)
    if challenger is None:
        message = f"no model version of {name!r} has the alias 'challenger': nothing to promote"
        context.log.info(message)
        return MaterializeResult(metadata={"status": message})
    version = str(challenger.version)
    champion = version_for_alias(client, name, CHAMPION)
    before = None if champion is None else str(champion.version)
    if before == version:
        message = f"challenger v{version} already is the champion: nothing to do"
        context.log.info(message)
        return MaterializeResult(metadata={"status": message, "champion_version": version})

    html_path, json_path = report_paths(paths, version)
    if not json_path.exists():
        raise Failure(
            f"no gate decision for {name} v{version} ({json_path} is missing): materialize "
            f"{name}/eval_report first"
        )
    record = json.loads(json_path.read_text())
    if record.get("champion_version") != before:
        raise Failure(
            f"the decision for {name} v{version} was made against champion "
            f"v{record.get('champion_version')}, but the champion is now v{before}: "
            f"re-materialize {name}/eval_report"
        )
    from driftloop.evaluation.gate import GateDecision

    decision = GateDecision.from_dict(record["decision"])
    if challenger.tags.get("driftloop.rolled_back_at"):
        decision.promote = False
        decision.reasons.insert(
            0,
            f"v{version} was rolled back on {challenger.tags['driftloop.rolled_back_at']}: it "
            f"is not promoted again automatically (use the {name}_rollback job with "
            f"to_version={version} to reinstate it by hand)",
        )
    action = decision.action
    evaluation = record.get("evaluation", {})
    metric = decision.metric
    after = version if decision.promote else before

    from driftloop.serving.canary import promotion_evidence

    # A canary of this challenger: its online evidence stands beside the offline holdout.
    online, online_reasons = promotion_evidence(contract, paths, version)
    decision.reasons.extend(online_reasons)
    if _already_recorded(paths, version, action, before):
        context.log.info(f"the ledger already records {action} of v{version}; not appended again")
        entry_path = None
    else:
        entry_path = ledger.append(
            paths,
            ledger.LedgerEntry(
                dataset=name,
                action=action,
                challenger_version=version,
                champion_before=before,
                champion_after=after,
                metric=metric,
                challenger_value=evaluation.get("challenger_metrics", {}).get(metric),
                champion_value=evaluation.get("reference_metrics", {}).get(metric),
                diff=None if math.isnan(decision.diff) else decision.diff,
                ci_low=None if math.isnan(decision.ci_low) else decision.ci_low,
                ci_high=None if math.isnan(decision.ci_high) else decision.ci_high,
                reasons=decision.reasons,
                dagster_run_id=context.run_id,
                report_path=str(html_path),
                details=online,
            ),
        )

    tags = {
        "driftloop.gate_decision": action,
        "driftloop.gate_reasons": json.dumps(decision.reasons)[:MAX_TAG],
        "driftloop.gate_diff": repr(decision.diff),
        "driftloop.gate_ci_low": repr(decision.ci_low),
        "driftloop.gate_ci_high": repr(decision.ci_high),
        "driftloop.gate_confidence": repr(decision.confidence),
        "driftloop.gate_reference": str(record.get("reference")),
        "driftloop.gate_report": str(html_path),
        "driftloop.gate_run_id": context.run_id,
    }
    if decision.promote:
        tags["driftloop.promoted_at"] = datetime.now(UTC).isoformat()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    if decision.promote:
        # Last: until this line the serving champion is untouched.
        set_alias(client, name, CHAMPION, version)
        context.log.info(f"{name}: champion moved from {_v(before)} to v{version}")
    else:
        context.log.info(f"{name}: v{version} rejected; champion stays {_v(before)}")

    metadata: dict[str, Any] = {
        "decision": action,
        "challenger_version": version,
        "champion_before": before or "(none)",
        "champion_after": after or "(none)",
        "reasons": MetadataValue.md(_reasons_md(decision.reasons)),
        **_floats(diff=decision.diff, ci_low=decision.ci_low, ci_high=decision.ci_high),
        "report_path": MetadataValue.path(str(html_path)),
        "challenger_model_version": MetadataValue.url(
            context.resources.mlflow.model_version_url(name, version)
        ),
    }
    if entry_path is not None:
        metadata["ledger_entry"] = MetadataValue.path(str(entry_path))
    return MaterializeResult(metadata=metadata)


def build(contract: Contract) -> Definitions:
    """The eval_report and promotion assets of one dataset (its rollback job is
    pipelines.rollback.build_rollback_job, wired in assets/factory.py)."""
    name = contract.name
    eval_key = AssetKey([name, "eval_report"])

    @asset(
        key=eval_key,
        deps=[AssetKey([name, "model"])],
        group_name=name,
        backfill_policy=ONE_RUN,
        required_resource_keys={"lake", "mlflow"},
        description=(
            f"The {name} challenger against the champion (or the baseline) on its holdout: "
            "metrics, slices, calibration, paired bootstrap CI and the gate decision."
        ),
        kinds={"mlflow", "html"},
    )
    def eval_report(context: AssetExecutionContext, config: EvalReportConfig) -> MaterializeResult:
        return _eval_report(context, contract, config)

    @asset(
        key=AssetKey([name, "promotion"]),
        deps=[eval_key],
        group_name=name,
        backfill_policy=ONE_RUN,
        required_resource_keys={"lake", "mlflow"},
        description=(
            f"Applies the gate decision for the {name} challenger: ledger entry, version tags, "
            "then the champion alias."
        ),
        kinds={"mlflow"},
    )
    def promotion(context: AssetExecutionContext) -> MaterializeResult:
        return _promotion(context, contract)

    return Definitions(assets=[eval_report, promotion])
