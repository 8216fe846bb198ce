"""Apply the gate's decision on a trained model to the registry and the ledger, idempotently.

The decision is the one driftloop.evaluation.challenger recorded for the model (named by
its identity: the MLflow run that logged it, in a given store); the promotion checks that
the champion is still the one the model was evaluated against. It writes the ledger entry
first, then the version tags, and moves the ``champion`` alias last. Each step checks what
is done already, so running it again after a crash finishes the job without a second
entry, and the reconciler (driftloop.evaluation.reconcile) finishes a promotion whose
process died after its ledger entry. With no champion yet, the better of the model and
the baseline trained beside it, by the gate's own rule, becomes champion: the model if
the gate promotes it over the baseline, else the baseline, registered as a version like
any other.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftloop.data.contract import Contract
from driftloop.evaluation import ledger
from driftloop.evaluation.canary_evidence import CanaryEvidence
from driftloop.evaluation.gate import GateDecision
from driftloop.faults import fault_point
from driftloop.names import CHAMPION
from driftloop.paths import DatasetPaths
from driftloop.training.registry import (
    RegisteredVersion,
    aliased,
    register_run_model,
    set_alias,
    store_id,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from driftloop.evaluation.gate import GateDecision

MAX_TAG = 5000  # MLflow tag values are limited; full reasons live in the ledger and report


class PromotionError(RuntimeError):
    """The promotion cannot go ahead safely; the message says why and what to do."""


@dataclass
class Promotion:
    """What the promotion did: the decision applied, the champion before and after, and the
    ledger entries it wrote (none when a run before it had written them)."""

    action: str
    model: RegisteredVersion
    champion_before: RegisteredVersion | None
    champion_after: RegisteredVersion | None
    reasons: list[str]
    decision: GateDecision
    report_path: str
    ledger_entries: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def check_model(client: MlflowClient, model: RegisteredVersion) -> None:
    """The registry still holds this model under this version, in the same store."""
    now = store_id(client, model.model_name)
    if model.store_id and now != model.store_id:
        raise PromotionError(
            f"the MLflow store changed after run {model.run_id} trained {model.model_name} "
            f"v{model.version}: it was in store {model.store_id}, the store now is "
            f"{now or '(no registered model)'}; nothing is evaluated or promoted over it. "
            "Retrain against this store."
        )
    version = client.get_model_version(model.model_name, model.version)
    if version.run_id != model.run_id:
        raise PromotionError(
            f"{model.model_name} v{model.version} in this store was logged by run "
            f"{version.run_id}, not by run {model.run_id} that this run trained: the store "
            "was replaced; nothing is promoted over it. Retrain against this store."
        )


def check_store(paths: DatasetPaths, client: MlflowClient, name: str) -> str | None:
    """The current store id, after checking it is the one the ledger was written against."""
    now = store_id(client, name)
    recorded = ledger.latest_store_id(paths)
    if recorded is not None and recorded != now:
        raise PromotionError(
            f"the MLflow store of {name} is not the one its ledger ({paths.ledger}) was "
            f"written against: the ledger names store {recorded}, this store "
            f"{'has no registered model' if now is None else 'is ' + now} (lost or "
            "replaced?). Nothing is trained or promoted over it. If this store is meant to replace "
            f"the old one, record that with `python -m pipelines.reconcile --dataset {name} "
            "--adopt-store` and run again."
        )
    return now


def _nan_none(value: float) -> float | None:
    return None if value is None or math.isnan(value) else value


def _entry(
    contract: Contract,
    action: str,
    model: RegisteredVersion,
    before: RegisteredVersion | None,
    after: RegisteredVersion | None,
    decision: GateDecision,
    record: dict[str, Any],
    reasons: list[str],
    run_id: str,
    trigger_reason: str | None,
) -> ledger.LedgerEntry:
    evaluation = record.get("evaluation", {})
    metric = decision.metric
    return ledger.LedgerEntry(
        dataset=contract.name,
        action=action,
        challenger_version=model.version,
        champion_before=None if before is None else before.version,
        champion_after=None if after is None else after.version,
        metric=metric,
        challenger_value=evaluation.get("challenger_metrics", {}).get(metric),
        champion_value=evaluation.get("reference_metrics", {}).get(metric),
        diff=_nan_none(decision.diff),
        ci_low=_nan_none(decision.ci_low),
        ci_high=_nan_none(decision.ci_high),
        reasons=reasons,
        dagster_run_id=run_id,
        report_path=record.get("report_path"),
        model_run_id=model.run_id,
        champion_before_run_id=None if before is None else before.run_id,
        champion_after_run_id=None if after is None else after.run_id,
        store_id=model.store_id or None,
        trigger_reason=trigger_reason,
        details={"model_kind": model.model_kind, "reference": record.get("reference")}
        | {"slices_gated": decision.slices_gated, "slices": decision.slice_note}
        | record.get("online_evidence", {}),
    )


def _gate_tags(
    decision: GateDecision,
    action: str,
    record: dict,
    run_id: str,
    challenger: RegisteredVersion | None = None,
) -> dict[str, str]:
    """The gate's outcome on a version. `challenger` names the model the gate judged when
    that is another version (the baseline kept as first champion over a refused model):
    the difference and its interval are then that challenger's minus this version's."""
    tags = {
        "driftloop.gate_decision": action,
        "driftloop.gate_reasons": json.dumps(decision.reasons)[:MAX_TAG],
        "driftloop.gate_diff": repr(decision.diff),
        "driftloop.gate_ci_low": repr(decision.ci_low),
        "driftloop.gate_ci_high": repr(decision.ci_high),
        "driftloop.gate_confidence": repr(decision.confidence),
        "driftloop.gate_reference": str(record.get("reference")),
        "driftloop.gate_report": str(record.get("report_path")),
        "driftloop.gate_run_id": run_id,
    }
    if challenger is not None:
        tags["driftloop.gate_challenger_version"] = str(challenger.version)
        tags["driftloop.gate_challenger_kind"] = str(challenger.model_kind)
    if action == "promoted":
        tags["driftloop.promoted_at"] = datetime.now(UTC).isoformat()
    return tags


def _record(paths: DatasetPaths, entry: ledger.LedgerEntry, done: Promotion, action: str) -> None:
    """Append the entry unless the ledger already holds this decision on this model."""
    recorded = ledger.decision_for(paths, entry.model_run_id or "", entry.store_id)
    if recorded is not None and recorded["action"] == action:
        done.notes.append(
            f"the ledger already records {action} of v{entry.challenger_version} "
            f"(run {entry.model_run_id}); not appended again"
        )
        return
    done.ledger_entries.append(ledger.append(paths, entry))


def _unchanged(
    action: str,
    contract: Contract,
    paths: DatasetPaths,
    model: RegisteredVersion,
    champion: RegisteredVersion | None,
    entry_champions: tuple[RegisteredVersion | None, RegisteredVersion | None],
    decision: GateDecision,
    record: dict[str, Any],
    run_id: str,
    trigger_reason: str | None,
) -> Promotion:
    """A decision that leaves the champion where it is, written to the ledger with
    `entry_champions` as the entry's champion before and after."""
    done = Promotion(
        action,
        model,
        champion,
        champion,
        decision.reasons,
        decision,
        str(record.get("report_path")),
    )
    entry = _entry(
        contract,
        action,
        model,
        *entry_champions,
        decision,
        record,
        decision.reasons,
        run_id,
        trigger_reason,
    )
    _record(paths, entry, done, action)
    return done


