"""Explanations: contributions add up to the raw score; importance in the eval report;
top contributions beside the batch scorer's predictions."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from driftloop.data.contract import Contract
from driftloop.data.lake import write_parquet_atomic
from driftloop.evaluation.comparison import evaluate
from driftloop.evaluation.explain import explain, importance_table, mean_abs, top_contributions
from driftloop.evaluation.report_html import render_report
from driftloop.paths import DatasetPaths
from driftloop.serving.batch import TOP_CONTRIBUTIONS, Explainer, Scorer, score_day
from driftloop.training.baseline_model import BaselineModel
from driftloop.training.lightgbm_model import LightGBMModel

FEATURES = ["distance", "dep_hour", "carrier"]
DAY = "2013-01-08"


def _frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    carrier = rng.choice(["AA", "DL", "UA", "EV"], rows)
    distance = rng.uniform(100, 2500, rows)
    hour = rng.integers(5, 23, rows).astype("float64")
    hour[rng.random(rows) < 0.05] = np.nan
    logit = 0.002 * (distance - 1000) + 0.3 * np.nan_to_num(hour - 14) + (carrier == "EV") * 1.0
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype("float64")
    return pd.DataFrame(
        {
            "flight_id": [f"{DAY}-{i}" for i in range(rows)],
            "event_time": pd.date_range(DAY, periods=rows, freq="min"),
            "partition_date": DAY,
            "distance": distance,
            "dep_hour": hour,
            "carrier": carrier,
            "origin": rng.choice(["EWR", "JFK", "LGA"], rows),
            "label": label,
        }
    )


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame]:
    return _frame(3000, 1), _frame(800, 2)


@pytest.mark.parametrize("kind", [LightGBMModel, BaselineModel])
@pytest.mark.parametrize("task", ["binary", "regression"])
def test_contributions_sum_to_the_raw_score(data, kind, task) -> None:
    train, test = data
    if task == "regression":
        carrier_effect = (train["carrier"] == "EV") * 5.0
        target = train["distance"] / 100 + train["dep_hour"].fillna(0) + carrier_effect
        train = train.assign(label=target)
    model = kind(FEATURES, ["carrier"], task, {"n_estimators": 40} if kind is LightGBMModel else {})
    model.fit(train.iloc[:2400], train.iloc[2400:])
    explanation = explain(model, test)
    assert explanation.values.shape == (len(test), len(FEATURES))
    np.testing.assert_allclose(explanation.raw_score(), model.raw_score(test), atol=1e-9)
    link = 1 / (1 + np.exp(-model.raw_score(test))) if task == "binary" else model.raw_score(test)
    np.testing.assert_allclose(link, model.predict(test), atol=1e-9)
    # Every feature matters in this data; no contribution column is identically zero.
    assert all(v > 0 for v in mean_abs(explanation).values())


def test_top_contributions_are_the_largest(data) -> None:
    train, test = data
    model = LightGBMModel(FEATURES, ["carrier"], "binary", {"n_estimators": 30})
    model.fit(train.iloc[:2400], train.iloc[2400:])
    explanation = explain(model, test.head(50))
    tops = top_contributions(explanation, 2)
    for row, top in zip(explanation.values, tops, strict=True):
        largest = sorted(np.abs(row))[-2:][::-1]
        assert [abs(t["contribution"]) for t in top] == pytest.approx(largest)


def test_eval_report_shows_importance_and_which_direction_is_better(
    flights_contract: Contract, data
) -> None:
    train, test = data
    model = LightGBMModel(FEATURES, ["carrier"], "binary", {"n_estimators": 60})
    model.fit(train.iloc[:2400], train.iloc[2400:])
    good, noisy = model.predict(test), np.clip(model.predict(test) + 0.2, 0, 1)
    result = evaluate(
        flights_contract,
        test,
        good,
        noisy,
        "champion v1",
        samples=50,
        explanation=explain(model, test),
    )
    overall = result.overall.set_index("metric")
    assert (
        overall.loc["log_loss", "better"] == "lower"
        and overall.loc["roc_auc", "better"] == "higher"
    )
    assert overall.loc["log_loss", "change"] < 0 < overall.loc["log_loss", "diff"]
    importance = result.importance
    everyone = importance[importance["slice"] == "(all)"].set_index("feature")
    expected = importance_table(explain(model, test))
    assert everyone["mean_abs_contribution"].to_dict() == pytest.approx(
        expected.set_index("feature")["mean_abs_contribution"].to_dict()
    )
    by_carrier = importance[importance["slice"] == "carrier"]
    assert set(by_carrier["value"]) == {"AA", "DL", "UA", "EV"}
    assert by_carrier.groupby("value")["rows"].first().sum() == len(test)
    html = render_report(result)
    assert 'class="importance-chart"' in html and "By carrier" in html and "By origin" in html
    log_loss_row = html[html.index("<td class='l'>log_loss</td>") :].split("</tr>")[0]
    assert "lower" in log_loss_row and "good" in log_loss_row and ">-0." in log_loss_row
    assert json.loads(json.dumps(result.to_dict()))["importance"][0]["slice"] == "(all)"


def test_batch_scorer_writes_top_contributions(
    flights_contract: Contract, flights_paths: DatasetPaths, data
) -> None:
    train, test = data
    model = LightGBMModel(FEATURES, ["carrier"], "binary", {"n_estimators": 30})
    model.fit(train.iloc[:2400], train.iloc[2400:])
    write_parquet_atomic(test, flights_paths.partition_file("features", DAY))
    scored = score_day(
        flights_contract,
        flights_paths,
        DAY,
        Scorer(lambda table, threads=0: model.predict(table, threads), "1"),
        batch_rows=300,
        explainer=Explainer(model, top=3),
    )
    written = pq.read_table(scored.path).to_pandas()
    assert len(written) == len(test)
    expected = top_contributions(explain(model, test), 3)
    for text, top in zip(written[TOP_CONTRIBUTIONS], expected, strict=True):
        row = json.loads(text)
        assert list(row) == [t["feature"] for t in top]
        assert list(row.values()) == pytest.approx([t["contribution"] for t in top], abs=1e-6)
