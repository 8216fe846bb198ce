"""The retraining-policy backtest on a small slice of the embedded flights.

It must replay history through the production trigger and gate (the retrain sensor makes
the same decisions from the same signals, and a threshold change moves both the same
way), never score a day with a model that saw that day's labels, report value capture and
retrain cost as specified, and run as a Dagster job that produces metadata and files.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dagster import DagsterInstance, SensorResult, SkipReason, build_sensor_context

from driftloop.backtest.engine import (
    DAILY,
    REFERENCE_SCHEDULES,
    STATIC,
    Backtest,
    BacktestConfig,
    BacktestResult,
    backtest_paths,
    load_features,
    prepare,
    retrain_cost,
    run_backtest,
    trigger_settings,
    value_capture,
    warmup_start,
    with_label_delay,
)
from driftloop.data.contract import Contract, Training
from driftloop.data.flights_source import flights_between
from driftloop.data.lake import write_parquet_atomic, write_text_atomic
from driftloop.monitoring.drift_outcome import summary_path
from driftloop.paths import dataset_paths
from resources.lake import LakeResource
from resources.mlflow import MlflowResource
from sensors.retrain_trigger import build_retrain_sensor

SOURCE_START = date(2013, 3, 1)
SOURCE_DAYS = 34
START, END = date(2013, 3, 18), date(2013, 4, 3)
# Small and quick: the policies, not the model, are under test.
FAST_MODEL = {"learning_rate": 0.2, "n_estimators": 60}
SMALL = Training(window_days=12, holdout_days=2, validation_days=2)


def _small(contract: Contract) -> Contract:
    return contract.model_copy(update={"training": SMALL})


@pytest.fixture(scope="module")
def slice_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("backtest") / "data"


@pytest.fixture(scope="module")
def slice_run(slice_root: Path) -> tuple[Contract, BacktestResult]:
    """One backtest of 17 days, a 12-day window, the default trigger and a stricter one."""
    from driftloop.data.contract import load_contract
    from tests.conftest import FLIGHTS_CONTRACT

    contract = _small(load_contract(FLIGHTS_CONTRACT))
    root = slice_root
    config = BacktestConfig.for_contract(
        contract,
        START,
        END,
        triggers=[
            trigger_settings(contract),
            # A stricter policy: 5 breached days of 5.
            trigger_settings(contract, name="strict", n_breaches=5, window=5),
            # Realised performance alone, one day of one: the window=1 case.
            trigger_settings(
                contract,
                name="perf1",
                n_breaches=1,
                window=1,
                cooldown_days=0,
                use_drift=False,
                use_estimated=False,
            ),
        ],
        model_params=FAST_MODEL,
        reference_rows=5_000,
        # The split models serve (no refit on the window): on this short spring
        # their signals make the stricter threshold fire later than the default.
        fit="split",
    )
    source = flights_between(SOURCE_START, SOURCE_DAYS)
    result = run_backtest(contract, root, config, source=source, source_id="test-slice")
    return contract, result


@pytest.fixture(scope="module")
def slice_features(slice_run, slice_root: Path) -> pd.DataFrame:
    """The features the slice run replayed (its raw and features caches, not rebuilt)."""
    contract, result = slice_run
    source = flights_between(SOURCE_START, SOURCE_DAYS)
    paths, info = prepare(contract, slice_root, source, "test-slice")
    assert info["source_id"] == "test-slice"
    first = warmup_start(contract, START, result.config.window_days)
    cache = backtest_paths(slice_root, contract.name).lake / "features_cache"
    assert list(cache.glob("*.parquet")), "the run did not cache its features"
    return load_features(contract, paths, first, END, cache)


def _policy(result: BacktestResult, name: str):
    return next(p for p in result.policies if p.name == name)


def _sensor_fires(
    contract: Contract, instance: DagsterInstance, root: Path, decision: dict
) -> bool:
    """Write exactly the signals the backtest showed its trigger into a real lake, then
    evaluate the production retrain sensor on it."""
    paths = dataset_paths(contract.name, root)
    today = date.fromisoformat(decision["today"])
    day = START
    while day <= today:  # the sensor's "today" is the latest day with features
        frame = pd.DataFrame({"x": [1.0]})
        write_parquet_atomic(frame, paths.partition_file("features", day.isoformat()))
        day += timedelta(days=1)
    for signal_day, drift, estimated, performance in decision["signals"]:
        body = {"day": signal_day, "breached": drift, "estimated_breached": estimated}
        write_text_atomic(json.dumps(body), summary_path(paths, signal_day))
        if performance is not None:
            row = {"day": signal_day, "breached": performance, "pooled_value": 0.5}
            write_parquet_atomic(
                pd.DataFrame([row]), paths.partition_file("performance", signal_day)
            )
    last = decision["last_retrain_day"]
    cursor = json.dumps({"last_retrain_day": last}) if last else None
    sensor = build_retrain_sensor(contract, f"{contract.name}_retrain")
    resources = {
        "lake": LakeResource(data_dir=str(root)),
        "mlflow": MlflowResource(data_dir=str(root.parent / "data")),
    }
    outcome = sensor(build_sensor_context(instance=instance, cursor=cursor, resources=resources))
    assert isinstance(outcome, SensorResult | SkipReason)
    return isinstance(outcome, SensorResult)


@pytest.mark.slow
def test_backtest_and_sensor_take_the_same_decisions_and_a_threshold_moves_both(
    slice_run, data_root, dagster_instance
) -> None:
    contract, result = slice_run
    client = MlflowResource(data_dir=str(data_root)).client()
    client.create_registered_model(contract.name)
    version = client.create_model_version(contract.name, source=str(data_root / "x"))
    client.set_registered_model_alias(contract.name, "champion", version.version)

    fired: dict[str, list[str]] = {}
    for settings in result.config.triggers:
        policy = _policy(result, settings.name)
        variant = contract.model_copy(update={"retraining": settings.policy})
        assert policy.decisions, "the trigger was never asked"
        for i, (day, decision) in enumerate(sorted(policy.decisions.items())):
            lake = data_root.parent / f"lake_{settings.name}_{i}"
            assert _sensor_fires(variant, dagster_instance, lake, decision) == decision["fire"], (
                f"{settings.name} {day}: backtest and sensor disagree on {decision}"
            )
        fired[settings.name] = [d for d, x in sorted(policy.decisions.items()) if x["fire"]]
        retrain_days = [e["day"] for e in policy.events if e["event"] == "retrain"]
        assert retrain_days == fired[settings.name]

    assert fired["driftloop"], "the default policy never fired on a drifting spring"
    assert fired["driftloop"] != fired["strict"], "the threshold changed nothing"
    # Stricter threshold: it can only fire later, never earlier, than the default.
    assert fired["strict"] == [] or fired["strict"][0] > fired["driftloop"][0]
    # Every trigger retrain went through the production gate, with its reasons.
    events = _policy(result, "driftloop").events
    assert all("champion" in e["gate"] for e in events)


@pytest.mark.slow
def test_a_window_of_one_day_fires_on_realised_performance(slice_run) -> None:
    _, result = slice_run
    policy = _policy(result, "perf1")
    breached = [r["day"] for r in policy.daily if r.get("performance_breached")]
    assert breached, "no day's pooled realised performance breached in the slice"
    fired = [d for d, x in sorted(policy.decisions.items()) if x["fire"]]
    # A breach known on day D (labels pooled up to D - 1) fires the retrain of D + 1.
    first = date.fromisoformat(breached[0]) + timedelta(days=1)
    assert fired and fired[0] == first.isoformat()
    assert "performance on 1 of today" in policy.events[0]["reason"]


@pytest.mark.slow
def test_the_cooldown_runs_from_the_first_model(slice_run) -> None:
    contract, result = slice_run
    decisions = _policy(result, "driftloop").decisions
    until = START + timedelta(days=contract.retraining.cooldown_days - 1)
    second_morning = decisions[(START + timedelta(days=1)).isoformat()]
    assert not second_morning["fire"]
    assert second_morning["reason"].startswith(f"no retrain: cooldown until {until}")
    assert second_morning["last_retrain_day"] == (START - timedelta(days=1)).isoformat()


@pytest.mark.slow
def test_the_first_model_is_the_baseline_when_the_gate_prefers_it(slice_run, slice_features):
    contract, result = slice_run
    weak = {"n_estimators": 1, "learning_rate": 0.001, "num_leaves": 2}
    backtest = Backtest(contract, slice_features, replace(result.config, model_params=weak))
    first = backtest.fitter.fit_first(START)
    assert first.kind == "baseline" and first.first_gate["served"] == "baseline"
    assert not first.first_gate["promote"]
    rows = backtest.history.day_rows(START.isoformat())
    assert len(first.model.predict(rows)) == len(rows)
    assert first.importance and abs(sum(first.importance.values()) - 1) < 1e-9
    # The run's report says which of the two served its first days.
    assert result.first_model["kind"] == result.first_model["gate"]["served"]


@pytest.mark.slow
def test_no_day_is_scored_by_a_model_that_saw_its_labels(slice_run) -> None:
    _, result = slice_run
    checked = 0
    for policy in result.policies:
        for row in policy.daily:
            if math.isnan(row["metric"]):
                continue
            model = result.scored_models[row["model"]]
            day_starts = datetime.combine(date.fromisoformat(row["day"]), datetime.min.time())
            latest_due = datetime.fromisoformat(model["latest_label_due"])
            assert latest_due <= day_starts, (policy.name, row["day"], model)
            assert model["window"][1] < row["day"]
            checked += 1
    assert checked >= len(result.policies) * 15
    # The label delay really bites: a model that serves day D saw nothing of D - 1.
    daily = _policy(result, DAILY)
    for row in daily.daily[1:]:
        window_end = date.fromisoformat(result.scored_models[row["model"]]["window"][1])
        assert window_end <= date.fromisoformat(row["day"]) - timedelta(days=2)


@pytest.mark.slow
def test_value_capture_and_retrain_cost_as_specified(slice_run) -> None:
    _, result = slice_run
    summary = result.summary().set_index("policy")
    wide = result.daily_frame().pivot(index="day", columns="policy", values="metric").dropna()
    static, best = wide[STATIC].mean(), wide[DAILY].mean()
    days = (END - START).days + 1
    assert summary.loc[DAILY, "retrains"] == days
    assert summary.loc[STATIC, "retrains"] == 0
    assert summary.loc["every_7_days", "retrains"] == math.ceil(days / 7)
    assert set(REFERENCE_SCHEDULES) <= set(summary.index)
    for name in ("driftloop", "strict", "every_7_days"):
        metric = wide[name].mean()
        assert summary.loc[name, "mean_roc_auc"] == pytest.approx(metric)
        assert summary.loc[name, "value_capture"] == pytest.approx(
            (metric - static) / (best - static)
        )
        assert summary.loc[name, "retrain_cost"] == pytest.approx(
            summary.loc[name, "retrains"] / days
        )
    # Sign-adjusted for lower-is-better metrics (RMSE 5 never, 4 daily, 4.5 the policy).
    assert value_capture(4.5, 5.0, 4.0, higher_is_better=False) == pytest.approx(0.5)
    assert value_capture(0.66, 0.64, 0.68, higher_is_better=True) == pytest.approx(0.5)
    assert math.isnan(value_capture(0.7, 0.7, 0.7, higher_is_better=True))
    assert retrain_cost(30, 300) == pytest.approx(0.1)


@pytest.mark.slow
def test_dagster_job_runs_in_process_with_metadata_and_files(
    flights_contract, data_root, dagster_instance, tmp_path
) -> None:
    from pipelines.backtest_job import build_backtest_job

    contract = _small(flights_contract)
    source = tmp_path / "flights_slice.csv"
    flights_between(date(2013, 3, 1), 21).to_csv(source, index=False)
    job = build_backtest_job(contract)
    assert job.name == "flights_backtest"
    config = {
        "source": str(source),
        "start": "2013-03-17",
        "end": "2013-03-21",
        "window_days": 12,
        "cooldown_days": 2,
        "extra_policies": ["perf_only:use_drift=false,cooldown_days=1"],
        "model_params": ["n_estimators=60", "learning_rate=0.2"],
        # The reference-figure options (see docs/backtest.md) reach the run.
        "fit": "window",
        "label_delay": "0h",
    }
    result = job.execute_in_process(
        run_config={"ops": {"flights_run_backtest": {"config": config}}},
        instance=dagster_instance,
        resources={
            "lake": LakeResource(data_dir=str(data_root)),
            "mlflow": MlflowResource(data_dir=str(data_root)),
        },
    )
    assert result.success
    [output] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = output.event_specific_data.metadata
    assert {"summary", "summary_md", "plot", "html_report", "json_report"} <= set(metadata)
    policies = [r.data["policy"] for r in metadata["summary"].records]
    assert policies == [*REFERENCE_SCHEDULES, "driftloop", "perf_only"]
    assert metadata["frontier"].md_str.startswith("![frontier](data:image/png;base64,")
    for key in ("html_report", "json_report", "plot_path"):
        assert Path(metadata[key].path).exists()
    assert metadata["plot"].md_str.startswith("![daily metric](data:image/png;base64,")
    report = json.loads(Path(metadata["json_report"].path).read_text())
    assert report["config"]["triggers"][0]["cooldown_days"] == 2
    assert report["config"]["triggers"][1]["use_drift"] is False
    assert report["config"]["fit"] == "window" and report["label_delay"] == "0:00:00"
    assert Path(metadata["json_report"].path).is_relative_to(data_root / "backtest" / "flights")
    # Logged to MLflow in <dataset>-backtest.
    client = MlflowResource(data_dir=str(data_root)).client()
    experiment = client.get_experiment_by_name("flights-backtest")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and "driftloop.retrain_cost" in runs[0].data.metrics
    # The raw rows went through ingestion into the cache lake, not the production lake.
    assert (data_root / "backtest" / "flights" / "raw" / "date=2013-03-10").is_dir()
    assert not (data_root / "lake" / "flights").exists()


def _cutoff(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time())


@pytest.mark.slow
def test_a_retrain_is_production_train_with_every_kind(slice_run, slice_features) -> None:
    from driftloop.training.train import train

    contract, result = slice_run
    backtest = Backtest(contract, slice_features, result.config)
    day = START + timedelta(days=5)
    trained = backtest.fitter.fit_day(day)
    frame = backtest.history.training_frame(_cutoff(day), result.config.window_days)
    config = backtest.fitter.training_config()
    full = train(contract, frame, config)
    assert full.baseline is not None and set(full.kind_valid) == {"lightgbm", "baseline"}
    # The backtest's retrain is production's: the kind better on the validation days.
    assert trained.kind == full.model.name
    assert trained.holdout_metric == pytest.approx(full.holdout_metrics["roc_auc"])
    np.testing.assert_array_equal(trained.holdout_scores, full.holdout_scores)
    rows = backtest.history.day_rows(day.isoformat())
    np.testing.assert_array_equal(trained.model.predict(rows), full.model.predict(rows))
    # ... and it is the model the every_day policy served that day in the run.
    served = result.scored_models[f"m{day.isoformat()}"]
    assert served["holdout_roc_auc"] == pytest.approx(trained.holdout_metric)
    assert served["kind"] == trained.kind


@pytest.mark.slow
def test_window_fit_serves_a_refit_on_the_whole_window_and_keeps_the_honest_holdout(
    slice_run, slice_features
) -> None:
    from driftloop.training.models import make_model
    from driftloop.training.train import time_split

    contract, result = slice_run
    config = result.config
    split = Backtest(contract, slice_features, config)
    window = Backtest(contract, slice_features, replace(config, fit="window"))
    day = START + timedelta(days=5)
    a, b = split.fitter.fit_day(day), window.fitter.fit_day(day)
    # The gate and the performance reference still see the held-out days honestly.
    np.testing.assert_array_equal(a.holdout_scores, b.holdout_scores)
    assert a.holdout_metric == b.holdout_metric and a.window == b.window
    # ... and the gate asks a champion's split model (kept beside the refit), like with like.
    rows = split.history.day_rows(day.isoformat())
    assert a.evaluated is None and b.evaluated is not None
    np.testing.assert_array_equal(b.evaluated.predict(rows), a.model.predict(rows))
    # The served model learnt from every day of the window, holdout included, for the
    # rounds the validation days chose (no validation days are left to stop on).
    frame = split.history.training_frame(_cutoff(day), config.window_days)
    holdout_days = time_split(frame, config.holdout_days, config.validation_days).holdout_days
    assert set(holdout_days) <= set(frame["partition_date"])
    ordered = frame.sort_values(["partition_date", "event_time", "flight_id"], kind="stable")
    # The refit is of the kind train chose on the validation days.
    assert b.kind == a.kind == b.model.name
    params = dict(a.model.params)
    if a.kind == "lightgbm":
        params |= {"n_estimators": a.model.best_iteration, "early_stopping_rounds": 0}
    by_hand = make_model(a.kind, contract, params, config.seed)
    by_hand.fit(ordered.reset_index(drop=True), None)
    np.testing.assert_array_equal(b.model.predict(rows), by_hand.predict(rows))
    if a.kind == "lightgbm":
        assert b.model.booster.current_iteration() == a.model.best_iteration
    assert not np.allclose(a.model.predict(rows), b.model.predict(rows))
    with pytest.raises(ValueError, match="fit must be one of"):
        Backtest(contract, slice_features, replace(config, fit="everything"))


@pytest.mark.slow
def test_label_delay_what_if_lets_a_model_learn_from_yesterday(slice_run, slice_features) -> None:
    contract, result = slice_run
    assert with_label_delay(contract, "") is contract
    zero = with_label_delay(contract, "0h")
    assert zero.label_delay == timedelta(0) and contract.label_delay == timedelta(days=1)
    day = START + timedelta(days=5)
    honest = Backtest(contract, slice_features, result.config).fitter.fit_day(day)
    what_if = Backtest(zero, slice_features, result.config).fitter.fit_day(day)
    assert honest.window[-1] == (day - timedelta(days=2)).isoformat()
    assert what_if.window[-1] == (day - timedelta(days=1)).isoformat()
    assert what_if.latest_label_due <= _cutoff(day) < what_if.latest_label_due + timedelta(days=1)


def test_cli_options_reach_the_config(flights_contract) -> None:
    from pipelines.backtest import build_parser, config_from_args

    args = build_parser().parse_args(
        [
            "--dataset",
            "flights",
            "--fit",
            "window",
            "--label-delay",
            "0h",
            "--param",
            "learning_rate=0.05",
            "--workers",
            "1",
        ]
    )
    config = config_from_args(flights_contract, args, START, END)
    assert config.fit == "window" and config.workers == 1
    assert config.model_params["learning_rate"] == 0.05
    assert args.label_delay == "0h"
    default = config_from_args(
        flights_contract, build_parser().parse_args(["--dataset", "x"]), START, END
    )
    # The fit follows the contract's training.refit_on_window, as production trains.
    assert flights_contract.training.refit_on_window
    assert default.fit == "window" and default.model_params["learning_rate"] == 0.1
    split = flights_contract.model_copy(
        update={"training": flights_contract.training.model_copy(update={"refit_on_window": False})}
    )
    assert config_from_args(
        split, build_parser().parse_args(["--dataset", "x"]), START, END
    ).fit == ("split")
