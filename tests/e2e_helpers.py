"""Starting and stopping `dagster dev` for end-to-end tests, waiting on its instance, and the
loop they drive (shared by the SQLite and the PostgreSQL/MLflow-server end-to-end tests)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar

import yaml

from driftloop.paths import PROJECT_ROOT

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def process_group(
    args: list[str], env: dict[str, str], log_path: Path, stop: int = signal.SIGINT
) -> Iterator[subprocess.Popen]:
    """A command in its own process group, stopped (then killed) with its whole group."""
    with log_path.open("w") as log:
        process = subprocess.Popen(
            args,
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, stop)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        # Nothing of the group may outlive the test.
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


@contextmanager
def dagster_dev(env: dict[str, str], log_path: Path, port: int) -> Iterator[subprocess.Popen]:
    """`python -m pipelines.dev` (dagster dev: webserver + daemon) in its own process group.

    Stopped with SIGINT, as Ctrl-C does: dagster dev then takes its webserver, daemon and
    code servers down with it (SIGTERM would leave them running).
    """
    args = [sys.executable, "-m", "pipelines.dev", "--host", "127.0.0.1", "--port", str(port)]
    with process_group(args, env, log_path) as process:
        # pipelines.dev creates the instance's tables before Dagster starts: a test that
        # opens the instance sooner races it to create them ("alembic_version already
        # exists"), so the context is entered once the webserver answers.
        wait_for(
            "the Dagster webserver",
            lambda: process.poll() is not None or _answers(f"http://127.0.0.1:{port}/server_info"),
            timeout=600,
            every=1,
        )
        assert process.poll() is None, f"pipelines.dev exited early: {log_path.read_text()[-3000:]}"
        yield process


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    timeout: float,
    every: float = 3,
    explain: Callable[[], str] | None = None,
) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` after `timeout` s,
    with what `explain` says of the state it was left in."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            state = f"; {explain()}" if explain is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{state}")
        time.sleep(every)


# ------------------------------------------------------------------------------- the loop

FIRST_BATCH_DAYS = 35
SECOND_BATCH_DAYS = 8


def loop_contract_dir(tmp_path: Path) -> Path:
    """The shipped flights contract with a quicker trigger (2 of the last 3 days, 3 days of
    cooldown), so that the loop turns within minutes; nothing else differs."""
    raw = yaml.safe_load((PROJECT_ROOT / "contracts" / "flights.yaml").read_text())
    raw["retraining"] = {"n_breaches": 2, "window": 3, "cooldown_days": 3}
    folder = tmp_path / "contracts"
    folder.mkdir()
    (folder / "flights.yaml").write_text(yaml.safe_dump(raw))
    return folder


def loop_environment(tmp_path: Path, root: Path, home: Path, **extra: str) -> dict[str, str]:
    """`dagster dev`'s environment for the loop: fast sensors, no replay feed."""
    return {
        **os.environ,
        "DRIFTLOOP_DATA_DIR": str(root),
        "DAGSTER_HOME": str(home),
        "DRIFTLOOP_CONTRACTS_DIR": str(loop_contract_dir(tmp_path)),
        "DRIFTLOOP_REPLAY": "off",  # the test is the upstream: it lands the files itself
        "DRIFTLOOP_NEW_DATA_SENSOR_SECONDS": "5",
        "DRIFTLOOP_RETRAIN_SENSOR_SECONDS": "5",
        "DRIFTLOOP_CATCH_UP_SENSOR_SECONDS": "5",
        **extra,
    }


def finished_runs(instance: Any, job: str, trigger: str) -> list:
    """Successful runs of `job` launched by `trigger`; fails on any failed one."""
    from dagster import DagsterRunStatus, RunsFilter

    runs = [r.dagster_run for r in instance.get_run_records(RunsFilter(job_name=job))]
    runs = [r for r in runs if r.tags.get("driftloop/trigger") == trigger]
    failed = [r.run_id for r in runs if r.status == DagsterRunStatus.FAILURE]
    assert not failed, f"{job} runs failed: {failed}"
    return [r for r in runs if r.status == DagsterRunStatus.SUCCESS]


def _runs_tagged(instance: Any, key: str, value: str) -> list:
    from dagster import RunsFilter

    return instance.get_runs(RunsFilter(tags={key: value}))


def drive_the_loop(instance: Any, root: Path, tracking_uri: str) -> None:
    """Land days, wait for the sensors to ingest, bootstrap a champion, watch drift, and
    retrain on a persistent breach; assert each step, the ledger and the registry."""
    from assets.automation import INGEST_RUN_TAG
    from driftloop.data.lake import existing_partitions
    from driftloop.data.replay import replay_days
    from driftloop.evaluation.ledger import read as read_ledger
    from driftloop.monitoring.drift_outcome import read_drift_summary
    from driftloop.paths import dataset_paths
    from driftloop.training.registry import make_client, version_for_alias

    paths = dataset_paths("flights", root)
    # 1. The new-data sensor ingests the batch in one run, which builds its features too
    # (the wait includes `dagster dev` starting its webserver, daemon and code server:
    # minutes on a loaded machine).
    wait_for(
        "the first batch's features",
        lambda: len(existing_partitions(paths.table("features"))) >= FIRST_BATCH_DAYS,
        timeout=600,
    )
    # ... in a daily run of its own, executed by the ingest run.
    [ingest] = wait_for(
        "the first ingest run to end",
        lambda: finished_runs(instance, "flights_ingest", "new_data"),
        timeout=300,
    )
    daily = _runs_tagged(instance, INGEST_RUN_TAG, ingest.run_id)
    assert [run.job_name for run in daily] == ["flights_daily"], daily
    # 2. With no champion and enough days, the retrain sensor bootstraps one.
    wait_for(
        "the sensor-launched first training",
        lambda: finished_runs(instance, "flights_retrain", "bootstrap"),
        timeout=300,
    )
    ledger = read_ledger(paths)
    assert list(ledger["action"]) == ["promoted"], ledger.to_dict("records")
    # 3. Days that waited for a champion are scored and watched for drift.
    wait_for(
        "drift reports of the first batch",
        lambda: len(existing_partitions(paths.table("drift"))) >= FIRST_BATCH_DAYS,
        timeout=360,
    )
    # 4. More days land; drift persists and performance falls; the trigger retrains on
    # whichever signals breached first (on a loaded machine the labels' performance can
    # breach before a third drifted day is in); the gate decides.
    replay_days(paths, date(2013, 1, 1) + timedelta(days=FIRST_BATCH_DAYS), SECOND_BATCH_DAYS)
    retrain = wait_for(
        "a monitoring-triggered retraining run",
        lambda: finished_runs(instance, "flights_retrain", "monitoring"),
        timeout=420,
    )[0]
    reason = retrain.tags["driftloop/trigger_reason"]
    assert "of the last 3 days" in reason, reason
    assert "drift" in reason or "performance" in reason, reason
    ledger = read_ledger(paths)
    assert len(ledger) == 2 and ledger["action"].iloc[-1] in {"promoted", "rejected"}
    last = ledger.iloc[-1]
    assert last["challenger_version"] == "2" and last["champion_before"] == "1"
    assert last["dagster_run_id"] == retrain.run_id

    champion = version_for_alias(make_client(tracking_uri), "flights", "champion")
    assert str(champion.version) == str(last["champion_after"])
    breached = [
        d
        for d in existing_partitions(paths.table("drift"))
        if (read_drift_summary(paths, d) or {}).get("breached")
    ]
    assert len(breached) >= 2
    assert (paths.reports / "drift" / f"{breached[-1]}.html").exists()
