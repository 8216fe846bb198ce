"""The retraining policy production runs: chosen from the dataset's history, kept as a
versioned file, overridden by settings written in the contract (framework-free).

``choose_from_history`` replays the history so far (the backtest engine, the cached
daily models) with every candidate of ``driftloop.backtest.selection`` and chooses;
``write_choice`` keeps the choice as ``<reports>/retraining_policy/<day>.json`` plus
``current.json``; ``policy_in_force`` is what the retrain sensor and the status read:
the contract's ``retraining:`` settings when it writes any, else the current choice, else
the defaults.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftloop.data.contract import Contract
from driftloop.data.retraining import TriggerPolicy
from driftloop.paths import DatasetPaths

if TYPE_CHECKING:
    from driftloop.backtest.selection import PolicyChoice
    from driftloop.evaluation.gate import GateConfig

FOLDER = "retraining_policy"
CURRENT = "current.json"


class TooLittleHistory(ValueError):
    """The history replayed is shorter than the warm-up: no choice yet, the policy in force
    stays where it is (the defaults before a first choice)."""


@dataclass(frozen=True)
class PolicyInForce:
    """The trigger settings production runs, or a chosen schedule (``every_days``)."""

    policy: TriggerPolicy
    source: str  # "contract", "chosen" or "defaults"
    every_days: int | None = None
    gate_confidence: float | None = None
    chosen_on: str = ""
    candidate: str = ""
    path: str = ""

    def describe(self) -> str:
        p = self.policy
        what = (
            f"retrain every {self.every_days} days (the gate refuses a confidently worse model)"
            if self.every_days
            else f"{p.n_breaches} of {p.window} days, cooldown {p.cooldown_days} days, drift "
            f"{'>= ' + str(p.drift_threshold) if p.use_drift else 'not counted'}"
        )
        if self.source == "contract":
            return f"{what}; from the contract's retraining settings (they override a choice)"
        if self.source == "chosen":
            return f"{what}; chosen on {self.chosen_on} ({self.candidate}), {self.path}"
        return f"{what}; the defaults (no choice yet)"


def gate_in_force(
    in_force: PolicyInForce, gate: GateConfig, confidence: float | None = None
) -> GateConfig:
    """The gate a retrain is judged by under the policy in force, as the replays that chose
    it judged it: ``confidence`` when given, else a chosen trigger's; a chosen schedule's
    retrains are promoted unless the challenger is confidently worse (its replays replaced
    the model on every retrain; ``GateConfig.require``)."""
    from dataclasses import replace

    confidence = in_force.gate_confidence if confidence is None else confidence
    if confidence is not None:
        gate = replace(gate, confidence=confidence)
    if in_force.source == "chosen" and in_force.every_days:
        gate = replace(gate, require="not_worse")
    return gate


def policy_folder(paths: DatasetPaths) -> Path:
    return paths.reports / FOLDER


def policy_in_force(contract: Contract, paths: DatasetPaths) -> PolicyInForce:
    """The contract's settings if it writes any, else the current choice, else defaults."""
    if contract.retraining.model_fields_set:
        return PolicyInForce(contract.retraining, "contract")
    current = policy_folder(paths) / CURRENT
    if not current.exists():
        return PolicyInForce(contract.retraining, "defaults")
    try:
        record = json.loads(current.read_text())
        chosen = record["chosen"]
        fields = {k: v for k, v in chosen.items() if k in TriggerPolicy.model_fields}
        policy = TriggerPolicy(**fields) if chosen["kind"] == "trigger" else contract.retraining
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{current}: not a retraining-policy choice ({error})") from error
    return PolicyInForce(
        policy,
        "chosen",
        every_days=chosen.get("every_days"),
        gate_confidence=chosen.get("gate_confidence"),
        chosen_on=record.get("chosen_on", ""),
        candidate=chosen.get("name", ""),
        path=str(current),
    )


