"""The retraining policy chosen from a dataset's own history (driftloop.backtest.selection).

The rule on made-up replays (budget, plateau, fewer retrains on a tie, a stationary
history), then the walk-forward self-tuning loop on a short generated drift stream: the
policy it runs on day D is the same whatever the data from D on (and whatever labels were
not yet due at D's midnight).
"""

from __future__ import annotations

import importlib.util
import math
import sys
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftloop.backtest.engine import BacktestConfig, run_backtest, trigger_settings
from driftloop.backtest.policies import DAILY, SELECTION_WARMUP_DAYS, STATIC, TriggerSettings
from driftloop.backtest.result import PolicyRun
from driftloop.backtest.selection import (
    CANDIDATE_SCHEDULES,
    Candidate,
    candidates,
    choose_policy,
    neighbours,
    trigger_grid,
)
from driftloop.data.contract import Training, load_contract

ROOT = Path(__file__).resolve().parents[1]
START = date(2021, 1, 1)


def _streams():
    spec = importlib.util.spec_from_file_location(
        "drift_streams", ROOT / "examples/drift_streams.py"
    )
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules["drift_streams"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def _run(name: str, level: float, every: int | None, days: int = 60) -> PolicyRun:
    """A made-up replay: a constant daily metric, a retrain every ``every`` days."""
    run = PolicyRun(name, "schedule", every=every)
    for k in range(days):
        day = (START + timedelta(days=k)).isoformat()
        retrain = every is not None and k % every == 0
        run.daily.append({"day": day, "metric": level, "retrain": retrain})
    return run


def _pool_and_runs(levels: dict[str, float], retrains_every: dict[str, int | None]):
    base = TriggerSettings()
    pool = candidates(base)
    runs = {STATIC: _run(STATIC, 0.60, None), DAILY: _run(DAILY, 0.70, 1)}
    for c in pool:
        if c.name in runs:  # every_day is a candidate too
            continue
        every = c.every if c.settings is None else retrains_every.get(c.name, 20)
        runs[c.name] = _run(c.name, levels.get(c.name, 0.62), every)
    return pool, runs


def test_the_grid_has_tens_of_candidates_and_neighbours_one_step_apart() -> None:
    pool = candidates(TriggerSettings())
    assert 20 <= len(pool) <= 60
    assert [c.name for c in pool if c.settings is None] == list(CANDIDATE_SCHEDULES)
    grid = trigger_grid(TriggerSettings())
    names = [c.name for c in grid]
    assert len(set(names)) == len(names)
    middle = next(c for c in grid if c.grid == (1, 1, 0, 1))
    around = {c.grid for c in neighbours(middle, pool)}
    assert around == {(0, 1, 0, 1), (2, 1, 0, 1), (1, 0, 0, 1), (1, 1, 1, 1), (1, 1, 0, 0)}
    assert middle.settings.policy.cooldown_days == 7 and middle.settings.gate.confidence == 0.9
    assert neighbours(Candidate("every_7_days", every=7), pool) == []


def test_the_highest_capture_within_the_budget_wins() -> None:
    # every_3_days captures most but launches more retrains than the 7-day schedule.
    pool, runs = _pool_and_runs({"every_3_days": 0.70, "every_7_days": 0.68}, {})
    choice = choose_policy(runs, pool, START + timedelta(days=60), higher_is_better=True)
    assert choice.chosen.name == "every_7_days"
    row = next(r for r in choice.table if r["candidate"] == "every_3_days")
    assert not row["within_budget"] and row["value_capture"] == pytest.approx(1.0)
    # A larger budget lets it in.
    wide = choose_policy(runs, pool, START + timedelta(days=60), True, budget_per_30_days=12)
    assert wide.chosen.name == "every_3_days"


def test_a_trigger_is_judged_on_its_plateau_and_a_tie_goes_to_fewer_retrains() -> None:
    grid = trigger_grid(TriggerSettings())
    peak, flat = grid[5], grid[-1]
    levels = {"every_7_days": 0.64, peak.name: 0.695, flat.name: 0.69}
    # The peak's neighbours collapse; the flat one's neighbours hold.
    levels |= {c.name: 0.69 for c in neighbours(flat, grid)}
    pool, runs = _pool_and_runs(levels, {flat.name: 15})
    choice = choose_policy(runs, pool, START + timedelta(days=60), higher_is_better=True)
    assert choice.chosen.name == flat.name, choice.table
    assert choice.flatness == pytest.approx(0.0, abs=1e-9)
    peak_row = next(r for r in choice.table if r["candidate"] == peak.name)
    assert peak_row["plateau_capture"] < peak_row["value_capture"]
    # A flat grid: equal plateaus, and fewer retrains wins (the others retrain every 20 days).
    pool, runs = _pool_and_runs({c.name: 0.69 for c in grid}, {flat.name: 10})
    tie = choose_policy(runs, pool, START + timedelta(days=60), True)
    assert tie.chosen.name == grid[0].name  # the first listed of the cheapest


def test_only_days_before_the_cutoff_count() -> None:
    pool, runs = _pool_and_runs({"every_7_days": 0.68}, {})
    before = START + timedelta(days=30)
    first = choose_policy(runs, pool, before, True)
    for run in runs.values():  # anything from the cutoff on changes
        for row in run.daily:
            if row["day"] >= before.isoformat():
                row["metric"], row["retrain"] = 0.99, True
    again = choose_policy(runs, pool, before, True)
    assert again.chosen == first.chosen and again.table == first.table
    assert first.days == 30


def test_a_stationary_history_chooses_the_quietest_trigger() -> None:
    # t0000 and t0001 retrain least of the triggers (once); every_60_days never did.
    pool, runs = _pool_and_runs({}, {"t0000": 59, "t0001": 59})
    for run in runs.values():
        for row in run.daily:
            row["metric"] = 0.65  # every day retraining gains nothing
    choice = choose_policy(runs, pool, START + timedelta(days=60), True)
    assert not choice.capture_defined and math.isnan(choice.flatness)
    chosen = next(r for r in choice.table if r["chosen"])
    triggers = [r for r in choice.table if r["kind"] == "trigger"]
    assert chosen["kind"] == "trigger" and chosen["candidate"] == "t0000"
    assert chosen["retrains"] == min(r["retrains"] for r in triggers)
    cheapest_schedule = next(r for r in choice.table if r["candidate"] == "every_60_days")
    assert cheapest_schedule["retrains"] <= chosen["retrains"]


# -- the walk-forward self-tuning loop on a short generated stream

DAYS, ROWS = 44, 120
RUN_START, RUN_END = START + timedelta(days=16), START + timedelta(days=DAYS - 1)
FAST = {"learning_rate": 0.2, "n_estimators": 40}


def _contract(tmp_path: Path):
    streams = _streams()
    path = tmp_path / "drift_abrupt.yaml"
    path.write_text(streams.contract_text("drift_abrupt", "abrupt", DAYS))
    contract = load_contract(path)
    small = Training(window_days=12, holdout_days=2, validation_days=2)
    return streams, contract.model_copy(update={"training": small})


def _walk_forward(contract, frame: pd.DataFrame, root: Path, source_id: str):
    config = BacktestConfig.for_contract(
        contract,
        RUN_START,
        RUN_END,
        triggers=[trigger_settings(contract, name="fixed")],
        model_params=FAST,
        reference_rows=2_000,
        selected="driftloop",
        selection_warmup_days=10,
        selection_every_days=7,
        # One fit per model: which model serves does not change what a choice may read.
        fit="split",
    )
    return run_backtest(contract, root, config, source=frame, source_id=source_id)


@pytest.mark.slow
def test_the_policy_of_day_d_depends_on_no_day_from_d_on(tmp_path: Path) -> None:
    streams, contract = _contract(tmp_path)
    frame = streams.stream("abrupt", days=DAYS, rows=ROWS, seed=3)
    result = _walk_forward(contract, frame, tmp_path / "a", "original")
    loop = next(p for p in result.policies if p.name == "driftloop")
    assert loop.kind == "selected"
    days = [s["day"] for s in loop.selections]
    assert days == [(RUN_START + timedelta(days=10 + 7 * k)).isoformat() for k in range(3)]
    d = date.fromisoformat(days[1])

    # Another future: from D on the concept flips, and the labels of D-1 (due during D,
    # after the choice at D 00:00) flip too.
    changed = frame.copy()
    stamp = pd.to_datetime(changed["ts"])
    unknown_at_d = stamp >= pd.Timestamp(d - timedelta(days=1))
    changed.loc[unknown_at_d, "y"] = 1 - changed.loc[unknown_at_d, "y"]
    future = stamp >= pd.Timestamp(d)
    changed.loc[future, "x0"] = changed.loc[future, "x0"] * -3 + 1
    other = _walk_forward(contract, changed, tmp_path / "b", "changed")
    other_loop = next(p for p in other.policies if p.name == "driftloop")

    def choices(selections: list[dict]) -> list[dict]:
        # Everything a choice says but its CPU seconds (a measurement, not a result).
        return [{k: v for k, v in s.items() if k != "cpu_seconds"} for s in selections]

    before = choices([s for s in loop.selections if s["day"] <= d.isoformat()])
    assert len(before) == 2
    assert before == choices([s for s in other_loop.selections if s["day"] <= d.isoformat()])
    assert [r["policy_in_force"] for r in loop.daily if r["day"] <= d.isoformat()] == [
        r["policy_in_force"] for r in other_loop.daily if r["day"] <= d.isoformat()
    ]
    # The change is real: a later choice or later days differ.
    after = [r["metric"] for r in loop.daily if r["day"] >= d.isoformat()]
    other_after = [r["metric"] for r in other_loop.daily if r["day"] >= d.isoformat()]
    assert not np.allclose(after, other_after, equal_nan=True)

    # The report carries the fixed defaults and the self-tuning loop side by side.
    summary = result.summary().set_index("policy")
    assert summary.loc["fixed", "kind"] == "trigger"
    assert summary.loc["driftloop", "kind"] == "selected"
    assert {c["candidate"] for c in loop.selections[0]["table"]} >= set(CANDIDATE_SCHEDULES)
    assert all(s["cpu_seconds"] >= 0 for s in loop.selections)


def test_the_policy_in_force_is_the_contracts_else_the_choice_else_the_defaults(
    tmp_path: Path,
) -> None:
    from assets.evaluation import EvalReportConfig
    from driftloop.backtest.in_force import policy_in_force, write_choice
    from driftloop.backtest.selection import PolicyChoice
    from driftloop.evaluation.gate import GateConfig
    from driftloop.monitoring.trigger import scheduled_retrain
    from driftloop.paths import dataset_paths

    streams = _streams()
    path = tmp_path / "drift_abrupt.yaml"
    path.write_text(streams.contract_text("drift_abrupt", "abrupt", 30))
    contract = load_contract(path)
    paths = dataset_paths(contract.name, tmp_path / "data")
    assert policy_in_force(contract, paths).source == "defaults"

    grid = trigger_grid(TriggerSettings())
    pick = next(c for c in grid if c.settings.policy.cooldown_days == 14)
    write_choice(paths, PolicyChoice(pick, START, 30, 4.0), START)
    chosen = policy_in_force(contract, paths)
    assert chosen.source == "chosen" and chosen.candidate == pick.name
    assert chosen.policy == pick.settings.policy and chosen.every_days is None
    assert "chosen on 2021-01-01" in chosen.describe()
    # The production gate judges with the chosen trigger's confidence unless its run config
    # sets one.
    assert pick.settings.gate.confidence != GateConfig().confidence
    assert EvalReportConfig().gate(chosen) == replace(
        GateConfig(), confidence=pick.settings.gate.confidence
    )
    assert EvalReportConfig(confidence=0.95).gate(chosen).confidence == 0.95

    schedule = Candidate("every_7_days", every=7)
    write_choice(paths, PolicyChoice(schedule, START, 30, 4.0), START + timedelta(days=1))
    weekly = policy_in_force(contract, paths)
    assert weekly.every_days == 7 and "every 7 days" in weekly.describe()
    # A chosen schedule's retrains replace the champion unless it is confidently worse.
    assert EvalReportConfig().gate(weekly) == GateConfig(require="not_worse")
    assert (paths.reports / "retraining_policy" / "2021-01-01.json").exists()  # versions stay
    assert not scheduled_retrain(START + timedelta(days=6), START, 7).fire
    assert scheduled_retrain(START + timedelta(days=7), START, 7).fire

    # Settings written in the contract override the choice.
    path.write_text(path.read_text() + "retraining: {cooldown_days: 5}\n")
    own = policy_in_force(load_contract(path), paths)
    assert own.source == "contract" and own.policy.cooldown_days == 5
    assert EvalReportConfig().gate(own) == GateConfig()


@pytest.mark.slow
def test_the_retraining_policy_asset_chooses_and_shows_its_table_and_plot(
    tmp_path: Path,
) -> None:
    import shutil

    from dagster import DagsterInstance, materialize

    from assets import retraining_policy
    from driftloop.backtest.data import backtest_paths, prepare
    from driftloop.backtest.in_force import policy_in_force
    from driftloop.paths import dataset_paths
    from resources.lake import LakeResource
    from resources.mlflow import MlflowResource

    streams, contract = _contract(tmp_path)
    days = 20  # 6 days replayed after the first full training window
    root = tmp_path / "data"
    # The asset replays the production lake's raw partitions: land the stream there.
    frame = streams.stream("abrupt", days=days, rows=ROWS, seed=3)
    prepare(contract, root, frame, "stream")
    raw = dataset_paths(contract.name, root).table("raw")
    shutil.copytree(backtest_paths(root, contract.name).table("raw"), raw)

    defs = retraining_policy.build(contract)
    (asset,) = defs.assets
    resources = {
        "lake": LakeResource(data_dir=str(root)),
        "mlflow": MlflowResource(
            tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", data_dir=str(root)
        ),
    }
    instance = DagsterInstance.ephemeral()
    # Six days are fewer than the walk-forward's warm-up: no choice, the defaults stay.
    result = materialize([asset], resources=resources, instance=instance)
    (early,) = result.asset_materializations_for_node(asset.op.name)
    assert early.metadata["chosen"].value == "none yet"
    assert f"the first choice needs {SELECTION_WARMUP_DAYS}" in early.metadata["why"].value
    assert policy_in_force(contract, dataset_paths(contract.name, root)).source == "defaults"

    config = {"ops": {asset.op.name: {"config": {"min_history_days": 6}}}}
    result = materialize([asset], resources=resources, instance=instance, run_config=config)
    assert result.success
    (materialization,) = result.asset_materializations_for_node(asset.op.name)
    meta = {k: v.value for k, v in materialization.metadata.items()}
    names = {c.name for c in candidates(trigger_settings(contract))}
    assert meta["chosen"] in names
    assert 0 < meta["days judged"] <= days and meta["selection CPU seconds"] >= 0
    table = meta["comparison"]
    assert f"| **{meta['chosen']}** |" in table
    assert all(f"| {n} |" in table or f"| **{n}** |" in table for n in CANDIDATE_SCHEDULES)
    assert meta["frontier"].startswith("![frontier](data:image/png;base64,")
    in_force = policy_in_force(contract, dataset_paths(contract.name, root))
    assert in_force.source == "chosen" and in_force.candidate == meta["chosen"]
    assert Path(meta["version"]).exists()
