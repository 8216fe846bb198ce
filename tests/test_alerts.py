"""Alerts delivered to a real webhook receiver and a real SMTP server on loopback."""

from __future__ import annotations

import json
import logging
import threading
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest
from alert_receivers import smtp_receiver, webhook_receiver
from dagster import (
    DagsterEventType,
    DagsterInstance,
    build_run_status_sensor_context,
    build_sensor_context,
    job,
    op,
)
from e2e_helpers import wait_for

from driftloop.alerts import events
from driftloop.alerts.notify import Alert, AlertSettings, Outbox
from driftloop.data.lake import write_parquet_atomic
from driftloop.evaluation import ledger
from driftloop.paths import DatasetPaths
from resources.alerts import AlertsResource
from resources.lake import LakeResource
from sensors.alerts import build_alert_sensor, build_run_failure_alert_sensor


def _alert(n: int) -> Alert:
    return Alert(key=f"k{n}", kind="test", title=f"alert {n}", lines=["x"], link="http://ui/1")


def test_webhook_gets_each_alert_once(tmp_path: Path) -> None:
    with webhook_receiver() as (url, received):
        outbox = Outbox(AlertSettings(webhook_url=url), tmp_path)
        first = outbox.post([_alert(1), _alert(2)])
        again = outbox.post([_alert(1), _alert(2), _alert(3)])
    assert first.sent == ["k1", "k2"] and again.sent == ["k3"]
    assert again.duplicate == ["k1", "k2"]
    assert [r["text"].splitlines()[0] for r in received] == ["*alert 1*", "*alert 2*", "*alert 3*"]
    assert "<http://ui/1|Open in Dagster>" in received[0]["text"]


def test_rate_limit_holds_the_rest_in_one_message(tmp_path: Path) -> None:
    with webhook_receiver() as (url, received):
        outbox = Outbox(AlertSettings(webhook_url=url, max_per_hour=3), tmp_path)
        report = outbox.post([_alert(n) for n in range(6)], now=1000.0)
        later = outbox.post([_alert(7)], now=1500.0)
        next_hour = outbox.post([], now=1000.0 + 3601)
    assert report.messages == 3 and report.sent == [f"k{n}" for n in range(6)]
    assert len(received) == 4
    combined = received[2]["text"]
    assert "4 alerts" in combined and all(f"alert {n}" in combined for n in range(2, 6))
    assert later.messages == 0 and later.waiting == ["k7"]
    assert next_hour.sent == ["k7"] and received[3]["text"].startswith("*alert 7*")


def test_failed_delivery_is_retried(tmp_path: Path) -> None:
    from e2e_helpers import free_port

    dead = f"http://127.0.0.1:{free_port()}/hook"
    failed = Outbox(AlertSettings(webhook_url=dead), tmp_path).post([_alert(1)])
    assert failed.errors and failed.waiting == ["k1"] and not failed.sent
    with webhook_receiver() as (url, received):
        retried = Outbox(AlertSettings(webhook_url=url), tmp_path).post([_alert(1)])
    assert retried.sent == ["k1"] and retried.duplicate == ["k1"]
    assert len(received) == 1


def test_email_over_smtp(tmp_path: Path) -> None:
    with smtp_receiver() as (port, received):
        settings = AlertSettings(
            smtp_host="127.0.0.1", smtp_port=port, email_to=("ops@example.org",)
        )
        Outbox(settings, tmp_path).post([_alert(1), _alert(1)])
    assert len(received) == 1
    assert received[0]["Subject"] == "alert 1"
    assert received[0]["To"] == "ops@example.org"
    assert "http://ui/1" in received[0].get_payload()


def test_off_and_dry_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    off = Outbox(AlertSettings(), tmp_path / "off")
    assert off.post([_alert(1)]).sent == [] and not (tmp_path / "off").exists()
    dry = Outbox(AlertSettings(dry_run=True), tmp_path / "dry")
    with caplog.at_level(logging.WARNING, logger="driftloop.alerts"):
        assert dry.post([_alert(1)]).sent == ["k1"]
        assert dry.post([_alert(1)]).duplicate == ["k1"]
    assert [r.getMessage() for r in caplog.records if "dry run" in r.getMessage()] != []
    assert sum("alert 1" in r.getMessage() for r in caplog.records) == 1


def test_resource_reads_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert not AlertsResource().enabled
    monkeypatch.setenv("DRIFTLOOP_ALERT_DRY_RUN", "1")
    monkeypatch.setenv("DRIFTLOOP_ALERT_MAX_PER_HOUR", "7")
    monkeypatch.setenv("DRIFTLOOP_DAGSTER_URL", "http://ui.example:3001/")
    resource = AlertsResource.from_environment()
    context = build_sensor_context(resources={"alerts": resource})
    alerts = context.resources.alerts
    assert alerts.enabled and alerts.settings().max_per_hour == 7
    assert alerts.base_url() == "http://ui.example:3001"


