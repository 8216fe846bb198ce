"""Training: time split, LightGBM vs baseline, reproducibility, regression, search budget."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftloop.data.contract import Contract, Task, load_contract
from driftloop.data.lake import write_parquet_atomic
from driftloop.metrics import HIGHER_IS_BETTER, PRIMARY_METRIC, compute_metrics
from driftloop.paths import DatasetPaths, dataset_paths
from driftloop.training.baseline_model import BaselineModel
from driftloop.training.lightgbm_model import LightGBMModel
from driftloop.training.models import make_model
from driftloop.training.train import TrainingConfig, load_training_frame, time_split, train

START = date(2024, 3, 1)
SHOPS = ["a", "b", "c", "d", "e", "f"]
FAST = {"n_estimators": 60, "learning_rate": 0.1, "num_leaves": 15, "early_stopping_rounds": 10}

CONTRACT_YAML = """
name: {name}
event_time: {{column: ts, timezone: UTC}}
id_columns: [row_id]
target: {target}
task: {task}
label_delay: 1d
partitions: {{start: 2024-03-01}}
columns:
  row_id: {{type: categorical, nullable: false}}
  ts: {{type: timestamp, nullable: false}}
  x1: {{type: numeric}}
  x2: {{type: numeric}}
  x3: {{type: numeric}}
  shop: {{type: categorical}}
  y: {{type: numeric}}
