"""Evaluate a trained model against the champion, or with none against its baseline.

The model comes named by its identity (the run that logged it, in a given store), as the
training step of the same run handed it along; the champion is resolved once by the
caller and recorded in the decision, which driftloop.evaluation.promotion applies.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from driftloop.data.contract import Contract
from driftloop.data.lake import days_between, partition_files, sql_file_list, write_text_atomic
from driftloop.evaluation.comparison import evaluate
from driftloop.evaluation.explain import explain, tabular_model
from driftloop.evaluation.gate import decide
from driftloop.evaluation.promotion import PromotionError, check_model, check_store
from driftloop.evaluation.reconcile import reconcile_registry
from driftloop.evaluation.report_html import render_report
from driftloop.names import CHAMPION
from driftloop.paths import DatasetPaths
from driftloop.training.model_loading import load_scoring_model
from driftloop.training.registry import GATE_MODEL_TAG, RegisteredVersion, aliased

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

    from driftloop.evaluation.comparison import EvalResult
    from driftloop.evaluation.gate import GateConfig, GateDecision


# A holdout metric this far (relative) from the validation days' means the newest days
# differ from those the model was early-stopped on (a holiday week, a shift): the gate's
# verdict then says as much about those days as about the model.
HOLDOUT_SHIFT_WARNING = 0.25


def holdout_shift_warning(metric: str, validation: float | None, holdout: float) -> str | None:
    """A warning when the holdout's metric moved HOLDOUT_SHIFT_WARNING or more from
    validation's, else None."""
    if validation is None or not math.isfinite(validation) or validation == 0:
        return None
    change = (holdout - validation) / abs(validation)
    if not abs(change) >= HOLDOUT_SHIFT_WARNING:
        return None
    return (
        f"the holdout {metric} ({holdout:.4g}) is {abs(change):.0%} "
        f"{'above' if change > 0 else 'below'} validation's ({validation:.4g}): the holdout "
        "days may be unusual (a holiday, a shift); look at them, or end the range elsewhere "
        "(docs/cli.md, how the range sets the holdout)"
    )


@dataclass
class Evaluation:
    """What eval_report produced for one model."""

    model: RegisteredVersion
    champion: RegisteredVersion | None
    reference_name: str
    reference_uri: str
    holdout: tuple[str, str]
    decision: GateDecision
    result: EvalResult
    html_path: Path
    json_path: Path
    warnings: list[str] = field(default_factory=list)


def report_paths(paths: DatasetPaths, model: RegisteredVersion) -> tuple[Path, Path]:
    """(HTML report, decision JSON) of one model: named by version and run id, as a
    version number alone comes back when a store is replaced."""
    base = paths.reports / "eval" / f"v{model.version}-{model.run_id[:12]}"
    return base.with_suffix(".html"), base.with_suffix(".json")


