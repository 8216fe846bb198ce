"""Eval report and promotion: the model this run trained against the champion, through the gate.

``<dataset>/eval_report`` takes the model the run's training step handed along (its MLflow
run id and version, from the model's materialization in this run), finishes any champion
change a dead process left half done (driftloop.evaluation.reconcile), resolves the
champion once and scores both (or, with no champion, the model and the scikit-learn
baseline trained beside it) on the model's holdout days: paired bootstrap, gate, and
``reports/<dataset>/eval/v<version>-<run id>.html`` with the decision as ``.json``
beside it. ``<dataset>/promotion`` applies that decision (driftloop.evaluation.promotion):
ledger entry first, version tags next, the ``champion`` alias last; running it again
finishes the job without a second ledger entry. The dataset's reconcile sensor
(sensors/reconcile.py) is defined here too.

No ``from __future__ import annotations`` here: Dagster reads the config annotation.
"""

import json
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from driftloop.evaluation.challenger import Evaluation

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

from assets.cost import measured_step
from assets.partitions import ONE_RUN
from assets.retrain_run import fail, trained_model
from driftloop.backtest.in_force import PolicyInForce, gate_in_force, policy_in_force
from driftloop.data.contract import Contract
from driftloop.evaluation.gate import GateConfig
from driftloop.evaluation.promotion import Promotion, PromotionError
from driftloop.names import TRIGGER_REASON_TAG
from driftloop.training.registry import RegisteredVersion
from driftloop.training.retrain_lock import release


class EvalReportConfig(Config):
    """The gate's settings (defaults: driftloop.evaluation.gate.GateConfig)."""

    margin: float = Field(
        default=0.0, description="the CI lower bound of the improvement must exceed this"
    )
    confidence: float | None = Field(
        default=None,
        description="two-sided bootstrap interval level; unset: the gate confidence of the "
        "retraining policy chosen from the dataset's history, else 0.90 (a one-sided 95% bound)",
    )
    min_slice_rows: int = Field(default=500, description="smaller slices are not gated")
    slice_tolerance: float = Field(
        default=0.02, description="a slice may be worse by at most this (metric units)"
    )
    bootstrap_samples: int = Field(default=300, description="paired bootstrap resamples")
    seed: int = Field(default=20130101, description="bootstrap seed (reproducible results)")

    def gate(self, in_force: PolicyInForce | None = None) -> GateConfig:
        """The gate under the retraining policy in force (``gate_in_force``), with this
        config's confidence when set."""
        values = self.model_dump()
        confidence = values.pop("confidence")
        if in_force is not None:
            return gate_in_force(in_force, GateConfig(**values), confidence)
        return GateConfig(**values, **({} if confidence is None else {"confidence": confidence}))


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


def _eval_metadata(evaluation: "Evaluation", version_url: str) -> dict[str, Any]:
    result, decision = evaluation.result, evaluation.decision
    slices = result.slices.drop(columns=["estimable"])
    metadata: dict[str, Any] = {
        "decision": "promote" if decision.promote else "reject",
        "reasons": MetadataValue.md(_reasons_md(decision.reasons)),
        "challenger_version": evaluation.model.version,
        "model_run_id": evaluation.model.run_id,
        "reference": evaluation.reference_name,
        "champion_run_id": evaluation.champion.run_id if evaluation.champion else "(none)",
        "metric": result.metric,
        **_floats(diff=result.diff, ci_low=decision.ci_low, ci_high=decision.ci_high),
        "confidence": decision.confidence,
        "bootstrap_resampled": result.resampled,
        "holdout": "..".join(evaluation.holdout),
        "rows": result.n_rows,
        "overall_metrics": MetadataValue.md(_md_table(result.overall, signed=("diff",))),
        "slices": MetadataValue.md(_md_table(slices, signed=("diff", "ci_low", "ci_high"))),
        "report_path": MetadataValue.path(str(evaluation.html_path)),
        "report_url": MetadataValue.url(evaluation.html_path.resolve().as_uri()),
        "decision_path": MetadataValue.path(str(evaluation.json_path)),
        "challenger_model_version": MetadataValue.url(version_url),
    }
    if result.calibration is not None:
        metadata["calibration"] = MetadataValue.md(_md_table(result.calibration))
    return metadata