features: [x1, x2, x3, shop]
training: {{window_days: 30, holdout_days: 4, validation_days: 4}}
"""


def synthetic_contract(tmp_path: Path, task: Task = Task.binary, name: str = "synth") -> Contract:
    target = "{expression: y > 0}" if task == Task.binary else "{column: y}"
    path = tmp_path / f"{name}.yaml"
    path.write_text(CONTRACT_YAML.format(name=name, target=target, task=task.value))
    return load_contract(path)


def write_features(
    paths: DatasetPaths, task: Task, days: int = 24, rows: int = 1200, seed: int = 0
) -> list[str]:
    """Features partitions with a nonlinear signal a linear model cannot capture.

    The last 3 days also carry a shop never seen before, to exercise unseen categories.
    """
    rng = np.random.default_rng(seed)
    effect = dict(zip([*SHOPS, "new"], [0.8, -0.6, 0.3, 0.0, -1.0, 1.2, 0.5], strict=True))
    written = []
    for i in range(days):
        day = (START + timedelta(days=i)).isoformat()
        x1 = rng.uniform(-3, 3, rows)
        x2 = rng.normal(0, 1, rows)
        x3 = rng.uniform(0, 1, rows)
        shops = rng.choice(SHOPS + (["new"] if i >= days - 3 else []), rows)
        signal = 2 * np.sin(2 * x1) + 1.5 * (x2**2 - 1) + 2 * (x3 > 0.5) * np.tanh(x1)
        signal += np.array([effect[s] for s in shops])
        if task == Task.binary:
            label = (rng.uniform(0, 1, rows) < 1 / (1 + np.exp(-2 * signal))).astype("float64")
        else:
            label = signal + rng.normal(0, 0.5, rows)
        label[rng.uniform(0, 1, rows) < 0.02] = np.nan  # not known yet
        x3[rng.uniform(0, 1, rows) < 0.05] = np.nan
        shop = pd.Series(shops, dtype="object")
        shop[rng.uniform(0, 1, rows) < 0.02] = None
        frame = pd.DataFrame(
            {
                "row_id": [f"{day}-{j}" for j in range(rows)],
                "event_time": pd.Timestamp(day) + pd.to_timedelta(np.arange(rows), unit="s"),
                "partition_date": day,
                "x1": x1,
                "x2": x2,
                "x3": x3,
                "shop": shop,
                "label": label,
            }
        )
        write_parquet_atomic(frame, paths.partition_file("features", day))
        written.append(day)
    return written


@pytest.fixture
def binary_setup(data_root: Path, tmp_path: Path) -> tuple[Contract, DatasetPaths, list[str]]:
    contract = synthetic_contract(tmp_path)
    paths = dataset_paths(contract.name, data_root)
    return contract, paths, write_features(paths, Task.binary)


def test_load_and_time_split_are_time_ordered_and_disjoint(binary_setup) -> None:
    contract, paths, days = binary_setup
    frame, used, digests = load_training_frame(contract, paths, None, window_days=20)
    assert used == days[-20:]
    assert sorted(digests) == used and all(len(d) == 64 for d in digests.values())
    assert sorted(frame["partition_date"].unique()) == used

    end = date.fromisoformat(days[10])
    _, ending, _ = load_training_frame(contract, paths, end, window_days=5)
    assert ending == days[6:11]

    split = time_split(frame, holdout_days=4, validation_days=3)
    assert split.train_days + split.valid_days + split.holdout_days == used
    assert max(split.train_days) < min(split.valid_days) <= max(split.valid_days)
    assert max(split.valid_days) < min(split.holdout_days)
    assert split.holdout_days == used[-4:]
    for part, part_days in [
        (split.train, split.train_days),
        (split.valid, split.valid_days),
        (split.holdout, split.holdout_days),
    ]:
        assert set(part["partition_date"]) == set(part_days)
        assert part["label"].notna().all()
    ids = [set(p["row_id"]) for p in (split.train, split.valid, split.holdout)]
    assert not (ids[0] & ids[1]) and not (ids[1] & ids[2]) and not (ids[0] & ids[2])
    assert sum(split.rows.values()) == int(frame["label"].notna().sum())

    with pytest.raises(ValueError, match="day\\(s\\) with labelled rows"):
        time_split(frame[frame["partition_date"] >= used[-6]], holdout_days=4, validation_days=3)
    with pytest.raises(FileNotFoundError, match="materialize synth/features"):
        load_training_frame(contract, paths, date(2000, 1, 1), window_days=5)


def test_lightgbm_beats_baseline_and_is_reproducible(binary_setup) -> None:
    contract, paths, _ = binary_setup
    frame, _, _ = load_training_frame(contract, paths, None, window_days=30)
    config = TrainingConfig.for_contract(contract, params=FAST)
    assert (config.window_days, config.holdout_days, config.validation_days) == (30, 4, 4)

    first = train(contract, frame, config)
    assert isinstance(first.model, LightGBMModel) and isinstance(first.baseline, BaselineModel)
    assert first.primary_metric == "roc_auc"
    auc, base_auc = first.holdout_metrics["roc_auc"], first.baseline_holdout_metrics["roc_auc"]
    assert auc > base_auc + 0.05, (auc, base_auc)
    assert set(first.holdout_metrics) == {
        "roc_auc",
        "log_loss",
        "brier",
        "precision",
        "recall",
        "positive_rate",
    }
    assert first.rows["holdout"] == len(first.holdout_scores) > 0
    # What serves is the refit on the whole window (the contract's default), with the
    # rounds the validation days chose; the holdout's scores and metrics are the split
    # model's, which never saw those days.
    assert config.refit_on_window and first.evaluated is not None
    split_model = first.evaluated
    assert first.model is not split_model
    assert first.model.booster.current_iteration() == split_model.best_iteration
    np.testing.assert_array_equal(split_model.predict(first.split.holdout), first.holdout_scores)
    assert not np.array_equal(first.model.predict(first.split.holdout), first.holdout_scores)
    assert first.train_seconds > 0 and first.rows_per_second > 0
    importance = first.feature_importance
    assert set(importance) == {"x1", "x2", "x3", "shop"}
    assert math.isclose(sum(importance.values()), 1.0)
    assert importance["x1"] > importance["shop"] * 0.5

    # Unseen and missing shops score, and do not crash either model.
    holdout = first.split.holdout
    assert (holdout["shop"] == "new").any()
    odd = holdout.head(3).assign(shop=["never-seen", None, "a"])
    for model in (first.model, first.baseline):
        scores = model.predict(odd)
        assert scores.shape == (3,) and np.isfinite(scores).all()
        assert ((scores >= 0) & (scores <= 1)).all()

    # Same data and config (a fresh read, a shuffled frame) -> identical numbers.
    again_frame, _, _ = load_training_frame(contract, paths, None, window_days=30)
    again_frame = again_frame.sample(frac=1.0, random_state=7)
    second = train(contract, again_frame, config)
    assert second.holdout_metrics == first.holdout_metrics
    assert second.valid_metrics == first.valid_metrics
    assert second.baseline_holdout_metrics == first.baseline_holdout_metrics
    np.testing.assert_array_equal(second.holdout_scores, first.holdout_scores)
    np.testing.assert_array_equal(
        second.model.predict(first.split.holdout), first.model.predict(first.split.holdout)
    )


def test_regression_end_to_end(data_root: Path, tmp_path: Path) -> None:
    contract = synthetic_contract(tmp_path, Task.regression, name="synth_reg")
    paths = dataset_paths(contract.name, data_root)
    write_features(paths, Task.regression, days=14, rows=800, seed=3)
    frame, days, _ = load_training_frame(contract, paths, None, window_days=30)
    assert len(days) == 14
    config = TrainingConfig.for_contract(contract, params=FAST, holdout_days=3, validation_days=2)
    result = train(contract, frame, config)
    assert result.primary_metric == PRIMARY_METRIC[Task.regression] == "rmse"
    assert set(result.holdout_metrics) == {"rmse", "mae", "r2"}
    assert result.holdout_metrics["rmse"] < result.baseline_holdout_metrics["rmse"] * 0.8
    assert result.holdout_metrics["r2"] > 0.6
    assert result.split.holdout_days == days[-3:]

    baseline_only = train(contract, frame, TrainingConfig(holdout_days=3, model_kind="baseline"))
    assert isinstance(baseline_only.model, BaselineModel)
    assert baseline_only.holdout_metrics == baseline_only.baseline_holdout_metrics


def test_search_respects_trial_and_time_budget(binary_setup) -> None:
    contract, paths, _ = binary_setup
    frame, _, _ = load_training_frame(contract, paths, None, window_days=16)
    config = TrainingConfig.for_contract(contract, params=FAST, search_trials=3)
    result = train(contract, frame, config)
    assert len(result.trials) == 3
    assert result.trials[0]["params"] == FAST  # the configured params are trial 0
    values = [t["valid_roc_auc"] for t in result.trials]
    best = result.trials[int(np.argmax(values))]
    assert result.valid_metrics["roc_auc"] == pytest.approx(max(values))
    assert {k: result.best_params[k] for k in best["params"]} == best["params"]

    # A budget already spent allows only the first trial.
    hurried = TrainingConfig.for_contract(
        contract, params=FAST, search_trials=50, search_time_budget_s=1e-6
    )
    assert len(train(contract, frame, hurried).trials) == 1


def test_metrics_and_factory(flights_contract: Contract) -> None:
    y = np.array([0, 0, 1, 1])
    perfect = compute_metrics(Task.binary, y, [0.1, 0.2, 0.8, 0.9])
    assert perfect["roc_auc"] == 1.0 and perfect["precision"] == 1.0 and perfect["recall"] == 1.0
    assert perfect["positive_rate"] == 0.5 and perfect["brier"] == pytest.approx(0.025)
    assert math.isnan(compute_metrics(Task.binary, [1, 1], [0.3, 0.9])["roc_auc"])
    reg = compute_metrics(Task.regression, [1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    assert reg["rmse"] == pytest.approx(math.sqrt(1 / 3)) and reg["mae"] == pytest.approx(1 / 3)
    assert HIGHER_IS_BETTER["roc_auc"] and not HIGHER_IS_BETTER["rmse"]
    with pytest.raises(ValueError, match="unknown model kind"):
        make_model("xgboost", flights_contract)
    flights = make_model("lightgbm", flights_contract, None, 1)
    assert flights.categorical == ["carrier", "origin", "dest"]


def test_a_retrain_serves_the_kind_better_on_the_validation_days(binary_setup) -> None:
    """Both kinds are fitted; the better on the validation days is the model, so a baseline
    champion can be replaced by a fresh baseline when LightGBM fits the concept worse."""
    contract, paths, _ = binary_setup
    frame, _, _ = load_training_frame(contract, paths, None, window_days=20)
    config = TrainingConfig(holdout_days=4, validation_days=4, params=FAST)
    nonlinear = train(contract, frame, config)
    assert set(nonlinear.kind_valid) == {"lightgbm", "baseline"}
    assert nonlinear.model.name == "lightgbm"  # the sine signal: a linear model cannot fit it
    assert nonlinear.kind_valid["lightgbm"] > nonlinear.kind_valid["baseline"]

    # A linear concept on few rows: the logistic baseline wins validation and serves.
    rng = np.random.default_rng(3)
    linear = frame.groupby("partition_date", group_keys=False).head(60).copy()
    linear["label"] = (
        rng.uniform(0, 1, len(linear)) < 1 / (1 + np.exp(-0.8 * linear["x2"].to_numpy()))
    ).astype("float64")
    chosen = train(contract, linear.reset_index(drop=True), config)
    assert chosen.kind_valid["baseline"] > chosen.kind_valid["lightgbm"]
    assert chosen.model is chosen.baseline and chosen.model.name == "baseline"
    assert chosen.holdout_metrics == chosen.baseline_holdout_metrics
    fixed = train(contract, linear.reset_index(drop=True), replace(config, choose_kind=False))
    assert fixed.model.name == "lightgbm"
