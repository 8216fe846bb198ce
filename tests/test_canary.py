"""The canary: sticky routing by row id, its life in the ledger, the request log and each
arm's realised performance."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from driftloop.data.lake import write_parquet_atomic
from driftloop.evaluation import ledger
from driftloop.paths import DatasetPaths
from driftloop.serving import canary, canary_log
from pipelines import canary as command

IDS = [f"2013-03-0{1 + i % 2}-{i}" for i in range(1000)]


def test_routing_is_sticky_and_near_the_share() -> None:
    arms = [canary.arm_for("flights", i, 0.2) for i in IDS]
    share = arms.count(canary.CANARY) / len(arms)
    # Binomial standard error at n=1000, p=0.2 is 0.0126: four of them either side.
    assert abs(share - 0.2) < 4 * math.sqrt(0.2 * 0.8 / 1000), share
    assert [canary.arm_for("flights", i, 0.2) for i in IDS] == arms
    wider = [canary.arm_for("flights", i, 0.5) for i in IDS]
    assert all(w == canary.CANARY for a, w in zip(arms, wider, strict=True) if a == canary.CANARY)
    with pytest.raises(ValueError, match="share"):
        canary.check_share(1.5)


def _registry(data_root) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{data_root / 'mlflow.db'}")
    experiment = client.create_experiment("canary", artifact_location=str(data_root / "art"))
    client.create_registered_model("flights")
    for _ in range(2):
        run = client.create_run(experiment)
        client.create_model_version("flights", f"runs:/{run.info.run_id}/model", run.info.run_id)
    client.set_registered_model_alias("flights", "champion", "1")
    client.set_registered_model_alias("flights", "challenger", "2")


def test_one_command_starts_changes_and_stops_it(data_root, flights_paths, capsys) -> None:
    _registry(data_root)
    assert command.main(["start", "--dataset", "flights", "--share", "0.2"]) == 0
    running = canary.active_canary(flights_paths)
    assert (running.version, running.share, running.champion_version) == ("2", 0.2, "1")
    assert command.main(["start", "--dataset", "flights", "--share", "0.3"]) == 2
    assert "is running at 20%" in capsys.readouterr().err
    assert command.main(["change", "--dataset", "flights", "--share", "0.5"]) == 0
    assert canary.active_canary(flights_paths).share == 0.5
    assert command.main(["stop", "--dataset", "flights", "--reason", "enough"]) == 0
    assert canary.active_canary(flights_paths) is None
    entries = ledger.read(flights_paths)
    assert list(entries["action"]) == ["canary_started", "canary_changed", "canary_stopped"]
    assert json.loads(entries["details"].iloc[1])["share"] == 0.5
    assert entries["model_run_id"].notna().all() and entries["challenger_version"].eq("2").all()
    assert json.loads(entries["reasons"].iloc[2]) == ["enough"]


def test_a_rollback_ends_the_canary(flights_paths: DatasetPaths) -> None:
    canary.start(flights_paths, canary.Canary("flights", "2", 0.2, champion_version="1"))
    assert canary.active_canary(flights_paths) is not None
    ledger.append(
        flights_paths,
        ledger.LedgerEntry(
            dataset="flights", action="rollback", champion_before="1", champion_after="0"
        ),
    )
    assert canary.active_canary(flights_paths) is None


def test_the_log_holds_every_request_and_performance_reports_both_arms(
    flights_contract, flights_paths: DatasetPaths
) -> None:
    rng = np.random.default_rng(7)
    log = canary_log.RequestLog(flights_paths, max_rows=300, flush_seconds=3600)
    labels = {i: float(rng.random() < 0.3) for i in IDS}
    for start in range(0, len(IDS), 50):
        rows = []
        for i in IDS[start : start + 50]:
            arm = canary.arm_for("flights", i, 0.2)
            # The canary is the better model here: its scores follow the label more closely.
            noise = 0.3 if arm == canary.CANARY else 0.6
            score = float(np.clip(labels[i] * 0.5 + rng.random() * noise, 0, 1))
            rows.append(
                {
                    "request_id": f"r{start}",
                    "row_id": i,
                    "day": i[:10],
                    "arm": arm,
                    "model_version": "2" if arm == canary.CANARY else "1",
                    "prediction": score,
                    "received_at": pd.Timestamp.now(tz="UTC"),
                }
            )
        log.append(rows)
    log.flush()
    days = canary_log.online_days(flights_paths)
    assert days == ["2013-03-01", "2013-03-02"]
    logged = pd.concat([canary_log.read_day(flights_paths, d) for d in days])
    assert sorted(logged["row_id"]) == sorted(IDS)  # every request, once

    # Labels arrive: the features partitions of both days.
    for day in days:
        ids = [i for i in IDS if i.startswith(day)]
        frame = pd.DataFrame({"flight_id": ids, "label": [labels[i] for i in ids]})
        write_parquet_atomic(frame, flights_paths.partition_file("features", day))
    table = canary_log.write_arm_performance(flights_contract, flights_paths, days[-1])
    assert set(table["arm"]) == {canary.CANARY, canary.CHAMPION_ARM}
    assert table["rows"].sum() == 500 and (table["labelled_rows"] == table["rows"]).all()
    assert flights_paths.partition_file("arm_performance", days[-1]).exists()
    pooled, arms = canary_log.evidence(flights_contract, flights_paths, "2013-01-01")
    assert pooled == days
    assert arms["canary"].versions == ["2"] and arms["champion"].versions == ["1"]
    assert arms["canary"].labelled_rows + arms["champion"].labelled_rows == 1000
    assert arms["canary"].value > arms["champion"].value


def _serve(paths: DatasetPaths, ids: list[str], day: str, share: float) -> None:
    """Log one prediction per id as the server does (v2 for the canary arm, v1 else)."""
    rows = []
    for n, i in enumerate(ids):
        arm = canary.arm_for("flights", i, share)
        version = "2" if arm == canary.CANARY else "1"
        received = pd.Timestamp.now(tz="UTC")
        rows.append(
            {
                **{"request_id": "r", "row_id": i, "day": day, "arm": arm},
                **{"model_version": version, "prediction": (n % 7) / 7, "received_at": received},
            }
        )
    log = canary_log.RequestLog(paths)
    log.append(rows)
    log.flush()


def _labels(paths: DatasetPaths, ids: list[str], day: str) -> None:
    labels = pd.DataFrame({"flight_id": ids, "label": [float(n % 3 == 0) for n in range(len(ids))]})
    write_parquet_atomic(labels, paths.partition_file("features", day))


def test_evidence_pools_replayed_traffic_by_event_time_from_the_start_on(
    flights_contract, flights_paths: DatasetPaths, data_root, capsys
) -> None:
    # Traffic served before the canary started does not count, whatever its day.
    _serve(flights_paths, IDS[400:600], "2013-03-01", 0.2)
    assert canary.running_evidence(flights_contract, flights_paths) is None
    started = pd.Timestamp.now(tz="UTC").isoformat()
    canary.start(flights_paths, canary.Canary("flights", "2", 0.2, "run2", "1", started))
    # Replayed traffic: its event-time days lie years before the canary's wall-clock start.
    _serve(flights_paths, IDS[:400], "2013-03-01", 0.2)
    _serve(flights_paths, IDS[600:800], "2013-03-02", 0.2)
    _labels(flights_paths, IDS[:600], "2013-03-01")
    proof = canary.running_evidence(flights_contract, flights_paths)
    assert proof.days == ["2013-03-01", "2013-03-02"]
    assert set(proof.arms) == {"canary", "champion"}
    assert sum(f.rows for f in proof.arms.values()) == 600
    assert sum(f.labelled_rows for f in proof.arms.values()) == 400
    for figures in proof.arms.values():
        assert figures.ci_low <= figures.value <= figures.ci_high
    sentence = proof.sentence()
    assert sentence.startswith(f"online evidence of the canary at 20% since {started}: ")
    assert "canary (v2) roc_auc" in sentence and "champion (v1) roc_auc" in sentence

    assert command.main(["status", "--dataset", "flights", "--data-dir", str(data_root)]) == 0
    status = json.loads(capsys.readouterr().out)
    arms = status["online_evidence"]["arms"]
    assert set(arms) == {"canary", "champion"} and status["canary"]["version"] == "2"
    assert arms["canary"]["labelled_rows"] == proof.arms["canary"].labelled_rows > 0


def _promotable(data_root, paths: DatasetPaths) -> tuple[object, dict, object]:
    """A registry with champion v1 and challenger v2, and the gate's record promoting v2."""
    from driftloop.evaluation.gate import GateDecision
    from driftloop.training.registry import RegisteredVersion, make_client, store_id

    _registry(data_root)
    client = make_client(f"sqlite:///{data_root / 'mlflow.db'}")
    v1, v2 = (client.get_model_version("flights", v) for v in ("1", "2"))
    decision = GateDecision(True, ["v2 beats v1"], "roc_auc", 0.01, 0.002, 0.018)
    record = {
        "model_run_id": v2.run_id,
        "champion_run_id": v1.run_id,
        "champion_version": "1",
        "decision": decision.to_dict(),
        "evaluation": {"challenger_metrics": {"roc_auc": 0.71}},
        "report_path": str(paths.root / "reports" / "v2.html"),
    }
    model = RegisteredVersion(
        "flights", "2", v2.run_id, "models:/flights/2", store_id=store_id(client, "flights")
    )
    return client, record, model


