"""The benchmark suite compares like with like: both sides of each case compute the same thing.

Small sizes, no timed asserts (timings live in `python -m benchmarks`, not here):

- drift: `drift_table` and Evidently's DataDriftPreset agree column by column on the
  benchmark's generated scenarios, and the generator drifts what it says it drifts;
- orchestration: the retraining path launched through the dagster CLI and the same
  framework-free functions in one process train the same model (same holdout metrics) and
  reach the same gate decision; the CLI side is one run, executed in one process,
  and its time split by phase accounts for the whole wall time;
- scoring: the predictions step writes exactly what bare `Booster.predict` returns on the
  feature matrix of the same partition;
- the runner's rows and table, and the lanes `--quick` uses: every known case is
  scheduled, and a case run in its own process hands back its rows (or an error row).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from benchmarks import ROW_KEYS, median, paired_ratio, row
from benchmarks.__main__ import discover, table
from benchmarks.cases import drift as drift_case
from benchmarks.cases import orchestration, scoring, serving
from benchmarks.data import (
    CATEGORY_MIXES,
    DRIFT_KINDS,
    NUMERIC_SHIFTS,
    drift_frames,
    replicated_flights,
    write_drift_frames,
)
from benchmarks.lanes import run_in_lanes, schedule

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),
]

RETRAIN_DAYS = 16  # holdout 7 + validation 7 + 2 training days


# ----------------------------------------------------------------------------- drift


@pytest.mark.slow
def test_drift_sides_agree_on_the_generated_scenarios(tmp_path: Path) -> None:
    pairs = []
    for scenario in ("none", "mixed"):
        ref, cur = write_drift_frames(tmp_path, 3000, scenario, seed=3)
        pairs.append((scenario, str(ref), str(cur)))
    ours = drift_case._ours(pairs)
    theirs = drift_case._evidently(pairs)
    share, disagree = drift_case.agreement(ours, theirs)
    assert share >= drift_case.TARGET_AGREEMENT, disagree
    # Same tests picked for each column (Evidently's display names).
    from driftloop.monitoring.drift import EVIDENTLY_METHOD_NAMES

    for scenario in ours:
        for column, method in ours[scenario]["methods"].items():
            assert EVIDENTLY_METHOD_NAMES[method] == theirs[scenario]["methods"][column]


def test_drift_generator_drifts_what_it_says() -> None:
    from driftloop.monitoring.drift import drift_table

    reference, current = drift_frames(50_000, "mixed", seed=5)
    assert list(reference.columns) == list(DRIFT_KINDS)
    assert reference.isna().any().sum() >= 4  # missing values in several columns
    summary = drift_table(reference, current, DRIFT_KINDS)
    for column, shift in NUMERIC_SHIFTS.items():
        assert summary.column(column).drifted == (shift >= 0.1), (column, shift)
    for column, mix in CATEGORY_MIXES.items():
        assert summary.column(column).drifted == (mix >= 0.3), (column, mix)
    quiet = drift_table(*drift_frames(50_000, "none", seed=5), DRIFT_KINDS)
    assert quiet.drifted_columns == []


def test_replicated_flights_keep_types_gaps_and_unique_ids() -> None:
    frame = replicated_flights(20_000, 10, seed=1)
    days = frame["scheduled_departure"].dt.strftime("%Y-%m-%d")
    assert days.nunique() == 10 and days.value_counts().min() == 2000
    assert frame["flight_id"].is_unique
    assert frame["temp"].isna().any() and frame["arr_delay"].isna().any()
    assert frame["carrier"].map(type).eq(str).all()


# --------------------------------------------------------------- retraining and scoring


@pytest.fixture(scope="module")
def retrained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The same raw lake retrained twice: in one process, and through the dagster CLI."""
    folder = tmp_path_factory.mktemp("bench")
    source, days = orchestration.prepare_raw(folder, RETRAIN_DAYS)
    own = orchestration.fresh_copy(source, folder / "own")
    cli = orchestration.fresh_copy(source, folder / "cli")
    shutil.rmtree(source)
    own_result = orchestration.retrain_in_process(own, days)
    cli_result = orchestration.retrain_cli(cli, folder / "home", days)
    return {
        "own": own,
        "cli": cli,
        "days": days,
        "own_result": own_result,
        "cli_result": cli_result,
        "home": folder / "home",
    }


@pytest.mark.slow
def test_cli_and_in_process_retrain_train_the_same_model(retrained: dict) -> None:
    own = orchestration.registered_holdout_metrics(retrained["own"])
    cli = orchestration.registered_holdout_metrics(retrained["cli"])
    assert own and own == cli
    assert retrained["own_result"]["feature_rows"] > 10_000

    def decision(root: Path) -> dict:
        # One report per model, named by version and run id (the two sides' runs differ).
        [path] = (root / "reports" / "flights" / "eval").glob("v1-*.json")
        return json.loads(path.read_text())["decision"]

    own_decision, cli_decision = decision(retrained["own"]), decision(retrained["cli"])
    for key in ("promote", "metric", "diff", "ci_low", "ci_high"):
        assert own_decision[key] == cli_decision[key], key


