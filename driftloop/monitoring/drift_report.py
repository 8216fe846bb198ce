"""Evidently 0.7's own drift page (HTML) for people, run on a seeded sample of each side.

Evidently's DataDriftPreset is slow and memory-hungry at a million rows a side (the drift
benchmark, docs/performance.md), so the page is drawn from at most ``sample_rows`` rows a
side; the numbers that drive decisions come from ``driftloop.monitoring.drift.drift_table``
on all rows. The page says it is a sample and of how many rows. Evidently is imported
inside the functions: its import is slow.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from driftloop.monitoring.drift import EVIDENTLY_METHOD_NAMES, P_VALUE_METHODS, Kind

_P_VALUE_DISPLAY_NAMES = {EVIDENTLY_METHOD_NAMES[m] for m in P_VALUE_METHODS}


@dataclass(frozen=True)
class EvidentlyVerdict:
    """Evidently's result for one column, read back from ``snapshot.dict()``."""

    column: str
    method: str  # Evidently's display name, e.g. "Wasserstein distance (normed)"
    score: float
    threshold: float
    drifted: bool


def sample_rows_of(frame: pd.DataFrame, columns: list[str], n: int, seed: int) -> pd.DataFrame:
    """At most ``n`` rows of ``columns``, drawn without replacement with a fixed seed.

    Only the sampled rows are copied (never the whole frame).
    """
    positions = [frame.columns.get_loc(c) for c in columns]
    if len(frame) <= n:
        return frame.iloc[:, positions].reset_index(drop=True)
    rows = np.sort(np.random.default_rng(seed).choice(len(frame), size=n, replace=False))
    return frame.iloc[rows, positions].reset_index(drop=True)


def _usable(series: pd.Series, kind: Kind) -> bool:
    """Evidently fails the whole report on a column with no usable value on one side."""
    if kind == "numeric":
        values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        return bool(np.isfinite(values).any())
    return bool(series.notna().any())


def run_evidently(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: dict[str, Kind],
    sample_rows: int = 20_000,
    seed: int = 0,
) -> tuple[Any, dict[str, Any]]:
    """Evidently's DataDriftPreset (defaults, with its tests) on a sample of each side.

    Returns the snapshot and a description of what was run (rows, sampled rows, columns
    left out because one side had no values).
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    names = list(columns)
    ref = sample_rows_of(reference, names, sample_rows, seed)
    cur = sample_rows_of(current, names, sample_rows, seed + 1)
    kept = {
        name: kind
        for name, kind in columns.items()
        if _usable(ref[name], kind) and _usable(cur[name], kind)
    }
    if not kept:
        raise ValueError(f"no column of {names} has values on both sides")
    definition = DataDefinition(
        numerical_columns=[n for n, k in kept.items() if k == "numeric"],
        categorical_columns=[n for n, k in kept.items() if k == "categorical"],
    )
    kept_names = list(kept)
    snapshot = Report([DataDriftPreset(columns=kept_names)], include_tests=True).run(
        Dataset.from_pandas(cur[kept_names], data_definition=definition),
        Dataset.from_pandas(ref[kept_names], data_definition=definition),
    )
    info = {
        "reference_rows": len(reference),
        "current_rows": len(current),
        "reference_sampled_rows": len(ref),
        "current_sampled_rows": len(cur),
        "sampled": len(ref) < len(reference) or len(cur) < len(current),
        "seed": seed,
        "skipped_columns": [n for n in names if n not in kept],
    }
    return snapshot, info


def _banner(info: dict[str, Any]) -> str:
    if info["sampled"]:
        text = (
            f"This Evidently report is computed on a seeded random sample (seed {info['seed']}): "
            f"{info['reference_sampled_rows']:,} of {info['reference_rows']:,} reference rows "
            f"and {info['current_sampled_rows']:,} of {info['current_rows']:,} current rows. "
            "driftloop's drift verdicts use all rows."
        )
    else:
        text = (
            f"This Evidently report uses all rows: {info['reference_rows']:,} reference rows "
            f"and {info['current_rows']:,} current rows (no sampling)."
        )
    if info["skipped_columns"]:
        text += " Left out (no values on one side): " + ", ".join(info["skipped_columns"]) + "."
    return (
        '<div id="driftloop-sample-note" style="font-family:sans-serif;padding:12px 16px;'
        'background:#fff8e1;border-bottom:1px solid #e0c060">'
        f"{html.escape(text)}</div>"
    )


def evidently_html(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: dict[str, Kind],
    path: str | Path,
    sample_rows: int = 20_000,
    seed: int = 0,
) -> Path:
    """Write Evidently's data drift page for a seeded sample of each side to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot, info = run_evidently(reference, current, columns, sample_rows, seed)
    # save_html only writes when given a str (a Path is silently ignored in 0.7.23).
    snapshot.save_html(str(path))
    page = path.read_text(encoding="utf-8")
    page = page.replace("<body>", "<body>\n" + _banner(info), 1)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path


def evidently_verdicts(snapshot_dict: dict[str, Any]) -> dict[str, EvidentlyVerdict]:
    """Per-column verdicts from ``snapshot.dict()`` of a DataDriftPreset report.

    The score and method come from each ``ValueDrift`` metric; the verdict from its
    "drift" test when the report ran with tests (FAIL = drift), else from the score and
    threshold by Evidently's rule (p-value methods: below; distances: at or above).
    """
    statuses: dict[str, str] = {}
    for test in snapshot_dict.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        if test.get("id") == "drift" and params.get("type", "").endswith("ValueDrift"):
            statuses[params["column"]] = test["status"]
    verdicts: dict[str, EvidentlyVerdict] = {}
    for metric in snapshot_dict.get("metrics", []):
        config = metric.get("config", {})
        if not config.get("type", "").endswith(":ValueDrift"):
            continue
        column, method = config["column"], config["method"]
        score, threshold = float(metric["value"]), float(config["threshold"])
        if column in statuses:
            drifted = statuses[column] == "FAIL"
        elif method == EVIDENTLY_METHOD_NAMES["ks"]:
            drifted = score <= threshold
        elif method in _P_VALUE_DISPLAY_NAMES:
            drifted = score < threshold
        else:
            drifted = score >= threshold
        verdicts[column] = EvidentlyVerdict(column, method, score, threshold, drifted)
    return verdicts


def evidently_drift_share(snapshot_dict: dict[str, Any]) -> float:
    """Share of drifted columns from the preset's ``DriftedColumnsCount`` metric."""
    for metric in snapshot_dict.get("metrics", []):
        if metric.get("config", {}).get("type", "").endswith(":DriftedColumnsCount"):
            return float(metric["value"]["share"])
    raise KeyError("no DriftedColumnsCount metric in the snapshot")
