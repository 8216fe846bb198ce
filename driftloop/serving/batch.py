"""Score one features partition into its predictions partition, batch by batch.

Two batches are scored at once, each in a worker thread of its own with an equal share of
the cores for LightGBM (one thread each on 2 cores), while the next batch is read and
decoded and the last one scored is compressed and written, in a two-thread I/O pool:
Parquet decoding, zstd and LightGBM's predict all release the GIL. Two batches on one
thread each keep both cores busy where LightGBM's own threads wait for each other at the
end of every call (docs/performance.md, scoring), and a batch's Python work (its matrix,
its predictions table) runs while the other batch's trees do. Batches are written in their
order: the file is the same as a whole-table write would give (same rows, order, columns
and types), in row groups of at most `BATCH_ROWS` rows, and it appears atomically
(`lake.parquet_sink`)."""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from driftloop.data.contract import Contract
from driftloop.data.lake import ParquetSink, parquet_sink
from driftloop.evaluation.explain import explain, top_contributions_json
from driftloop.monitoring.signals import (
    MODEL_VERSION,
    SHADOW_MODEL_VERSION,
    ScoreFn,
    predictions_table,
    score_frame,
)
from driftloop.names import DAY, FEATURES_TABLE, PREDICTIONS_TABLE
from driftloop.paths import DatasetPaths

if TYPE_CHECKING:
    from pathlib import Path

    import pyarrow as pa

    from driftloop.training.model_base import TabularModel

# One block of the compiled scorer (`PREDICT_BLOCK_ROWS`): a process's first day allocates
# its batches' Arrow buffers from fresh memory, which the kernel zeroes page by page, so
# fewer rows in flight cost less (docs/performance.md, scoring).
BATCH_ROWS = 65_536
# Batches scored at once; each worker's model predicts with its share of the cores.
SCORING_WORKERS = 2
# Low-cardinality columns of a predictions file; the rest (ids, times, scores) are unique.
DICTIONARY_COLUMNS = [DAY, MODEL_VERSION, SHADOW_MODEL_VERSION]


@dataclass(frozen=True)
class Scorer:
    """A loaded model's score function and the registry version it belongs to."""

    score: ScoreFn
    version: str


@dataclass(frozen=True)
class Explainer:
    """Adds each row's `top` largest contributions of `model` (the champion's TabularModel,
    `driftloop.evaluation.explain.tabular_model`) as the JSON column `top_contributions`."""

    model: TabularModel
    top: int = 5


TOP_CONTRIBUTIONS = "top_contributions"


def explained(table: pa.Table, rows: pa.Table, explainer: Explainer) -> pa.Table:
    """`rows` (the predictions of `table`) with the top contributions column appended."""
    import pyarrow as pa

    texts = (
        top_contributions_json(explain(explainer.model, table), explainer.top) if len(table) else []
    )
    return rows.append_column(TOP_CONTRIBUTIONS, pa.array(texts, type=pa.string()))


@dataclass
class ScoredDay:
    """What scoring one day wrote, and where the time went (the parts overlap)."""

    path: Path
    rows: int = 0
    prediction_sum: float = 0.0
    shadow_prediction_sum: float = 0.0
    shadow_abs_difference_sum: float = 0.0
    seconds: float = 0.0  # the whole day, reading to the file in place
    read_seconds: float = 0.0  # reading and decoding batches (I/O thread)
    score_seconds: float = 0.0  # the models' matrices and trees, summed over the workers
    write_seconds: float = 0.0  # compressing and writing batches (I/O thread)

    def mean(self, total: float) -> float:
        return total / self.rows if self.rows else 0.0


@dataclass
class ScoredBatch:
    """One batch's predictions rows and its share of the day's figures."""

    table: pa.Table
    prediction_sum: float
    shadow_prediction_sum: float = 0.0
    shadow_abs_difference_sum: float = 0.0
    score_seconds: float = 0.0


