"""The retraining policy: the contract's ``retraining:`` block, read by the trigger
(``driftloop.monitoring.trigger``) and the backtest."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TriggerPolicy(BaseModel):
    """Retrain when at least ``n_breaches`` of the last ``window`` days breached (see
    docs/contracts.md, sections retraining and Monitoring, for every setting)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_breaches: int = Field(default=2, ge=1)
    window: int = Field(default=3, ge=1, description="daily windows looked at, today included")
    cooldown_days: int = Field(
        default=7, ge=0, description="no retrain this soon after one was launched"
    )
    use_drift: bool = True
    use_performance: bool = True
    use_estimated: bool = Field(
        default=True, description="performance estimated before labels arrive counts"
    )
    drift_threshold: float = Field(
        default=0.4, gt=0, description="calibrated importance-weighted drift score that breaches"
    )
    calibration_quantile: float = Field(
        default=0.95, gt=0, le=1, description="quantile of in-window daily distances: the bound"
    )
    performance_window_days: int = Field(
        default=7, ge=1, description="trailing days pooled for realised and estimated metrics"
    )
    performance_confidence: float = Field(
        default=0.975, gt=0.5, lt=1, description="bootstrap confidence of the performance floor"
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.n_breaches > self.window:
            raise ValueError(f"n_breaches ({self.n_breaches}) exceeds window ({self.window})")
        if not (self.use_drift or self.use_performance or self.use_estimated):
            raise ValueError(
                "at least one of use_drift / use_performance / use_estimated must count"
            )
        return self
