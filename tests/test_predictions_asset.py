"""`<dataset>/predictions`: skipped without a champion, scored by it, shadowed by a challenger.

Real Dagster instance, real MLflow (SQLite under the temp data root), real Parquet. The
features partitions are synthetic (flights feature names) and the models are tiny numpy
pyfuncs registered here, so these tests do not depend on the training code. The helpers
are shared with tests/test_monitoring.py.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import AssetKey, DagsterInstance, materialize

from assets.monitoring import build_monitoring
from assets.predictions import build_predictions
from driftloop.data.contract import ColumnType, Contract
from driftloop.data.lake import write_parquet_atomic
from driftloop.monitoring.signals import predictions_table
from driftloop.paths import DatasetPaths
from driftloop.training.mlflow_logging import pyfunc_wrapper
from driftloop.training.models import make_model
from driftloop.training.registry import (
    experiment_id_for,
    make_client,
    set_alias,
    using_tracking_uri,
)
from resources.lake import LakeResource
from resources.mlflow import MlflowResource

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

CARRIERS = ["AA", "B6", "DL", "UA", "US", "EV", "MQ", "WN"]
ORIGINS = ["EWR", "JFK", "LGA"]
DESTS = ["ATL", "BOS", "ORD", "LAX", "MIA", "SFO"]
TRAIN_DAYS = ("2013-01-01", "2013-01-07")


def day_list(first: str, last: str) -> list[str]:
    start, end = date.fromisoformat(first), date.fromisoformat(last)
    return [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def signal(frame: pd.DataFrame) -> np.ndarray:
    """The log-odds the synthetic labels follow (and the models score)."""
    temp = frame["temp"].to_numpy(dtype=float)
    wind = frame["wind_speed"].to_numpy(dtype=float)
    return 1.2 * temp - 0.8 * wind - 0.5


def write_features(
    contract: Contract,
    paths: DatasetPaths,
    days: list[str],
    rows: int = 600,
    seed: int = 0,
    shift: float = 0.0,
    random_labels: bool = False,
) -> dict[str, pd.DataFrame]:
    """Synthetic features partitions (DEVELOPING.md schema); `shift` moves every numeric
    feature and skews the categories, `random_labels` cuts labels loose from the signal."""
    frames = {}
    for offset, day in enumerate(days):
        rng = np.random.default_rng(seed * 1000 + offset)
        d = date.fromisoformat(day)
        frame = pd.DataFrame(
            {
                "flight_id": [f"{day}-{i}" for i in range(rows)],
                "event_time": [
                    datetime(d.year, d.month, d.day) + timedelta(minutes=int(m))
                    for m in np.sort(rng.integers(5 * 60, 23 * 60, rows))
                ],
                "partition_date": day,
            }
        )
        skew = [0.6, *[0.4 / (len(CARRIERS) - 1)] * (len(CARRIERS) - 1)] if shift else None
        for feature in contract.features:
            if contract.feature_type(feature) == ColumnType.categorical:
                values = {"carrier": CARRIERS, "origin": ORIGINS, "dest": DESTS}[feature]
                probabilities = skew if feature == "carrier" else None
                frame[feature] = rng.choice(values, rows, p=probabilities)
            else:
                frame[feature] = rng.normal(loc=shift, size=rows)
        z = signal(frame)
        if random_labels:
            z = rng.normal(size=rows)
        frame["label"] = (rng.random(rows) < 1.0 / (1.0 + np.exp(-z))).astype("float64")
        frame.loc[frame.index[:10], "label"] = np.nan  # a few labels unknown
        write_parquet_atomic(frame, paths.partition_file("features", day))
        frames[day] = frame
    return frames


def write_raw_clock(contract: Contract, paths: DatasetPaths, day: str, last: str) -> None:
    """A raw partition holding only the event-time column, up to `last` (the data clock)."""
    d = date.fromisoformat(day)
    times = pd.to_datetime([datetime(d.year, d.month, d.day, 5), pd.Timestamp(last)])
    table = pa.table({contract.event_time.column: pa.array(times, pa.timestamp("us"))})
    write_parquet_atomic(table, paths.partition_file("raw", day))


class LogisticModel(mlflow.pyfunc.PythonModel):
    """p = sigmoid(scale * signal + offset)."""

    # The signature is given explicitly; no type-hint based input wrapping or advice.
    _skip_type_hint_validation = True

    def __init__(self, scale: float = 1.0, offset: float = 0.0) -> None:
        self.scale = scale
        self.offset = offset

    def predict(self, context, model_input, params=None):
        return 1.0 / (1.0 + np.exp(-(self.scale * signal(model_input) + self.offset)))


def register(
    contract: Contract,
    root: Path,
    model: mlflow.pyfunc.PythonModel,
    alias: str,
    holdout_auc: float = 0.7,
    train_days: tuple[str, str] = TRAIN_DAYS,
) -> str:
    """Log and register a model as training does (tags, holdout metric), then alias it."""
    from mlflow.models import infer_signature

    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = make_client(uri)
    experiment = experiment_id_for(client, contract.name, uri, root / "mlartifacts")
    sample = pd.DataFrame({f: [1.0, 2.0] for f in contract.features})
    for feature in contract.categorical_features:
        sample[feature] = ["AA", "B6"]
    signature = infer_signature(sample, model.predict(None, sample))
    with using_tracking_uri(uri), mlflow.start_run(experiment_id=experiment):
        mlflow.log_metrics({"holdout_roc_auc": holdout_auc, "holdout_log_loss": 0.5})
        info = mlflow.pyfunc.log_model(
            name="model", python_model=model, signature=signature, pip_requirements=[]
        )
        version = str(mlflow.register_model(info.model_uri, contract.name).version)
    holdout_end = date.fromisoformat(train_days[1]) + timedelta(days=7)
    tags = {
        "driftloop.train_days": f"{train_days[0]}..{train_days[1]}",
        "dagster.partitions": f"{train_days[0]}..{holdout_end}",
        "driftloop.holdout_start": (date.fromisoformat(train_days[1]) + timedelta(1)).isoformat(),
        "driftloop.holdout_end": holdout_end.isoformat(),
        "driftloop.primary_metric": "roc_auc",
        "driftloop.holdout_primary": repr(holdout_auc),
    }
    for key, value in tags.items():
        client.set_model_version_tag(contract.name, version, key, value)
    set_alias(client, contract.name, alias, version)
    return version


def all_assets(contract: Contract) -> list:
    defs = [build_predictions(contract), build_monitoring(contract)]
    return [a for d in defs for a in d.assets]


def run(
    contract: Contract,
    instance: DagsterInstance,
    days: list[str],
    selection: list[str],
    run_config: dict | None = None,
):
    """Materialize the selected assets for one day or a range (single-run backfill)."""
    keys = [AssetKey([contract.name, s]) for s in selection]
    tags = None
    partition_key = days[0]
    if len(days) > 1:
        partition_key = None
        tags = {
            "dagster/asset_partition_range_start": days[0],
            "dagster/asset_partition_range_end": days[-1],
        }
    return materialize(
        all_assets(contract),
        selection=keys,
        instance=instance,
        partition_key=partition_key,
        tags=tags,
        resources={"lake": LakeResource(), "mlflow": MlflowResource()},
        run_config=run_config,
    )


def logs(instance: DagsterInstance, run_id: str) -> str:
    return "\n".join(e.user_message for e in instance.all_logs(run_id))


def materializations(result, name: str) -> dict[str, dict]:
    out = {}
    for event in result.get_asset_materialization_events():
        m = event.event_specific_data.materialization
        if m.asset_key.path[-1] == name:
            out[m.partition] = {k: getattr(v, "value", v) for k, v in m.metadata.items()}
    return out


# --------------------------------------------------------------------------------- tests


def test_no_champion_skips_predictions_and_monitoring(
    flights_contract, flights_paths, data_root, dagster_instance
):
    write_features(flights_contract, flights_paths, ["2013-01-08"])
    result = run(
        flights_contract,
        dagster_instance,
        ["2013-01-08"],
        ["predictions", "drift_report", "performance"],
    )
    assert result.success
    assert result.get_asset_materialization_events() == []
    assert "waiting: no champion for flights yet" in logs(dagster_instance, result.run_id)
    skipped = {e.step_key for e in result.all_events if e.event_type_value == "STEP_SKIPPED"}
    assert "flights__drift_report" in skipped or "flights__performance" in skipped
    assert not flights_paths.table("predictions").exists()
    assert not flights_paths.table("drift").exists()


@pytest.mark.slow
def test_champion_scores_a_range_and_challenger_shadows(
    flights_contract, flights_paths, data_root, dagster_instance
):
    days = ["2013-01-08", "2013-01-09"]
    frames = write_features(flights_contract, flights_paths, days, rows=300)
    champion = register(flights_contract, data_root, LogisticModel(1.0), "champion")

    result = run(flights_contract, dagster_instance, days, ["predictions"])
    assert result.success
    meta = materializations(result, "predictions")
    assert sorted(meta) == days
    for day in days:
        table = pd.read_parquet(flights_paths.partition_file("predictions", day))
        features = frames[day]
        assert list(table["row"]) == list(range(len(features)))
        assert (table["flight_id"] == features["flight_id"]).all()
        assert set(table["model_version"]) == {champion}
        assert "shadow_prediction" not in table
        expected = LogisticModel(1.0).predict(None, features)
        np.testing.assert_allclose(table["prediction"], expected, rtol=1e-9)
        assert meta[day]["rows"] == len(features)
        assert math.isclose(meta[day]["mean_prediction"], float(expected.mean()), rel_tol=1e-9)
        assert meta[day]["model_version"] == champion
        assert meta[day]["rows_per_second"] > 0

    challenger = register(flights_contract, data_root, LogisticModel(0.5, 0.3), "challenger")
    result = run(flights_contract, dagster_instance, [days[1]], ["predictions"])
    assert result.success
    table = pd.read_parquet(flights_paths.partition_file("predictions", days[1]))
    assert set(table["model_version"]) == {champion}
    assert set(table["shadow_model_version"]) == {challenger}
    np.testing.assert_allclose(
        table["shadow_prediction"], LogisticModel(0.5, 0.3).predict(None, frames[days[1]])
    )
    assert materializations(result, "predictions")[days[1]]["shadow_model_version"] == challenger


@pytest.mark.slow
def test_our_models_score_arrow_and_write_what_the_pandas_path_wrote(
    flights_contract, flights_paths, data_root, dagster_instance
):
    """Our own models (LightGBM champion, baseline shadow) unwrapped from their pyfuncs score
    the Arrow-read partition exactly as `predict` scores the pandas frame, and the file
    equals the one the pandas path writes; a partition without a model input fails the
    step with the column's name."""
    contract, day = flights_contract, "2013-01-08"
    frames = write_features(contract, flights_paths, [*day_list(*TRAIN_DAYS), day], rows=400)
    history = pd.concat([frames[d] for d in day_list(*TRAIN_DAYS)]).dropna(subset=["label"])
    params = {"n_estimators": 20, "num_leaves": 7, "early_stopping_rounds": 0}
    lightgbm = make_model("lightgbm", contract, params)
    lightgbm.fit(history, history.iloc[:0])
    baseline = make_model("baseline", contract)
    baseline.fit(history, history.iloc[:0])
    champion = register(contract, data_root, pyfunc_wrapper(lightgbm), "champion")
    challenger = register(contract, data_root, pyfunc_wrapper(baseline), "challenger")
    scored = frames[day]
    scored.loc[:4, "carrier"] = "ZZ"  # unseen in training
    scored.loc[5:9, "origin"] = None
    scored.loc[10:14, "temp"] = np.nan
    write_parquet_atomic(scored, flights_paths.partition_file("features", day))

    result = run(contract, dagster_instance, [day], ["predictions"])
    assert result.success
    path = flights_paths.partition_file("predictions", day)
    written = pd.read_parquet(path)
    expected = lightgbm.predict(scored)
    np.testing.assert_array_equal(written["prediction"].to_numpy(), expected)
    np.testing.assert_array_equal(written["shadow_prediction"].to_numpy(), baseline.predict(scored))
    reference = predictions_table(
        contract, scored, expected, champion, baseline.predict(scored), challenger
    )
    pd.testing.assert_frame_equal(written, reference)
    reference_schema = pa.Table.from_pandas(reference, preserve_index=False).schema
    assert pq.read_schema(path).remove_metadata() == reference_schema.remove_metadata()
    meta = materializations(result, "predictions")[day]
    for part in ("model", "read", "score", "write"):
        assert meta[f"{part}_seconds"] >= 0

    write_parquet_atomic(
        scored.drop(columns=["wind_speed"]), flights_paths.partition_file("features", day)
    )
    failed = materialize(
        all_assets(contract),
        selection=[AssetKey([contract.name, "predictions"])],
        instance=dagster_instance,
        partition_key=day,
        resources={"lake": LakeResource(), "mlflow": MlflowResource()},
        raise_on_error=False,
    )
    assert not failed.success
    (failure,) = failed.get_step_failure_events()
    message = str(failure.event_specific_data.error.to_string())
    assert "lacks model input columns ['wind_speed']" in message
