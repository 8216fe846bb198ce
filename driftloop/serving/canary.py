"""A canary: a configured share of online requests scored by a challenger, sticky per row id.

The ledger is the canary's one record: ``canary_started`` / ``canary_changed`` entries
carry its settings in ``details`` (version, run id, share; a change also the share
before); ``canary_stopped``, a rollback or a promotion ends it. `active_canary` replays the
ledger, so the command that changes a canary and every server that routes by it agree
without another store. An end by a promotion or a rollback is followed by its own
``canary_stopped`` entry saying so (`promote_with_canary`, `end_by`), so every end is on
the record and alerted; routing stops at the promotion or rollback entry itself, so a
process that dies between the two entries leaves no canary running.

Routing (`arm_for`): a row goes to the canary when the SHA-256 of the dataset's name and
the row's id, read as a number in [0, 1), is below the share. The same id always gets the
same arm, and raising the share only moves champion rows to the canary, never back.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftloop.data.contract import Contract
from driftloop.evaluation import ledger
from driftloop.evaluation.canary_evidence import CanaryEvidence
from driftloop.evaluation.promotion import Promotion, promote
from driftloop.paths import DatasetPaths
from driftloop.serving import canary_log

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from driftloop.training.registry import RegisteredVersion

CANARY = "canary"
CHAMPION_ARM = "champion"
STARTED, CHANGED, STOPPED = "canary_started", "canary_changed", "canary_stopped"
# Entries after which no canary runs: a promotion settles it, a rollback ends it.
ENDS = (STOPPED, "rollback", "promoted")


@dataclass(frozen=True)
class Canary:
    """The canary in force: which version, for what share of row ids."""

    dataset: str
    version: str
    share: float
    run_id: str | None = None
    champion_version: str | None = None
    started_at: str | None = None

    def arm(self, row_id: Any) -> str:
        return arm_for(self.dataset, row_id, self.share)


def bucket(dataset: str, row_id: Any) -> float:
    """A number in [0, 1) from the row id (sha256, so stable across processes and runs)."""
    digest = hashlib.sha256(f"{dataset}\x1f{row_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def arm_for(dataset: str, row_id: Any, share: float) -> str:
    return CANARY if bucket(dataset, row_id) < share else CHAMPION_ARM


def check_share(share: float) -> float:
    share = float(share)
    if not 0.0 < share <= 1.0:
        raise ValueError(f"canary share must be in (0, 1], got {share}")
    return share


def active_canary(paths: DatasetPaths) -> Canary | None:
    """The canary the ledger says is running, or None."""
    frame = ledger.read(paths)
    current: Canary | None = None
    for row in frame.to_dict(orient="records"):
        action = row["action"]
        if action in (STARTED, CHANGED):
            details = json.loads(row.get("details") or "{}")
            current = Canary(
                dataset=paths.dataset,
                version=str(details["version"]),
                share=float(details["share"]),
                run_id=details.get("run_id"),
                champion_version=details.get("champion_version"),
                started_at=details.get("started_at") or str(row["timestamp"]),
            )
        elif action in ENDS:
            current = None
    return current


def record(
    paths: DatasetPaths,
    action: str,
    canary: Canary,
    reason: str,
    evidence: CanaryEvidence | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Append a canary entry (its settings in ``details``, and the online evidence so far)."""
    details = asdict(canary) | (extra or {})
    if evidence is not None:
        details["online_evidence"] = evidence.online_evidence()
    return ledger.append(
        paths,
        ledger.LedgerEntry(
            dataset=paths.dataset,
            action=action,
            challenger_version=canary.version,
            champion_before=canary.champion_version,
            champion_after=canary.champion_version,
            model_run_id=canary.run_id,
            reasons=[reason],
            details=details,
        ),
    )


def start(paths: DatasetPaths, canary: Canary, reason: str = "") -> Canary:
    check_share(canary.share)
    running = active_canary(paths)
    if running is not None:
        raise ValueError(
            f"a canary of {paths.dataset} v{running.version} is running at {running.share:.0%}: "
            "change or stop it first"
        )
    record(paths, STARTED, canary, reason or f"canary of v{canary.version} at {canary.share:.0%}")
    return canary


def change(paths: DatasetPaths, share: float, reason: str = "") -> Canary:
    running = active_canary(paths)
    if running is None:
        raise ValueError(f"no canary of {paths.dataset} is running: start one first")
    changed = Canary(**(asdict(running) | {"share": check_share(share)}))
    text = reason or f"share {running.share:.0%} -> {changed.share:.0%}"
    record(paths, CHANGED, changed, text, extra={"previous_share": running.share})
    return changed


def stop(paths: DatasetPaths, reason: str = "", evidence: CanaryEvidence | None = None) -> Canary:
    running = active_canary(paths)
    if running is None:
        raise ValueError(f"no canary of {paths.dataset} is running")
    record(paths, STOPPED, running, reason or "stopped", evidence)
    return running


def running_evidence(contract: Contract, paths: DatasetPaths) -> CanaryEvidence | None:
    """The running canary's online evidence: every row served since it started, pooled per
    arm (None when no canary runs)."""
    running = active_canary(paths)
    if running is None:
        return None
    since = running.started_at or ""
    days, arms = canary_log.evidence(contract, paths, since)
    return CanaryEvidence(
        version=running.version,
        share=running.share,
        started_at=since,
        settings=asdict(running),
        days=days,
        arms=arms,
    )


def end_by(paths: DatasetPaths, evidence: CanaryEvidence | None, reason: str) -> Path | None:
    """Record that the canary ``evidence`` describes was ended by another entry (a promotion
    or a rollback), with its evidence up to then; nothing when no canary ran."""
    if evidence is None:
        return None
    settings = {k: v for k, v in evidence.settings.items() if k in Canary.__dataclass_fields__}
    return record(paths, STOPPED, Canary(**settings), reason, evidence, {"ended_by": reason})


def promote_with_canary(
    contract: Contract,
    paths: DatasetPaths,
    client: MlflowClient,
    model: RegisteredVersion,
    decision_record: dict[str, Any],
    dagster_run_id: str,
    trigger_reason: str | None = None,
) -> Promotion:
    """`promote`, given the running canary's online evidence; a promotion it makes ends the
    canary, and that end is written to the ledger after it."""
    evidence = running_evidence(contract, paths)
    done = promote(
        contract, paths, client, model, decision_record, dagster_run_id, trigger_reason, evidence
    )
    if evidence is not None and done.action == "promoted" and done.ledger_entries:
        ended = end_by(
            paths,
            evidence,
            f"ended by the promotion of v{done.model.version} to champion "
            f"(was {'v' + done.champion_before.version if done.champion_before else 'none'})",
        )
        if ended is not None:
            done.ledger_entries.append(ended)
    return done
