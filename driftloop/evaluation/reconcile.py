"""Registry against ledger: find where they disagree and repair what can be repaired.

The ledger is the record of every champion change, written before the alias moves. So a
champion alias that differs from the ledger's last champion-setting entry is a change
that did not finish (a process killed between the two) or one made outside the loop
(an alias moved by hand in the MLflow UI): either way the alias is moved to the ledger's
champion, found by its run id (never by version number), and a ``reconciled`` entry says
so. With no champion recorded at all, a champion found in the registry is recorded as
found. A store the ledger was not written against (lost or replaced) is never repaired
automatically: ``adopt_store`` records the switch when a person says so. MLflow runs left
RUNNING by a process that is gone are ended (KILLED).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftloop.evaluation import ledger
from driftloop.names import CHAMPION
from driftloop.paths import DatasetPaths
from driftloop.processes import token_alive
from driftloop.training.registry import (
    PROCESS_TAG,
    RegisteredVersion,
    aliased,
    set_alias,
    store_id,
    version_of_run,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient


@dataclass
class Consistency:
    """Whether the registry's champion is the ledger's, and if not, why and what to do."""

    dataset: str
    agree: bool
    problems: list[str] = field(default_factory=list)
    repairable: bool = True
    store_id: str | None = None
    ledger_store_id: str | None = None
    ledger_champion: dict[str, Any] | None = None
    registry_champion: dict[str, Any] | None = None
    target_version: str | None = None  # where a repair moves the alias (None: unset)
    record_registry: bool = False  # a repair records the registry's champion as found

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "agree": self.agree,
            "problems": list(self.problems),
            "repairable": self.repairable,
            "store_id": self.store_id,
            "ledger_store_id": self.ledger_store_id,
            "ledger_champion": self.ledger_champion,
            "registry_champion": self.registry_champion,
        }


@dataclass
class Repair:
    consistency_before: Consistency
    actions: list[str] = field(default_factory=list)
    ledger_entries: list[Path] = field(default_factory=list)


def _named(version: str | None, run_id: str | None) -> str:
    if version is None and run_id is None:
        return "no champion"
    return f"v{version}" + (f" (run {run_id})" if run_id else "")


def _as_dict(model: RegisteredVersion | None) -> dict[str, Any] | None:
    return None if model is None else {"version": model.version, "run_id": model.run_id}


def check(paths: DatasetPaths, client: MlflowClient, name: str) -> Consistency:
    """Compare the registry's champion with the ledger's (read-only)."""
    now = store_id(client, name)
    recorded = ledger.latest_store_id(paths)
    expected = ledger.ledger_champion(paths)
    registry = aliased(client, name, CHAMPION)
    state = Consistency(
        dataset=name,
        agree=True,
        store_id=now,
        ledger_store_id=recorded,
        ledger_champion=None
        if expected is None
        else {"version": expected.version, "run_id": expected.run_id, "action": expected.action},
        registry_champion=_as_dict(registry),
    )
    where = f"the ledger ({paths.ledger})"
    adopt = f"`python -m pipelines.reconcile --dataset {name} --adopt-store`"
    if recorded is not None and recorded != now:
        state.agree, state.repairable = False, False
        found = "has no registered model" if now is None else f"is {now}"
        state.problems.append(
            f"{where} was written against MLflow store {recorded}, but this store {found}: "
            f"the store was lost or replaced. Nothing is promoted until {adopt} records "
            "that this store replaces it."
        )
        return state
    if expected is None or (expected.version is None and expected.run_id is None):
        if registry is not None:
            state.agree, state.record_registry = False, True
            state.problems.append(
                f"the registry's champion {_named(registry.version, registry.run_id)} has no "
                f"entry in {where}: it was set outside the loop"
            )
        return state
    if registry is not None and (
        registry.run_id == expected.run_id
        if expected.run_id
        else registry.version == expected.version
    ):
        return state
    state.agree = False
    target = (
        version_of_run(client, name, expected.run_id)
        if expected.run_id
        else _version(client, name, expected.version)
    )
    ledger_says = (
        f"{where} says the champion is {_named(expected.version, expected.run_id)} "
        f"({expected.action} at {str(expected.timestamp)[:19]})"
    )
    registry_says = (
        "the registry has no champion"
        if registry is None
        else f"the registry's champion is {_named(registry.version, registry.run_id)}"
    )
    if target is None:
        state.repairable = False
        state.problems.append(
            f"{ledger_says}, but that model is not in this store; {registry_says}"
        )
        return state
    state.target_version = str(target.version)
    state.problems.append(
        f"{ledger_says}, but {registry_says}: a change that did not finish or an alias moved "
        "by hand; the reconciler moves the alias to the ledger's champion"
    )
    return state


def _version(client: MlflowClient, name: str, version: str | None) -> Any:
    from mlflow.exceptions import MlflowException

    if version is None:
        return None
    try:
        return client.get_model_version(name, version)
    except MlflowException:
        return None


def reconcile_registry(
    paths: DatasetPaths, client: MlflowClient, name: str, dagster_run_id: str | None = None
) -> Repair:
    """Repair what `check` finds repairable: move the alias to the ledger's champion, or
    record a champion set outside the loop; each repair is a ``reconciled`` entry."""
    state = check(paths, client, name)
    repair = Repair(state)
    if state.agree or not state.repairable:
        return repair
    registry = aliased(client, name, CHAMPION)
    before = registry
    if state.record_registry:
        after = registry
        action = f"recorded the registry's champion v{registry.version} as found"
    else:
        set_alias(client, name, CHAMPION, state.target_version)
        after = aliased(client, name, CHAMPION)
        was = "none" if before is None else f"v{before.version}"
        action = f"moved the champion alias from {was} to v{after.version}, the ledger's champion"
    entry = ledger.LedgerEntry(
        dataset=name,
        action="reconciled",
        challenger_version=None if after is None else after.version,
        champion_before=None if before is None else before.version,
        champion_after=None if after is None else after.version,
        reasons=[action, *state.problems],
        dagster_run_id=dagster_run_id,
        model_run_id=None if after is None else after.run_id,
        champion_before_run_id=None if before is None else before.run_id,
        champion_after_run_id=None if after is None else after.run_id,
        store_id=state.store_id,
        details={"repair": action, "ledger_champion": state.ledger_champion},
    )
    repair.ledger_entries.append(ledger.append(paths, entry))
    repair.actions.append(action)
    return repair


def adopt_store(paths: DatasetPaths, client: MlflowClient, name: str, reason: str = "") -> Path:
    """Record that the current MLflow store replaces the one the ledger was written against:
    its champion (or none) becomes the ledger's, and history starts again from here."""
    previous = ledger.latest_store_id(paths)
    if store_id(client, name) is None:
        # An empty store: the registered model is created now, so the store has the
        # identity the ledger records and the next training registers into it.
        client.create_registered_model(name)
    now = store_id(client, name)
    if previous is None or previous == now:
        raise ValueError(
            f"nothing to adopt: the ledger of {name} names store {previous}, this is {now}"
        )
    registry = aliased(client, name, CHAMPION)
    reasons = [f"adopted MLflow store {now} in place of {previous}"]
    if reason:
        reasons.append(reason)
    before = ledger.ledger_champion(paths)
    return ledger.append(
        paths,
        ledger.LedgerEntry(
            dataset=name,
            action="reconciled",
            challenger_version=None if registry is None else registry.version,
            champion_before=None if before is None else before.version,
            champion_after=None if registry is None else registry.version,
            reasons=reasons,
            model_run_id=None if registry is None else registry.run_id,
            champion_before_run_id=None if before is None else before.run_id,
            champion_after_run_id=None if registry is None else registry.run_id,
            store_id=now,
            details={"adopted_store": now, "previous_store": previous},
        ),
    )


def end_dead_mlflow_runs(client: MlflowClient, name: str) -> list[str]:
    """End (KILLED) the dataset's MLflow runs left RUNNING by a process that is gone on
    this machine; returns their run ids. Runs from other machines are left alone."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return []
    ended = []
    running = client.search_runs(
        [experiment.experiment_id], filter_string="attributes.status = 'RUNNING'"
    )
    for run in running:
        token = run.data.tags.get(PROCESS_TAG)
        if not token or token_alive(token) is not False:
            continue
        client.set_tag(run.info.run_id, "driftloop.ended_by", f"reconciler: process {token} gone")
        client.set_terminated(run.info.run_id, status="KILLED")
        ended.append(run.info.run_id)
    return ended