def _ledger_entry(paths: DatasetPaths, action: str, version: str, before: str | None) -> None:
    ledger.append(
        paths,
        ledger.LedgerEntry(
            dataset="flights",
            action=action,
            challenger_version=version,
            champion_before=before,
            champion_after=version if action in ("promoted", "rollback") else before,
            metric="roc_auc",
            challenger_value=0.71,
            champion_value=0.70,
            diff=0.01,
            ci_low=0.002,
            ci_high=0.018,
            reasons=[f"{action} because of the test"],
            dagster_run_id="abcdef12-run",
        ),
    )


def _drift_day(paths: DatasetPaths, day: str, breached: bool) -> None:
    table = pa.table({"day": [day]})
    write_parquet_atomic(table, paths.partition_file("drift", day))
    summary = {"day": day, "share_drifted": 0.6 if breached else 0.1, "breached": breached}
    summary["top_columns"] = ["dep_hour", "carrier"]
    (paths.partition_file("drift", day).parent / "summary.json").write_text(json.dumps(summary))


def test_dataset_sensor_reports_each_event_once(
    flights_contract, flights_paths: DatasetPaths, dagster_instance: DagsterInstance
) -> None:
    paths = flights_paths
    _ledger_entry(paths, "promoted", "1", None)
    _ledger_entry(paths, "rejected", "2", "1")
    marker = paths.table("raw") / "date=2013-01-05" / "BLOCKED.json"
    marker.parent.mkdir(parents=True)
    body = {
        "partition": "2013-01-05",
        "written_at": "t1",
        "failed_checks": [
            {"name": "ranges", "description": "distance below 0", "source_files": ["bad.csv"]}
        ],
    }
    marker.write_text(json.dumps(body))
    _drift_day(paths, "2013-01-04", False)
    _drift_day(paths, "2013-01-05", True)

    @op
    def train() -> None:
        pass

    @job(name="flights_retrain")
    def retrain() -> None:
        train()

    tags = {"driftloop/trigger": "monitoring", "driftloop/trigger_reason": "drift on 2 of 3 days"}
    run = retrain.execute_in_process(instance=dagster_instance, tags=tags)

    sensor = build_alert_sensor(flights_contract, "flights_retrain")
    with webhook_receiver() as (url, received):
        alerts = AlertsResource(webhook_url=url, dagster_url="http://ui:3000")
        resources = {"alerts": alerts, "lake": LakeResource(data_dir=str(paths.root))}
        context = build_sensor_context(instance=dagster_instance, resources=resources)
        sensor(context)
        first = [r["text"] for r in received]
        # Later: one more drift day and a rollback; the digest waits for tomorrow.
        _drift_day(paths, "2013-01-06", True)
        _ledger_entry(paths, "rollback", "1", "2")
        context = build_sensor_context(
            instance=dagster_instance, resources=resources, cursor=context.cursor
        )
        sensor(context)
        second = [r["text"] for r in received[len(first) :]]

    titles = [t.splitlines()[0] for t in first]
    assert any("v1 promoted to champion" in t for t in titles), titles
    assert any("v2 refused by the gate" in t for t in titles), titles
    assert any("partition 2013-01-05 blocked" in t for t in titles), titles
    assert any("retraining launched (monitoring)" in t for t in titles), titles
    assert sum("monitoring digest" in t for t in titles) == 1, titles
    refusal = next(t for t in first if "refused" in t)
    assert "roc_auc: challenger 0.7100 vs reference 0.7000" in refusal
    assert "<http://ui:3000/runs/abcdef12-run|Open in Dagster>" in refusal
    retrain_text = next(t for t in first if "retraining launched" in t)
    assert "drift on 2 of 3 days" in retrain_text and run.run_id in retrain_text
    digest = next(t for t in first if "monitoring digest" in t)
    assert "2 day(s) 2013-01-04..2013-01-05, 1 breached" in digest
    assert len(first) == 5
    assert [t.splitlines()[0] for t in second] == ["*flights: champion rolled back from v2 to v1*"]


def test_digest_once_per_calendar_day(flights_paths: DatasetPaths, tmp_path: Path) -> None:
    _drift_day(flights_paths, "2013-01-04", True)
    with webhook_receiver() as (url, received):
        outbox = Outbox(AlertSettings(webhook_url=url), tmp_path)
        for today in (date(2026, 1, 1), date(2026, 1, 1), date(2026, 1, 2)):
            digest, _ = events.digest_alert(flights_paths, today, "", "http://ui")
            outbox.post([digest])
        nothing_new, through = events.digest_alert(
            flights_paths, date(2026, 1, 3), "2013-01-04", "http://ui"
        )
    assert len(received) == 2 and nothing_new is None and through == "2013-01-04"


