"""The code location workspace.yaml names: one graph per contract, wired end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, DefaultSensorStatus

from driftloop.paths import PROJECT_ROOT

GRAPH = [
    "raw_data",
    "features",
    "model",
    "eval_report",
    "promotion",
    "predictions",
    "drift_report",
    "performance",
]


def test_workspace_names_the_module_that_holds_defs() -> None:
    workspace = yaml.safe_load((PROJECT_ROOT / "workspace.yaml").read_text())
    [location] = workspace["load_from"]
    assert location["python_module"]["module_name"] == "pipelines.definitions"
    pyproject = (PROJECT_ROOT / "pyproject.toml").read_text()
    assert "[tool.dagster]" not in pyproject and "[tool.dg]" not in pyproject


def test_the_flights_graph_jobs_and_sensors() -> None:
    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    for name in GRAPH:
        assert graph.has(AssetKey(["flights", name])), name
    jobs = {"flights_daily", "flights_retrain", "flights_rollback", "flights_backtest"}
    assert jobs <= {job.name for job in defs.resolve_all_job_defs()}
    sensors = {s.name: s for s in defs.sensors}
    for name in (
        "flights_new_data",
        "flights_retrain_trigger",
        "flights_catch_up",
        "flights_automation",
    ):
        assert sensors[name].default_status == DefaultSensorStatus.RUNNING
    assert "flights_stale_days" not in sensors  # Dagster's automation does its work
    automated = {
        k.path[-1] for k in graph.get_all_asset_keys() if graph.get(k).automation_condition
    }
    assert automated == {"features", "predictions", "drift_report", "performance"}
    assert "flights_replay_feed" in sensors


def test_a_copied_contract_gives_a_second_independent_graph(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.definitions import build_definitions

    flights = (PROJECT_ROOT / "contracts" / "flights.yaml").read_text()
    (tmp_path / "flights.yaml").write_text(flights)
    (tmp_path / "flights_copy.yaml").write_text(
        flights.replace("name: flights", "name: flights_copy")
    )
    monkeypatch.setenv("DRIFTLOOP_CONTRACTS_DIR", str(tmp_path))

    graph = build_definitions().resolve_asset_graph()

    for name in GRAPH:
        assert graph.has(AssetKey(["flights_copy", name]))
    upstream = graph.get(AssetKey(["flights_copy", "features"])).parent_keys
    assert upstream == {AssetKey(["flights_copy", "raw_data"])}


# ------------------------------------------------------------------------- executors


def test_every_job_runs_its_steps_in_the_run_process() -> None:
    # Steps of our jobs form chains and import mlflow/lightgbm/duckdb: a process per step
    # (the multiprocess executor) would re-import the code location for each of them. The
    # implicit asset jobs behind `dg launch --assets`, UI materializations, backfills
    # and sensors' asset selections inherit the same default executor.
    from pipelines.definitions import defs

    jobs = {job.name: job.executor_def.name for job in defs.resolve_all_job_defs()}
    assert {"flights_daily", "flights_retrain", "flights_score", "__ASSET_JOB"} <= set(jobs)
    assert set(jobs.values()) == {"in_process"}, jobs


def test_retraining_runs_carry_the_tag_and_pool_the_project_instance_limits(
    tmp_path: Path,
) -> None:
    from assets.job_names import TRAINING_POOL
    from driftloop.names import TRAINING_TAG
    from pipelines.definitions import defs
    from pipelines.instance import instance_at, write_instance

    assert defs.resolve_job_def("flights_retrain").tags[TRAINING_TAG] == "flights"
    assert defs.resolve_assets_def(AssetKey(["flights", "model"])).node_def.pool == TRAINING_POOL
    with instance_at(write_instance(tmp_path)) as instance:
        config = instance.get_concurrency_config()
        assert instance.run_monitoring_enabled
    queue = config.run_queue_config
    assert queue.max_concurrent_runs == 2
    [limit] = [lim for lim in queue.tag_concurrency_limits if lim["key"] == TRAINING_TAG]
    assert limit["limit"] == 1 and limit["value"] == {"applyLimitPerUniqueValue": True}
    assert config.pool_config.default_pool_limit == 1
    assert config.pool_config.pool_granularity.value == "run"


def test_the_postgres_instance_file_differs_only_in_its_storage() -> None:
    from pipelines.instance import POSTGRES_URL_ENV, instance_yaml

    sqlite, postgres = yaml.safe_load(instance_yaml()), yaml.safe_load(instance_yaml(True))
    assert postgres.pop("storage") == {"postgres": {"postgres_url": {"env": POSTGRES_URL_ENV}}}
    assert sqlite == postgres
    four = yaml.safe_load(instance_yaml(True, max_concurrent_runs=4))
    assert four["concurrency"]["runs"]["max_concurrent_runs"] == 4


@pytest.mark.slow
def test_a_cli_materialization_runs_checks_and_captures_logs_in_one_process(
    tmp_path: Path,
) -> None:
    """`dg launch` on the project's instance, with no supersession warning: the raw_data
    step and every contract check run in the CLI's own process, and its stdout/stderr are
    captured for the UI as with any executor."""
    import os
    import subprocess
    import sys
    from datetime import date

    from dagster import DagsterEventType

    from assets.raw_checks import CONTRACT_CHECK
    from driftloop.data.replay import replay_days
    from driftloop.paths import dataset_paths
    from pipelines.instance import DAGSTER_YAML, instance_at

    root, home = tmp_path / "data", tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    replay_days(dataset_paths("flights", root), date(2013, 1, 1), 1)
    env = {
        **os.environ,
        "DRIFTLOOP_DATA_DIR": str(root),
        "DAGSTER_HOME": str(home),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "DRIFTLOOP_REPLAY": "off",
    }
    dg = str(Path(sys.executable).with_name("dg"))
    command = [dg, "launch", "--assets", "flights/raw_data", "--partition", "2013-01-01"]
    done = subprocess.run(
        command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "SupersessionWarning" not in done.stdout + done.stderr

    with instance_at(home) as instance:
        [run] = instance.get_runs()
        events = [e for e in instance.all_logs(run.run_id) if e.dagster_event]
        engine = [
            e.message for e in events if e.dagster_event_type == DagsterEventType.ENGINE_EVENT
        ]
        assert sum(m.startswith("Executing steps in process") for m in engine) == 1, engine
        assert not [m for m in engine if "subprocess" in m], engine
        checks = {
            e.dagster_event.asset_check_evaluation_data.check_name
            for e in events
            if e.dagster_event_type == DagsterEventType.ASSET_CHECK_EVALUATION
        }
        assert checks == {CONTRACT_CHECK}
        [captured] = [
            e.dagster_event.logs_captured_data
            for e in events
            if e.dagster_event_type == DagsterEventType.LOGS_CAPTURED
        ]
        manager = instance.compute_log_manager
        log = manager.get_log_data(manager.build_log_key_for_run(run.run_id, captured.file_key))
        assert b"STEP_START" in (log.stderr or b"")
