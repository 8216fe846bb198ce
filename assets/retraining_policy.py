"""`<dataset>/retraining_policy`: the retraining policy chosen from the dataset's history.

One core call (``driftloop.backtest.in_force.choose_from_history``) replays the history so
far with every candidate (the periodic schedules and the trigger grid of
``driftloop.backtest.selection``) on the backtest's cached daily models, and chooses; the
choice is kept as a versioned file the retrain sensor reads and as a run in the MLflow
experiment `<dataset>-policy`. The comparison table and the frontier plot are metadata.
Re-chosen weekly by `<dataset>_retraining_policy_weekly`, and on demand; the first choice
waits for the walk-forward's warm-up (four weeks after the first training window), and
until then the asset records how many days there are and the defaults stay in force.
"""

import base64
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from dagster import (
    AssetExecutionContext,
    AssetSelection,
    Config,
    DefaultScheduleStatus,
    Definitions,
    MaterializeResult,
    MetadataValue,
    ScheduleDefinition,
    asset,
    define_asset_job,
)

from driftloop.data.contract import Contract
from resources.lake import LakeResource
from resources.mlflow import MlflowResource

if TYPE_CHECKING:
    from driftloop.backtest.selection import PolicyChoice


def _table_markdown(rows: list[dict]) -> str:
    from driftloop.backtest.selection import table_order  # numpy: on use

    head = "| candidate | kind | retrains | value capture | plateau capture | within budget |"
    lines = [head, "|---|---|---:|---:|---:|---|"]
    for r in sorted(rows, key=table_order):
        capture = r["value_capture"]
        plateau = r["plateau_capture"]
        lines.append(
            f"| {'**' + r['candidate'] + '**' if r['chosen'] else r['candidate']} | {r['kind']} "
            f"| {r['retrains']} | {'-' if capture is None else f'{capture:.3f}'} "
            f"| {'-' if plateau is None else f'{plateau:.3f}'} | {r['within_budget']} |"
        )
    return "\n".join(lines)


class RetrainingPolicyConfig(Config):
    # None: the walk-forward's warm-up (driftloop.backtest.policies.SELECTION_WARMUP_DAYS).
    min_history_days: int | None = None


def _choice_metadata(choice: "PolicyChoice", version: Path, frontier: Path | None) -> dict:
    """The asset's metadata: the choice, its comparison table and its frontier plot."""
    metadata = {
        "chosen": choice.chosen.name,
        "chosen settings": MetadataValue.json(choice.chosen.to_dict()),
        "flatness": choice.flatness,
        "days judged": choice.days,
        "budget (retrains)": choice.budget_retrains,
        "selection CPU seconds": round(choice.cpu_seconds, 1),
        "comparison": MetadataValue.md(_table_markdown(choice.table)),
        "version": MetadataValue.path(str(version)),
    }
    if frontier is not None:
        encoded = base64.b64encode(frontier.read_bytes()).decode()
        metadata["frontier"] = MetadataValue.md(f"![frontier](data:image/png;base64,{encoded})")
    return metadata


def build(contract: Contract) -> Definitions:
    name = contract.name

    @asset(
        key=[name, "retraining_policy"],
        group_name=name,
        description=(
            f"The retraining policy of {name}, chosen by replaying its history with the "
            "periodic schedules and a grid of trigger settings (docs/backtest.md)."
        ),
    )
    def retraining_policy(
        context: AssetExecutionContext,
        config: RetrainingPolicyConfig,
        lake: LakeResource,
        mlflow: MlflowResource,
    ) -> MaterializeResult:
        from driftloop.backtest.in_force import (
            TooLittleHistory,
            choose_from_history,
            log_choice,
            policy_folder,
            policy_in_force,
            write_choice,
        )
        from driftloop.backtest.report import render_frontier

        paths = lake.paths(name)
        try:
            choice, result = choose_from_history(
                contract, paths.root, progress=context.log.info, min_days=config.min_history_days
            )
        except TooLittleHistory as error:
            context.log.info(f"no choice yet: {error}")
            in_force = policy_in_force(contract, paths)
            return MaterializeResult(
                metadata={"chosen": "none yet", "why": str(error), "in force": in_force.describe()}
            )
        chosen_on = date.fromisoformat(result.config.end.isoformat())
        version = write_choice(paths, choice, chosen_on)
        frontier = render_frontier(result, policy_folder(paths) / f"{chosen_on}_frontier.png")
        run_id = log_choice(
            name, version, frontier, choice, mlflow.uri(), artifact_root=mlflow.artifact_root()
        )
        metadata = _choice_metadata(choice, version, frontier)
        metadata["mlflow run"] = MetadataValue.url(mlflow.run_url(run_id))
        return MaterializeResult(metadata=metadata)

    job = define_asset_job(
        f"{name}_retraining_policy", selection=AssetSelection.assets(retraining_policy)
    )
    # Mondays 03:00: every SELECTION_EVERY_DAYS (7), as the walk-forward re-chooses.
    weekly = ScheduleDefinition(
        name=f"{name}_retraining_policy_weekly",
        job=job,
        cron_schedule="0 3 * * 1",
        default_status=DefaultScheduleStatus.RUNNING,
    )
    return Definitions(assets=[retraining_policy], jobs=[job], schedules=[weekly])
