"""One-command rollback: move a dataset's `champion` alias back to the previous champion.

    dg launch --job flights_rollback
    dg launch --job flights_rollback \
        --config-json '{"ops": {"flights_rollback_champion": {"config": {"to_version": "3"}}}}'

Without ``to_version`` the target is the champion before the current one, replayed from
the promotion ledger (earlier rollbacks included, so rolling back twice walks further
back). The ledger entry is written first, then the version tags, then the alias moves.

No ``from __future__ import annotations`` here: Dagster reads the config annotation.
"""

from datetime import UTC, datetime

from dagster import (
    AssetKey,
    AssetObservation,
    Config,
    Failure,
    JobDefinition,
    MetadataValue,
    OpExecutionContext,
    Output,
    job,
    op,
)
from pydantic import Field

from driftloop.data.contract import Contract
from driftloop.evaluation import ledger
from driftloop.evaluation.promotion import PromotionError, check_store
from driftloop.names import CHALLENGER, CHAMPION, DATASET_TAG
from driftloop.serving import canary
from driftloop.training.registry import aliased, set_alias, version_for_alias, version_of_run


class RollbackConfig(Config):
    to_version: str = Field(
        default="",
        description="model version to make champion; empty = the previous champion (ledger)",
    )
    reason: str = Field(default="", description="why, in words, recorded in the ledger")


def rollback(
    contract: Contract, paths, client, config: RollbackConfig, run_id: str | None = None
) -> dict:
    """Move `champion` back; returns what happened. Raises Failure with a clear message."""
    from mlflow.exceptions import MlflowException

    name = contract.name
    try:
        store = check_store(paths, client, name)
    except PromotionError as error:
        raise Failure(str(error)) from error
    current = aliased(client, name, CHAMPION)
    if current is None:
        raise Failure(f"{name} has no champion: there is nothing to roll back")
    before = current.version
    target = config.to_version.strip().removeprefix("v") or None
    if target is None:
        previous = ledger.previous_champion_run(paths)
        if previous is not None:
            version, model_run = previous
            found = version_of_run(client, name, model_run) if model_run else None
            target = str(found.version) if found else (None if model_run else version)
    if target is None:
        raise Failure(
            f"nothing to roll back to: the ledger of {name} ({paths.ledger}) records no "
            f"champion before v{before} in this store. Pass to_version to choose a version."
        )
    if target == before:
        raise Failure(f"v{target} already is the champion of {name}: nothing to roll back")
    try:
        target_run = client.get_model_version(name, target).run_id
    except MlflowException as error:
        raise Failure(f"{name} has no model version {target!r}: {error.message}") from error

    # The canary running now (if any) ends with the rollback: its evidence so far is kept.
    running = canary.running_evidence(contract, paths)
    now = datetime.now(UTC).isoformat()
    reasons = [
        f"rolled back from v{before} to v{target}"
        + (" (the previous champion in the ledger)" if not config.to_version else "")
    ]
    if config.reason:
        reasons.append(config.reason)
    entry = ledger.append(
        paths,
        ledger.LedgerEntry(
            dataset=name,
            action="rollback",
            challenger_version=None,
            champion_before=before,
            champion_after=target,
            reasons=reasons,
            dagster_run_id=run_id,
            model_run_id=target_run,
            champion_before_run_id=current.run_id,
            champion_after_run_id=target_run,
            store_id=store,
        ),
    )
    client.set_model_version_tag(name, before, "driftloop.rolled_back_at", now)
    client.set_model_version_tag(name, before, "driftloop.rolled_back_to", target)
    client.set_model_version_tag(name, target, "driftloop.restored_at", now)
    client.set_model_version_tag(name, target, "driftloop.restored_from", before)
    # The rolled-back version must not come straight back through the gate.
    challenger = version_for_alias(client, name, CHALLENGER)
    cleared = challenger is not None and str(challenger.version) == before
    if cleared:
        client.delete_registered_model_alias(name, CHALLENGER)
    set_alias(client, name, CHAMPION, target)  # last: the serving model changes here
    ended = canary.end_by(paths, running, f"ended by the rollback from v{before} to v{target}")
    return {
        "champion_before": before,
        "champion_after": target,
        "ledger_entry": str(entry),
        "challenger_alias_cleared": cleared,
        "reasons": reasons,
        "canary_ended": None if ended is None else str(ended),
    }


def build_rollback_job(contract: Contract) -> JobDefinition:
    """`<dataset>_rollback`: one op, configurable target version; uses `lake` and `mlflow`."""
    name = contract.name

    @op(
        name=f"{name}_rollback_champion",
        required_resource_keys={"lake", "mlflow"},
        description=f"Move the {name} champion alias back and record it in the ledger.",
    )
    def rollback_champion(context: OpExecutionContext, config: RollbackConfig) -> Output:
        paths = context.resources.lake.paths(name)
        client = context.resources.mlflow.client()
        done = rollback(contract, paths, client, config, context.run_id)
        context.log.info(done["reasons"][0])
        metadata = {
            "champion_before": done["champion_before"],
            "champion_after": done["champion_after"],
            "reasons": MetadataValue.md("\n".join(f"- {r}" for r in done["reasons"])),
            "ledger_entry": MetadataValue.path(done["ledger_entry"]),
            "challenger_alias_cleared": done["challenger_alias_cleared"],
        }
        # Shown on the promotion asset's timeline too, beside the promotions it undoes.
        context.log_event(
            AssetObservation(asset_key=AssetKey([name, "promotion"]), metadata=metadata)
        )
        return Output(done["champion_after"], metadata=metadata)

    @job(
        name=f"{name}_rollback",
        description=(
            f"Roll the {name} champion back to the previous champion (from the promotion "
            "ledger) or to op config to_version."
        ),
        tags={DATASET_TAG: name},
    )
    def rollback_job() -> None:
        rollback_champion()

    return rollback_job
