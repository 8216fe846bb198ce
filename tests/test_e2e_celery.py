"""Steps on Celery workers: dagster-celery's executor with a real Redis broker, two worker
processes, the instance on PostgreSQL and MLflow behind its tracking server.

A retrain (model, eval_report, promotion) and a 20-day backfill of the daily assets
(features, predictions, drift_report, performance over one range, one run) execute their
steps on the workers; each step's events name the worker that ran it (dagster-celery's
"Executing steps ... in celery worker" event, whose pid is the step's). While the retrain's
model step runs, its worker process is killed with SIGKILL: the worker puts the unfinished
step back on the queue (late acknowledgement, deploy/celery/executor.yaml), a worker runs
it again and the run succeeds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import date
from pathlib import Path

import pytest
from e2e_helpers import wait_for
from engines import CELERY_CONFIG, PostgresStack, celery_workers, redis_server

from driftloop.paths import PROJECT_ROOT, dataset_paths
from pipelines.instance import instance_at

# 7 holdout, 7 validation and 6 training days: enough for a gate's decision; each further
# day only adds per-partition work to the backfill's steps.
DAYS = 20
FIRST, LAST = "2013-01-01", "2013-01-20"
WORKERS = ("w1", "w2")
BIN = Path(sys.executable).parent


def _dg_launch(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(
            [str(BIN / "dg"), "launch", *args],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _finish(process: subprocess.Popen, log: Path) -> None:
    assert process.wait(timeout=600) == 0, log.read_text(errors="replace")[-5000:]


def _steps_by_worker(instance, run_id: str) -> list[tuple[str, str, int | None]]:
    """(step key, Celery worker, pid) for each step execution, in order: the worker named by
    the step's "Executing steps ... in celery worker" event, the pid by its STEP_START."""
    from dagster import DagsterEventType

    workers: dict[str, list[str]] = {}
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        data = entry.dagster_event.engine_event_data
        worker = data.metadata.get("Celery worker") if data else None
        if worker is not None:
            workers.setdefault(entry.step_key, []).append(worker.value)
    pids: dict[str, list[int | None]] = {}
    for entry in _step_events(instance, run_id, "STEP_START"):
        pids.setdefault(entry.step_key, []).append(entry.dagster_event.pid)
    rows = []
    for step, names in workers.items():
        starts = pids.get(step, [])
        rows += [
            (step, name, starts[i] if i < len(starts) else None) for i, name in enumerate(names)
        ]
    return rows


def _step_events(instance, run_id: str, kind: str) -> list:
    from dagster import DagsterEventType

    return list(instance.all_logs(run_id, of_type=DagsterEventType(kind)))


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_steps_run_on_two_celery_workers_and_survive_a_killed_worker(
    tmp_path: Path, postgres_stack: PostgresStack
) -> None:
    from benchmarks.data import real_flights, write_features_lake, write_raw_lake
    from driftloop.data.contract import load_contract
    from driftloop.data.lake import existing_partitions
    from driftloop.evaluation.ledger import read as read_ledger

    root = tmp_path / "data"
    contract = load_contract(PROJECT_ROOT / "contracts" / "flights.yaml")
    paths = dataset_paths("flights", root)
    # The lake of the first DAYS days (raw and features) is the retrain's input.
    write_features_lake(
        contract, paths, write_raw_lake(contract, paths, real_flights(date(2013, 1, 1), DAYS))
    )
    with ExitStack() as stack:
        broker = stack.enter_context(redis_server(tmp_path / "redis.log"))
        env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "DRIFTLOOP_DATA_DIR": str(root),
            **postgres_stack.env(),
            "DRIFTLOOP_REPLAY": "off",
            "DRIFTLOOP_EXECUTOR": "celery",
            "DRIFTLOOP_EXECUTOR_CONFIG": str(CELERY_CONFIG),
            "DRIFTLOOP_CELERY_BROKER": f"{broker}/0",
            "DRIFTLOOP_CELERY_BACKEND": f"{broker}/1",
        }
        clock = time.monotonic()
        stack.enter_context(celery_workers(WORKERS, env, tmp_path))
        print(f"two workers ready in {time.monotonic() - clock:.0f} s")
        instance = stack.enter_context(instance_at(postgres_stack.home))

        # 1. The retrain; its model step's worker process is killed once the step has begun.
        clock = time.monotonic()
        retrain_log = tmp_path / "retrain.log"
        retrain = _dg_launch(["--job", "flights_retrain"], env, retrain_log)
        run_id = wait_for(
            "the retrain run",
            lambda: next(iter(instance.get_run_ids()), None),
            timeout=300,
            every=0.5,
        )
        started = wait_for(
            "the model step's start",
            lambda: [
                e
                for e in _step_events(instance, run_id, "STEP_START")
                if e.step_key == "flights__model"
            ],
            timeout=300,
            every=0.2,
        )
        killed = started[0].dagster_event.pid
        os.kill(killed, signal.SIGKILL)
        _finish(retrain, retrain_log)
        print(f"retrain with a killed step: {time.monotonic() - clock:.0f} s")
        clock = time.monotonic()

        # 2. The daily assets over the DAYS days as one run.
        selection = "flights/features,flights/predictions,flights/drift_report,flights/performance"
        log = tmp_path / "backfill.log"
        span = ["--partition-range", f"{FIRST}...{LAST}"]
        backfill = _dg_launch(["--assets", selection, *span], env, log)
        _finish(backfill, log)
        print(f"{DAYS}-day backfill: {time.monotonic() - clock:.0f} s")
        runs = {r.job_name: r for r in instance.get_runs()}
        steps = {run.run_id: _steps_by_worker(instance, run.run_id) for run in runs.values()}
        done = {
            run.run_id: {e.step_key for e in _step_events(instance, run.run_id, "STEP_SUCCESS")}
            for run in runs.values()
        }

    from dagster import DagsterRunStatus

    assert {r.status for r in runs.values()} == {DagsterRunStatus.SUCCESS}, runs
    hosts = {worker.split("@")[0] for rows in steps.values() for _, worker, _ in rows}
    assert hosts == set(WORKERS), steps
    for run in runs.values():
        # Every step that succeeded was started by a named worker, in a worker's process.
        assert done[run.run_id] <= {step for step, _, _ in steps[run.run_id]}, steps
        assert len(done[run.run_id]) >= 3, done
        assert os.getpid() not in {pid for _, _, pid in steps[run.run_id]}
    # The killed model step ran twice: first in the killed process, then again elsewhere.
    model = [(w, pid) for step, w, pid in steps[run_id] if step == "flights__model"]
    assert len(model) == 2 and model[0][1] == killed and model[1][1] != killed, model
    for run in runs.values():
        print(run.job_name, "steps (step, worker, pid):", steps[run.run_id])

    # The retrain's gate left a champion (its challenger, or the baseline kept over a refused
    # challenger: the ledger's record), and the backfill scored and watched every day with it.
    ledger = read_ledger(paths)
    assert set(ledger["dagster_run_id"]) == {run_id}, ledger.to_dict("records")
    assert ledger["action"].iloc[-1] == "promoted" and ledger["champion_after"].iloc[-1]
    assert len(existing_partitions(paths.table("drift"))) == DAYS