@pytest.mark.slow
def test_cli_side_is_one_run_in_one_process_on_the_project_instance(retrained: dict) -> None:
    from pipelines.instance import DAGSTER_YAML

    assert (retrained["home"] / "dagster.yaml").read_text() == DAGSTER_YAML
    result = retrained["cli_result"]
    phases = result["phases"]
    days = len(retrained["days"])
    assert phases["job"] == "__ASSET_JOB"
    assert phases["tags"]["dagster/asset_partition_range_start"] == retrained["days"][0]
    assert phases["tags"]["dagster/asset_partition_range_end"] == retrained["days"][-1]
    # A features partition per day, then model, eval_report and promotion once each.
    assert phases["planned"] == phases["materializations"] == days + 3
    assert phases["step_processes"] == 1  # the in-process executor
    parts = [phases[phase] for phase in orchestration.PHASES]
    assert min(parts) >= 0 and abs(sum(parts) - result["seconds"]) < 1e-6, phases


@pytest.mark.slow
def test_scoring_step_writes_what_bare_booster_predict_returns(retrained: dict) -> None:
    from driftloop.training.registry import make_client, set_alias

    root, day = retrained["own"], retrained["days"][-1]
    # Whatever the gate said, score with version 1 (the step needs a champion).
    set_alias(make_client(f"sqlite:///{root / 'mlflow.db'}"), "flights", "champion", "1")
    ours = scoring._ours(root, day)
    bare = scoring._bare(root, day)
    written = pq.read_table(
        root / "lake" / "flights" / "predictions" / f"date={day}" / "data.parquet"
    )
    assert ours["rows"] == bare["rows"] == written.num_rows > 100
    # The fixed costs are measured apart, and the step accounts for its parts.
    assert ours["fixed_seconds"] > 0 and set(ours["parts"]) == set(scoring.STEP_PARTS)
    # Reading and writing overlap the scoring; model and scoring are on the step's path.
    assert min(ours["parts"].values()) > 0
    assert ours["parts"]["model"] + ours["parts"]["score"] < ours["seconds"]
    assert 0 < ours["body_seconds"] < ours["seconds"] and ours["gc_seconds"] >= 0
    assert ours["cpu_seconds"] > 0 and bare["cpu_seconds"] > 0
    features = pq.read_table(
        root / "lake" / "flights" / "features" / f"date={day}" / "data.parquet"
    )
    assert written.column("flight_id").to_pylist() == features.column("flight_id").to_pylist()
    np.testing.assert_allclose(
        written.column("prediction").to_numpy(), np.load(root / "bare_scores.npy"), rtol=1e-12
    )
    # The serving case's bare one-row baseline: both inputs it times score the row as the
    # model does.
    model, frame = scoring.champion_model(root), features.to_pandas()
    timings = serving.bare_booster(model, frame, 20)
    assert set(timings) == {"numpy", "pandas", "numpy_default_threads"}
    assert min(timings.values()) > 0
    one = frame.head(1)
    for given in (model.feature_matrix(one), model._matrix(one)):
        score = model.booster.predict(given, num_iteration=model.best_iteration, num_threads=1)
        np.testing.assert_allclose(score, model.predict(one, 1), rtol=1e-12)


# ---------------------------------------------------------------------------- runner


def test_runner_rows_and_table() -> None:
    item = row(case="x", figure=1.5, unit="s", baseline=3.0, ratio=2.0, met=True, extra=1)
    assert list(item)[: len(ROW_KEYS)] == list(ROW_KEYS) and item["extra"] == 1
    text = table([item, row(case="y", note="error: boom")])
    assert "| x | 1.5 | 3 | s | 2 |" in text and "| y |" in text and "NO" in text
    assert {"drift", "scoring", "orchestration", "load", "scale", "loop_latency"} <= set(discover())
    assert pd.isna(row(case="z")["figure"])


def test_paired_ratio_divides_out_a_drift_between_pairs() -> None:
    # The second pair ran on a machine twice as slow: two pairs' ratios are 0.5, and so is
    # their median, while the medians of the sides (1.2 and 2.0) mix the two speeds.
    ours, baseline = [1.0, 2.0, 1.2], [2.0, 4.0, 2.0]
    assert paired_ratio(ours, baseline) == 0.5
    assert median(ours) / median(baseline) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="not pairs"):
        paired_ratio([1.0], [1.0, 2.0])


def test_lanes_schedule_every_case_longest_first() -> None:
    names = discover()
    order = schedule(names)
    assert sorted(order) == sorted(names)
    assert order[0] == "loop_latency" and order.index("load") > order.index("orchestration")
    assert schedule(["load", "new_case", "drift"]) == ["drift", "load", "new_case"]


@pytest.mark.slow
def test_lanes_run_cases_side_by_side_in_their_own_processes(tmp_path: Path) -> None:
    # `load` is the cheapest real case; a misspelt case must come back as an error row.
    rows = run_in_lanes(["load", "no_such_case"], quick=True, lanes=2, folder=tmp_path)
    assert set(rows) == {"load", "no_such_case"}
    (load,) = rows["load"]
    assert load["case"] == "load" and load["figure"] > 0 and load["baseline"] > 0
    assert load["ratio"] == pytest.approx(load["figure"] / load["baseline"], rel=0.01)
    (failed,) = rows["no_such_case"]
    assert failed["met"] is False and "unknown case" in failed["note"]
    assert (tmp_path / "load.json").exists() and (tmp_path / "no_such_case.log").exists()
