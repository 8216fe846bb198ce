"""A champion's drift reference: its training window, sampled per file with a fixed seed, with
each row's day and the champion's own predictions, cached per version under
``<data root>/reports/<dataset>/reference/v<version>.parquet`` (a version's window never
changes, so the cache never goes stale)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

from driftloop.data.contract import Contract
from driftloop.data.lake import write_parquet_atomic
from driftloop.monitoring.signals import (
    PREDICTION,
    REFERENCE_MAX_ROWS,
    REFERENCE_SEED,
    ScoreFn,
    columns_in,
    score_frame,
    training_days,
)
from driftloop.names import DAY, FEATURES_TABLE
from driftloop.paths import DatasetPaths


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
        frame = pq.read_table(path, columns=columns_in(path, columns)).to_pandas()
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
    """A champion's training window (sampled, with each row's ``partition_date``) with its
    own predictions; cached per version.

    ``scorer`` must be that version's model; it is only called when the cache is built.
    """
    import pyarrow.parquet as pq

    cache = reference_path(paths, version)
    if cache.exists() and DAY in pq.ParquetFile(cache).schema_arrow.names:
        return pq.read_table(cache).to_pandas()
    days = training_days(tags)
    if not days:
        raise ValueError(
            f"{contract.name} v{version}: no training window in its tags "
            "(driftloop.train_days / dagster.partitions)"
        )
    # The day of each row lets the drift calibration judge each training day on its own.
    frame = sample_features(paths, days, [*contract.features, DAY], max_rows, seed)
    if frame.empty:
        raise FileNotFoundError(
            f"{contract.name} v{version}: none of its training days {days[0]}..{days[-1]} "
            f"has a features partition under {paths.table(FEATURES_TABLE)}"
        )
    frame[PREDICTION] = score_frame(scorer, frame)
    write_parquet_atomic(frame, cache)
    return frame
