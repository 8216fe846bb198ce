"""Fault suite: retraining runs from the CLI killed with SIGKILL at each step of the retrain and
promote path, a race of two retrains, and an MLflow store deleted mid-run (real processes,
real Dagster instance, real MLflow on SQLite). After the next run, registry, ledger and
status agree; status warned until then. docs/reliability.md lists the faults."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import DagsterRunStatus

from driftloop.data.contract import Task
from driftloop.evaluation import ledger
from driftloop.paths import PROJECT_ROOT, dataset_paths
from driftloop.status import collect
from driftloop.training.registry import make_client, version_for_alias
from pipelines.instance import instance_at
from tests.test_training import CONTRACT_YAML, write_features

STRONG = (
    "{window_days: 14, holdout_days: 3, validation_days: 2, n_estimators: 60, "
    "learning_rate: 0.1, num_leaves: 15, early_stopping_rounds: 10}"
)
WEAK = (
    "{window_days: 14, holdout_days: 3, validation_days: 2, n_estimators: 2, "
    "learning_rate: 0.01, num_leaves: 2, early_stopping_rounds: 0}"
)


class Loop:
    """One installation: contracts, data root, DAGSTER_HOME, MLflow store."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "contracts").mkdir()
        (root / "contracts" / "synth.yaml").write_text(
            CONTRACT_YAML.format(name="synth", target="{expression: y > 0}", task="binary")
        )
        self.data = root / "data"
        self.home = root / "dagster_home"
        self.home.mkdir()
        (self.home / "dagster.yaml").write_text(
            (PROJECT_ROOT / "deploy" / "dagster.yaml").read_text()
        )
        self.uri = f"sqlite:///{self.data / 'mlflow.db'}"
        self.paths = dataset_paths("synth", self.data)
        self.runs = 0

    def env(self, fault: str = "") -> dict[str, str]:
        env = os.environ | {
            "DRIFTLOOP_DATA_DIR": str(self.data),
            "DAGSTER_HOME": str(self.home),
            "DRIFTLOOP_CONTRACTS_DIR": str(self.root / "contracts"),
            "MLFLOW_TRACKING_URI": self.uri,
            "PYTHONPATH": str(PROJECT_ROOT),
        }
        env.pop("DRIFTLOOP_FAULT", None)
        return env | ({"DRIFTLOOP_FAULT": fault} if fault else {})

    def start(self, config: str, fault: str = "") -> tuple[subprocess.Popen, Path]:
        self.runs += 1
        run_config = self.root / f"run{self.runs}.yaml"
        run_config.write_text(f"ops:\n  synth__model:\n    config: {config}\n")
        log = self.root / f"run{self.runs}.log"
        dg = str(Path(sys.executable).with_name("dg"))
        args = [dg, "launch", "--job", "synth_retrain", "--config", str(run_config)]
        with log.open("w") as out:
            process = subprocess.Popen(
                args, cwd=PROJECT_ROOT, env=self.env(fault), stdout=out, stderr=subprocess.STDOUT
            )
        return process, log

    def retrain(self, config: str = STRONG, fault: str = "") -> tuple[int, str]:
        process, log = self.start(config, fault)
        return process.wait(timeout=600), log.read_text()

    def status(self) -> dict:
        return collect(make_client(self.uri), self.paths, "synth")

    def status_cli(self) -> dict:
        """Status from a process of its own: one that opened the store before it was deleted
        keeps reading the deleted file, as SQLite connections do."""
        out = subprocess.run(
            [sys.executable, "-m", "pipelines.status", "--dataset", "synth", "--json"],
            cwd=PROJECT_ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout)

    def champion(self) -> str | None:
        version = version_for_alias(make_client(self.uri), "synth", "champion")
        return None if version is None else str(version.version)

    def run_statuses(self) -> dict[str, DagsterRunStatus]:
        with instance_at(self.home) as instance:
            return {r.run_id: r.status for r in instance.get_runs()}

    def reconcile(self, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pipelines.reconcile", "--dataset", "synth", *extra],
            cwd=PROJECT_ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=300,
        )


def wait_for_pause(loop: Loop, point: str, process: subprocess.Popen) -> Path:
    marker = loop.data / "faults" / f"{point}.paused"
    deadline = time.monotonic() + 400
    while not marker.exists():
        assert process.poll() is None, f"the run ended before reaching {point}"
        assert time.monotonic() < deadline, f"the run never reached {point}"
        time.sleep(0.1)
    return marker


