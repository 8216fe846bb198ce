"""Evaluation tables, the paired bootstrap and the promotion gate, on synthetic scores."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mean_squared_error, roc_auc_score

from driftloop.data.contract import Contract
from driftloop.evaluation.bootstrap import paired_bootstrap, point_metric, weighted_metric
from driftloop.evaluation.comparison import evaluate
from driftloop.evaluation.gate import GateConfig, GateDecision, decide
from driftloop.evaluation.report_html import render_report

N = 12_000
CARRIERS = ["AA", "B6", "DL", "EV", "UA", "9E"]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@pytest.fixture(scope="module")
def holdout() -> tuple[pd.DataFrame, np.ndarray]:
    """Labels driven by a latent signal; models see it through more or less noise."""
    rng = np.random.default_rng(7)
    signal = rng.normal(size=N)
    label = (rng.random(N) < _sigmoid(1.5 * signal - 1.2)).astype(float)
    frame = pd.DataFrame(
        {
            "flight_id": [f"f{i}" for i in range(N)],
            "carrier": rng.choice(CARRIERS, N, p=[0.25, 0.25, 0.2, 0.15, 0.1, 0.05]),
            "origin": rng.choice(["EWR", "JFK", "LGA"], N),
            "label": label,
        }
    )
    return frame, signal


def _model(signal: np.ndarray, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return _sigmoid(1.5 * (signal + rng.normal(0, noise, len(signal))) - 1.2)


def _run(contract: Contract, frame: pd.DataFrame, challenger, reference, **kw):
    return evaluate(contract, frame, challenger, reference, "champion v1", samples=200, **kw)


def test_weighted_auc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(1)
    y = (rng.random(3000) < 0.3).astype(float)
    score = np.round(rng.random(3000) * 0.5 + 0.3 * y, 2)  # many ties
    assert point_metric("roc_auc", y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    # Integer weights act like repeating rows.
    weights = rng.integers(0, 3, size=3000)
    repeated = np.repeat(np.arange(3000), weights)
    expected = roc_auc_score(y[repeated], score[repeated])
    got = weighted_metric("roc_auc", y, score, weights[None, :])[0]
    assert got == pytest.approx(expected, abs=1e-9)
    value = rng.normal(size=500)
    pred = value + rng.normal(size=500)
    rmse = point_metric("rmse", value, pred)
    assert rmse == pytest.approx(math.sqrt(mean_squared_error(value, pred)))


def test_bootstrap_is_seeded_and_reproducible(flights_contract, holdout) -> None:
    frame, signal = holdout
    c, r = _model(signal, 0.5, 1), _model(signal, 0.8, 2)
    a = _run(flights_contract, frame, c, r, seed=11)
    b = _run(flights_contract, frame, c, r, seed=11)
    other = _run(flights_contract, frame, c, r, seed=12)
    assert np.array_equal(a.boot_diffs, b.boot_diffs)
    assert np.array_equal(a.slice_boot, b.slice_boot, equal_nan=True)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert not np.array_equal(a.boot_diffs, other.boot_diffs)
    # Paired: swapping the models mirrors every resampled difference exactly.
    y = frame["label"].to_numpy()
    fwd, _ = paired_bootstrap("roc_auc", True, y, c, r, samples=50, seed=3)
    back, _ = paired_bootstrap("roc_auc", True, y, r, c, samples=50, seed=3)
    assert np.allclose(fwd, -back)


def test_clearly_better_challenger_is_promoted(flights_contract, holdout) -> None:
    frame, signal = holdout
    result = _run(flights_contract, frame, _model(signal, 0.3, 1), _model(signal, 1.0, 2))
    assert result.ci_low > 0
    assert result.diff == pytest.approx(
        roc_auc_score(frame.label, _model(signal, 0.3, 1))
        - roc_auc_score(frame.label, _model(signal, 1.0, 2))
    )
    decision = decide(result, GateConfig(), is_first=False)
    assert decision.promote, decision.reasons
    assert decision.reasons[0].startswith("better than champion v1")
    assert "90% CI" in decision.reasons[0]  # two-sided 90%: a one-sided 95% bound
    assert any("no slice is worse" in r for r in decision.reasons)
    # Another confidence level re-reads the same resamples: a narrower interval.
    loose = decide(result, GateConfig(confidence=0.8), is_first=False)
    assert decision.ci_low < loose.ci_low < loose.ci_high < decision.ci_high
    assert "80% CI" in loose.reasons[0]
    # A margin above the whole interval turns the same evidence into a rejection.
    strict = decide(result, GateConfig(margin=result.ci_high + 0.01), is_first=False)
    assert not strict.promote


def test_equal_challenger_is_not_promoted(flights_contract, holdout) -> None:
    frame, signal = holdout
    result = _run(flights_contract, frame, _model(signal, 0.6, 1), _model(signal, 0.6, 2))
    assert result.ci_low < 0 < result.ci_high
    decision = decide(result, GateConfig(), is_first=False)
    assert not decision.promote
    assert "better than champion v1" in decision.reasons[0]
    assert "needs the lower bound above the margin" in decision.reasons[0]


def test_worse_challenger_is_rejected_with_numbers(flights_contract, holdout) -> None:
    frame, signal = holdout
    result = _run(flights_contract, frame, _model(signal, 1.2, 1), _model(signal, 0.3, 2))
    decision = decide(result, GateConfig(), is_first=False)
    assert not decision.promote
    assert decision.ci_high < 0
    assert decision.reasons[0].startswith("worse than champion v1")
    assert f"{result.diff:+.4f}" in decision.reasons[0]


def test_a_chosen_schedule_replaces_the_champion_unless_the_challenger_is_worse(
    flights_contract, holdout
) -> None:
    frame, signal = holdout
    scheduled = GateConfig(require="not_worse")
    equal = _run(flights_contract, frame, _model(signal, 0.6, 1), _model(signal, 0.6, 2))
    decision = decide(equal, scheduled, is_first=False)
    assert decision.promote and decision.reasons[0].startswith("not worse than champion v1")
    worse = _run(flights_contract, frame, _model(signal, 1.2, 1), _model(signal, 0.3, 2))
    refused = decide(worse, scheduled, is_first=False)
    assert not refused.promote and refused.reasons[0].startswith("worse than champion v1")
    # A first model still has to beat the baseline.
    assert not decide(equal, scheduled, is_first=True).promote
    with pytest.raises(ValueError, match="require"):
        GateConfig(require="maybe")


def test_the_bootstrap_draws_whole_days_so_a_difference_that_swings_by_day_is_not_confident(
    flights_contract, holdout
) -> None:
    frame, signal = holdout
    day = np.arange(len(frame)) % 7
    by_day = frame.assign(partition_date=[f"2013-05-0{d + 1}" for d in day])
    # The challenger is much better on three days and worse on four: worse overall, by an
    # amount that rows alone would call certain, but that the days do not bear out.
    rng = np.random.default_rng(5)
    noise = np.array([0.3, 1.4, 0.35, 1.4, 0.4, 1.35, 1.4])[day]
    challenger = _sigmoid(1.5 * (signal + rng.normal(0, 1, len(signal)) * noise) - 1.2)
    reference = _model(signal, 0.8, 2)
    scheduled = GateConfig(require="not_worse")

    days = _run(flights_contract, by_day, challenger, reference)
    assert days.resampled_days == 7
    assert days.diff < 0 and days.ci_low < 0 < days.ci_high
    kept = decide(days, scheduled, is_first=False)
    assert kept.promote, kept.reasons
    assert "resamples of its 7 days (whole days)" in kept.reasons[0]
    assert days.to_dict()["bootstrap"]["resampled_days"] == 7

    rows = _run(flights_contract, by_day, challenger, reference, resample_by=None)
    assert rows.resampled_days is None and rows.diff == days.diff
    assert rows.ci_high < 0
    refused = decide(rows, scheduled, is_first=False)
    assert not refused.promote and f"of its {len(frame):,} rows" in refused.reasons[0]

    # Too few days for distinct day resamples: rows are drawn, as without the column.
    short = by_day.assign(partition_date=[f"2013-05-0{d % 4 + 1}" for d in day])
    assert _run(flights_contract, short, challenger, reference).resampled_days is None


def test_slice_regression_blocks_promotion(flights_contract, holdout) -> None:
    frame, signal = holdout
    challenger = _model(signal, 0.3, 1)
    reference = _model(signal, 0.8, 2)
    # The challenger is much better overall but useless for one carrier.
    ua = (frame["carrier"] == "UA").to_numpy()
    challenger[ua] = np.random.default_rng(5).random(ua.sum())
    result = _run(flights_contract, frame, challenger, reference)
    assert result.ci_low > 0  # overall it still wins
    decision = decide(result, GateConfig(), is_first=False)
    assert not decision.promote
    assert decision.failed_slices == ["carrier=UA"]
    (reason,) = [r for r in decision.reasons if r.startswith("slice carrier=UA")]
    assert "worse than champion v1 by more than the tolerance 0.0200" in reason
    # Below min_slice_rows the slice is reported but not gated.
    lenient = decide(result, GateConfig(min_slice_rows=int(ua.sum()) + 1), is_first=False)
    assert lenient.promote, lenient.reasons
    # The first model is only held to the baseline floor: slices are information.
    first = decide(result, GateConfig(), is_first=True)
    assert first.promote
    assert any(r.startswith("(information) slice carrier=UA") for r in first.reasons)


def test_first_model_must_beat_the_baseline(flights_contract, holdout) -> None:
    frame, signal = holdout
    worse = evaluate(
        flights_contract,
        frame,
        _model(signal, 1.5, 1),
        _model(signal, 0.4, 2),
        "baseline (scikit-learn)",
        samples=100,
    )
    decision = decide(worse, GateConfig(), is_first=True)
    assert not decision.promote
    assert decision.reasons[0].startswith("worse than baseline (scikit-learn)")
    assert any(r.startswith("first model") for r in decision.reasons)
    better = evaluate(
        flights_contract, frame, _model(signal, 0.4, 1), _model(signal, 1.5, 2), "baseline"
    )
    assert decide(better, GateConfig(), is_first=True).promote


def test_evaluation_tables_json_and_report(flights_contract, holdout) -> None:
    frame, signal = holdout
    frame = frame.copy()
    frame.loc[:99, "label"] = np.nan  # unlabelled rows are left out
    result = _run(flights_contract, frame, _model(signal, 0.3, 1), _model(signal, 0.9, 2))
    assert result.n_rows == N - 100
    overall = result.overall.set_index("metric")
    assert {"roc_auc", "log_loss", "brier", "precision", "recall"} <= set(overall.index)
    assert overall.loc["roc_auc", "diff"] > 0
    assert overall.loc["log_loss", "diff"] == pytest.approx(
        overall.loc["log_loss", "reference"] - overall.loc["log_loss", "challenger"]
    )
    slices = result.slices
    assert set(slices["slice"]) == {"carrier", "origin"}
    for _, part in slices.groupby("slice"):
        assert part["rows"].sum() == N - 100
    assert set(slices[slices.slice == "carrier"].value) == set(CARRIERS)
    assert (slices["ci_low"] <= slices["diff"] + 0.05).all()
    cal = result.calibration
    assert sorted(cal["model"].unique()) == ["challenger", "champion v1"]
    for _, part in cal.groupby("model"):
        assert list(part["bin"]) == list(range(1, 11))
        assert part["count"].sum() == N - 100
        assert part["mean_predicted"].is_monotonic_increasing
    # Calibrated by construction: observed rates follow the predictions.
    part = cal[cal.model == "challenger"]
    assert np.corrcoef(part.mean_predicted, part.observed_rate)[0, 1] > 0.95
    payload = json.loads(json.dumps(result.to_dict()))
    assert payload["bootstrap"]["samples"] == 200
    decision = decide(result, GateConfig(), is_first=False)
    assert GateDecision.from_dict(json.loads(json.dumps(decision.to_dict()))) == decision
    html = render_report(result, decision, holdout="2013-03-01 to 2013-03-07")
    assert html.startswith("<!DOCTYPE html>")
    for text in ("PROMOTE to champion", "Overall metrics", "Slices", "Calibration", "<svg"):
        assert text in html
    assert "2013-03-01 to 2013-03-07" in html
    assert "<script" not in html and "<link" not in html and "src=" not in html


def test_regression_sign_and_slices() -> None:
    contract = Contract.model_validate(
        {
            "name": "taxi",
            "event_time": {"column": "t"},
            "target": {"column": "fare"},
            "task": "regression",
            "label_delay": "1h",
            "partitions": {"start": "2024-01-01"},
            "columns": {
                "t": {"type": "timestamp"},
                "fare": {"type": "numeric"},
                "km": {"type": "numeric"},
                "zone": {"type": "categorical"},
            },
            "features": ["km", "zone"],
            "slices": ["zone", "km"],
        }
    )
    rng = np.random.default_rng(3)
    n = 4000
    km = rng.exponential(5, n)
    fare = 3 + 2 * km + rng.normal(0, 1, n)
    frame = pd.DataFrame({"km": km, "zone": rng.choice(["a", "b"], n), "label": fare})
    good = 3 + 2 * km
    bad = 3 + 2 * km + rng.normal(0, 3, n)
    result = evaluate(contract, frame, good, bad, "champion v2", samples=100)
    assert result.metric == "rmse" and not result.higher_is_better
    assert result.diff > 0 and result.ci_low > 0  # lower RMSE = better = positive
    assert result.calibration is None
    assert set(result.slices.query("slice == 'km'")["value"]).__len__() == 5  # quintiles
    assert decide(result, GateConfig(slice_tolerance=0.1), is_first=False).promote


def test_holdout_far_from_validation_is_warned() -> None:
    from driftloop.evaluation.challenger import HOLDOUT_SHIFT_WARNING, holdout_shift_warning

    # A holiday week: the holdout RMSE 40% above validation's.
    warning = holdout_shift_warning("rmse", 10.0, 14.0)
    assert warning is not None and "40% above validation's" in warning
    assert "docs/cli.md" in warning
    assert holdout_shift_warning("rmse", 10.0, 10.0 * (1 + HOLDOUT_SHIFT_WARNING / 2)) is None
    assert "below" in (holdout_shift_warning("roc_auc", 0.8, 0.55) or "")
    assert holdout_shift_warning("rmse", None, 14.0) is None
