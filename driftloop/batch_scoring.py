"""Score one features partition into its predictions partition, batch by batch.

While batch i is scored here, batch i+1 is read and decoded and batch i-1 is compressed
and written, in a two-thread pool (Parquet decoding, zstd and LightGBM's predict all
release the GIL), so the Parquet work, which on a 1M-row partition takes about as long as
the trees, is mostly off the critical path. LightGBM predicts with one thread per core
(its default; the training `num_threads` does not reach prediction), so the three share
the cores rather than each having one; the pool's threads run at a lower priority
(`IO_THREAD_NICENESS`), so the prediction threads, which wait for the slowest of them at
the end of every call, are not the ones left waiting, and reading and writing fill the
gaps between predictions. The file is the same as a whole-table write would
give (same rows, order, columns and types), in row groups of `BATCH_ROWS` rows, and it
appears atomically (`lake.parquet_sink`)."""

from __future__ import annotations

import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from driftloop.contract import Contract
from driftloop.lake import parquet_sink
from driftloop.monitoring import (
    FEATURES_TABLE,
    MODEL_VERSION,
    PREDICTIONS_TABLE,
    SHADOW_MODEL_VERSION,
    ScoreFn,
    predictions_table,
    score_frame,
)
from driftloop.paths import DatasetPaths

if TYPE_CHECKING:
    from pathlib import Path

BATCH_ROWS = 131_072
# Niceness of the read-ahead and write-behind threads (Linux; the scoring thread keeps the
# process's). Measured on the 2-core benchmark machine: the 1M-row step 7% faster in 7 of
# 8 alternating pairs, with 6% less CPU (less time spent by prediction threads waiting).
IO_THREAD_NICENESS = 10
# Low-cardinality columns of a predictions file; the rest (ids, times, scores) are unique.
DICTIONARY_COLUMNS = ["partition_date", MODEL_VERSION, SHADOW_MODEL_VERSION]


@dataclass(frozen=True)
class Scorer:
    """A loaded model's score function and the registry version it belongs to."""

    score: ScoreFn
    version: str


@dataclass
class ScoredDay:
    """What scoring one day wrote, and where the time went (the three parts overlap)."""

    path: Path
    rows: int = 0
    prediction_sum: float = 0.0
    shadow_prediction_sum: float = 0.0
    shadow_abs_difference_sum: float = 0.0
    read_seconds: float = 0.0  # reading and decoding batches (pool thread)
    score_seconds: float = 0.0  # the models' matrices and trees (this thread)
    write_seconds: float = 0.0  # building, compressing and writing batches (pool thread)

    def mean(self, total: float) -> float:
        return total / self.rows if self.rows else 0.0


def score_day(
    contract: Contract,
    paths: DatasetPaths,
    day: str,
    champion: Scorer,
    shadow: Scorer | None = None,
    columns: list[str] | None = None,
    dictionary: list[str] | None = None,
    batch_rows: int = BATCH_ROWS,
) -> ScoredDay:
    """Write the predictions partition of `day`: `columns` of its features (None: all)
    scored by `champion` and, beside it, by `shadow`; `dictionary` columns are read
    dictionary-encoded. FileNotFoundError if the features partition is absent."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = paths.partition_file(FEATURES_TABLE, day)
    if not source.exists():
        raise FileNotFoundError(f"no {paths.dataset} features partition for {day} at {source}")
    features = pq.ParquetFile(source, read_dictionary=dictionary or None)
    names = features.schema_arrow.names
    wanted = None if columns is None else [c for c in dict.fromkeys(columns) if c in names]
    # One decoding thread: the model's prediction already runs a thread per core.
    batches = features.iter_batches(batch_size=batch_rows, columns=wanted, use_threads=False)
    result = ScoredDay(path=paths.partition_file(PREDICTIONS_TABLE, day))

    def read_next() -> Any:
        started = time.perf_counter()
        batch = next(batches, None)
        result.read_seconds += time.perf_counter() - started
        return batch

    def write(sink: Any, table: pa.Table) -> None:
        started = time.perf_counter()
        sink.write(table)
        result.write_seconds += time.perf_counter() - started

    def score(table: pa.Table) -> pa.Table:
        """A batch's predictions rows, scored in this thread."""
        started = time.perf_counter()
        scores = score_frame(champion.score, table)
        shadow_scores = score_frame(shadow.score, table) if shadow else None
        result.score_seconds += time.perf_counter() - started
        out = predictions_table(
            contract,
            table,
            scores,
            champion.version,
            shadow_scores,
            shadow.version if shadow else None,
            first_row=result.rows,
        )
        result.rows += table.num_rows
        result.prediction_sum += float(np.sum(scores))
        if shadow_scores is not None:
            result.shadow_prediction_sum += float(np.sum(shadow_scores))
            result.shadow_abs_difference_sum += float(np.sum(np.abs(shadow_scores - scores)))
        return out

    # The pool closes (waiting for its reads and writes) before the sink renames the file.
    with (
        parquet_sink(result.path, DICTIONARY_COLUMNS) as sink,
        ThreadPoolExecutor(2, "score", initializer=lower_thread_priority) as pool,
    ):
        ahead, writing = pool.submit(read_next), None
        while (batch := ahead.result()) is not None:
            ahead = pool.submit(read_next)  # batch i+1 is read while batch i is scored
            out = score(pa.Table.from_batches([batch]))
            if writing is not None:
                writing.result()  # batch i-1 was written meanwhile: the file stays in order
            writing = pool.submit(write, sink, out)
        if writing is None:  # an empty partition still gets its (empty) predictions file
            empty = features.schema_arrow.empty_table()
            empty = empty if wanted is None else empty.select(wanted)
            writing = pool.submit(write, sink, score(empty))
        writing.result()
    return result


def lower_thread_priority(niceness: int = IO_THREAD_NICENESS) -> None:
    """Make the calling thread yield the CPU to the process's other threads (Linux, where
    a thread is a task with a niceness of its own; elsewhere nothing happens)."""
    if sys.platform == "linux":
        thread = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, current + niceness))
