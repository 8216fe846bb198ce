"""The promotion gate: a confidence bound on the paired metric difference, plus slice checks.

Rules (``decide``), all on sign-adjusted differences (positive = challenger better):

1. Overall: promote only if the lower end of the two-sided ``confidence`` interval of the
   primary-metric difference (paired bootstrap on the same holdout rows) is above
   ``margin``. The default 90% two-sided interval makes that lower end a one-sided 95%
   bound: the usual test of "the challenger is better", which is a one-sided question.
   An equal model (interval around 0) is therefore *not* promoted: a challenger has to
   show it is better, not merely "not worse on this sample".
2. Slices (only when a champion exists): a slice with at least ``min_slice_rows`` rows
   blocks promotion when the challenger is *confidently* worse than the champion there by
   more than ``slice_tolerance``, i.e. when the upper end of the slice difference's
   interval (same confidence, same resamples) is below ``-slice_tolerance``. Using the
   bound rather than the point estimate means noise in a slice of a few hundred rows cannot
   block a retrain, while a real, material regression in a sizeable group always does.
   ``slice_tolerance`` is in units of the primary metric (0.02 AUC by default).
   With ``require="not_worse"`` (the retrains of a schedule chosen from the dataset's
   history, driftloop.backtest.selection) the question is the other one: the schedule was
   chosen because replacing the model on its cadence paid over months of replays, in
   which every retrain replaced the champion, so a retrain is promoted unless the
   challenger is *confidently worse*: the upper end of the interval below ``-margin``.
   The burden of proof then lies on months of history rather than on a week's holdout,
   on which a fresh model trained on the same concept is rarely distinguishable from the
   champion.
3. First model (no champion): the reference is the scikit-learn baseline trained on the
   same split, and rule 1 applies against it (the baseline is a floor). Slices are
   reported for information only: with no model serving, a champion that beats the
   baseline overall is better than none.

Holdouts with no labelled rows or an undefined interval are rejected with that reason.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from driftloop.metrics import INTERVAL_CONFIDENCE, METRIC_LABELS, percentile_interval

REQUIRE = ("better", "not_worse")

if TYPE_CHECKING:
    from driftloop.evaluation.comparison import EvalResult


@dataclass(frozen=True)
class GateConfig:
    margin: float = 0.0
    confidence: float = INTERVAL_CONFIDENCE
    min_slice_rows: int = 500
    slice_tolerance: float = 0.02
    bootstrap_samples: int = 300
    seed: int = 20130101
    # "better": promote a challenger shown better; "not_worse": promote unless shown worse.
    require: str = "better"

    def __post_init__(self) -> None:
        if not 0.5 <= self.confidence < 1:
            raise ValueError(f"confidence must be in [0.5, 1), got {self.confidence}")
        if self.require not in REQUIRE:
            raise ValueError(f"require must be one of {REQUIRE}, got {self.require!r}")
        if self.slice_tolerance < 0 or self.min_slice_rows < 0 or self.bootstrap_samples < 1:
            raise ValueError("slice_tolerance, min_slice_rows must be >= 0, samples >= 1")


@dataclass
class GateDecision:
    promote: bool
    reasons: list[str]
    metric: str
    diff: float
    ci_low: float
    ci_high: float
    # Slices that blocked promotion ("carrier=UA"); empty when none did.
    failed_slices: list[str] = field(default_factory=list)
    is_first: bool = False
    confidence: float = GateConfig.confidence
    # How many slice values the gate could judge, and in words why the others were not.
    slices_gated: int = 0
    slice_note: str = ""

    @property
    def action(self) -> str:
        return "promoted" if self.promote else "rejected"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("diff", "ci_low", "ci_high"):
            out[key] = None if math.isnan(out[key]) else out[key]
        out["action"] = self.action
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateDecision:
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        for key in ("diff", "ci_low", "ci_high"):
            fields[key] = math.nan if fields.get(key) is None else float(fields[key])
        return cls(**fields)


def _f(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.4f}"


def slice_coverage(
    slices: Any, n_rows: int, config: GateConfig, holdout_days: int | None = None
) -> str:
    """In words: which slice values the gate judges, and when none can be, why and what
    holdout would be needed at this volume (empty when the contract has no slices)."""
    if slices is None or len(slices) == 0:
        return ""
    rows = slices["rows"].astype(int)
    need = config.min_slice_rows
    gated = int((rows >= need).sum())
    over = f" over {holdout_days} day(s)" if holdout_days else ""
    if gated == len(rows):
        return f"all {len(rows)} slice value(s) have >= {need:,} holdout rows and are gated"
    largest, smallest = int(rows.max()), int(rows.min())
    if gated:
        return (
            f"{gated} of {len(rows)} slice value(s) gated; {len(rows) - gated} with fewer than "
            f"{need:,} holdout rows (smallest: {smallest:,}) are reported, not gated"
        )
    scale = math.ceil(need / max(largest, 1))
    if holdout_days:
        wanted = f"about {holdout_days * scale} days of holdout (training.holdout_days)"
    else:
        wanted = f"about {scale} times the holdout's days (training.holdout_days)"
    return (
        f"slices were not gated: the holdout has {n_rows:,} labelled rows{over} and its "
        f"largest slice value {largest:,}, fewer than the {need:,} rows a slice needs before "
        f"its difference can block a promotion (min_slice_rows); at this volume {wanted} "
        "would let the largest slice value be gated"
    )


def decide(
    result: EvalResult, config: GateConfig, is_first: bool, holdout_days: int | None = None
) -> GateDecision:
    """Promote or not, with a plain-English reason for every rule (passed or failed)."""
    label = METRIC_LABELS.get(result.metric, result.metric)
    pct = f"{config.confidence:.0%}"
    against = result.reference_name
    if math.isclose(config.confidence, result.confidence):
        ci_low, ci_high = result.ci_low, result.ci_high
    else:
        ci_low, ci_high = percentile_interval(result.boot_diffs, config.confidence)
    reasons: list[str] = []
    ok = True

    if result.n_rows == 0 or math.isnan(ci_low):
        reasons.append(
            f"the holdout has {result.n_rows} labelled rows usable for {label}: the difference "
            "cannot be estimated, so nothing is promoted"
        )
        return GateDecision(
            False,
            reasons,
            result.metric,
            result.diff,
            ci_low,
            ci_high,
            [],
            is_first,
            config.confidence,
        )

    c_val = result.challenger_metrics.get(result.metric, math.nan)
    r_val = result.reference_metrics.get(result.metric, math.nan)
    summary = (
        f"{label} {c_val:.4f} vs {r_val:.4f} for {against} on the same {result.n_rows:,} "
        f"holdout rows: difference {_f(result.diff)} (positive = challenger better), "
        f"{pct} CI {_f(ci_low)} to {_f(ci_high)} from {result.bootstrap_samples} paired "
        f"bootstrap resamples of {result.resampled}"
    )
    if config.require == "not_worse" and not is_first:
        if ci_high >= -config.margin:
            reasons.append(
                f"not worse than {against}: {summary}; a retrain of the chosen schedule "
                f"replaces the champion unless the upper bound is below {-config.margin:+.4f}"
            )
        else:
            ok = False
            reasons.append(
                f"worse than {against}: {summary}; the upper bound is below "
                f"{-config.margin:+.4f}, so even a scheduled retrain keeps the champion"
            )
    elif ci_low > config.margin:
        reasons.append(
            f"better than {against}: {summary}; the lower bound is above the margin "
            f"{config.margin:+.4f}"
        )
    else:
        ok = False
        if ci_high < 0:
            verdict = f"worse than {against}"
        elif result.diff > 0:
            verdict = f"not convincingly better than {against}"
        else:
            verdict = f"no better than {against}"
        reasons.append(
            f"{verdict}: {summary}; promotion needs the lower bound above the margin "
            f"{config.margin:+.4f}"
        )

    failed: list[str] = []
    slices = result.slices
    gated = (slices["rows"] >= config.min_slice_rows) & slices["estimable"].astype(bool)
    findings: list[str] = []
    for i in slices.index[gated]:
        row = slices.loc[i]
        if math.isclose(config.confidence, result.confidence):
            low, high = row["ci_low"], row["ci_high"]
        else:
            low, high = percentile_interval(result.slice_boot[i], config.confidence)
        if high < -config.slice_tolerance:
            name = f"{row['slice']}={row['value']}"
            failed.append(name)
            findings.append(
                f"slice {name} ({row['rows']:,} rows): {label} {row['challenger']:.4f} vs "
                f"{row['reference']:.4f}, difference {_f(row['diff'])} ({pct} CI {_f(low)} to "
                f"{_f(high)}) is worse than {against} by more than the tolerance "
                f"{config.slice_tolerance:.4f}"
            )
    n_gated = int(gated.sum())
    n_small = int((slices["rows"] < config.min_slice_rows).sum())
    n_unest = int(((slices["rows"] >= config.min_slice_rows) & ~slices["estimable"]).sum())
    scope = (
        f"{n_gated} slice(s) with >= {config.min_slice_rows:,} rows checked"
        + (f", {n_small} smaller slice(s) not gated" if n_small else "")
        + (f", {n_unest} without both classes not gated" if n_unest else "")
    )
    note = slice_coverage(slices, result.n_rows, config, holdout_days)
    if is_first:
        reasons.append(
            f"first model: no champion yet, so {against} is the floor and slice checks are "
            f"for information only ({scope})"
        )
        reasons.extend(f"(information) {f}" for f in findings)
        failed = []
    elif findings:
        ok = False
        reasons.extend(findings)
    else:
        reasons.append(
            f"no slice is worse than {against} by more than {config.slice_tolerance:.4f} "
            f"at {pct} confidence ({scope})"
        )
    if note and n_gated == 0:
        reasons.append(note)
    if result.skipped_slices:
        reasons.append(
            f"slice column(s) {result.skipped_slices} are not in the features table and were "
            "not checked"
        )

    return GateDecision(
        promote=ok,
        reasons=reasons,
        metric=result.metric,
        diff=result.diff,
        ci_low=ci_low,
        ci_high=ci_high,
        failed_slices=failed,
        is_first=is_first,
        confidence=config.confidence,
        slices_gated=n_gated,
        slice_note=note,
    )
