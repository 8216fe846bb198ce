"""Step cost: measured around the body, on every materialization, in the cost log and MLflow."""

import time

import numpy as np
import pytest
from dagster import (
    AssetExecutionContext,
    AssetMaterialization,
    BackfillPolicy,
    DailyPartitionsDefinition,
    MaterializeResult,
    asset,
    materialize,
)

from assets.cost import measured_step
from driftloop import cost
from resources.lake import LakeResource
from resources.mlflow import MlflowResource

DAYS = DailyPartitionsDefinition(start_date="2013-01-01")


def test_measure_sees_the_blocks_own_peak_and_cpu() -> None:
    with cost.measure() as meter:
        big = np.ones(40_000_000)  # 320 MB
        total = float(sum(np.sqrt(np.arange(200_000.0))))
        spent = meter.now()
    del big
    with cost.measure() as meter:
        small = np.ones(1000).sum()
        quiet = meter.now()
    assert total > 0 and small == 1000
    assert spent.cpu_seconds > 0 and spent.wall_seconds >= spent.cpu_seconds * 0.1
    assert spent.peak_memory_mb > 300
    assert spent.peak_memory_scope == quiet.peak_memory_scope == "step"  # Linux resets VmHWM
    assert quiet.peak_memory_mb < spent.peak_memory_mb - 250


def test_every_materialization_carries_the_cost(data_root, dagster_instance) -> None:
    @asset(
        key=["flights", "scored"], partitions_def=DAYS, backfill_policy=BackfillPolicy.single_run()
    )
    @measured_step("flights", "scored")
    def scored(context: AssetExecutionContext, lake: LakeResource) -> MaterializeResult:
        time.sleep(0.02)  # a body that takes measurable time (costs are rounded)
        return MaterializeResult(metadata={"total_rows": 2_000_000, "model_version": "3"})

    @asset(
        key=["flights", "daily"],
        partitions_def=DAYS,
        backfill_policy=BackfillPolicy.single_run(),
        output_required=False,
    )
    @measured_step("flights", "daily")
    def daily(context: AssetExecutionContext):
        for day in context.partition_keys:
            yield AssetMaterialization(["flights", "daily"], partition=day, metadata={"rows": 10})

    result = materialize(
        [scored, daily],
        instance=dagster_instance,
        resources={"lake": LakeResource(data_dir=str(data_root))},
        tags={
            "dagster/asset_partition_range_start": "2013-01-01",
            "dagster/asset_partition_range_end": "2013-01-03",
        },
    )
    assert result.success
    events = result.asset_materializations_for_node("flights__scored")
    assert len(events) == 3  # one per day of the range, each with the step's cost
    for event in events:
        meta = {k: v.value for k, v in event.metadata.items()}
        assert meta["cost_rows"] == 2_000_000 and meta["cost_cpu_seconds"] >= 0
        assert meta["cost_wall_seconds"] > 0 and meta["cost_peak_memory_mb"] > 10
        assert meta["model_version"] == "3"  # the step's own metadata is kept
    daily_events = result.asset_materializations_for_node("flights__daily")
    assert [e.partition for e in daily_events] == ["2013-01-01", "2013-01-02", "2013-01-03"]
    assert all(e.metadata["cost_rows"].value == 10 for e in daily_events)

    log = cost.read(data_root, "flights")
    assert sorted(r["step"] for r in log) == ["daily", "daily", "daily", "scored"]
    scored_record = next(r for r in log if r["step"] == "scored")
    assert scored_record["partitions"] == "2013-01-01..2013-01-03"
    assert scored_record["run_id"] == result.run_id
    per_model = cost.scoring_per_model(log, step="scored")
    assert per_model[0]["model_version"] == "3" and per_model[0]["rows"] == 2_000_000


@pytest.mark.slow
def test_a_training_step_logs_its_cost_to_its_mlflow_run(data_root, dagster_instance) -> None:
    uri = f"sqlite:///{data_root / 'mlflow.db'}"
    mlflow = MlflowResource(tracking_uri=uri, data_dir=str(data_root))
    client = mlflow.client()
    experiment = client.create_experiment("cost-test")
    run_id = client.create_run(experiment).info.run_id

    @asset(key=["flights", "model"])
    @measured_step("flights", "model")
    def model(context: AssetExecutionContext, mlflow: MlflowResource) -> MaterializeResult:
        time.sleep(0.02)  # a body that takes measurable time (costs are rounded)
        return MaterializeResult(metadata={"mlflow_run_id": run_id, "rows": 1234})

    result = materialize(
        [model],
        instance=dagster_instance,
        resources={"mlflow": mlflow, "lake": LakeResource(data_dir=str(data_root))},
    )
    assert result.success
    metrics = client.get_run(run_id).data.metrics
    assert metrics["cost_rows"] == 1234 and metrics["cost_wall_seconds"] > 0
    assert {"cost_cpu_seconds", "cost_peak_memory_mb"} <= set(metrics)


@pytest.mark.slow
def test_status_shows_the_last_retrain_and_scoring_per_model(data_root, capsys) -> None:
    from pipelines import status

    spend = [
        ("model", "run-a", None, 100, 10.0),
        ("promotion", "run-a", None, None, 1.0),
        ("predictions", "run-b", "1", 500_000, 2.0),
        ("predictions", "run-c", "1", 500_000, 3.0),
        ("predictions", "run-d", "2", 250_000, 1.0),
        ("model", "run-e", None, 200, 20.0),
        ("eval_report", "run-e", None, None, 4.0),
    ]
    for step, run_id, version, rows, cpu in spend:
        spent = cost.StepCost(cpu, cpu * 2, 100.0 + cpu, "step", rows)
        cost.record(data_root, "flights", step, spent, run_id=run_id, model_version=version)
    assert status.main(["--dataset", "flights", "--data-dir", str(data_root)]) == 0
    text = capsys.readouterr().out
    block = text[text.index("\nCost\n") :]
    assert "last retrain (run run-e, model, eval_report): 24.0 CPU s, 48.0 wall s" in block
    assert "peak 120 MB, 200 rows" in block
    assert "scoring v1: 5.0 CPU s and 10.0 wall s per million rows (1,000,000 rows)" in block
    assert "scoring v2: 4.0 CPU s and 8.0 wall s per million rows (250,000 rows)" in block
