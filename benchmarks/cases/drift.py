"""drift: our drift statistics (`driftloop.monitoring.drift.drift_table`) vs Evidently's preset.

Both sides get the very same Parquet files (20 numeric + 5 categorical columns, missing
values, seeded drift; `benchmarks.data.drift_frames`) in their own child process. The
timed region is the computation only: `drift_table(reference, current, kinds)` for us,
`Report([DataDriftPreset()]).run(...)` plus `snapshot.dict()` for Evidently (its slow
import and reading the files are left out on both sides). Peak memory is each
child's maximum RSS, which includes the two loaded frames; the note gives the step's own
share (peak minus the RSS just before the step).

Agreement: each side's per-column verdicts over four scenarios (no drift, shifted numeric
columns, changed category mixes, both); the timed pair is the "mixed" scenario at the
full size and counts too. Full: 1M rows a side timed, 100k a side for the other scenarios.
Quick: 30k timed, 5k for the others. What `drift_report` adds beyond these statistics
(reading the window, the reference cache, the optional Evidently HTML page on a 20k-row
sample) is not in the figure.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from benchmarks import (
    current_rss_mb,
    median,
    python_child,
    report,
    row,
    self_peak_mb,
)
from benchmarks.data import DRIFT_KINDS, SCENARIOS, write_drift_frames

TARGET_SPEEDUP = 20.0
TARGET_AGREEMENT = 0.95
TARGET_MEMORY_MB = 1024.0
MODULE = "benchmarks.cases.drift"


# ------------------------------------------------------------------------- children


def _ours(pairs: list[tuple[str, str, str]]) -> dict:
    import pandas as pd

    from driftloop.monitoring.drift import drift_table

    out = {}
    for scenario, ref_path, cur_path in pairs:
        reference, current = pd.read_parquet(ref_path), pd.read_parquet(cur_path)
        before = current_rss_mb()
        started = time.perf_counter()
        summary = drift_table(reference, current, DRIFT_KINDS)
        seconds = time.perf_counter() - started
        out[scenario] = {
            "seconds": seconds,
            "rss_before_mb": before,
            "peak_mb": self_peak_mb(),
            "drifted": {c.column: c.drifted for c in summary.columns},
            "methods": {c.column: c.method for c in summary.columns},
            "rows": len(reference),
        }
        del reference, current, summary
    return out


def _evidently(pairs: list[tuple[str, str, str]]) -> dict:
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    from driftloop.monitoring.drift_report import evidently_verdicts

    out = {}
    for scenario, ref_path, cur_path in pairs:
        reference, current = pd.read_parquet(ref_path), pd.read_parquet(cur_path)
        definition = DataDefinition(
            numerical_columns=[c for c, k in DRIFT_KINDS.items() if k == "numeric"],
            categorical_columns=[c for c, k in DRIFT_KINDS.items() if k == "categorical"],
        )
        before = current_rss_mb()
        started = time.perf_counter()
        snapshot = Report([DataDriftPreset()]).run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
        )
        result = snapshot.dict()
        seconds = time.perf_counter() - started
        verdicts = evidently_verdicts(result)
        out[scenario] = {
            "seconds": seconds,
            "rss_before_mb": before,
            "peak_mb": self_peak_mb(),
            "drifted": {c: v.drifted for c, v in verdicts.items()},
            "methods": {c: v.method for c, v in verdicts.items()},
            "rows": len(reference),
        }
        del reference, current, snapshot, result
    return out


def child_main(argv: list[str]) -> None:
    side, *rest = argv
    pairs = [tuple(rest[i : i + 3]) for i in range(0, len(rest), 3)]
    report((_ours if side == "ours" else _evidently)(pairs))


# ---------------------------------------------------------------------------- parent


def sizes(quick: bool) -> tuple[int, int]:
    """(rows a side of the timed pair, rows a side of the agreement scenarios)."""
    return (30_000, 5_000) if quick else (1_000_000, 100_000)


def prepare(folder: Path, timed_rows: int, agreement_rows: int) -> list[tuple[str, str, str]]:
    """The timed 'mixed' pair first, then the other scenarios at the agreement size."""
    ref, cur = write_drift_frames(folder, timed_rows, "mixed", seed=1)
    pairs = [("mixed", str(ref), str(cur))]
    for scenario in SCENARIOS:
        if scenario == "mixed":
            continue
        ref, cur = write_drift_frames(folder, agreement_rows, scenario, seed=2)
        pairs.append((scenario, str(ref), str(cur)))
    return pairs


def agreement(ours: dict, theirs: dict) -> tuple[float, list[str]]:
    """Share of (scenario, column) verdicts that agree, and the ones that do not."""
    total, disagree = 0, []
    for scenario, result in ours.items():
        for column, drifted in result["drifted"].items():
            total += 1
            if theirs[scenario]["drifted"].get(column) != drifted:
                disagree.append(f"{scenario}:{column}")
    return (1 - len(disagree) / total if total else float("nan")), disagree


def run(quick: bool) -> list[dict]:
    timed_rows, agreement_rows = sizes(quick)
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        pairs = prepare(Path(tmp), timed_rows, agreement_rows)
        args = [a for pair in pairs for a in pair]
        # ours, Evidently, ours: our figure is the median of two runs around theirs
        # (--quick: one run of each).
        first = python_child(MODULE, "ours", *args)
        theirs = python_child(MODULE, "evidently", *args)
        second = first if quick else python_child(MODULE, "ours", *pairs[0])
    ours = first.result
    ours_seconds = median([ours["mixed"]["seconds"], second.result["mixed"]["seconds"]])
    their_seconds = theirs.result["mixed"]["seconds"]
    speedup = their_seconds / ours_seconds
    share, disagree = agreement(ours, theirs.result)
    peak = max(first.peak_memory_mb, second.peak_memory_mb)
    own = ours["mixed"]["peak_mb"] - ours["mixed"]["rss_before_mb"]
    met_speed, met_agree = speedup >= TARGET_SPEEDUP, share >= TARGET_AGREEMENT
    met_memory = peak <= TARGET_MEMORY_MB
    misses = [
        what
        for what, ok in (("speed", met_speed), ("agreement", met_agree), ("memory", met_memory))
        if not ok
    ]
    note = (
        f"drift_table {ours_seconds:.2f} s vs Evidently {their_seconds:.1f} s on the 'mixed' "
        f"scenario ({timed_rows:,} rows a side); verdicts agree on {share:.1%} of "
        f"{sum(len(r['drifted']) for r in ours.values())} column verdicts over "
        f"{len(ours)} scenarios (other scenarios at {agreement_rows:,} rows a side)"
        + (f", disagreeing: {', '.join(disagree)}" if disagree else "")
        + f". Peak RSS ours {peak:.0f} MB (the step's own share {own:.0f} MB, the rest is "
        f"the two loaded frames); Evidently {theirs.peak_memory_mb:.0f} MB. Timed region: "
        "the computation only, imports and file reads excluded on both sides."
        + (f" Missed: {', '.join(misses)}." if misses else "")
    )
    return [
        row(
            case="drift",
            figure=round(ours_seconds, 3),
            unit="s",
            baseline=round(their_seconds, 3),
            ratio=round(speedup, 1),
            peak_memory_mb=round(peak, 1),
            size=f"{timed_rows:,} rows a side, 20 numeric + 5 categorical",
            target=">= 20x faster, >= 95% verdict agreement, <= 1 GB",
            met=met_speed and met_agree and met_memory,
            note=note,
            agreement=round(share, 4),
            baseline_peak_memory_mb=round(theirs.peak_memory_mb, 1),
            step_memory_mb=round(own, 1),
        )
    ]


if __name__ == "__main__":
    child_main(sys.argv[1:])
