"""Drift report, label-due performance and the signals the retrain trigger reads.

Real Dagster instance, real MLflow (SQLite under the temp data root), real Parquet and
Evidently; synthetic features and numpy pyfunc models from tests/test_predictions_asset.py.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest
from test_predictions_asset import (
    TRAIN_DAYS,
    LogisticModel,
    day_list,
    logs,
    materializations,
    register,
    run,
    write_features,
    write_raw_clock,
)

from driftloop.monitoring.drift_outcome import read_drift_summary, summary_path
from driftloop.monitoring.realised import default_tolerance, performance_floor
from driftloop.monitoring.reference import reference_path, sample_features
from driftloop.monitoring.signals import (
    data_clock,
    labels_due,
    labels_due_at,
    parse_day_range,
    trailing_days,
    training_days,
)
from driftloop.monitoring.status_section import (
    format_monitoring_text,
    latest_monitoring,
    read_signals,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _check_evaluations(result) -> dict[tuple[str, str], bool]:
    out = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            out[(evaluation.check_name, evaluation.partition)] = evaluation.passed
    return out


# ------------------------------------------------------------------------------ helpers


def test_data_clock_and_label_due(flights_contract, flights_paths):
    assert data_clock(flights_contract, flights_paths) is None
    assert labels_due_at(flights_contract, "2013-01-09") == datetime(2013, 1, 11)
    write_raw_clock(flights_contract, flights_paths, "2013-01-09", "2013-01-09 23:30")
    write_raw_clock(flights_contract, flights_paths, "2013-01-10", "2013-01-10 23:59")
    clock = data_clock(flights_contract, flights_paths)
    assert clock == datetime(2013, 1, 10, 23, 59)
    assert labels_due(flights_contract, "2013-01-08", clock)
    assert not labels_due(flights_contract, "2013-01-09", clock)
    assert not labels_due(flights_contract, "2013-01-08", None)


def test_tolerances_and_day_ranges():
    assert default_tolerance("roc_auc") == (0.05, False)
    assert default_tolerance("rmse") == (0.10, True)
    assert performance_floor(0.7, True, 0.05, False) == pytest.approx(0.65)
    assert performance_floor(2.0, False, 0.1, True) == pytest.approx(2.2)
    assert parse_day_range("2013-01-30..2013-02-02") == [
        "2013-01-30",
        "2013-01-31",
        "2013-02-01",
        "2013-02-02",
    ]
    assert training_days({"dagster.partitions": "2013-01-05"}) == ["2013-01-05"]
    assert trailing_days("2013-03-01", 2) == ["2013-02-28", "2013-03-01"]


def test_reference_sample_is_seeded_and_bounded(flights_contract, flights_paths):
    days = day_list(*TRAIN_DAYS)
    write_features(flights_contract, flights_paths, days, rows=200)
    columns = list(flights_contract.features)
    first = sample_features(flights_paths, days, columns, max_rows=500, seed=3)
    again = sample_features(flights_paths, days, columns, max_rows=500, seed=3)
    assert len(first) == 500
    pd.testing.assert_frame_equal(first, again)
    whole = sample_features(flights_paths, days, columns, max_rows=10_000)
    assert len(whole) == 200 * len(days)


# -------------------------------------------------------------------------------- drift


@pytest.mark.slow
def test_drift_report_flags_a_shifted_day_and_passes_an_unshifted_one(
    flights_contract, flights_paths, data_root, dagster_instance
):
    # Enough rows that sampling noise alone stays well under the 0.1 Wasserstein threshold.
    write_features(flights_contract, flights_paths, day_list(*TRAIN_DAYS), rows=3000, seed=1)
    write_features(flights_contract, flights_paths, ["2013-01-09"], rows=3000, seed=2)
    write_features(flights_contract, flights_paths, ["2013-01-10"], seed=3, shift=1.5)
    version = register(flights_contract, data_root, LogisticModel(1.0), "champion")
    days = ["2013-01-09", "2013-01-10"]

    # A range run renders Evidently's page for its latest day(s) only; every day gets stats.
    drift_config = {"evidently_sample_rows": 2000, "html_latest_days": 1}
    config = {"ops": {"flights__drift_report": {"config": drift_config}}}
    result = run(flights_contract, dagster_instance, days, ["predictions", "drift_report"], config)
    assert result.success

    quiet, shifted = (read_drift_summary(flights_paths, d) for d in days)
    assert not quiet["breached"] and not quiet["dataset_drifted"], quiet
    assert not quiet["prediction_drifted"]
    assert quiet["share_drifted"] < 0.5
    assert shifted["breached"] and shifted["dataset_drifted"] and shifted["prediction_drifted"]
    assert shifted["share_drifted"] >= 0.5
    assert shifted["champion_version"] == version
    assert shifted["reference_rows"] == 3000 * 7 and shifted["current_rows"] == 600
    assert "temp" in shifted["drifted_features"] and shifted["top_columns"]

    for day in days:
        table = pd.read_parquet(flights_paths.partition_file("drift", day))
        assert set(table["column"]) == {*flights_contract.features, "prediction"}
    report = flights_paths.reports / "drift" / "2013-01-10.html"
    assert report.exists() and "driftloop-sample-note" in report.read_text()
    assert json.loads(summary_path(flights_paths, "2013-01-10").read_text())["report_path"]
    assert not (flights_paths.reports / "drift" / "2013-01-09.html").exists()
    assert read_drift_summary(flights_paths, "2013-01-09")["report_path"] is None
    assert reference_path(flights_paths, version).exists()

    meta = materializations(result, "drift_report")
    assert isinstance(meta["2013-01-10"]["share_drifted"], float)
    assert meta["2013-01-10"]["share_drifted"] >= 0.5 > meta["2013-01-09"]["share_drifted"]
    assert meta["2013-01-10"]["report_url"].startswith("file://")
    checks = _check_evaluations(result)
    assert checks[("drift", "2013-01-09")] is True
    assert checks[("drift", "2013-01-10")] is False

    # The calibrated score decides the verdict; the per-column tests are kept beside it.
    assert quiet["drift_score"] < quiet["drift_threshold"] <= shifted["drift_score"]
    assert shifted["ranked_features"][0]["contribution"] > 0
    signals = read_signals(flights_paths, [*days, "2013-01-11"])
    assert [(s.day, s.drift_breached, s.performance_breached) for s in signals] == [
        (date(2013, 1, 9), False, None),
        (date(2013, 1, 10), True, None),
        (date(2013, 1, 11), False, None),
    ]
    assert "drift score" in signals[1].detail and signals[2].detail == ""
    status = latest_monitoring(flights_paths)
    assert status["latest_drift"]["day"] == "2013-01-10" and status["latest_drift"]["breached"]
    assert status["latest_predictions"] == {"day": "2013-01-10", "model_versions": [version]}
    assert "BREACHED" in format_monitoring_text(status)

    # One day alone, window of 2 days: the check result comes from the one-day run.
    config["ops"]["flights__drift_report"]["config"] |= {"window_days": 2, "html": False}
    result = run(flights_contract, dagster_instance, ["2013-01-10"], ["drift_report"], config)
    assert result.success
    summary = read_drift_summary(flights_paths, "2013-01-10")
    assert summary["current_rows"] == 3000 + 600 and summary["window"] == days
    assert _check_evaluations(result) == {("drift", "2013-01-10"): False}


# -------------------------------------------------------------------------- performance


@pytest.mark.slow
def test_performance_waits_for_labels_then_judges_the_due_days(
    flights_contract, flights_paths, data_root, dagster_instance
):
    # The champion's holdout (2013-01-01..07) sets the pooled floor; days 9 and 10 follow.
    write_features(flights_contract, flights_paths, day_list(*TRAIN_DAYS), seed=6)
    write_features(flights_contract, flights_paths, ["2013-01-09"], seed=4)
    write_features(flights_contract, flights_paths, ["2013-01-10"], seed=5, random_labels=True)
    train_days = ("2012-12-25", "2012-12-31")
    version = register(
        flights_contract, data_root, LogisticModel(1.0), "champion", 0.72, train_days
    )
    days = ["2013-01-09", "2013-01-10"]
    assert run(flights_contract, dagster_instance, days, ["predictions"]).success

    write_raw_clock(flights_contract, flights_paths, "2013-01-10", "2013-01-10 23:59")
    result = run(flights_contract, dagster_instance, days, ["performance"])
    assert result.success
    assert materializations(result, "performance") == {}
    text = logs(dagster_instance, result.run_id)
    assert "labels not due yet: due at 2013-01-11 00:00:00" in text
    assert not flights_paths.table("performance").exists()

    # The lake reaches 2013-01-11 06:00: day 9's labels are due, day 10's are not.
    write_raw_clock(flights_contract, flights_paths, "2013-01-11", "2013-01-11 06:00")
    result = run(flights_contract, dagster_instance, days, ["performance"])
    assert result.success
    assert sorted(materializations(result, "performance")) == ["2013-01-09"]
    row = pd.read_parquet(flights_paths.partition_file("performance", "2013-01-09")).iloc[0]
    assert row["model_version"] == version and row["labelled_rows"] == 590
    assert row["reference"] == pytest.approx(0.72) and row["floor"] == pytest.approx(0.67)
    assert row["roc_auc"] > 0.72 and not row["breached"]
    assert row["scored_from"] == "predictions"
    assert _check_evaluations(result) == {("performance_floor", "2013-01-09"): True}

    assert row["pooled_days"] == 1 and row["pooled_rows"] == 590
    assert row["pooled_floor"] < row["pooled_reference"]

    # Day 10's labels were random: once due, the champion's AUC pooled over days 9 and 10
    # falls through the floor its holdout's bootstrap sets at that row count.
    write_raw_clock(flights_contract, flights_paths, "2013-01-12", "2013-01-12 07:00")
    result = run(flights_contract, dagster_instance, ["2013-01-10"], ["performance"])
    assert result.success
    meta = materializations(result, "performance")["2013-01-10"]
    assert meta["model_version"] == version and meta["reference"] == pytest.approx(0.72)
    assert isinstance(meta["roc_auc"], float) and meta["roc_auc"] < 0.67
    assert meta["breached"] is True and not math.isnan(meta["log_loss"])
    assert meta["pooled_days"] == 2 and meta["pooled_value"] < meta["pooled_floor"]
    assert _check_evaluations(result) == {("performance_floor", "2013-01-10"): False}

    signals = read_signals(flights_paths, days)
    assert [s.performance_breached for s in signals] == [False, True]
    assert [s.drift_breached for s in signals] == [False, False]
    performance = latest_monitoring(flights_paths)["performance"]
    assert [(p["day"], p["breached"]) for p in performance] == [
        ("2013-01-09", False),
        ("2013-01-10", True),
    ]
    assert np.isfinite(performance[-1]["value"])
