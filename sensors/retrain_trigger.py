"""The retraining trigger: a persistent breach (N of the last M days), never within the cooldown.

Signals are the per-day verdicts the monitoring assets write to the lake (calibrated drift,
estimated and pooled realised performance, `driftloop.monitoring.status_section.read_signals`);
the decision is `driftloop.monitoring.trigger.decide_retrain`, the same function the
backtest replays history through. Its sentence goes to the sensor's log (when it changes),
to the run's tags and to `pipelines.status`. The cooldown counts from the last retrain
launched, whether the gate promoted its challenger or not. With no champion yet, enough
days of features start the first training. Time is the data's clock: "today" is the
latest day with features.
"""

from __future__ import annotations

import json
from datetime import date

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from driftloop.backtest.in_force import PolicyInForce, policy_in_force
from driftloop.data.contract import Contract
from driftloop.data.lake import existing_partitions
from driftloop.monitoring.status_section import read_signals, write_decision
from driftloop.monitoring.trigger import TriggerDecision, decide_retrain, scheduled_retrain
from driftloop.names import DATA_DAY_TAG, TRIGGER_REASON_TAG, TRIGGER_TAG
from driftloop.paths import DatasetPaths
from resources.lake import LakeResource
from resources.mlflow import MlflowResource
from sensors.recompute import latest_signal_is_recompute
from sensors.run_requests import ACTIVE, content_key
from sensors.settings import seconds

MIN_TRAIN_DAYS = 7


def days_needed_for_first_model(contract: Contract) -> int:
    training = contract.training
    return training.holdout_days + training.validation_days + MIN_TRAIN_DAYS


def build_retrain_sensor(contract: Contract, job_name: str) -> SensorDefinition:
    policy = contract.retraining

    @sensor(
        name=f"{contract.name}_retrain_trigger",
        job_name=job_name,
        minimum_interval_seconds=seconds("DRIFTLOOP_RETRAIN_SENSOR_SECONDS", 30),
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            f"Retrains {contract.name} when calibrated drift, estimated or realised "
            f"performance breached on {policy.n_breaches} of the last {policy.window} days "
            f"(cooldown {policy.cooldown_days} days from the last retrain launched), or when "
            "there is no champion yet."
        ),
    )
    def retrain_trigger(
        context: SensorEvaluationContext, lake: LakeResource, mlflow: MlflowResource
    ) -> SensorResult | SkipReason:

        paths = lake.paths(contract.name)
        days = existing_partitions(paths.table("features"))
        if not days:
            return SkipReason("no features yet")
        if context.instance.get_runs(RunsFilter(job_name=job_name, statuses=ACTIVE), limit=1):
            return SkipReason("a retraining run is already queued or running")
        today = date.fromisoformat(days[-1])
        state = json.loads(context.cursor) if context.cursor else {}
        last_day = state.get("last_retrain_day")
        last = date.fromisoformat(last_day) if last_day else None

        in_force: PolicyInForce | None = None
        if mlflow.version_for_alias(contract.name, "champion") is None:
            waiting = _first_model_wait(contract, days, today, last)
            if waiting is not None:
                return SkipReason(waiting)
            kind, reason = "bootstrap", f"no champion yet: {len(days)} days of features"
        else:
            if latest_signal_is_recompute(contract, context.instance):
                return SkipReason("only recomputed history since the last news: nothing to decide")
            decision, in_force = _decide(contract, paths, days, today, last)
            record = {"today": today.isoformat(), "fire": decision.fire, "reason": decision.reason}
            record["policy"] = in_force.describe()
            if write_decision(paths, record):
                context.log.info(f"{contract.name} trigger on {today}: {decision.reason}")
            if not decision.fire:
                return SkipReason(decision.reason)
            kind, reason = "monitoring", decision.reason

        context.log.info(f"retraining {contract.name}: {reason}")
        cursor = json.dumps({"last_retrain_day": today.isoformat(), "last_reason": reason})
        request = _retrain_request(contract, job_name, today, kind, reason, in_force)
        return SensorResult(run_requests=[request], cursor=cursor)

    return retrain_trigger


def _decide(
    contract: Contract, paths: DatasetPaths, days: list[str], today: date, last: date | None
) -> tuple[TriggerDecision, PolicyInForce]:
    """The decision under the policy in force: the contract's settings, else the one chosen
    from the dataset's history (<dataset>/retraining_policy), else the defaults."""
    in_force = policy_in_force(contract, paths)
    if in_force.every_days:
        return scheduled_retrain(today, last, in_force.every_days), in_force
    signals = read_signals(paths, days[-in_force.policy.window :])
    return decide_retrain(signals, today, last, in_force.policy), in_force


def _first_model_wait(
    contract: Contract, days: list[str], today: date, last: date | None
) -> str | None:
    """Why the first training waits (too few days, or cooling down), or None to go."""
    needed = days_needed_for_first_model(contract)
    if len(days) < needed:
        return f"no champion yet; {len(days)} of {needed} days of features"
    if last is not None and (today - last).days < contract.retraining.cooldown_days:
        return f"no champion yet; last attempt on {last}, cooling down"
    return None


def _retrain_request(
    contract: Contract,
    job_name: str,
    today: date,
    kind: str,
    reason: str,
    in_force: PolicyInForce | None = None,
) -> RunRequest:
    """The retraining run, keyed by what decided it, with the decision and the policy that
    decided it (the policy in force; the contract's for a first model) in its tags."""
    policy = contract.retraining
    described = (
        in_force.describe()
        if in_force is not None
        else f"{policy.n_breaches} of {policy.window} days, drift >= "
        f"{policy.drift_threshold}, cooldown {policy.cooldown_days} days"
    )
    return RunRequest(
        run_key=f"retrain:{content_key(contract.name, today.isoformat(), reason)}",
        job_name=job_name,
        tags={
            TRIGGER_TAG: kind,
            TRIGGER_REASON_TAG: reason[:480],
            DATA_DAY_TAG: today.isoformat(),
            "driftloop/trigger_policy": described[:480],
        },
    )
