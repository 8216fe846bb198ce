"""Monitoring without Dagster: scoring tables, the champion's reference, drift, labels, signals.

Tables (``paths.partition_file(table, day)``):

- ``predictions``: the id columns, ``event_time``, ``partition_date``, ``row`` (position in
  the features partition, so a 1:1 join back to features needs no ids), ``prediction``,
  ``model_version`` and, while a challenger other than the champion exists,
  ``shadow_prediction`` / ``shadow_model_version`` (shadow scoring).
- ``drift``: one row per feature and one for the prediction
  (``driftloop.monitoring.drift``'s result),
  with ``summary.json`` beside it (the day's verdict; ``read_signals`` reads it).
- ``performance``: one row per day: the champion's realised metrics on the day's labelled
  rows against its own holdout metric.

The reference of a champion is its training window (the features partitions of the days
in its ``driftloop.train_days`` tag) plus the champion's own predictions on it, sampled to
at most ``REFERENCE_MAX_ROWS`` rows with a fixed seed and cached per version under
``<data root>/reports/<dataset>/reference/v<version>.parquet`` (a version's window never
changes, so the cache never goes stale).

Memory (the 2 GB budget at 1M rows in the current window): the drift statistics run on the
full window (``drift_table`` sorts one column at a time) against the <= 200k-row reference;
only the columns that are tested are read (about 0.4 GB for the 22 flights features at 1M
rows); Evidently's HTML page runs on a seeded sample (``driftloop.monitoring.drift_report``, default
20k rows a side). The reference is sampled file by file, so building it holds one training
partition at a time, never the whole window.

The data clock: labels of day D are due once the lake holds raw data at or past the end
of D plus ``contract.label_delay``, where "the lake holds" is the maximum event time of the
latest existing raw partition. It is the data's own time, not the wall clock, which makes
a replay of history honest: performance of a replayed day is judged only once the replay
has delivered the data that would, in real life, have come with its labels.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

from driftloop.data.contract import ColumnType, Contract
from driftloop.data.lake import (
    days_between,
    existing_partitions,
    write_parquet_atomic,
    write_text_atomic,
)
from driftloop.evaluation.metrics import HIGHER_IS_BETTER, PRIMARY_METRIC, compute_metrics
from driftloop.monitoring.drift import Kind, column_drift, drift_table
from driftloop.monitoring.trigger import WindowSignal, performance_breached
from driftloop.names import (
    DRIFT_TABLE,
    FEATURES_TABLE,
    LABEL,
    PERFORMANCE_TABLE,
    PREDICTIONS_TABLE,
    RAW_TABLE,
)
from driftloop.paths import DatasetPaths

SUMMARY_FILE = "summary.json"

ROW = "row"
PREDICTION = "prediction"
MODEL_VERSION = "model_version"
SHADOW_PREDICTION = "shadow_prediction"
SHADOW_MODEL_VERSION = "shadow_model_version"

REFERENCE_MAX_ROWS = 200_000
REFERENCE_SEED = 20130101
DRIFT_SHARE_THRESHOLD = 0.5
TOP_COLUMNS = 5
# Realised-performance tolerances (see default_tolerance).
ABSOLUTE_TOLERANCE = 0.05
RELATIVE_TOLERANCE = 0.10
MIN_LABELLED_ROWS = 50
SCORE_CHUNK_ROWS = 250_000


class ScoreFn(Protocol):
    """score(frame) -> one score per row; the frame is a pandas DataFrame or a pyarrow
    Table (see registry.load_scoring_model); `threads` caps the model's prediction
    threads (0: its library's default)."""

    def __call__(self, frame: pd.DataFrame | pa.Table, threads: int = 0) -> np.ndarray: ...


# ----------------------------------------------------------------------------- days


def parse_day_range(text: str | None) -> list[str]:
    """'2013-01-01..2013-02-28' (or one day) -> every ISO day in it; '' -> []."""
    if not text:
        return []
    first, _, last = text.partition("..")
    start = date.fromisoformat(first.strip())
    end = date.fromisoformat((last or first).strip())
    return days_between(start, end)


def training_days(tags: dict[str, str]) -> list[str]:
    """The days a model version trained on: ``driftloop.train_days``, else the whole
    ``dagster.partitions`` window it was built from."""
    return parse_day_range(tags.get("driftloop.train_days") or tags.get("dagster.partitions"))


def trailing_days(day: str, n: int) -> list[str]:
    """The n days ending with ``day`` (inclusive), oldest first."""
    end = date.fromisoformat(day)
    return days_between(end - timedelta(days=max(n, 1) - 1), end)


# ------------------------------------------------------------------------- scoring


def feature_kinds(contract: Contract) -> dict[str, Kind]:
    """Drift kind of each model feature: categorical and boolean columns are categories."""
    kinds: dict[str, Kind] = {}
    for name in contract.features:
        kind = contract.feature_type(name)
        categorical = kind in (ColumnType.categorical, ColumnType.boolean)
        kinds[name] = "categorical" if categorical else "numeric"
    return kinds


def score_frame(
    score: ScoreFn,
    frame: pd.DataFrame | pa.Table,
    chunk_rows: int = SCORE_CHUNK_ROWS,
    threads: int = 0,
) -> np.ndarray:
    """Scores of every row of a DataFrame or an Arrow table, in chunks: the model's input
    matrix (or MLflow's copy of the input) is built per chunk, which bounds its memory.
    `threads` caps the model's prediction threads (0: its library's default)."""
    import numpy as np

    if len(frame) == 0:
        return np.empty(0, dtype="float64")
    from driftloop.training.models import row_slice

    parts = [
        np.asarray(score(row_slice(frame, i, chunk_rows), threads), dtype="float64").ravel()
        for i in range(0, len(frame), chunk_rows)
    ]
    scores = np.concatenate(parts)
    if len(scores) != len(frame):
        raise ValueError(f"the model returned {len(scores)} scores for {len(frame)} rows")
    return scores


def prediction_key_columns(contract: Contract) -> list[str]:
    """The features columns a predictions partition carries over (when present)."""
    return [*contract.id_columns, "event_time", "partition_date"]


def predictions_table(
    contract: Contract,
    features: pd.DataFrame | pa.Table,
    scores: np.ndarray,
    model_version: str,
    shadow_scores: np.ndarray | None = None,
    shadow_version: str | None = None,
    first_row: int = 0,
) -> pd.DataFrame | pa.Table:
    """The predictions partition of one features partition (same rows, same order); of a
    slice of it starting at row `first_row`, the predictions rows of that slice.

    Given an Arrow table, returns an Arrow table with the same columns and types as the
    pandas path writes (the id strings pass through without becoming Python objects).
    """
    import numpy as np

    from driftloop.training.models import is_arrow_table

    if is_arrow_table(features):
        return _predictions_arrow(
            contract, features, scores, model_version, shadow_scores, shadow_version, first_row
        )
    keep = [c for c in prediction_key_columns(contract) if c in features]
    table = features[keep].reset_index(drop=True).copy()
    table[ROW] = np.arange(first_row, first_row + len(features), dtype="int64")
    table[PREDICTION] = np.asarray(scores, dtype="float64")
    table[MODEL_VERSION] = str(model_version)
    if shadow_scores is not None and shadow_version is not None:
        table[SHADOW_PREDICTION] = np.asarray(shadow_scores, dtype="float64")
        table[SHADOW_MODEL_VERSION] = str(shadow_version)
    return table


def _predictions_arrow(
    contract: Contract,
    features: pa.Table,
    scores: np.ndarray,
    model_version: str,
    shadow_scores: np.ndarray | None,
    shadow_version: str | None,
    first_row: int,
) -> pa.Table:
    import numpy as np
    import pyarrow as pa

    rows = features.num_rows
    columns: dict[str, Any] = {}
    for name in prediction_key_columns(contract):
        if name in features.column_names:
            values = features.column(name)
            if pa.types.is_dictionary(values.type):  # read dictionary-encoded: plain again
                values = values.cast(values.type.value_type)
            columns[name] = values
    columns[ROW] = pa.array(np.arange(first_row, first_row + rows, dtype="int64"))
    columns[PREDICTION] = pa.array(np.asarray(scores, dtype="float64"))
    columns[MODEL_VERSION] = pa.repeat(pa.scalar(str(model_version)), rows)
    if shadow_scores is not None and shadow_version is not None:
        columns[SHADOW_PREDICTION] = pa.array(np.asarray(shadow_scores, dtype="float64"))
        columns[SHADOW_MODEL_VERSION] = pa.repeat(pa.scalar(str(shadow_version)), rows)
    # No schema metadata: the features file's pandas metadata describes other columns.
    return pa.table(columns)


def read_partition(
    paths: DatasetPaths, table: str, day: str, columns: list[str] | None = None
) -> pd.DataFrame:
    """One partition as pandas (only the given columns); FileNotFoundError if absent."""
    import pyarrow.parquet as pq

    path = paths.partition_file(table, day)
    if not path.exists():
        raise FileNotFoundError(f"no {paths.dataset} {table} partition for {day} at {path}")
    return pq.read_table(path, columns=columns).to_pandas()


def _columns_in(path: Path, wanted: list[str]) -> list[str]:
    import pyarrow.parquet as pq

    names = set(pq.ParquetFile(path).schema_arrow.names)
    return [c for c in wanted if c in names]


def window_frame(
    contract: Contract,
    paths: DatasetPaths,
    days: list[str],
    version: str,
    scorer: ScoreFn,
    with_label: bool = False,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The features (and label) of the days that have a features partition, with the
    ``prediction`` of model ``version``.

    Predictions come from the predictions partition when ``version`` made them, else the
    day is scored now (``scorer`` is only called then): a window scored partly by an
    earlier champion must not be compared with this champion's reference. Returns the
    frame and, per day, where its predictions came from ("predictions" or "scored").
    """
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    columns = list(contract.features) + ([LABEL] if with_label else [])
    frames, sources = [], {}
    for day in days:
        path = paths.partition_file(FEATURES_TABLE, day)
        if not path.exists():
            continue
        frame = pq.read_table(path, columns=_columns_in(path, columns)).to_pandas()
        predictions = paths.partition_file(PREDICTIONS_TABLE, day)
        stored = None
        if predictions.exists():
            stored = pq.read_table(predictions, columns=[ROW, PREDICTION, MODEL_VERSION])
            stored = stored.to_pandas().sort_values(ROW)
            same = (
                len(stored) == len(frame)
                and (stored[MODEL_VERSION].astype(str) == str(version)).all()
                and np.array_equal(stored[ROW].to_numpy(), np.arange(len(frame)))
            )
            stored = stored if same else None
        if stored is not None:
            frame[PREDICTION] = stored[PREDICTION].to_numpy(dtype="float64")
            sources[day] = "predictions"
        else:
            frame[PREDICTION] = score_frame(scorer, frame)
            sources[day] = "scored"
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=[*columns, PREDICTION]), sources
    return pd.concat(frames, ignore_index=True), sources


# ----------------------------------------------------------------------- reference


def reference_path(paths: DatasetPaths, version: str) -> Path:
    return paths.reports / "reference" / f"v{version}.parquet"


def sample_features(
    paths: DatasetPaths,
    days: list[str],
    columns: list[str],
    max_rows: int = REFERENCE_MAX_ROWS,
    seed: int = REFERENCE_SEED,
) -> pd.DataFrame:
    """At most ``max_rows`` rows of the days' features partitions, a seeded uniform sample
    over all their rows, read one file at a time (memory: one partition, not the window)."""
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    files = [paths.partition_file(FEATURES_TABLE, d) for d in days]
    files = [f for f in files if f.exists()]
    counts = np.array([pq.ParquetFile(f).metadata.num_rows for f in files], dtype="int64")
    total = int(counts.sum())
    if total == 0:
        return pd.DataFrame(columns=columns)
    chosen = None
    if total > max_rows:
        chosen = np.sort(np.random.default_rng(seed).choice(total, size=max_rows, replace=False))
    starts = np.concatenate([[0], np.cumsum(counts)])
    frames = []
    for i, path in enumerate(files):
        if counts[i] == 0:
            continue
        frame = pq.read_table(path, columns=_columns_in(path, columns)).to_pandas()
        if chosen is not None:
            lo, hi = np.searchsorted(chosen, [starts[i], starts[i + 1]])
            frame = frame.iloc[chosen[lo:hi] - starts[i]]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def reference_data(
    contract: Contract,
    paths: DatasetPaths,
    version: str,
    tags: dict[str, str],
    scorer: ScoreFn,
    max_rows: int = REFERENCE_MAX_ROWS,
    seed: int = REFERENCE_SEED,
) -> pd.DataFrame:
    """A champion's training window (sampled) with its own predictions; cached per version.

    ``scorer`` must be that version's model; it is only called when the cache is built.
    """
    import pyarrow.parquet as pq

    cache = reference_path(paths, version)
    if cache.exists():
        return pq.read_table(cache).to_pandas()
    days = training_days(tags)
    if not days:
        raise ValueError(
            f"{contract.name} v{version}: no training window in its tags "
            "(driftloop.train_days / dagster.partitions)"
        )
    frame = sample_features(paths, days, list(contract.features), max_rows, seed)
    if frame.empty:
        raise FileNotFoundError(
            f"{contract.name} v{version}: none of its training days {days[0]}..{days[-1]} "
            f"has a features partition under {paths.table(FEATURES_TABLE)}"
        )
    frame[PREDICTION] = score_frame(scorer, frame)
    write_parquet_atomic(frame, cache)
    return frame


# --------------------------------------------------------------------------- drift


@dataclass(frozen=True)
class DriftOutcome:
    """One day's drift: the per-column table, the summary written beside it, the verdict."""

    table: pd.DataFrame
    summary: dict[str, Any]

    @property
    def breached(self) -> bool:
        return bool(self.summary["breached"])


def compute_drift(
    contract: Contract,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    day: str,
    version: str,
    window: list[str],
    drift_share_threshold: float = DRIFT_SHARE_THRESHOLD,
    prediction_drift_breaches: bool = True,
) -> DriftOutcome:
    """Drift of every feature (Evidently's rules, all rows) and of the prediction.

    Breached when the share of drifted features reaches ``drift_share_threshold``
    (Evidently's dataset drift), or - with ``prediction_drift_breaches`` - when the
    prediction itself drifted.
    """
    import pandas as pd

    kinds = feature_kinds(contract)
    features = drift_table(reference, current, kinds, drift_share_threshold)
    prediction = column_drift(reference[PREDICTION], current[PREDICTION], "numeric", PREDICTION)
    rows = [{**c.to_dict(), "is_prediction": False} for c in features.columns]
    rows.append({**prediction.to_dict(), "is_prediction": True})
    table = pd.DataFrame(rows)
    table["strength"] = [c.strength for c in [*features.columns, prediction]]
    table.insert(0, "day", day)
    breached = features.dataset_drifted or (prediction_drift_breaches and prediction.drifted)
    summary = {
        "day": day,
        "champion_version": str(version),
        "window": [window[0], window[-1]] if window else [],
        "share_drifted": float(features.share_drifted),
        "dataset_drifted": bool(features.dataset_drifted),
        "prediction_drifted": bool(prediction.drifted),
        "prediction_drift_score": _json_float(prediction.score),
        "prediction_drift_method": prediction.method,
        "breached": bool(breached),
        "drifted_features": [c.column for c in features.columns if c.drifted],
        "top_columns": features.top[:TOP_COLUMNS],
        "thresholds": {
            "drift_share": drift_share_threshold,
            "prediction_drift_breaches": prediction_drift_breaches,
        },
        "reference_rows": len(reference),
        "current_rows": len(current),
        "report_path": None,
    }
    return DriftOutcome(table=table, summary=summary)


def summary_path(paths: DatasetPaths, day: str) -> Path:
    return paths.partition_file(DRIFT_TABLE, day).parent / SUMMARY_FILE


def html_report_path(paths: DatasetPaths, day: str) -> Path:
    return paths.reports / "drift" / f"{day}.html"


def write_drift(paths: DatasetPaths, outcome: DriftOutcome) -> tuple[Path, Path]:
    """The per-column table, then the summary (its presence means the day is complete)."""
    day = outcome.summary["day"]
    table = write_parquet_atomic(outcome.table, paths.partition_file(DRIFT_TABLE, day))
    summary = write_text_atomic(
        json.dumps(outcome.summary, indent=2, default=str) + "\n", summary_path(paths, day)
    )
    return table, summary


def read_drift_summary(paths: DatasetPaths, day: str) -> dict[str, Any] | None:
    path = summary_path(paths, day)
    if not path.exists():
        return None
    return json.loads(path.read_text())


# ---------------------------------------------------------------------- data clock


def data_clock(contract: Contract, paths: DatasetPaths) -> datetime | None:
    """The latest event time the lake holds: max event time of the latest raw partition
    that has any (naive, in the contract's zone). None when there is no raw data."""
    import pandas as pd
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = paths.table(RAW_TABLE)
    for day in reversed(existing_partitions(table)):
        path = paths.partition_file(RAW_TABLE, day)
        column = pq.read_table(path, columns=[contract.event_time.column]).column(0)
        latest = pc.max(column).as_py() if len(column) else None
        if latest is None:
            continue
        stamp = pd.Timestamp(latest)
        if stamp.tzinfo is not None:
            stamp = stamp.tz_convert(contract.timezone).tz_localize(None)
        return stamp.to_pydatetime()
    return None


def labels_due_at(contract: Contract, day: str) -> datetime:
    """When the labels of ``day`` are all known: the end of the day plus the label delay."""
    end_of_day = datetime.combine(date.fromisoformat(day) + timedelta(days=1), time())
    return end_of_day + contract.label_delay


def labels_due(contract: Contract, day: str, clock: datetime | None) -> bool:
    return clock is not None and clock >= labels_due_at(contract, day)


# --------------------------------------------------------------------- performance


def default_tolerance(metric: str) -> tuple[float, bool]:
    """(tolerance, relative) for a primary metric.

    Bounded higher-is-better scores (ROC AUC, R2, precision): an absolute drop of 0.05.
    Error metrics (RMSE, MAE, log loss, Brier) have the target's scale, so an absolute
    tolerance means nothing across datasets: they may rise 10% above the holdout value.
    """
    if HIGHER_IS_BETTER.get(metric, True):
        return ABSOLUTE_TOLERANCE, False
    return RELATIVE_TOLERANCE, True


def performance_floor(reference: float, higher_is_better: bool, tolerance: float, relative: bool):
    if math.isnan(reference):
        return math.nan
    margin = tolerance * abs(reference) if relative else tolerance
    return reference - margin if higher_is_better else reference + margin


def holdout_reference(client: Any, version: Any, metric: str) -> float:
    """The champion's own holdout value of ``metric``: its run's ``holdout_<metric>``,
    else the ``driftloop.holdout_primary`` tag; NaN when neither is there."""
    tags = dict(version.tags or {})
    if version.run_id:
        try:
            metrics = client.get_run(version.run_id).data.metrics
        except Exception:  # a deleted run: fall back to the tag
            metrics = {}
        if f"holdout_{metric}" in metrics:
            return float(metrics[f"holdout_{metric}"])
    if tags.get("driftloop.primary_metric", metric) == metric:
        try:
            return float(tags.get("driftloop.holdout_primary", "nan"))
        except ValueError:
            return math.nan
    return math.nan


def realised_performance(
    contract: Contract,
    day: str,
    labels: np.ndarray,
    scores: np.ndarray,
    *,
    version: str,
    reference: float,
    tolerance: float | None = None,
    relative: bool | None = None,
    min_labelled_rows: int = MIN_LABELLED_ROWS,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """One performance row: the metrics on the labelled rows and the breach verdict.

    A day with fewer than ``min_labelled_rows`` labels is recorded but never breaches:
    a handful of labels says nothing about the model.
    """
    import numpy as np

    primary = PRIMARY_METRIC[contract.task]
    default_value, default_relative = default_tolerance(primary)
    tolerance = default_value if tolerance is None else tolerance
    relative = default_relative if relative is None else relative
    labels = np.asarray(labels, dtype="float64")
    scores = np.asarray(scores, dtype="float64")
    known = ~np.isnan(labels)
    metrics = compute_metrics(contract.task, labels[known], scores[known], threshold)
    higher = HIGHER_IS_BETTER[primary]
    value = metrics[primary]
    enough = int(known.sum()) >= min_labelled_rows
    breached = (
        enough
        and not math.isnan(reference)
        and performance_breached(value, reference, higher, tolerance, relative=relative)
    )
    return {
        "day": day,
        "model_version": str(version),
        "rows": len(labels),
        "labelled_rows": int(known.sum()),
        **{name: float(v) for name, v in metrics.items()},
        "primary_metric": primary,
        "value": float(value),
        "reference": float(reference),
        "tolerance": float(tolerance),
        "relative_tolerance": bool(relative),
        "floor": float(performance_floor(reference, higher, tolerance, relative)),
        "enough_labels": bool(enough),
        "breached": bool(breached),
    }


# ------------------------------------------------------------------------- signals


def _performance_row(paths: DatasetPaths, day: str) -> dict[str, Any] | None:
    import pyarrow.parquet as pq

    path = paths.partition_file(PERFORMANCE_TABLE, day)
    if not path.exists():
        return None
    records = pq.read_table(path).to_pandas().to_dict(orient="records")
    return records[0] if records else None


def read_signals(paths: DatasetPaths, days: list[str]) -> list[WindowSignal]:
    """One ``WindowSignal`` per day: drift from the drift summary (not breached when the
    day has none), performance from the performance partition (None until labels came)."""
    signals = []
    for day in days:
        summary = read_drift_summary(paths, day)
        performance = _performance_row(paths, day)
        signals.append(
            WindowSignal(
                day=date.fromisoformat(day),
                drift_breached=bool(summary and summary.get("breached")),
                performance_breached=None if performance is None else bool(performance["breached"]),
            )
        )
    return signals


def _json_float(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) or math.isinf(value) else value


def latest_monitoring(paths: DatasetPaths, n: int = 7) -> dict[str, Any]:
    """For the status CLI: the latest drift verdict, the last n drift days and the last n
    days of realised performance, and the latest scored day."""
    import pyarrow.parquet as pq

    drift_days = [d for d in existing_partitions(paths.table(DRIFT_TABLE))][-n:]
    summaries = [s for d in drift_days if (s := read_drift_summary(paths, d)) is not None]
    performance = []
    for day in existing_partitions(paths.table(PERFORMANCE_TABLE))[-n:]:
        row = _performance_row(paths, day)
        if row is None:
            continue
        performance.append(
            {
                "day": day,
                "model_version": str(row.get("model_version")),
                "metric": row.get("primary_metric"),
                "value": _json_float(row.get("value")),
                "reference": _json_float(row.get("reference")),
                "floor": _json_float(row.get("floor")),
                "labelled_rows": int(row.get("labelled_rows", 0)),
                "breached": bool(row.get("breached")),
            }
        )
    scored = existing_partitions(paths.table(PREDICTIONS_TABLE))
    latest_scored = None
    if scored:
        path = paths.partition_file(PREDICTIONS_TABLE, scored[-1])
        versions = pq.read_table(path, columns=[MODEL_VERSION]).column(0).unique().to_pylist()
        latest_scored = {"day": scored[-1], "model_versions": [str(v) for v in versions]}
    keys = ("day", "champion_version", "share_drifted", "dataset_drifted", "prediction_drifted")
    keys += ("breached", "top_columns", "report_path")
    return {
        "latest_drift": {k: summaries[-1].get(k) for k in keys} if summaries else None,
        "drift": [
            {k: s.get(k) for k in ("day", "share_drifted", "prediction_drifted", "breached")}
            for s in summaries
        ],
        "performance": performance,
        "latest_predictions": latest_scored,
    }


def format_monitoring_text(data: dict[str, Any]) -> str:
    """Plain-text block of ``latest_monitoring`` for ``pipelines.status``."""
    lines = []
    scored = data.get("latest_predictions")
    lines.append(
        f"latest scored day: {scored['day']} by v{', v'.join(scored['model_versions'])}"
        if scored
        else "latest scored day: (none)"
    )
    drift = data.get("latest_drift")
    if drift:
        lines.append(
            f"drift {drift['day']} (champion v{drift['champion_version']}): "
            f"{'BREACHED' if drift['breached'] else 'ok'}, share drifted "
            f"{drift['share_drifted']:.2f}, prediction drifted {drift['prediction_drifted']}, "
            f"top {', '.join(drift['top_columns']) or '-'}"
        )
    else:
        lines.append("drift: (no report yet)")
    if data.get("performance"):
        for row in data["performance"]:
            value = "-" if row["value"] is None else f"{row['value']:.4f}"
            floor = "-" if row["floor"] is None else f"{row['floor']:.4f}"
            lines.append(
                f"performance {row['day']} v{row['model_version']}: {row['metric']}={value} "
                f"(floor {floor}, {row['labelled_rows']} labels)"
                + (" BREACHED" if row["breached"] else "")
            )
    else:
        lines.append("performance: (no labelled day yet)")
    return "\n".join(lines)


def register_status_section() -> None:
    """Add "monitoring" to ``driftloop.status`` (call once, e.g. from pipelines.status)."""
    from driftloop import status

    status.register_section(
        "monitoring", lambda ctx: latest_monitoring(ctx.paths), format_monitoring_text
    )
