"""The code location workspace.yaml names: one graph per contract, wired end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, DefaultSensorStatus

from driftloop.paths import PROJECT_ROOT


@pytest.fixture(autouse=True)
def _no_state_storage_left_by_earlier_tests():
    # A Dagster instance publishes its defs-state storage in a context variable that an
    # earlier test's disposed instance can leave behind (seen after build_schedule_context);
    # loading definitions then trips over its dead weakref. A fresh process has none.
    from dagster._core.storage.defs_state.base import set_defs_state_storage

    with set_defs_state_storage(None):
        yield


GRAPH = ["raw_data", "features", "model", "eval_report", "promotion", "predictions",
         "drift_report", "performance"]  # fmt: skip


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
    for name in ("flights_new_data", "flights_retrain_trigger", "flights_catch_up"):
        assert sensors[name].default_status == DefaultSensorStatus.RUNNING
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