def write_choice(paths: DatasetPaths, choice: PolicyChoice, chosen_on: date) -> Path:
    """Keep the choice as a dated version and as the current one; returns the version."""
    from driftloop.data.lake import write_text_atomic

    record = {"chosen_on": chosen_on.isoformat(), **choice.to_dict()}
    record["table"] = [
        {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
        for r in record["table"]
    ]
    text = json.dumps(record, indent=2, default=str)
    folder = policy_folder(paths)
    version = folder / f"{chosen_on.isoformat()}.json"
    write_text_atomic(text, version)
    write_text_atomic(text, folder / CURRENT)
    return version


def choose_from_history(
    contract: Contract,
    data_root: Path,
    *,
    end: date | None = None,
    budget_per_30_days: float | None = None,
    source: Path | None = None,
    progress: Callable[[str], None] | None = None,
    min_days: int | None = None,
) -> tuple[PolicyChoice, Any]:
    """Replay the history up to ``end`` (default: the last day of data) with every candidate
    and choose among them from the days whose labels are all due; returns the choice and
    the backtest result (its summary and frontier are the comparison). Raises
    ``TooLittleHistory`` when fewer than ``min_days`` (default: the walk-forward's warm-up,
    ``SELECTION_WARMUP_DAYS``) would be replayed, before replaying anything."""
    # The engine and the selection pull in numpy, pandas and the models: only here, not in
    # the retrain sensor, which reads the policy in force every tick.
    from driftloop.backtest.engine import (
        BacktestConfig,
        default_range,
        prepare,
        run_backtest,
        trigger_settings,
    )
    from driftloop.backtest.policies import SELECTION_WARMUP_DAYS
    from driftloop.backtest.selection import candidates, choose_policy

    _, info = prepare(contract, data_root, source)
    start, last = default_range(contract, info, contract.training.window_days)
    end = min(end or last, last)
    # The walk-forward's first choice is on day start + warm-up, from the days before it.
    needed = SELECTION_WARMUP_DAYS if min_days is None else min_days
    replayed = (end - start).days + 1
    if replayed < needed:
        raise TooLittleHistory(
            f"{contract.name}: {replayed} days of history after the first training window "
            f"({start} to {end}); the first choice needs {needed}"
        )
    base = trigger_settings(contract, name="fixed")
    pool = candidates(base)
    triggers = [base, *(c.settings for c in pool if c.settings is not None)]
    config = BacktestConfig.for_contract(contract, start, end, triggers=triggers)
    result = run_backtest(contract, data_root, config, source=source, progress=progress)
    runs = {p.name: p for p in result.policies}
    delay = math.ceil(contract.label_delay / timedelta(days=1))
    before = end + timedelta(days=1) - timedelta(days=delay)
    choice = choose_policy(runs, pool, before, result.higher_is_better, budget_per_30_days)
    choice.cpu_seconds = sum(
        runs[c.name].replay_seconds for c in pool if c.settings is not None and c.name in runs
    )
    return choice, result


def status(paths: DatasetPaths) -> dict[str, Any]:
    """For ``pipelines.status``: the policy in force and where it came from."""
    from driftloop.data.contract import load_contract
    from driftloop.paths import contracts_dir

    found = [
        p for s in (".yaml", ".yml") if (p := contracts_dir() / f"{paths.dataset}{s}").exists()
    ]
    if not found:
        return {"policy": None, "source": f"no contract {paths.dataset}.yaml in {contracts_dir()}"}
    in_force = policy_in_force(load_contract(found[0]), paths)
    return {"policy": in_force.describe(), "source": in_force.source, "file": in_force.path}


def format_status(data: dict[str, Any]) -> str:
    return f"retraining policy in force: {data['policy'] or data['source']}"


def log_choice(
    dataset: str,
    version: Path,
    frontier: Path | None,
    choice: PolicyChoice,
    tracking_uri: str,
    artifact_root: Path | None = None,
) -> str:
    """One run in the experiment ``<dataset>-policy`` per choice: the chosen settings as
    params, its capture, flatness and CPU seconds as metrics, the choice's JSON (the
    versioned artifact) and the frontier plot as artifacts. Returns the run id."""
    from driftloop.training.registry import experiment_id_for, make_client

    client = make_client(tracking_uri)
    experiment = experiment_id_for(client, f"{dataset}-policy", tracking_uri, artifact_root)
    run = client.create_run(
        experiment,
        run_name=f"{dataset} policy {version.stem}",
        tags={"driftloop.dataset": dataset, "driftloop.policy": choice.chosen.name},
    )
    run_id = run.info.run_id
    for key, value in choice.chosen.to_dict().items():
        client.log_param(run_id, key, str(value))
    row = next(r for r in choice.table if r["chosen"])
    metrics = {
        "value_capture": row["value_capture"],
        "plateau_capture": row["plateau_capture"],
        "retrains": row["retrains"],
        "flatness": choice.flatness,
        "cpu_seconds": choice.cpu_seconds,
        "days": choice.days,
    }
    for key, value in metrics.items():
        if isinstance(value, int | float) and math.isfinite(value):
            client.log_metric(run_id, key, float(value))
    for path in (version, frontier):
        if path is not None and path.exists():
            client.log_artifact(run_id, str(path))
    client.set_terminated(run_id)
    return run_id