def balanced_batch_rows(rows: int, most: int, workers: int = SCORING_WORKERS) -> int:
    """Rows per batch: at most `most`, in a number of batches that is a multiple of
    `workers` and of near-equal sizes, so that the workers finish together and none is
    left alone with a short last batch (and half the cores idle)."""
    rounds = max(1, -(-rows // (most * workers)))
    return max(1, -(-rows // (rounds * workers)))


def prediction_threads(workers: int = SCORING_WORKERS) -> int:
    """Each scoring worker's share of the cores (at least one thread)."""
    return max(1, (os.cpu_count() or 1) // workers)


def score_day(
    contract: Contract,
    paths: DatasetPaths,
    day: str,
    champion: Scorer,
    shadow: Scorer | None = None,
    columns: list[str] | None = None,
    dictionary: list[str] | None = None,
    batch_rows: int = BATCH_ROWS,
    explainer: Explainer | None = None,
) -> ScoredDay:
    """Write the predictions partition of `day`: `columns` of its features (None: all)
    scored by `champion` and, beside it, by `shadow`; `dictionary` columns are read
    dictionary-encoded; batches of at most `batch_rows` rows (`balanced_batch_rows`);
    with an `explainer`, each row's top contributions too. FileNotFoundError if the
    features partition is absent."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    started = time.perf_counter()
    source = paths.partition_file(FEATURES_TABLE, day)
    if not source.exists():
        raise FileNotFoundError(f"no {paths.dataset} features partition for {day} at {source}")
    # The footer is parsed once: its column names decide which columns to read as
    # dictionaries (a name absent from the file is an error there).
    footer = pq.read_metadata(source)
    names = footer.schema.to_arrow_schema().names
    features = pq.ParquetFile(
        source, metadata=footer, read_dictionary=[c for c in dictionary or [] if c in names]
    )
    wanted = None if columns is None else [c for c in dict.fromkeys(columns) if c in names]
    batch_rows = balanced_batch_rows(features.metadata.num_rows, batch_rows)
    # One decoding thread: the cores are the scoring workers'.
    batches = features.iter_batches(batch_size=batch_rows, columns=wanted, use_threads=False)
    result = ScoredDay(path=paths.partition_file(PREDICTIONS_TABLE, day))
    threads = prediction_threads()

    def read_next() -> pa.Table | None:
        began = time.perf_counter()
        batch = next(batches, None)
        result.read_seconds += time.perf_counter() - began
        return None if batch is None else pa.Table.from_batches([batch])

    def score(table: pa.Table, first_row: int) -> ScoredBatch:
        """A batch's predictions rows (in a scoring worker)."""
        began = time.perf_counter()
        scores = score_frame(champion.score, table, threads=threads)
        shadow_scores = score_frame(shadow.score, table, threads=threads) if shadow else None
        seconds = time.perf_counter() - began
        rows = predictions_table(
            contract,
            table,
            scores,
            champion.version,
            shadow_scores,
            shadow.version if shadow else None,
            first_row=first_row,
        )
        if explainer is not None:
            rows = explained(table, rows, explainer)
        scored = ScoredBatch(rows, float(np.sum(scores)), score_seconds=seconds)
        if shadow_scores is not None:
            scored.shadow_prediction_sum = float(np.sum(shadow_scores))
            scored.shadow_abs_difference_sum = float(np.sum(np.abs(shadow_scores - scores)))
        return scored

    def write(sink: ParquetSink, scored: ScoredBatch) -> None:
        began = time.perf_counter()
        sink.write(scored.table)
        result.write_seconds += time.perf_counter() - began

    def add(scored: ScoredBatch) -> None:
        result.rows += scored.table.num_rows
        result.prediction_sum += scored.prediction_sum
        result.shadow_prediction_sum += scored.shadow_prediction_sum
        result.shadow_abs_difference_sum += scored.shadow_abs_difference_sum
        result.score_seconds += scored.score_seconds

    # The pools close (waiting for their work) before the sink renames the file.
    with (
        parquet_sink(result.path, DICTIONARY_COLUMNS) as sink,
        ThreadPoolExecutor(2, "score-io") as io,
        ThreadPoolExecutor(SCORING_WORKERS, "score") as workers,
    ):
        ahead = io.submit(read_next)
        scoring: deque[Future[ScoredBatch]] = deque()
        writing: Future[None] | None = None
        first_row = 0
        while True:
            table = ahead.result()
            if table is not None:
                ahead = io.submit(read_next)  # the next batch is read while these score
                scoring.append(workers.submit(score, table, first_row))
                first_row += table.num_rows
                # One batch more than workers: the worker that finishes first takes it
                # at once rather than wait for the oldest batch to be collected.
                if len(scoring) <= SCORING_WORKERS:
                    continue
            elif not scoring:
                break
            scored = scoring.popleft().result()  # the oldest batch: the file stays in order
            add(scored)
            if writing is not None:
                writing.result()
            writing = io.submit(write, sink, scored)
        if writing is None:  # an empty partition still gets its (empty) predictions file
            empty = features.schema_arrow.empty_table()
            scored = score(empty if wanted is None else empty.select(wanted), 0)
            add(scored)
            writing = io.submit(write, sink, scored)
        writing.result()
    result.seconds = time.perf_counter() - started
    return result