def test_a_failed_run_sends_one_alert(dagster_instance: DagsterInstance) -> None:
    @op
    def explode() -> None:
        raise ValueError("the landing zone is on fire")

    @job(name="flights_daily")
    def daily() -> None:
        explode()

    result = daily.execute_in_process(instance=dagster_instance, raise_on_error=False)
    assert not result.success
    failure = next(
        e for e in dagster_instance.all_logs(result.run_id, of_type=DagsterEventType.RUN_FAILURE)
    ).dagster_event
    sensor = build_run_failure_alert_sensor()
    with webhook_receiver() as (url, received):
        alerts = AlertsResource(webhook_url=url, data_dir=str(dagster_instance.root_directory))
        for _ in range(2):  # the daemon may hand the same failure over again
            context = build_run_status_sensor_context(
                sensor_name=sensor.name,
                dagster_event=failure,
                dagster_instance=dagster_instance,
                dagster_run=result.dagster_run,
                resources={"alerts": alerts},
            ).for_run_failure()
            sensor(context)
    assert len(received) == 1
    text = received[0]["text"]
    assert text.startswith(f"*Run failed: flights_daily ({result.run_id[:8]})*")
    assert f"/runs/{result.run_id}|" in text
    assert "step explode failed: ValueError: the landing zone is on fire" in text


def test_a_failed_rollback_alerts_with_its_error_even_when_run_by_the_cli(
    flights_contract, flights_paths: DatasetPaths, data_root: Path, dagster_instance
) -> None:
    from mlflow import MlflowClient

    from pipelines.rollback import build_rollback_job
    from resources.mlflow import MlflowResource

    uri = f"sqlite:///{data_root / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("rb", artifact_location=str(data_root / "art"))
    client.create_registered_model("flights")
    run = client.create_run(experiment)
    client.create_model_version("flights", f"runs:/{run.info.run_id}/model", run.info.run_id)
    client.set_registered_model_alias("flights", "champion", "1")

    sensor = build_run_failure_alert_sensor()
    with webhook_receiver() as (url, received):
        alerts = AlertsResource(webhook_url=url, dagster_url="http://ui:3000")

        # Evaluated as the daemon does, for the code location "driftloop": a run executed
        # in process (as `dg launch --job` runs it) belongs to no code location.
        def tick(cursor: str | None) -> str | None:
            context = build_sensor_context(
                instance=dagster_instance,
                cursor=cursor,
                repository_name="driftloop",
                resources={"alerts": alerts},
            )
            return sensor.evaluate_tick(context).cursor

        cursor = tick(None)
        result = build_rollback_job(flights_contract).execute_in_process(
            instance=dagster_instance,
            raise_on_error=False,
            resources={
                "lake": LakeResource(data_dir=str(data_root)),
                "mlflow": MlflowResource(tracking_uri=uri, data_dir=str(data_root)),
            },
        )
        assert not result.success
        cursor = tick(cursor)
        tick(cursor)
    assert len(received) == 1, received
    text = received[0]["text"]
    assert text.startswith(f"*Run failed: flights_rollback ({result.run_id[:8]})*")
    assert "step flights_rollback_champion failed: nothing to roll back to: the ledger of" in text
    assert f"<http://ui:3000/runs/{result.run_id}|Open in Dagster>" in text


def test_the_digest_waits_for_the_datasets_runs_then_says_what_still_runs(
    flights_contract, flights_paths: DatasetPaths, dagster_instance: DagsterInstance
) -> None:
    _drift_day(flights_paths, "2013-01-04", False)
    release = threading.Event()

    @op
    def scoring() -> None:
        release.wait(60)

    @job(name="flights_daily")
    def daily() -> None:
        scoring()

    worker = threading.Thread(
        target=lambda: daily.execute_in_process(instance=dagster_instance), daemon=True
    )
    worker.start()
    sensor = build_alert_sensor(flights_contract, "flights_retrain")
    try:
        with webhook_receiver() as (url, received):
            alerts = AlertsResource(webhook_url=url, dagster_url="http://ui:3000")
            lake = LakeResource(data_dir=str(flights_paths.root))

            def tick(cursor: str | None) -> str | None:
                context = build_sensor_context(
                    instance=dagster_instance,
                    cursor=cursor,
                    resources={"alerts": alerts, "lake": lake},
                )
                sensor(context)
                return context.cursor

            def running() -> bool:
                return any(r.status.value == "STARTED" for r in dagster_instance.get_runs())

            wait_for("the daily run to start", running, timeout=60, every=0.2)
            cursor = tick(None)
            assert received == []  # the day's run is still scoring
            state = json.loads(cursor)
            state["digest_waiting_since"] -= 4 * 3600  # four hours later, still running
            tick(json.dumps(state))
    finally:
        release.set()
        worker.join(60)
    [digest] = [r["text"] for r in received]
    assert "monitoring digest" in digest and "still running: flights_daily (" in digest
