"""driftloop.monitoring.drift agrees with Evidently 0.7's DataDriftPreset, column by column.

Each scenario runs Evidently itself (no sampling) and drift_table on the same frames;
verdicts must agree on at least 95% of the columns and the scores must match Evidently's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftloop.monitoring.drift import (
    EVIDENTLY_METHOD_NAMES,
    DriftSummary,
    column_drift,
    drift_table,
    wasserstein_sorted,
)
from driftloop.monitoring.drift_report import (
    evidently_drift_share,
    evidently_html,
    evidently_verdicts,
    run_evidently,
)

# Evidently's own internals warn about the +-inf values of the many_nans scenario.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

LETTERS = np.array(["a", "b", "c", "d"], dtype=object)
CARRIERS = np.array([f"C{i}" for i in range(16)], dtype=object)


def frame(n: int, seed: int, *, shift: float = 0.0, mix: bool = False, nans: bool = False):
    """A flights-like frame: 4 continuous, 2 few-valued numeric, 3 categorical columns."""
    rng = np.random.default_rng(seed)
    data: dict[str, np.ndarray] = {}
    for k in range(4):
        loc = shift * (k % 2 == 0)  # the shift moves half of the continuous columns
        data[f"num_{k}"] = rng.normal(loc * (1 + k), 1 + k, n)
    data["weekday"] = rng.integers(0, 7, n).astype(float)
    data["few"] = rng.integers(0, 3, n).astype(float)  # <= 5 values: Evidently's special case
    probs = [0.1, 0.2, 0.3, 0.4] if mix else [0.4, 0.3, 0.2, 0.1]
    data["letter"] = LETTERS[rng.choice(4, n, p=probs)]
    data["carrier"] = CARRIERS[rng.integers(0, 16, n)]
    data["origin"] = np.array(["EWR", "JFK"], dtype=object)[rng.integers(0, 2, n)]
    df = pd.DataFrame(data)
    if nans:
        df.loc[rng.random(n) < 0.7, "num_1"] = np.nan  # many NaNs
        df.loc[rng.random(n) < 0.4, "letter"] = None
        df.loc[rng.random(n) < 0.2, "num_3"] = np.inf  # Evidently drops +-inf with NaN
    return df


KINDS = {
    **{f"num_{k}": "numeric" for k in range(4)},
    "weekday": "numeric",
    "few": "numeric",
    "letter": "categorical",
    "carrier": "categorical",
    "origin": "categorical",
}

SCENARIOS = {
    "no_drift": (frame(3000, 1), frame(2500, 2)),
    "shifted_numeric": (frame(3000, 3), frame(2600, 4, shift=0.4)),
    "category_mix": (frame(4000, 5), frame(3000, 6, mix=True)),
    "many_nans": (frame(5000, 7, nans=True), frame(4000, 8, shift=0.3, mix=True, nans=True)),
    "small_samples": (frame(800, 9), frame(600, 10, shift=0.3, mix=True)),
}


@pytest.fixture(scope="module")
def results() -> dict[str, tuple[DriftSummary, dict]]:
    out = {}
    for name, (reference, current) in SCENARIOS.items():
        ours = drift_table(reference, current, KINDS)
        snapshot, info = run_evidently(reference, current, KINDS, sample_rows=10**9)
        assert not info["sampled"]
        out[name] = (ours, snapshot.dict())
    return out


@pytest.mark.slow
def test_verdicts_agree_with_evidently(results) -> None:
    agree = total = 0
    disagreements = []
    for name, (ours, snapshot) in results.items():
        theirs = evidently_verdicts(snapshot)
        assert set(theirs) == set(KINDS)
        for col in ours.columns:
            total += 1
            if col.drifted == theirs[col.column].drifted:
                agree += 1
            else:
                disagreements.append((name, col.column, col.score, theirs[col.column].score))
    assert agree / total >= 0.95, disagreements


@pytest.mark.slow
def test_methods_and_scores_match_evidently(results) -> None:
    for name, (ours, snapshot) in results.items():
        theirs = evidently_verdicts(snapshot)
        for col in ours.columns:
            ev = theirs[col.column]
            assert EVIDENTLY_METHOD_NAMES[col.method] == ev.method, (name, col.column)
            assert col.threshold == pytest.approx(ev.threshold)
            # float32 sorting for Wasserstein: ~1e-7 relative; the rest is float64.
            assert col.score == pytest.approx(ev.score, rel=1e-5, abs=1e-12), (name, col.column)


@pytest.mark.slow
def test_evidently_picks_the_tests_we_expect(results) -> None:
    large, _ = results["no_drift"]
    assert large.column("num_0").method == "wasserstein"
    assert large.column("weekday").method == "wasserstein"  # 7 values > 5
    assert large.column("few").method == "jensenshannon"  # 3 values <= 5
    assert large.column("letter").method == "jensenshannon"
    small, _ = results["small_samples"]
    assert small.column("num_0").method == "ks"
    assert small.column("few").method == "chisquare"
    assert small.column("letter").method == "chisquare"
    assert small.column("origin").method == "z"  # two values


@pytest.mark.slow
def test_scenarios_detect_what_they_should(results) -> None:
    assert results["no_drift"][0].drifted_columns == []
    assert not results["no_drift"][0].dataset_drifted
    shifted = results["shifted_numeric"][0]
    assert {"num_0", "num_2"} <= set(shifted.drifted_columns)
    assert "letter" not in shifted.drifted_columns
    assert "letter" in results["category_mix"][0].drifted_columns
    nans = results["many_nans"][0].column("num_1")
    assert nans.reference_missing_share == pytest.approx(0.7, abs=0.03)
    assert nans.current_missing_share == pytest.approx(0.7, abs=0.03)
    assert results["many_nans"][0].column("num_3").reference_missing_share == pytest.approx(
        0.2, abs=0.03
    )


@pytest.mark.slow
def test_dataset_share_follows_evidently(results) -> None:
    for name, (ours, snapshot) in results.items():
        verdicts = evidently_verdicts(snapshot)
        share = sum(v.drifted for v in verdicts.values()) / len(verdicts)
        assert ours.share_drifted == pytest.approx(share), name
        assert ours.dataset_drifted == (ours.share_drifted >= 0.5)
        if name != "many_nans":
            # Evidently's DriftedColumnsCount only replaces +-inf in columns that also hold
            # NaN (legacy get_drift_for_columns), so with an inf-only column it can disagree
            # with its own ValueDrift; elsewhere both agree with us.
            assert ours.share_drifted == pytest.approx(evidently_drift_share(snapshot)), name
        # Most drifted first, and only drifted columns.
        strengths = [ours.column(c).strength for c in ours.top]
        assert strengths == sorted(strengths, reverse=True)
        assert set(ours.top) == set(ours.drifted_columns)


def test_dataset_drift_rule() -> None:
    reference, current = frame(3000, 11), frame(3000, 12, shift=1.0, mix=True)
    kinds = {
        "num_0": "numeric",
        "num_2": "numeric",
        "letter": "categorical",
        "origin": "categorical",
    }
    summary = drift_table(reference, current, kinds)
    assert summary.drifted_columns == ["num_0", "num_2", "letter"]
    assert summary.share_drifted == pytest.approx(0.75)
    assert summary.dataset_drifted
    assert summary.top[0] == "num_2"  # the largest normed shift
    assert not drift_table(reference, current, kinds, drift_share_threshold=0.8).dataset_drifted


def test_wasserstein_is_exact_for_unequal_sizes() -> None:
    from scipy.stats import wasserstein_distance

    rng = np.random.default_rng(0)
    for n, m in [(1, 4), (7, 3), (1000, 999), (5000, 1234), (2000, 3000)]:
        u = np.sort(rng.standard_t(3, n))
        v = np.sort(rng.normal(0.3, 2, m))
        assert wasserstein_sorted(u, v) == pytest.approx(wasserstein_distance(u, v), rel=1e-12)
    ties_u = np.sort(rng.integers(0, 9, 4000).astype(float))
    ties_v = np.sort(rng.integers(0, 12, 3000).astype(float))
    assert wasserstein_sorted(ties_u, ties_v) == pytest.approx(
        wasserstein_distance(ties_u, ties_v), rel=1e-12
    )


def test_column_inputs_and_empty_sides() -> None:
    rng = np.random.default_rng(3)
    ref = rng.normal(size=2000)
    cur = rng.normal(1.0, 1.0, size=1500)
    from_arrays = column_drift(ref, cur, "numeric", column="x")
    from_series = column_drift(pd.Series(ref), pd.Series(cur), "numeric", column="x")
    nullable = column_drift(pd.Series(ref, dtype="Float64"), pd.Series(cur), "numeric", column="x")
    assert from_arrays == from_series == nullable
    assert from_arrays.drifted and from_arrays.method == "wasserstein"

    cats = pd.Series(LETTERS[rng.integers(0, 3, 2000)]).astype("category")
    as_category = column_drift(cats, cats.iloc[:1500], "categorical", column="c")
    as_object = column_drift(cats.astype(object), cats.iloc[:1500].astype(object), "categorical")
    assert as_category.score == pytest.approx(as_object.score)

    empty = column_drift(ref, np.full(100, np.nan), "numeric", column="gone")
    assert empty.method == "skipped" and not empty.drifted
    assert empty.current_missing_share == 1.0
    with pytest.raises(ValueError, match="kind"):
        column_drift(ref, cur, "text")  # type: ignore[arg-type]


@pytest.mark.slow
def test_html_report_is_written_and_says_it_is_a_sample(tmp_path: Path) -> None:
    reference, current = SCENARIOS["shifted_numeric"]
    path = evidently_html(
        reference, current, KINDS, tmp_path / "drift" / "report.html", sample_rows=1500, seed=7
    )
    assert path.exists() and path.stat().st_size > 100_000
    page = path.read_text(encoding="utf-8")
    assert "seeded random sample (seed 7)" in page
    assert "1,500 of 3,000 reference rows" in page
    assert "1,500 of 2,600 current rows" in page
