"""The reconciler: dead runs end as failed, and the registry follows the ledger.

Every tick, for its dataset:
- a STARTED Dagster run whose process is gone is marked failed, with the reason. The
  process is the one that executes the run's steps, whose pid Dagster records in the
  run's engine events ("Started process for run", "Executing steps in process"); Dagster's
  own run monitoring (instance setting ``run_monitoring``) covers launchers that can check
  their workers, which the default launcher and runs started from the CLI cannot. The
  processes are looked up on this machine, so only under the default launcher, whose
  runs (like the CLI's) run here; other launchers are left to run monitoring.
- an MLflow run of the dataset left RUNNING by a process that is gone is ended (KILLED);
- the registry's champion is put back in line with the ledger
  (driftloop.evaluation.reconcile), unless a retrain holds the dataset's lock right now
  (its promotion may be between its ledger entry and its alias move).

Why a sensor and not Dagster's automation: it repairs state, it builds no asset. Whether a
run's process is alive, whether an MLflow run was left RUNNING and where the registry's
alias points are all outside the event log that automation conditions read.
"""

from __future__ import annotations

from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from assets.retrain_run import run_in_progress
from driftloop.data.contract import Contract
from driftloop.evaluation.reconcile import end_dead_mlflow_runs, reconcile_registry
from driftloop.names import PROCESS_TAG
from driftloop.processes import ran_since
from driftloop.training.retrain_lock import holder
from resources.lake import LakeResource
from resources.mlflow import MlflowResource
from sensors.settings import seconds

PID_EVENTS = ("Started process for run", "Executing steps")


def run_pid(instance: DagsterInstance, run: DagsterRun) -> int | None:
    """The pid of the process executing a run's steps, from its engine events (the last one
    that names a pid: a run worker's steps run in the worker itself), else from its
    PROCESS_TAG (a run executed inside another run's process). The code server's "Started
    process for run" event carries its text in the event's message, not the log entry's: a
    run whose worker died before its first step has only that one."""
    tagged = run.tags.get(PROCESS_TAG, "")
    pid = int(tagged) if tagged.isdigit() else None
    for entry in instance.all_logs(run.run_id, of_type=DagsterEventType.ENGINE_EVENT):
        event = entry.dagster_event
        data = getattr(event, "engine_event_data", None) if event else None
        value = (data.metadata or {}).get("pid") if data is not None else None
        text = str(getattr(value, "value", value) or "")
        message = entry.user_message or (event.message if event else None) or ""
        if text.isdigit() and message.startswith(PID_EVENTS):
            pid = int(text)
    return pid


def fail_dead_runs(instance: DagsterInstance) -> list[str]:
    """Mark STARTED runs whose process is gone as failed; returns their run ids. A run
    executed inside another run's process (PROCESS_TAG) counts from its creation: if that
    process dies before the run's start is recorded, the run would stay NOT_STARTED.

    Only with the default run launcher, whose runs (and the CLI's) run on this machine:
    another launcher's workers run elsewhere (a pod, a container), where a pid means
    nothing here, and Dagster's run monitoring checks them through the launcher."""
    from dagster import DefaultRunLauncher

    if not isinstance(instance.run_launcher, DefaultRunLauncher):
        return []
    failed = []
    unstarted = [DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING]
    records = [
        *instance.get_run_records(RunsFilter(statuses=[DagsterRunStatus.STARTED])),
        *(
            record
            for record in instance.get_run_records(RunsFilter(statuses=unstarted))
            if PROCESS_TAG in record.dagster_run.tags
        ),
    ]
    for record in records:
        run = record.dagster_run
        pid = run_pid(instance, run)
        started = record.start_time or record.create_timestamp.timestamp()
        if pid is None or ran_since(pid, started):
            continue
        instance.report_run_failed(
            run,
            f"the process that executed this run (pid {pid}) is gone (killed or crashed) "
            f"while the run was {run.status.value}; marked failed by the reconciler",
        )
        failed.append(run.run_id)
    return failed


def build_reconcile_sensor(contract: Contract) -> SensorDefinition:
    name = contract.name

    @sensor(
        name=f"{name}_reconcile",
        minimum_interval_seconds=seconds("DRIFTLOOP_RECONCILE_SENSOR_SECONDS", 60),
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            f"Ends dead runs as failed (Dagster runs whose process is gone, {name} MLflow runs "
            f"left RUNNING) and puts the {name} champion alias back in line with the ledger."
        ),
    )
    def reconcile(
        context: SensorEvaluationContext, lake: LakeResource, mlflow: MlflowResource
    ) -> SkipReason:

        failed = fail_dead_runs(context.instance)
        done = [f"Dagster run {run_id} failed: its process is gone" for run_id in failed]
        client = mlflow.client()
        done += [f"MLflow run {r} ended (KILLED)" for r in end_dead_mlflow_runs(client, name)]
        paths = lake.paths(name)
        busy = holder(paths)
        if busy is not None and run_in_progress(context.instance, busy):
            done.append(f"registry not checked: retrain run {busy.owner} holds the lock")
        else:
            repair = reconcile_registry(paths, client, name)
            done += repair.actions
            if not repair.consistency_before.repairable:
                done += repair.consistency_before.problems
        for line in done:
            context.log.info(f"{name}: {line}")
        return SkipReason("; ".join(done) or "nothing to reconcile")

    return reconcile
