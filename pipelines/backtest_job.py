"""`<dataset>_backtest`: the retraining-policy backtest as a Dagster job
(see driftloop.backtest.engine).

One op whose config is the policy under test (the trigger's N of M, cooldown, which signals
count, the monitoring thresholds and the gate's margin), so settings can be compared run
by run in the UI. It needs no daemon and touches neither the production lake nor the
registry: raw rows go to the backtest's cache lake, and the report (table, plot, HTML,
JSON) is metadata, files under <data root>/backtest/<dataset>/reports and a run in the
MLflow experiment `<dataset>-backtest`.

    dg launch --job flights_backtest \
        --config-json '{"ops": {"flights_run_backtest": {"config": {"cooldown_days": 5}}}}'

No ``from __future__ import annotations`` here: Dagster reads the config annotation.
"""

import base64
import math
from datetime import date
from pathlib import Path
from typing import Any

from dagster import (
    Config,
    JobDefinition,
    MetadataValue,
    OpExecutionContext,
    Output,
    TableColumn,
    TableRecord,
    TableSchema,
    job,
    op,
)
from pydantic import Field

from driftloop.data.contract import Contract
from driftloop.data.retraining import TriggerPolicy
from driftloop.evaluation.gate import GateConfig
from driftloop.names import DATASET_TAG

_POLICY = TriggerPolicy()

FLIGHTS_RANGE = ("2013-03-01", "2013-12-31")


class BacktestJobConfig(Config):
    """Op config of <dataset>_backtest; build_backtest_job sets the contract's defaults."""

    start: str = Field(default="", description="First day (YYYY-MM-DD); empty = default")
    end: str = Field(default="", description="Last day; empty = the last day of data")
    source: str = Field(
        default="", description="History file (CSV/Parquet); empty = embedded / lake"
    )
    n_breaches: int = Field(default=_POLICY.n_breaches, ge=1, description="N of N-of-M days")
    window: int = Field(default=_POLICY.window, ge=1, description="M of N-of-M (days)")
    cooldown_days: int = Field(
        default=_POLICY.cooldown_days, ge=0, description="No retrain this soon after one launched"
    )
    use_drift: bool = _POLICY.use_drift
    use_performance: bool = _POLICY.use_performance
    use_estimated: bool = _POLICY.use_estimated
    drift_threshold: float = Field(default=_POLICY.drift_threshold, gt=0)
    performance_window_days: int = Field(default=_POLICY.performance_window_days, ge=1)
    performance_confidence: float = Field(default=_POLICY.performance_confidence, gt=0.5, lt=1)
    gate_margin: float = Field(default=GateConfig().margin, description="Gate: CI low > margin")
    gate_confidence: float = Field(default=GateConfig().confidence)
    extra_policies: list[str] = Field(
        default=[], description="More trigger policies: 'name:key=value,...' each"
    )
    window_days: int = Field(default=60, ge=2, description="Training window (days)")
    fit: str = Field(
        default="",
        description="split: production's train; window: refit on the whole window; "
        "empty: the contract's training.refit_on_window, as production trains",
    )
    label_delay: str = Field(default="", description="What-if label delay; empty = contract")
    model_params: list[str] = Field(default=[], description="LightGBM 'key=value' overrides")
    log_mlflow: bool = True


def backtest_config_class(contract: Contract) -> type[BacktestJobConfig]:
    """The op config with the contract's retraining policy and training window as defaults."""
    policy = contract.retraining

    class DatasetBacktestConfig(BacktestJobConfig):
        n_breaches: int = Field(default=policy.n_breaches, ge=1)
        window: int = Field(default=policy.window, ge=1)
        cooldown_days: int = Field(default=policy.cooldown_days, ge=0)
        use_drift: bool = policy.use_drift
        use_performance: bool = policy.use_performance
        use_estimated: bool = policy.use_estimated
        drift_threshold: float = Field(default=policy.drift_threshold, gt=0)
        performance_window_days: int = Field(default=policy.performance_window_days, ge=1)
        performance_confidence: float = Field(default=policy.performance_confidence, gt=0.5, lt=1)
        window_days: int = Field(default=contract.training.window_days, ge=2)

    DatasetBacktestConfig.__name__ = DatasetBacktestConfig.__qualname__ = (
        f"{contract.name.title().replace('_', '')}BacktestConfig"
    )
    return DatasetBacktestConfig


def _settings(contract: Contract, config: BacktestJobConfig) -> Any:
    from driftloop.backtest.engine import BacktestConfig, trigger_settings
    from pipelines.backtest import policies_and_params

    main = trigger_settings(
        contract,
        n_breaches=config.n_breaches,
        window=config.window,
        cooldown_days=config.cooldown_days,
        use_drift=config.use_drift,
        use_performance=config.use_performance,
        use_estimated=config.use_estimated,
        drift_threshold=config.drift_threshold,
        performance_window_days=config.performance_window_days,
        performance_confidence=config.performance_confidence,
        gate_margin=config.gate_margin,
        gate_confidence=config.gate_confidence,
    )
    triggers, params = policies_and_params(
        contract, main, config.extra_policies, config.model_params
    )
    extra: dict[str, Any] = {"triggers": triggers, "model_params": params}
    if config.fit:
        extra["fit"] = config.fit
    return BacktestConfig, extra