def promote(
    contract: Contract,
    paths: DatasetPaths,
    client: MlflowClient,
    model: RegisteredVersion,
    record: dict[str, Any],
    dagster_run_id: str,
    trigger_reason: str | None = None,
    canary: CanaryEvidence | None = None,
) -> Promotion:
    """Apply the decision record that evaluate_model wrote for `model`.

    ``canary``: the running canary's online evidence, gathered by the caller; when the
    canary is of this model, the decision's reasons cite it and the ledger entry holds it."""
    name = contract.name
    check_model(client, model)
    check_store(paths, client, name)
    if record.get("model_run_id") != model.run_id:
        raise PromotionError(
            f"the decision record names run {record.get('model_run_id')}, not run "
            f"{model.run_id} that trained {name} v{model.version}: evaluate this model first"
        )
    decision = GateDecision.from_dict(record["decision"])
    champion = aliased(client, name, CHAMPION)
    applied = _already_applied(paths, model, champion)
    if applied is not None:
        done = Promotion(
            applied,
            model,
            champion,
            champion,
            decision.reasons,
            decision,
            str(record.get("report_path")),
        )
        done.notes.append(
            f"the ledger already records {applied} of v{model.version} (run {model.run_id}) "
            "and the registry agrees with it: nothing to do"
        )
        return done
    evaluated_against = record.get("champion_run_id")
    now_run = None if champion is None else champion.run_id
    if champion is not None and now_run == model.run_id:
        done = _unchanged(
            "promoted",
            contract,
            paths,
            model,
            champion,
            (None, model),
            decision,
            record,
            dagster_run_id,
            trigger_reason,
        )
        done.notes.append(f"v{model.version} already is the champion")
        return done
    if now_run != evaluated_against:
        raise PromotionError(
            f"the decision for {name} v{model.version} was made against champion "
            f"{record.get('champion_version') or '(none)'}, but the champion now is "
            f"{'(none)' if champion is None else 'v' + champion.version}: evaluate it again"
        )
    if canary is not None and canary.version == str(model.version):
        # A canary of this model: its online evidence stands beside the offline holdout.
        decision.reasons.append(canary.sentence())
        record = {**record, "online_evidence": canary.details()}
    version_tags = client.get_model_version(name, model.version).tags or {}
    if version_tags.get("driftloop.rolled_back_at"):
        decision.promote = False
        decision.reasons.insert(
            0,
            f"v{model.version} was rolled back on {version_tags['driftloop.rolled_back_at']}: "
            f"it is not promoted again automatically (use the {name}_rollback job with "
            f"to_version={model.version} to reinstate it by hand)",
        )
    if decision.promote:
        return _apply(
            contract,
            paths,
            client,
            model,
            champion,
            decision,
            record,
            dagster_run_id,
            trigger_reason,
        )
    done = _unchanged(
        "rejected",
        contract,
        paths,
        model,
        champion,
        (champion, champion),
        decision,
        record,
        dagster_run_id,
        trigger_reason,
    )
    for key, value in _gate_tags(decision, "rejected", record, dagster_run_id).items():
        client.set_model_version_tag(name, model.version, key, value)
    if champion is None and record.get("baseline_run_id") and decision.is_first:
        return _baseline_champion(
            contract, paths, client, model, decision, record, dagster_run_id, trigger_reason, done
        )
    return done