def test_a_promotion_during_a_canary_ends_it_on_the_ledger_and_alerts_once(
    flights_contract, flights_paths: DatasetPaths, data_root
) -> None:
    from alert_receivers import webhook_receiver

    from driftloop.alerts import events
    from driftloop.alerts.notify import AlertSettings, Outbox

    client, record, model = _promotable(data_root, flights_paths)
    canary.start(flights_paths, canary.Canary("flights", "2", 0.2, model.run_id, "1", "2026-01-01"))
    canary.change(flights_paths, 0.5)
    _serve(flights_paths, IDS[:400], "2013-03-01", 0.5)
    _labels(flights_paths, IDS[:400], "2013-03-01")

    done = canary.promote_with_canary(
        flights_contract, flights_paths, client, model, record, "run-abc"
    )
    assert done.action == "promoted" and len(done.ledger_entries) == 2
    entries = ledger.read(flights_paths)
    actions = ["canary_started", "canary_changed", "promoted", "canary_stopped"]
    assert list(entries["action"]) == actions
    promoted = json.loads(entries["details"].iloc[2])
    assert set(promoted["online_evidence"]["arms"]) == {"canary", "champion"}
    assert all(a["labelled_rows"] > 0 for a in promoted["online_evidence"]["arms"].values())
    assert "online evidence of the canary at 50%" in json.loads(entries["reasons"].iloc[2])[-1]
    ended = json.loads(entries["details"].iloc[3])
    assert ended["ended_by"].startswith("ended by the promotion of v2 to champion (was v1)")
    assert canary.active_canary(flights_paths) is None

    alerts, _ = events.new_ledger_alerts(flights_paths, "", "http://ui:3000")
    with webhook_receiver() as (url, received):
        outbox = Outbox(AlertSettings(webhook_url=url), data_root / "alerts")
        outbox.post(alerts)
        outbox.post(events.new_ledger_alerts(flights_paths, "", "http://ui:3000")[0])
    texts = [r["text"] for r in received]
    assert len(texts) == 4  # each entry once, the second pass all duplicates
    changed = next(t for t in texts if "changed" in t.splitlines()[0])
    assert "canary share: 20% -> 50%" in changed
    [end] = [t for t in texts if "canary of v2 ended" in t]
    assert "ended by the promotion of v2" in end and "canary: " in end
    promotion = next(t for t in texts if "promoted to champion" in t)
    assert "eval report: http://ui:3000/assets/flights/eval_report" in promotion
    assert str(flights_paths.root) not in "".join(texts)  # no local path in any alert


def test_a_rollback_during_a_canary_ends_it_on_the_ledger(
    flights_contract, flights_paths: DatasetPaths, data_root
) -> None:
    from pipelines.rollback import RollbackConfig, rollback

    client, record, model = _promotable(data_root, flights_paths)
    canary.promote_with_canary(flights_contract, flights_paths, client, model, record, "run-1")
    canary.start(flights_paths, canary.Canary("flights", "1", 0.3, None, "2", "2026-01-01"))
    done = rollback(flights_contract, flights_paths, client, RollbackConfig(), "run-2")
    assert (done["champion_before"], done["champion_after"]) == ("2", "1")
    entries = ledger.read(flights_paths)
    assert list(entries["action"])[-3:] == ["canary_started", "rollback", "canary_stopped"]
    ended = json.loads(entries["details"].iloc[-1])
    assert ended["ended_by"] == "ended by the rollback from v2 to v1"
    assert ended["share"] == 0.3 and done["canary_ended"] is not None
    assert canary.active_canary(flights_paths) is None
