"""Score a run's range of days with the champion (and a shadow challenger), day by day."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from driftloop.data.contract import Contract
from driftloop.faults import fault_point
from driftloop.monitoring.signals import prediction_key_columns
from driftloop.names import FEATURES_TABLE
from driftloop.paths import DatasetPaths
from driftloop.serving.batch import ScoredDay, Scorer, score_day


class MissingFeatures(ValueError):
    """Days of the range that have no features partition to score."""

    def __init__(self, dataset: str, days: list[str]) -> None:
        self.days = days
        super().__init__(
            f"{dataset}: no features partition for {', '.join(days)}; "
            f"materialize {dataset}/features for these days first"
        )


@dataclass
class ScoredRange:
    """What scoring a range wrote, per day, and the range's totals."""

    champion_version: str
    shadow_version: str | None = None
    days: dict[str, ScoredDay] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(d.rows for d in self.days.values())

    def total(self, part: str) -> float:
        """The sum over the days of one timing: "seconds", "read_seconds", ..."""
        return sum(getattr(d, part) for d in self.days.values())

    @property
    def rows_per_second(self) -> float:
        return rate(self.rows, self.total("seconds"))


def rate(rows: int, seconds: float) -> float:
    return float(rows / seconds) if seconds > 0 else 0.0


def columns_to_read(contract: Contract) -> tuple[list[str], list[str]]:
    """The features columns the predictions table and the models read (the contract's
    features: our models are trained on them; a model that needs another column fails
    naming it), and the categorical ones to read dictionary-encoded."""
    keep = prediction_key_columns(contract)
    dictionary = [c for c in contract.categorical_features if c not in keep]
    return [*keep, *contract.features], dictionary


def score_range(
    contract: Contract,
    paths: DatasetPaths,
    days: list[str],
    champion: Scorer,
    shadow: Scorer | None = None,
    on_day: Callable[[str, ScoredDay], None] | None = None,
) -> ScoredRange:
    """Write the predictions partition of every day in `days`, in order, with the same
    models throughout; `on_day(day, scored)` after each (metadata, logs).

    MissingFeatures, before anything is written, if a day has no features partition."""
    absent = [d for d in days if not paths.partition_file(FEATURES_TABLE, d).exists()]
    if absent:
        raise MissingFeatures(contract.name, absent)
    columns, dictionary = columns_to_read(contract)
    scored = ScoredRange(champion.version, shadow.version if shadow else None)
    for day in sorted(days):
        result = score_day(contract, paths, day, champion, shadow, columns, dictionary)
        scored.days[day] = result
        if on_day is not None:
            on_day(day, result)
    fault_point("daily_predictions")
    return scored
