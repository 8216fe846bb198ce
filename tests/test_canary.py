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
    proof = canary_log.evidence(flights_contract, flights_paths, days)
    arms = proof["arms"]
    assert arms["canary"]["versions"] == ["2"] and arms["champion"]["versions"] == ["1"]
    assert arms["canary"]["labelled_rows"] + arms["champion"]["labelled_rows"] == 1000
    assert arms["canary"]["roc_auc"] > arms["champion"]["roc_auc"]


def test_a_promotion_cites_the_canarys_online_evidence(
    flights_contract, flights_paths: DatasetPaths
) -> None:
    assert canary.promotion_evidence(flights_contract, flights_paths, "2") == ({}, [])
    canary.start(
        flights_paths,
        canary.Canary("flights", "2", 0.2, champion_version="1", started_at="2013-03-01"),
    )
    rows = [
        {
            "request_id": "r",
            "row_id": i,
            "day": "2013-03-01",
            "arm": canary.arm_for("flights", i, 0.2),
            "model_version": "2" if canary.arm_for("flights", i, 0.2) == "canary" else "1",
            "prediction": (n % 7) / 7,
            "received_at": pd.Timestamp.now(tz="UTC"),
        }
        for n, i in enumerate(IDS[:400])
    ]
    log = canary_log.RequestLog(flights_paths)
    log.append(rows)
    log.flush()
    labels = pd.DataFrame(
        {"flight_id": IDS[:400], "label": [float(n % 3 == 0) for n in range(400)]}
    )
    write_parquet_atomic(labels, flights_paths.partition_file("features", "2013-03-01"))
    details, reasons = canary.promotion_evidence(flights_contract, flights_paths, "2")
    assert set(details["online_evidence"]["arms"]) == {"canary", "champion"}
    assert reasons[0].startswith("online evidence of the canary at 20% since 2013-03-01: ")
    assert "canary (v2) roc_auc" in reasons[0] and "champion (v1) roc_auc" in reasons[0]
    assert canary.promotion_evidence(flights_contract, flights_paths, "3") == ({}, [])