def read_holdout(contract: Contract, paths: DatasetPaths, start: str, end: str) -> pd.DataFrame:
    """The features-table rows of the holdout days [start, end], in a stable order."""
    import duckdb

    days = days_between(date.fromisoformat(start), date.fromisoformat(end))
    files = partition_files(paths.table("features"), days)
    if not files:
        raise FileNotFoundError(
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


def gate_model_uri(tags: dict[str, str], model_uri: str) -> str:
    """The model a version's gate scores, from the version's tags: its split model when the
    served model is a refit on the whole window (`GATE_MODEL_TAG`), else the model itself
    (a refit learnt from the holdout days, so each side is judged by the model fitted
    without them)."""
    return tags.get(GATE_MODEL_TAG) or model_uri


def evaluate_model(
    contract: Contract,
    paths: DatasetPaths,
    client: MlflowClient,
    tracking_uri: str,
    model: RegisteredVersion,
    champion: RegisteredVersion | None,
    gate_config: GateConfig,
    dagster_run_id: str,
) -> Evaluation:
    """Score the model and the champion (or, with none, the baseline trained beside it) on
    the model's holdout, run the paired bootstrap and the gate, write the report and the
    decision record, and log both to the model's run."""
    name = contract.name
    check_model(client, model)
    tags = dict(client.get_model_version(name, model.version).tags or {})
    needed = ("driftloop.holdout_start", "driftloop.holdout_end")
    needed += () if champion else ("driftloop.baseline_run_model_uri",)
    missing = [t for t in needed if not tags.get(t)]
    if missing:
        raise PromotionError(f"{name} v{model.version} lacks the version tag(s) {missing}")
    start, end = tags["driftloop.holdout_start"], tags["driftloop.holdout_end"]
    holdout = read_holdout(contract, paths, start, end)
    if champion is not None:
        champion_tags = client.get_model_version(name, champion.version).tags or {}
        reference_uri = gate_model_uri(champion_tags, champion.model_uri)
        reference_name = f"champion v{champion.version}"
    else:
        reference_uri = tags["driftloop.baseline_run_model_uri"]
        reference_name = "baseline (scikit-learn)"
    challenger_uri = gate_model_uri(tags, model.model_uri)
    challenger_scores = load_scoring_model(challenger_uri, tracking_uri)(holdout)
    reference_scores = load_scoring_model(reference_uri, tracking_uri)(holdout)
    explainable = tabular_model(model.model_uri, tracking_uri)
    explanation = explain(explainable, holdout) if explainable is not None else None
    result = evaluate(
        contract,
        holdout,
        challenger_scores,
        reference_scores,
        reference_name,
        challenger_name=f"challenger v{model.version}",
        samples=gate_config.bootstrap_samples,
        confidence=gate_config.confidence,
        seed=gate_config.seed,
        explanation=explanation,
    )
    days = (date.fromisoformat(end) - date.fromisoformat(start)).days + 1
    decision = decide(result, gate_config, is_first=champion is None, holdout_days=days)
    valid = client.get_run(model.run_id).data.metrics.get(f"valid_{result.metric}")
    shift = holdout_shift_warning(result.metric, valid, result.challenger_metrics[result.metric])
    warnings = [shift] if shift else []
    html_path, json_path = report_paths(paths, model)
    html = render_report(
        result,
        decision,
        holdout=f"{start} to {end}",
        **({"warning": shift} if shift else {}),
        **{"challenger model": model.model_uri, "challenger judged as": challenger_uri},
        **{"reference model": reference_uri},
        **{"model run": model.run_id, "dagster run": dagster_run_id},
    )
    write_text_atomic(html, html_path)
    record = {
        "dataset": name,
        "challenger_version": model.version,
        "model_run_id": model.run_id,
        "store_id": model.store_id,
        "baseline_run_id": tags.get("driftloop.baseline_run_id", ""),
        "champion_version": None if champion is None else champion.version,
        "champion_run_id": None if champion is None else champion.run_id,
        "reference": reference_name,
        "reference_uri": reference_uri,
        "challenger_judged_uri": challenger_uri,
        "holdout_start": start,
        "holdout_end": end,
        "evaluated_at": datetime.now(UTC).isoformat(),
        "dagster_run_id": dagster_run_id,
        "report_path": str(html_path),
        "gate_config": asdict(gate_config),
        "decision": decision.to_dict(),
        "evaluation": result.to_dict(),
        "warnings": warnings,
    }
    write_text_atomic(json.dumps(record, indent=2, default=str), json_path)
    client.log_artifact(model.run_id, str(html_path), artifact_path="eval_report")
    client.log_artifact(model.run_id, str(json_path), artifact_path="eval_report")
    client.set_model_version_tag(name, model.version, "driftloop.eval_report", str(html_path))
    return Evaluation(
        model,
        champion,
        reference_name,
        reference_uri,
        (start, end),
        decision,
        result,
        html_path,
        json_path,
        warnings,
    )


@dataclass
class EvalOutcome:
    """eval_report's result: an evaluation, or a status saying why there is none, and the
    repairs the reconciler made first."""

    model: RegisteredVersion
    evaluation: Evaluation | None
    status: str | None = None
    repairs: list[str] = field(default_factory=list)


def evaluate_trained(
    contract: Contract,
    paths: DatasetPaths,
    client: MlflowClient,
    tracking_uri: str,
    model: RegisteredVersion,
    gate_config: GateConfig,
    dagster_run_id: str,
) -> EvalOutcome:
    """Finish any champion change a dead process left half done, resolve the champion once,
    and evaluate `model` against it (or against its baseline when there is none)."""
    name = contract.name
    check_store(paths, client, name)
    repair = reconcile_registry(paths, client, name, dagster_run_id)
    state = repair.consistency_before
    if not state.agree and not state.repairable:
        raise PromotionError("; ".join(state.problems))
    champion = aliased(client, name, CHAMPION)
    if champion is not None and champion.run_id == model.run_id:
        status = f"v{model.version} (run {model.run_id}) already is the champion"
        return EvalOutcome(model, None, status, repair.actions)
    evaluation = evaluate_model(
        contract, paths, client, tracking_uri, model, champion, gate_config, dagster_run_id
    )
    return EvalOutcome(model, evaluation, None, repair.actions)
