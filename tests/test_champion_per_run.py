"""The champion is resolved once per run: every asset of the run judges the version that
scored, even when the alias moves while the run is going."""

# No `from __future__ import annotations`: Dagster reads the test asset's annotations.
from pathlib import Path

import pytest
from dagster import (
    AssetExecutionContext,
    AssetKey,
    DagsterInstance,
    MaterializeResult,
    asset,
    materialize,
)
from test_predictions_asset import LogisticModel, register, write_features

from assets.predictions import build_predictions, resolve_champion
from driftloop.data.contract import Contract
from driftloop.names import CHAMPION
from driftloop.paths import DatasetPaths
from driftloop.training.registry import make_client, set_alias
from resources.lake import LakeResource
from resources.mlflow import MlflowResource

DAY = "2013-01-08"


@pytest.mark.slow
def test_an_alias_move_during_a_run_does_not_change_the_runs_champion(
    flights_contract: Contract,
    flights_paths: DatasetPaths,
    data_root: Path,
    dagster_instance: DagsterInstance,
) -> None:
    write_features(flights_contract, flights_paths, [DAY], rows=100)
    first = register(flights_contract, data_root, LogisticModel(), CHAMPION)
    second = register(flights_contract, data_root, LogisticModel(0.5), "challenger")
    name = flights_contract.name

    @asset(key=AssetKey([name, "after_predictions"]), deps=[AssetKey([name, "predictions"])])
    def after_predictions(
        context: AssetExecutionContext, mlflow: MlflowResource
    ) -> MaterializeResult:
        # A promotion elsewhere moves the alias; this run keeps the version it scored with.
        set_alias(make_client(mlflow.uri()), name, CHAMPION, second)
        champion = resolve_champion(context, name, mlflow)
        assert champion is not None
        return MaterializeResult(metadata={"champion": champion.number})

    predictions = list(build_predictions(flights_contract).assets or [])
    result = materialize(
        [*predictions, after_predictions],
        instance=dagster_instance,
        partition_key=DAY,
        resources={"lake": LakeResource(), "mlflow": MlflowResource()},
        selection=[AssetKey([name, "predictions"]), AssetKey([name, "after_predictions"])],
    )

    assert result.success
    seen = {
        m.asset_key.path[-1]: m.metadata
        for m in (e.materialization for e in result.get_asset_materialization_events())
    }
    assert seen["predictions"]["model_version"].value == first
    assert seen["after_predictions"]["champion"].value == first
    # The next run resolves the alias afresh.
    again = materialize(
        [*predictions, after_predictions],
        instance=dagster_instance,
        partition_key=DAY,
        resources={"lake": LakeResource(), "mlflow": MlflowResource()},
        selection=[AssetKey([name, "predictions"])],
    )
    [event] = again.get_asset_materialization_events()
    assert event.materialization.metadata["model_version"].value == second