def _already_applied(
    paths: DatasetPaths, model: RegisteredVersion, champion: RegisteredVersion | None
) -> str | None:
    """The recorded action if this model was decided and the registry's champion is the
    one the ledger names since (a repeat, or a run after the reconciler finished it)."""
    recorded = ledger.decision_for(paths, model.run_id, model.store_id or None)
    if recorded is None:
        return None
    expected = ledger.ledger_champion(paths)
    expected_run = None if expected is None else expected.run_id
    if (None if champion is None else champion.run_id) != expected_run:
        return None
    return str(recorded["action"])


def _apply(
    contract: Contract,
    paths: DatasetPaths,
    client: MlflowClient,
    model: RegisteredVersion,
    champion: RegisteredVersion | None,
    decision: GateDecision,
    record: dict[str, Any],
    dagster_run_id: str,
    trigger_reason: str | None,
    reasons: list[str] | None = None,
    judged: RegisteredVersion | None = None,
) -> Promotion:
    """Ledger entry, version tags, then the alias: the promotion of `model` (`judged`: the
    other version the gate judged, when `model` is the reference kept over it)."""
    reasons = reasons or decision.reasons
    done = Promotion(
        "promoted", model, champion, model, reasons, decision, str(record.get("report_path"))
    )
    entry = _entry(
        contract,
        "promoted",
        model,
        champion,
        model,
        decision,
        record,
        reasons,
        dagster_run_id,
        trigger_reason,
    )
    _record(paths, entry, done, "promoted")
    fault_point("after_ledger")
    tags = _gate_tags(decision, "promoted", record, dagster_run_id, judged)
    for key, value in tags.items():
        client.set_model_version_tag(contract.name, model.version, key, value)
    set_alias(client, contract.name, CHAMPION, model.version)  # last: serving changes here
    return done


def _baseline_champion(
    contract: Contract,
    paths: DatasetPaths,
    client: MlflowClient,
    model: RegisteredVersion,
    decision: GateDecision,
    record: dict[str, Any],
    dagster_run_id: str,
    trigger_reason: str | None,
    rejected: Promotion,
) -> Promotion:
    """No champion, and the gate did not promote the model over its baseline: the baseline
    (the gate's reference, so the better of the two by its rule) becomes champion."""
    baseline = register_run_model(
        client, contract.name, record["baseline_run_id"], {"driftloop.model_kind": "baseline"}
    )
    reasons = [
        f"first model: the gate did not promote v{model.version} ({model.model_kind}) over the "
        f"baseline trained beside it, so the baseline (registered as v{baseline.version}) "
        "becomes champion: every dataset gets one",
        *decision.reasons,
    ]
    done = _apply(
        contract,
        paths,
        client,
        baseline,
        None,
        decision,
        record,
        dagster_run_id,
        trigger_reason,
        reasons,
        judged=model,
    )
    done.ledger_entries[:0] = rejected.ledger_entries
    done.notes[:0] = rejected.notes
    return done
