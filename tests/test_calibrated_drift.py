"""Drift that matters, on synthetic days where the truth is known by construction.

A real LightGBM champion is trained on a 60-day reference window; its own gain importance
weights the features. Days resampled from the window must rarely breach; a shift that costs
the champion accuracy in its most important feature must be flagged within 3 days; the same
shift in an unimportant feature must not; a feature with one value per day never alarms
alone.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from driftloop.data.retraining import TriggerPolicy
from driftloop.monitoring.calibrated_drift import calibrate, normalised_weights, score_day
from driftloop.monitoring.performance import metric_value

THRESHOLD = TriggerPolicy().drift_threshold
KINDS = {"signal": "numeric", "other": "numeric", "noise": "numeric", "weather": "numeric"}
KINDS |= {"weekday": "categorical"}
DAYS, ROWS = 60, 300


def _day(rng: np.random.Generator, day: int, rows: int = ROWS) -> pd.DataFrame:
    """One day: weather has a mean of its own each day, the weekday one value per day."""
    frame = pd.DataFrame(
        {
            "signal": rng.normal(0, 1, rows),
            "other": rng.normal(0, 1, rows),
            "noise": rng.normal(0, 1, rows),
            "weather": rng.normal(rng.normal(0, 1), 0.5, rows),
            "weekday": str(day % 7),
        }
    )
    logit = 2.0 * frame["signal"] + 0.7 * frame["other"] + 0.3 * frame["weather"]
    frame["label"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(float)
    frame["partition_date"] = f"d{day:03d}"
    return frame


@pytest.fixture(scope="module")
def world():
    import lightgbm as lgb

    rng = np.random.default_rng(7)
    reference = pd.concat([_day(rng, d) for d in range(DAYS)], ignore_index=True)
    x = reference[list(KINDS)].assign(weekday=reference["weekday"].astype(int))
    params = {"objective": "binary", "num_leaves": 15, "verbose": -1, "seed": 1}
    booster = lgb.train(params, lgb.Dataset(x, reference["label"]), num_boost_round=60)

    def predict(frame: pd.DataFrame) -> np.ndarray:
        return booster.predict(frame[list(KINDS)].assign(weekday=frame["weekday"].astype(int)))

    gains = booster.feature_importance(importance_type="gain")
    importance = dict(zip(KINDS, map(float, gains), strict=True))
    reference["prediction"] = predict(reference)
    calibration = calibrate(reference, "partition_date", KINDS, importance)
    return {"rng": rng, "reference": reference, "predict": predict, "calibration": calibration}


def _scored(world, frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame["prediction"] = world["predict"](frame)
    return frame


def test_the_champions_importance_orders_the_features(world) -> None:
    weights = world["calibration"].weights
    assert max(weights, key=weights.get) == "signal"
    assert weights["noise"] < 0.1
    assert sum(weights.values()) == pytest.approx(1.0)


def test_days_resampled_from_the_reference_rarely_breach(world) -> None:
    rng = np.random.default_rng(11)
    reference = world["reference"]
    days = reference["partition_date"].unique()
    breaches = 0
    for _ in range(100):
        rows = reference[reference["partition_date"] == rng.choice(days)]
        day = rows.sample(n=len(rows), replace=True, random_state=int(rng.integers(1 << 30)))
        breaches += score_day(world["calibration"], day).score >= THRESHOLD
    assert breaches <= 5


def _shifted(world, column: str, shift: float, n_days: int = 3) -> list[pd.DataFrame]:
    rng = np.random.default_rng(23)
    days = []
    for d in range(n_days):
        day = _day(rng, DAYS + d)
        day[column] = day[column] + shift  # the feature as the model sees it moved
        days.append(_scored(world, day))
    return days


def test_a_costly_shift_in_the_most_important_feature_is_flagged_within_3_days(world) -> None:
    clean = [_scored(world, _day(np.random.default_rng(23), DAYS + d)) for d in range(3)]
    shifted = _shifted(world, "signal", 3.0)
    before = np.mean([metric_value("roc_auc", d["label"], d["prediction"]) for d in clean])
    after = np.mean([metric_value("roc_auc", d["label"], d["prediction"]) for d in shifted])
    assert after < before - 0.05  # the shift costs the champion accuracy
    scores = [score_day(world["calibration"], d) for d in shifted]
    assert any(s.score >= THRESHOLD for s in scores)
    assert scores[0].ranked()[0]["column"] == "signal"  # ranked by importance to the champion


def test_the_same_shift_in_an_unimportant_feature_is_not_flagged(world) -> None:
    scores = [score_day(world["calibration"], d).score for d in _shifted(world, "noise", 3.0)]
    assert max(scores) < THRESHOLD


def test_a_feature_with_one_value_per_day_never_alarms_alone() -> None:
    rng = np.random.default_rng(3)
    reference = pd.concat([_day(rng, d) for d in range(DAYS)], ignore_index=True)
    calibration = calibrate(
        reference, "partition_date", {"weekday": "categorical"}, {"weekday": 1.0}
    )
    scores = [score_day(calibration, _day(rng, DAYS + d)).score for d in range(28)]
    assert max(scores) < THRESHOLD


def test_weights_are_equal_when_the_model_reports_no_importance() -> None:
    assert normalised_weights({}, ["a", "b"]) == {"a": 0.5, "b": 0.5}
    assert normalised_weights({"a": 3.0, "b": 1.0}, ["a", "b"]) == {"a": 0.75, "b": 0.25}