@pytest.mark.slow
def test_kill_at_each_step_then_the_next_run_repairs(tmp_path: Path) -> None:
    loop = Loop(tmp_path)
    write_features(loop.paths, Task.binary, days=14, rows=800)
    client = make_client(loop.uri)

    # A weak LightGBM loses to its baseline: the baseline becomes the first champion.
    code, _ = loop.retrain(WEAK)
    assert code == 0 and loop.champion() == "2"
    assert loop.status()["consistency"]["agree"]

    # Killed between the ledger entry and the alias move: the ledger says promoted v3, the
    # registry still serves v2, and status says so.
    code, _ = loop.retrain(STRONG, fault="after_ledger")
    assert code == -signal.SIGKILL
    assert ledger.read(loop.paths).iloc[-1]["challenger_version"] == "3"
    assert loop.champion() == "2"
    consistency = loop.status()["consistency"]
    assert not consistency["agree"] and consistency["repairable"]
    assert "v3" in consistency["problems"][0]

    # Killed while training, while logging to MLflow, and between model and eval.
    for fault in ("training", "mlflow_logging", "after_model"):
        code, _ = loop.retrain(STRONG, fault=fault)
        assert code == -signal.SIGKILL, fault
        assert not loop.status()["consistency"]["agree"]  # still warning
    experiment = client.get_experiment_by_name("synth").experiment_id
    running = client.search_runs([experiment], "attributes.status = 'RUNNING'")
    assert running  # left RUNNING by the processes that died while logging
    killed_runs = [r for r, s in loop.run_statuses().items() if s == DagsterRunStatus.STARTED]
    assert len(killed_runs) == 4

    # The next run finishes the interrupted promotion first (v3 becomes champion, recorded
    # as reconciled), is not blocked by the dead run's lock, and decides its own model.
    code, log = loop.retrain(STRONG)
    assert code == 0, log[-3000:]
    assert loop.champion() == "3"
    entries = ledger.read(loop.paths)
    assert "reconciled" in set(entries["action"])
    assert loop.status()["consistency"]["agree"]
    # The reconciler ends the dead runs: Dagster runs failed, MLflow runs killed.
    out = loop.reconcile()
    assert out.returncode == 0, out.stdout + out.stderr
    statuses = loop.run_statuses()
    assert all(statuses[r] == DagsterRunStatus.FAILURE for r in killed_runs)
    assert not client.search_runs([experiment], "attributes.status = 'RUNNING'")
    assert {r.info.status for r in client.search_runs([experiment])} <= {"FINISHED", "KILLED"}

    # Two retrains at once: the second stops before training, naming the first, which
    # decides the version it trained although the challenger alias moved meanwhile.
    first, first_log = loop.start(STRONG, fault="after_model:pause")
    marker = wait_for_pause(loop, "after_model", first)
    mine = version_for_alias(client, "synth", "challenger").version
    code, log = loop.retrain(STRONG)
    assert code != 0 and "another retrain of synth" in log
    client.set_registered_model_alias("synth", "challenger", "1")  # moved by someone else
    marker.unlink()
    assert first.wait(timeout=600) == 0, first_log.read_text()[-3000:]
    last = ledger.read(loop.paths).iloc[-1]
    assert last["challenger_version"] == str(mine)
    assert loop.status()["consistency"]["agree"]


@pytest.mark.slow
def test_a_store_deleted_mid_run_is_detected_and_adopted(tmp_path: Path) -> None:
    loop = Loop(tmp_path)
    write_features(loop.paths, Task.binary, days=14, rows=800)
    code, _ = loop.retrain(STRONG)
    assert code == 0
    # In this process: every status read after the deletion below is a process of its own.
    assert loop.status()["registry"]["champion"]["version"] == "1"

    # Deleted while a retrain is between its model and its evaluation. The run goes on
    # with the store it had opened (SQLite keeps the deleted file open); whatever it does
    # there, nothing reaches the store that takes the path's place.
    process, _ = loop.start(STRONG, fault="after_model:pause")
    marker = wait_for_pause(loop, "after_model", process)
    for suffix in ("", "-journal", "-wal", "-shm"):
        (loop.data / f"mlflow.db{suffix}").unlink(missing_ok=True)
    marker.unlink()
    process.wait(timeout=600)
    status = loop.status_cli()
    assert status["registry"]["champion"] is None
    consistency = status["consistency"]
    assert not consistency["agree"] and not consistency["repairable"]
    assert "lost or replaced" in consistency["problems"][0]
    assert "--adopt-store" in consistency["problems"][0]

    # The next run refuses with that message instead of promoting a new "v1".
    code, text = loop.retrain(STRONG)
    assert code != 0 and "--adopt-store" in text and "lost or replaced" in text
    assert loop.status_cli()["registry"]["champion"] is None

    out = loop.reconcile("--adopt-store", "--reason", "the store was lost")
    assert out.returncode == 0, out.stdout + out.stderr
    code, text = loop.retrain(STRONG)
    assert code == 0, text[-3000:]
    status = loop.status_cli()
    assert status["registry"]["champion"] is not None and status["consistency"]["agree"]
    assert ledger.read(loop.paths).iloc[-1]["action"] == "promoted"
