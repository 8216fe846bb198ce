"""One asset graph per dataset contract, every key prefixed with the dataset's name."""

from __future__ import annotations

from dagster import Definitions

from assets import (
    evaluation,
    features,
    model,
    monitoring,
    predictions,
    raw_data,
    retraining_policy,
)
from assets.stream_status import build_stream_status
from driftloop.data.contract import Contract
from pipelines import jobs
from pipelines.backtest_job import build_backtest_job
from pipelines.ingest_job import build_ingest_job
from pipelines.rollback import build_rollback_job
from sensors.alerts import build_alert_sensor
from sensors.automation import build_automation_sensor
from sensors.catch_up import CatchUpJobs, build_catch_up_sensor, build_daily_scoring_schedule
from sensors.new_data import build_new_data_sensor
from sensors.reconcile import build_reconcile_sensor
from sensors.replay_feed import build_replay_sensor
from sensors.retrain_trigger import build_retrain_sensor
from sensors.schedules import build_weekly_retrain_schedule


def build_dataset_definitions(contract: Contract) -> Definitions:
    """Assets, checks, jobs, sensors and schedules for one dataset.

    Adding a contract file adds a whole graph: nothing here is specific to a dataset.
    """
    daily = jobs.build_daily_job(contract)
    ingest = build_ingest_job(contract)
    retrain = jobs.build_retrain_job(contract)
    catch_up = jobs.build_catch_up_job(contract)
    performance = jobs.build_performance_job(contract)
    behind = CatchUpJobs(score=catch_up, performance=performance, daily_name=daily.name)
    replay = build_replay_sensor(contract)
    sensors = [
        build_new_data_sensor(contract, ingest.name),
        build_automation_sensor(contract),
        build_retrain_sensor(contract, retrain.name),
        build_catch_up_sensor(contract, behind),
        build_alert_sensor(contract, retrain.name),
        build_reconcile_sensor(contract),
        *([replay] if replay else []),
    ]
    orchestration = Definitions(
        jobs=[
            ingest,
            daily,
            retrain,
            catch_up,
            performance,
            build_rollback_job(contract),
            build_backtest_job(contract),
        ],
        sensors=sensors,
        schedules=[
            build_weekly_retrain_schedule(contract, retrain.name),
            build_daily_scoring_schedule(contract, behind),
        ],
    )
    graph = [
        raw_data.build(contract),
        features.build(contract),
        model.build(contract),
        evaluation.build(contract),
        predictions.build_predictions(contract),
        build_stream_status(contract),
        monitoring.build_monitoring(contract),
        retraining_policy.build(contract),
    ]
    return Definitions.merge(*graph, orchestration)
