"""End to end, as a user runs it: `dagster dev` (real webserver and daemon) drives the loop.

Days of flights land in the landing zone; the sensors ingest and score them, the first
champion is trained and gated by a sensor-launched run, drift reports appear, and a
persistent drift breach launches a retraining run whose challenger meets the gate. The
contract is the shipped flights contract with a quicker trigger (2 of the last 3 days,
3 days of cooldown) so that the loop turns within minutes; nothing else differs.
"""

from __future__ import annotations

import os
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from e2e_helpers import dagster_dev, free_port, wait_for

from driftloop.data.lake import existing_partitions
from driftloop.data.replay import replay_days
from driftloop.evaluation.ledger import read as read_ledger
from driftloop.monitoring.signals import read_drift_summary
from driftloop.paths import PROJECT_ROOT, dataset_paths

FIRST_BATCH_DAYS = 35
SECOND_BATCH_DAYS = 8


def _contract_dir(tmp_path: Path) -> Path:
    raw = yaml.safe_load((PROJECT_ROOT / "contracts" / "flights.yaml").read_text())
    raw["retraining"] = {"n_breaches": 2, "window": 3, "cooldown_days": 3}
    folder = tmp_path / "contracts"
    folder.mkdir()
    (folder / "flights.yaml").write_text(yaml.safe_dump(raw))
    return folder


def _runs(instance: DagsterInstance, job: str) -> list:
    return [r.dagster_run for r in instance.get_run_records(RunsFilter(job_name=job))]


def _finished(instance: DagsterInstance, job: str, trigger: str) -> list:
    runs = [r for r in _runs(instance, job) if r.tags.get("driftloop/trigger") == trigger]
    failed = [r.run_id for r in runs if r.status == DagsterRunStatus.FAILURE]
    assert not failed, f"{job} runs failed: {failed}"
    return [r for r in runs if r.status == DagsterRunStatus.SUCCESS]


@pytest.mark.timeout(900)
@pytest.mark.slow
def test_the_loop_runs_itself_under_the_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.instance import DAGSTER_YAML

    root = tmp_path / "data"
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)  # the project's instance settings
    env = {
        **os.environ,
        "DRIFTLOOP_DATA_DIR": str(root),
        "DAGSTER_HOME": str(home),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "DRIFTLOOP_CONTRACTS_DIR": str(_contract_dir(tmp_path)),
        "DRIFTLOOP_REPLAY": "off",  # this test is the upstream: it lands the files itself
        "DRIFTLOOP_NEW_DATA_SENSOR_SECONDS": "5",
        "DRIFTLOOP_RETRAIN_SENSOR_SECONDS": "5",
        "DRIFTLOOP_CATCH_UP_SENSOR_SECONDS": "5",
    }
    paths = dataset_paths("flights", root)
    replay_days(paths, date(2013, 1, 1), FIRST_BATCH_DAYS)

    with dagster_dev(env, tmp_path / "dagster_dev.log", free_port()):
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        instance = DagsterInstance.get()
        try:
            # 1. The new-data sensor ingests the batch in one run.
            wait_for(
                "the first ingestion run",
                lambda: _finished(instance, "flights_daily", "new_data"),
                timeout=240,
            )
            # 2. With no champion and enough days, the retrain sensor bootstraps one.
            wait_for(
                "the sensor-launched first training",
                lambda: _finished(instance, "flights_retrain", "bootstrap"),
                timeout=240,
            )
            ledger = read_ledger(paths)
            assert list(ledger["action"]) == ["promoted"], ledger.to_dict("records")
            # 3. Days that waited for a champion are scored and watched for drift.
            wait_for(
                "drift reports of the first batch",
                lambda: len(existing_partitions(paths.table("drift"))) >= FIRST_BATCH_DAYS,
                timeout=300,
            )
            # 4. More days land; drift persists; the trigger retrains; the gate decides.
            second_start = date(2013, 1, 1) + timedelta(days=FIRST_BATCH_DAYS)
            replay_days(paths, second_start, SECOND_BATCH_DAYS)
            retrain = wait_for(
                "a drift-triggered retraining run",
                lambda: _finished(instance, "flights_retrain", "monitoring"),
                timeout=360,
            )[0]
            reason = retrain.tags["driftloop/trigger_reason"]
            assert "drift" in reason and "of the last 3 days" in reason, reason
            ledger = read_ledger(paths)
            assert len(ledger) == 2 and ledger["action"].iloc[-1] in {"promoted", "rejected"}
            last = ledger.iloc[-1]
            assert last["challenger_version"] == "2" and last["champion_before"] == "1"
            assert last["dagster_run_id"] == retrain.run_id

            from driftloop.training.registry import make_client, version_for_alias

            client = make_client(env["MLFLOW_TRACKING_URI"])
            champion = version_for_alias(client, "flights", "champion")
            assert str(champion.version) == str(last["champion_after"])
            breached = [
                d
                for d in existing_partitions(paths.table("drift"))
                if (read_drift_summary(paths, d) or {}).get("breached")
            ]
            assert len(breached) >= 2
            assert (paths.reports / "drift" / f"{breached[-1]}.html").exists()
        finally:
            instance.dispose()