def _eval_report(
    context: AssetExecutionContext, contract: Contract, config: EvalReportConfig
) -> MaterializeResult:
    from driftloop.evaluation.challenger import evaluate_trained  # numpy and pandas: on use

    name = contract.name
    model, source = trained_model(context, name)
    if model is None:
        message = f"no trained model of {name!r}: nothing to evaluate"
        context.log.info(message)
        return MaterializeResult(metadata={"status": message})
    context.log.info(f"{name}: evaluating v{model.version} (run {model.run_id}) from {source}")
    mlflow = context.resources.mlflow
    paths = context.resources.lake.paths(name)
    try:
        # The gate the chosen policy was judged with in the replays, so production
        # promotes as the selection assumed.
        gate = config.gate(policy_in_force(contract, paths))
        outcome = evaluate_trained(
            contract, paths, mlflow.client(), mlflow.uri(), model, gate, context.run_id
        )
    except (PromotionError, FileNotFoundError, ValueError) as error:
        raise fail(error) from error
    for repair in outcome.repairs:
        context.log.warning(f"{name}: reconciled before evaluating: {repair}")
    if outcome.evaluation is None:
        context.log.info(f"{name}: {outcome.status}")
        return MaterializeResult(
            metadata={"status": outcome.status, "challenger_version": model.version}
        )
    decision = outcome.evaluation.decision
    context.log.info(f"{name} v{model.version}: {'promote' if decision.promote else 'reject'}")
    url = mlflow.model_version_url(name, model.version)
    return MaterializeResult(metadata=_eval_metadata(outcome.evaluation, url))


def _v(version: str | None) -> str:
    return "(none)" if version is None else f"v{version}"


def _promotion(context: AssetExecutionContext, contract: Contract) -> MaterializeResult:
    from driftloop.evaluation.challenger import report_paths  # numpy and pandas: on use
    from driftloop.serving.canary import promote_with_canary

    name = contract.name
    paths = context.resources.lake.paths(name)
    model, source = trained_model(context, name)
    if model is None:
        message = f"no trained model of {name!r}: nothing to promote"
        context.log.info(message)
        return MaterializeResult(metadata={"status": message})
    json_path = report_paths(paths, model)[1]
    if not json_path.exists():
        raise Failure(
            f"no gate decision for {name} v{model.version} (run {model.run_id}; {json_path} "
            f"is missing): materialize {name}/eval_report first"
        )
    record = json.loads(json_path.read_text())
    trigger = context.run.tags.get(TRIGGER_REASON_TAG)
    try:
        done = promote_with_canary(
            contract,
            paths,
            context.resources.mlflow.client(),
            model,
            record,
            context.run_id,
            trigger,
        )
    except PromotionError as error:
        raise fail(error) from error
    release(paths, context.run_id)
    for note in done.notes:
        context.log.info(f"{name}: {note}")
    before = done.champion_before.version if done.champion_before else None
    after = done.champion_after.version if done.champion_after else None
    decided = done.model
    context.log.info(
        f"{name}: {done.action} v{decided.version} ({decided.model_kind or 'model'}; trained by "
        f"{source}); champion {_v(before)} -> {_v(after)}"
    )
    url = context.resources.mlflow.model_version_url(name, model.version)
    return MaterializeResult(metadata=_promotion_metadata(done, model, url))


def _promotion_metadata(done: Promotion, model: RegisteredVersion, url: str) -> dict[str, Any]:
    """The promotion's decision, champions before and after, reasons and ledger entries."""
    before = done.champion_before.version if done.champion_before else None
    after = done.champion_after.version if done.champion_after else None
    metadata: dict[str, Any] = {
        "decision": done.action,
        "challenger_version": model.version,
        "model_run_id": model.run_id,
        "champion_before": before or "(none)",
        "champion_after": after or "(none)",
        "champion_after_run_id": done.champion_after.run_id if done.champion_after else "(none)",
        "reasons": MetadataValue.md(_reasons_md(done.reasons)),
        **_floats(
            diff=done.decision.diff, ci_low=done.decision.ci_low, ci_high=done.decision.ci_high
        ),
        "report_path": MetadataValue.path(done.report_path),
        "challenger_model_version": MetadataValue.url(url),
    }
    for n, entry_path in enumerate(done.ledger_entries):
        metadata["ledger_entry" + (f"_{n + 1}" if n else "")] = MetadataValue.path(str(entry_path))
    return metadata


def build(contract: Contract) -> Definitions:
    """The eval_report and promotion assets of one dataset (its rollback job is
    pipelines.rollback.build_rollback_job, wired in pipelines/factory.py)."""
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
    @measured_step(name, "eval_report")
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
    @measured_step(name, "promotion")
    def promotion(context: AssetExecutionContext) -> MaterializeResult:
        return _promotion(context, contract)

    return Definitions(assets=[eval_report, promotion])
