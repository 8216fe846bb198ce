"""Monitoring's lake tables and their readers: predictions, windows of features with a
model's predictions, labelled predictions, the data clock. The reference, the drift
outcome, realised rows and the trigger's reading of them live in the modules named below.

Tables (``paths.partition_file(table, day)``):

- ``predictions``: the id columns, ``event_time``, ``partition_date``, ``row`` (position in
  the features partition, so a 1:1 join back to features needs no ids), ``prediction``,
  ``model_version`` and, while a challenger other than the champion exists,
  ``shadow_prediction`` / ``shadow_model_version`` (shadow scoring).
- ``drift``: one row per feature and one for the prediction
  (``driftloop.monitoring.drift_outcome``), with ``summary.json`` beside it (the day's
  verdicts, calibrated drift and estimated performance included;
  ``driftloop.monitoring.status_section.read_signals`` reads it).
- ``performance``: one row per day: the day's realised metrics
  (``driftloop.monitoring.realised``) and the champion's pooled verdict
  (``driftloop.monitoring.performance``).

The reference of a champion: ``driftloop.monitoring.reference``.

Memory: the drift statistics run on the full window (``drift_table`` sorts one column at
a time) against the <= 200k-row reference; only the columns that are tested are read;
Evidently's HTML page runs on a seeded sample (``driftloop.monitoring.drift_report``,
default 20k rows a side). The reference is sampled file by file, so building it holds one training
partition at a time, never the whole window.

The data clock: labels of day D are due once the lake holds raw data at or past the end
of D plus ``contract.label_delay``, where "the lake holds" is the maximum event time of the
latest existing raw partition. It is the data's own time, not the wall clock, which makes
a replay of history honest: performance of a replayed day is judged only once the replay
has delivered the data that would, in real life, have come with its labels.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from driftloop.training.columns import is_arrow_table, row_slice

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

from driftloop.data.contract import ColumnType, Contract
from driftloop.data.lake import (
    days_between,
    existing_partitions,
)
from driftloop.monitoring.drift import Kind
from driftloop.names import (
    DAY,
    FEATURES_TABLE,
    LABEL,
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
    Table (see model_loading.load_scoring_model); `threads` caps the model's prediction
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
    return [*contract.id_columns, "event_time", DAY]


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


def columns_in(path: Path, wanted: list[str]) -> list[str]:
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
        frame = pq.read_table(path, columns=columns_in(path, columns)).to_pandas()
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


def labelled_predictions(
    contract: Contract, paths: DatasetPaths, day: str, version: str, scorer: ScoreFn
) -> pd.DataFrame:
    """``label`` and ``prediction`` of a day by model ``version``: the predictions partition
    beside the features' label column alone when ``version`` scored the day, else the day
    scored now (``window_frame``)."""
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    features = paths.partition_file(FEATURES_TABLE, day)
    predictions = paths.partition_file(PREDICTIONS_TABLE, day)
    if not features.exists():
        return pd.DataFrame(columns=[LABEL, PREDICTION])
    if predictions.exists():
        stored = pq.read_table(predictions, columns=[ROW, PREDICTION, MODEL_VERSION]).to_pandas()
        labels = pq.read_table(features, columns=[LABEL]).column(0).to_numpy(zero_copy_only=False)
        stored = stored.sort_values(ROW)
        if (
            len(stored) == len(labels)
            and (stored[MODEL_VERSION].astype(str) == str(version)).all()
            and np.array_equal(stored[ROW].to_numpy(), np.arange(len(labels)))
        ):
            return pd.DataFrame(
                {LABEL: labels.astype("float64"), PREDICTION: stored[PREDICTION].to_numpy()}
            )
    frame, _ = window_frame(contract, paths, [day], version, scorer, with_label=True)
    return frame[[LABEL, PREDICTION]]


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
