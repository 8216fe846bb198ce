"""A canary: a configured share of online requests scored by a challenger, sticky per row id.

The ledger is the canary's one record: ``canary_started`` / ``canary_changed`` entries
carry its settings in ``details`` (version, run id, share); ``canary_stopped``, a
rollback or a promotion ends it. `active_canary` replays the ledger, so the command that
changes a canary and every server that routes by it agree without another store.

Routing (`arm_for`): a row goes to the canary when the hash of its id, read as a number in
[0, 1), is below the share. The same id always gets the same arm, and raising the share
only moves champion rows to the canary, never back.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from driftloop.evaluation import ledger
from driftloop.paths import DatasetPaths

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
    evidence: dict[str, Any] | None = None,
) -> None:
    """Append a canary entry (its settings in ``details``, and the online evidence so far)."""
    details = asdict(canary) | ({"online_evidence": evidence} if evidence else {})
    ledger.append(
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
    record(paths, CHANGED, changed, text)
    return changed


def stop(paths: DatasetPaths, reason: str = "", evidence: dict | None = None) -> Canary:
    running = active_canary(paths)
    if running is None:
        raise ValueError(f"no canary of {paths.dataset} is running")
    record(paths, STOPPED, running, reason or "stopped", evidence)
    return running


def promotion_evidence(contract: Any, paths: DatasetPaths, version: str) -> tuple[dict, list[str]]:
    """For a promotion decision about ``version``: the online evidence of its running
    canary (ledger details) and a sentence citing it; empty when no canary of it runs."""
    from driftloop.serving import canary_log

    running = active_canary(paths)
    if running is None or running.version != str(version):
        return {}, []
    since = (running.started_at or "")[:10]
    days = [d for d in canary_log.online_days(paths) if d >= since]
    proof = canary_log.evidence(contract, paths, days)
    parts = []
    for arm, numbers in sorted(proof["arms"].items()):
        values = {
            k: v for k, v in numbers.items() if k not in ("versions", "rows", "labelled_rows")
        }
        shown = ", ".join(f"{k} {v:.4f}" for k, v in values.items() if v == v) or "no metric yet"
        parts.append(f"{arm} (v{'/v'.join(numbers['versions'])}) {shown} on "
                     f"{numbers['labelled_rows']} labelled rows")  # fmt: skip
    sentence = f"online evidence of the canary at {running.share:.0%} since {since}: " + (
        "; ".join(parts) if parts else "no online requests logged yet"
    )
    return {"online_evidence": proof, "canary": asdict(running)}, [sentence]
