"""End to end, as a user runs it: `dagster dev` (real webserver and daemon) drives the loop
on the single-machine default (Dagster on SQLite, MLflow on a SQLite file).

Days of flights land in the landing zone; the sensors ingest and score them, the first
champion is trained and gated by a sensor-launched run, drift reports appear, and a
persistent drift breach launches a retraining run whose challenger meets the gate
(tests/e2e_helpers.py, shared with the PostgreSQL and MLflow-server run in
tests/test_e2e_engines.py).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from alert_receivers import smtp_receiver, webhook_receiver
from dagster import DagsterInstance
from e2e_helpers import (
    FIRST_BATCH_DAYS,
    dagster_dev,
    drive_the_loop,
    free_port,
    loop_environment,
    wait_for,
)

from driftloop.data.replay import replay_days
from driftloop.evaluation.ledger import read as read_ledger
from driftloop.paths import dataset_paths
from pipelines.instance import write_instance


def _with_alerts(env: dict[str, str], hook: str, smtp_port: int) -> dict[str, str]:
    return {
        **env,
        "DRIFTLOOP_ALERT_WEBHOOK_URL": hook,
        "DRIFTLOOP_ALERT_SMTP_HOST": "127.0.0.1",
        "DRIFTLOOP_ALERT_SMTP_PORT": str(smtp_port),
        "DRIFTLOOP_ALERT_EMAIL_TO": "ops@example.org",
        "DRIFTLOOP_ALERT_SENSOR_SECONDS": "5",
    }


def _check_alerts(posted: list[dict], mails: list, decision: str) -> None:
    """The first promotion, the triggered retrain, the gate's decision on v2 and one digest
    arrive on both channels, none twice."""
    second = "v2 promoted to champion" if decision == "promoted" else "v2 refused by the gate"
    wanted = ["v1 promoted to champion", "retraining launched (monitoring)", second]

    def arrived() -> bool:
        titles = [p["text"].splitlines()[0] for p in posted]
        subjects = [m["Subject"] for m in mails]
        return all(any(w in t for t in titles) and w in " ".join(subjects) for w in wanted)

    wait_for("the alerts of the loop", arrived, timeout=120)
    # Each message goes to the webhook, then by mail: let the last mail land.
    wait_for("every alert by mail too", lambda: len(mails) == len(posted), timeout=30, every=1)
    texts = [p["text"] for p in posted]
    assert len(texts) == len(set(texts)), texts
    assert sum("monitoring digest" in t for t in texts) == 1, texts
    assert sorted(m["Subject"] for m in mails) == sorted(
        t.splitlines()[0].strip("*") for t in texts
    )


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_loop_runs_itself_under_the_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "data"
    home = write_instance(tmp_path / "dagster_home")  # the project's instance settings
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = loop_environment(tmp_path, root, home, MLFLOW_TRACKING_URI=tracking_uri)
    replay_days(dataset_paths("flights", root), date(2013, 1, 1), FIRST_BATCH_DAYS)

    log = tmp_path / "dagster_dev.log"
    with (
        webhook_receiver() as (hook, posted),
        smtp_receiver() as (smtp_port, mails),
        dagster_dev(_with_alerts(env, hook, smtp_port), log, free_port()),
    ):
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        instance = DagsterInstance.get()
        try:
            drive_the_loop(instance, root, tracking_uri)
            # Alerts: each event once, by webhook and by e-mail.
            decision = read_ledger(dataset_paths("flights", root))["action"].iloc[-1]
            _check_alerts(posted, mails, decision)
        finally:
            instance.dispose()
    console = log.read_text()
    assert "the Dagster UI is up at http://127.0.0.1:" in console
    assert " - DEBUG - " not in console  # pipelines.dev keeps DEBUG event lines out
