"""The policies a backtest compares and its settings: the reference schedules (a cron job that
retrains every k days and always replaces the model), the trigger policies under test (the
contract's ``retraining:`` block and the gate) and the training configuration they share."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from driftloop.data.contract import Contract
from driftloop.data.retraining import TriggerPolicy
from driftloop.evaluation.gate import GateConfig

# The reference schedule policies of every run: name -> retrain every k days (None: never).
REFERENCE_SCHEDULES: dict[str, int | None] = {
    "never": None,
    "every_60_days": 60,
    "every_30_days": 30,
    "every_14_days": 14,
    "every_7_days": 7,
    "every_3_days": 3,
    "every_day": 1,
}
STATIC, DAILY = "never", "every_day"
# The backtest's LightGBM settings: production's defaults except a learning rate of 0.1,
# which converges in about half the trees at the same holdout AUC on flights; that is what
# lets 300+ daily retrains fit the time budget on 2 cores. Same for every policy.
BACKTEST_MODEL_PARAMS: dict[str, Any] = {"learning_rate": 0.1}
# How the served model is fitted (BacktestConfig.fit):
# - "split": production's ``train``: the oldest days of the window train, the validation
#   days early-stop and the newest ``holdout_days`` are held out for the gate and the
#   performance reference, so the model never learns from its freshest 14 days;
# - "window": the same ``train`` still provides the holdout metric and scores, then the
#   model that serves is its refit on every labelled row of the window with the rounds the
#   validation days chose (``driftloop.training.train.refit_on_window``); it costs a second
#   fit per model. The gate compares the split models of challenger and champion (the refits
#   have seen the holdout), and the performance reference is the split model's holdout metric.
FIT_MODES = ("split", "window")
# Drift reference sample per champion (the drift asset samples up to 200k; 20k keeps a
# year of daily drift checks to about a minute with the same verdicts at ~1k rows a day).
REFERENCE_ROWS = 20_000
# The self-tuning loop's cadence, in production (the retraining_policy asset and its
# schedule) as in the walk-forward. The first choice comes after four whole weeks (every
# weekday weighs the same in it; on fewer days the selection's significance rule still keeps
# a quiet trigger while retraining has not paid); until then the contract's trigger runs.
# It chooses again every week, the period of its budget: a choice kept for a month runs a
# policy picked before a change for weeks after the change shows in the labels.
SELECTION_WARMUP_DAYS = 28
SELECTION_EVERY_DAYS = 7


@dataclass(frozen=True)
class TriggerSettings:
    """One trigger policy under test: the production trigger (with its monitoring knobs)
    and the gate."""

    name: str = "driftloop"
    policy: TriggerPolicy = field(default_factory=TriggerPolicy)
    gate: GateConfig = field(default_factory=GateConfig)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **self.policy.model_dump(),
            "gate_margin": self.gate.margin,
            "gate_confidence": self.gate.confidence,
            "gate_bootstrap_samples": self.gate.bootstrap_samples,
        }


def trigger_settings(
    contract: Contract, name: str = "driftloop", **overrides: Any
) -> TriggerSettings:
    """The contract's retraining policy and the gate's defaults, with overrides by name:
    any field of ``TriggerPolicy`` and ``gate_margin``, ``gate_confidence``,
    ``gate_bootstrap_samples`` (None values are ignored)."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    policy_fields = set(TriggerPolicy.model_fields)
    policy = contract.retraining.model_copy(
        update={k: overrides.pop(k) for k in list(overrides) if k in policy_fields}
    )
    policy = TriggerPolicy(**policy.model_dump())  # validate the combination
    gate_keys = {"gate_margin": "margin", "gate_confidence": "confidence"}
    gate_keys["gate_bootstrap_samples"] = "bootstrap_samples"
    gate_args = {gate_keys[k]: overrides.pop(k) for k in list(overrides) if k in gate_keys}
    if overrides:
        known = sorted([*policy_fields, *gate_keys])
        raise ValueError(f"unknown trigger settings {sorted(overrides)}; known: {known}")
    gate = GateConfig(**{**asdict(GateConfig()), **gate_args})
    return TriggerSettings(name=name, policy=policy, gate=gate)


@dataclass
class BacktestConfig:
    start: date
    end: date
    window_days: int = 60
    holdout_days: int = 7
    validation_days: int = 7
    schedules: dict[str, int | None] = field(default_factory=lambda: dict(REFERENCE_SCHEDULES))
    triggers: list[TriggerSettings] = field(default_factory=lambda: [TriggerSettings()])
    model_kind: str = "lightgbm"
    model_params: dict[str, Any] = field(default_factory=lambda: dict(BACKTEST_MODEL_PARAMS))
    seed: int = 42
    reference_rows: int = REFERENCE_ROWS
    # Processes fitting the schedules' models ahead of the loop (1: all in this process).
    # More than 1 forks workers: only from a process without other threads holding locks
    # (the CLI), not inside a threaded host such as an in-process Dagster run or pytest.
    workers: int = 1
    fit: str = "split"  # one of FIT_MODES
    # Keep fitted models on disk under the backtest folder, keyed by everything that
    # determines them, so a rerun with other trigger settings only replays the policies.
    model_cache: bool = True
    # The self-tuning loop (driftloop.backtest.selection): a policy named ``selected``
    # that on day D runs the candidate chosen from the days before D only, first chosen
    # ``selection_warmup_days`` after the start, then every ``selection_every_days``;
    # before its first choice it runs the first trigger's settings.
    selected: str | None = None
    selection_warmup_days: int = SELECTION_WARMUP_DAYS
    selection_every_days: int = SELECTION_EVERY_DAYS
    retrain_budget_per_30_days: float | None = None  # None: the 7-day schedule's

    @classmethod
    def for_contract(cls, contract: Contract, start: date, end: date, **kw: Any):
        training = contract.training
        defaults = {
            "window_days": training.window_days,
            "holdout_days": training.holdout_days,
            "validation_days": training.validation_days,
            "fit": "window" if training.refit_on_window else "split",
        }
        if "triggers" not in kw:
            kw["triggers"] = [trigger_settings(contract)]
        return cls(start=start, end=end, **{**defaults, **kw})

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "window_days": self.window_days,
            "holdout_days": self.holdout_days,
            "validation_days": self.validation_days,
            "schedules": self.schedules,
            "triggers": [t.to_dict() for t in self.triggers],
            "model_kind": self.model_kind,
            "model_params": self.model_params,
            "seed": self.seed,
            "reference_rows": self.reference_rows,
            "workers": self.workers,
            "fit": self.fit,
            "model_cache": self.model_cache,
            "selected": self.selected,
            "selection_warmup_days": self.selection_warmup_days,
            "selection_every_days": self.selection_every_days,
            "retrain_budget_per_30_days": self.retrain_budget_per_30_days,
        }