def _table(rows: list[dict[str, Any]]) -> MetadataValue:
    def cell(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return round(value, 4) if isinstance(value, float) else value

    types = {"policy": "string", "kind": "string", "retrains": "int", "promotions": "int"}
    columns = [TableColumn(k, types.get(k, "float")) for k in rows[0]]
    return MetadataValue.table(
        records=[TableRecord({k: cell(v) for k, v in row.items()}) for row in rows],
        schema=TableSchema(columns=columns),
    )


def _report_metadata(
    result: Any, files: dict[str, Path], table: str, policies: list[str]
) -> dict[str, Any]:
    """The backtest op's metadata: summary and signal tables, report files, plots and each
    policy's headline figures."""
    from driftloop.backtest.report import signal_rows, summary_rows  # pandas: on use

    metadata: dict[str, Any] = {
        "summary": _table(summary_rows(result)),
        "summary_md": MetadataValue.md(table),
        "signals": _table(signal_rows(result)) if signal_rows(result) else None,
        "html_report": MetadataValue.path(str(files["html"])),
        "json_report": MetadataValue.path(str(files["json"])),
        "timings": MetadataValue.json(result.timings),
        "config": MetadataValue.json(result.config.to_dict()),
    }
    if "png" in files:
        encoded = base64.b64encode(files["png"].read_bytes()).decode()
        metadata["plot"] = MetadataValue.md(f"![daily metric](data:image/png;base64,{encoded})")
        metadata["plot_path"] = MetadataValue.path(str(files["png"]))
    if "frontier_png" in files:
        encoded = base64.b64encode(files["frontier_png"].read_bytes()).decode()
        metadata["frontier"] = MetadataValue.md(f"![frontier](data:image/png;base64,{encoded})")
    metadata = {k: v for k, v in metadata.items() if v is not None}
    summary = result.summary().set_index("policy")
    for policy in policies:
        for key in ("value_capture", "retrain_cost", "frontier_capture", "cpu_seconds"):
            value = float(summary.loc[policy, key])
            if math.isfinite(value):
                metadata[f"{policy}_{key}"] = value
    return metadata


def build_backtest_job(contract: Contract) -> JobDefinition:
    """`<dataset>_backtest`: one op configured with the policy parameters; uses `lake` and
    `mlflow` (only for the data root and the tracking store)."""
    name = contract.name
    config_class = backtest_config_class(contract)

    @op(
        name=f"{name}_run_backtest",
        required_resource_keys={"lake", "mlflow"},
        description=(
            f"Replays {name}'s history day by day through the production trigger and gate, "
            "against retraining every 60, 30, 14, 7, 3 days, every day and never."
        ),
    )
    def backtest_op(context: OpExecutionContext, config: config_class) -> Output:
        from driftloop.backtest import engine as backtest
        from driftloop.backtest.report import log_to_mlflow, summary_markdown, write_report

        root = Path(context.resources.lake.root())
        source = Path(config.source) if config.source.strip() else None
        # A what-if label delay changes this run's contract only, not the job's.
        run_contract = backtest.with_label_delay(contract, config.label_delay)
        _, info = backtest.prepare(run_contract, root, source)
        if name == "flights" and source is None:
            start, end = (date.fromisoformat(d) for d in FLIGHTS_RANGE)
        else:
            start, end = backtest.default_range(run_contract, info, config.window_days)
        start = date.fromisoformat(config.start) if config.start.strip() else start
        end = date.fromisoformat(config.end) if config.end.strip() else end
        config_type, extra = _settings(run_contract, config)
        run_config = config_type.for_contract(
            run_contract, start, end, window_days=config.window_days, **extra
        )
        result = backtest.run_backtest(
            run_contract, root, run_config, source=source, progress=context.log.info
        )
        files = write_report(result, backtest.backtest_paths(root, name).output)
        table = summary_markdown(result)
        context.log.info(f"{name} backtest:\n{table}")
        metadata = _report_metadata(result, files, table, [t.name for t in run_config.triggers])
        if config.log_mlflow:
            mlflow = context.resources.mlflow
            run_id = log_to_mlflow(
                result,
                files,
                mlflow.uri(),
                artifact_root=mlflow.artifact_root(),
                tags={"dagster.run_id": context.run_id},
            )
            metadata["mlflow_run_id"] = run_id
        return Output(result.to_dict()["summary"], metadata=metadata)

    @job(
        name=f"{name}_backtest",
        description=(
            f"Retraining-policy backtest of {name}: value capture and retrain cost of the "
            "loop's trigger and gate over history (op config = the policy under test)."
        ),
        tags={DATASET_TAG: name},
    )
    def backtest_job() -> None:
        backtest_op()

    return backtest_job
