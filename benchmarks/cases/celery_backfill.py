"""celery_backfill: the flights year backfill with its steps on Celery workers, against one
run at a time on the in-process executor.

The setup, the clock and the breakdown are the backfill case's (benchmarks/cases/backfill.py:
the year landed and taken in, then one backfill of the daily path, split into runs of
`per_run` days, on PostgreSQL, timed from the request to the final status). Three
measurements in one invocation, on one PostgreSQL server, in this order:

- baseline: one run at a time, every step in its run's own process (the default executor);
- Celery with one worker, then with two: DRIFTLOOP_EXECUTOR=celery (deploy/celery/
  executor.yaml) on a Redis broker, each worker one pool process, and up to CELERY_RUNS runs
  at once: a run's own process only hands its steps to the broker and waits, so the workers
  bound the compute, and more runs than workers keep a ready step queued for each of them.

Target: two workers take at most 0.85 of the baseline's time.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks import PROJECT_ROOT, row
from benchmarks.cases import backfill

TARGET = 0.85
CELERY_RUNS = 4
WORKER_COUNTS = (1, 2)


def _workers(count: int):
    """`around` for backfill.measure: `count` Celery workers with `dagster dev`'s env."""
    from engines import celery_workers

    @contextmanager
    def around(env: dict[str, str], folder: Path) -> Iterator[None]:
        names = tuple(f"w{i + 1}" for i in range(count))
        with celery_workers(names, env, folder):
            yield

    return around


def run(quick: bool) -> list[dict]:
    sys.path.insert(0, str(PROJECT_ROOT / "tests"))
    from engines import CELERY_CONFIG, postgres_server, redis_server

    spec = backfill.spec_for(quick)
    results: dict[str, dict] = {}
    with (
        backfill.prepared("bench-celery-backfill-", spec) as (folder, contracts, source),
        postgres_server() as server,
        redis_server(folder / "redis.log") as broker,
    ):
        database = server.create_database("backfill_baseline")
        results["one run at a time"] = backfill.measure(source, contracts, database, 1, spec)
        for count in WORKER_COUNTS:
            celery = {
                "DRIFTLOOP_EXECUTOR": "celery",
                "DRIFTLOOP_EXECUTOR_CONFIG": str(CELERY_CONFIG),
                # Each measurement its own Redis databases: nothing queued carries over.
                "DRIFTLOOP_CELERY_BROKER": f"{broker}/{2 * count}",
                "DRIFTLOOP_CELERY_BACKEND": f"{broker}/{2 * count + 1}",
            }
            database = server.create_database(f"backfill_celery_{count}")
            results[f"{count} celery worker(s)"] = backfill.measure(
                source, contracts, database, CELERY_RUNS, spec, celery, _workers(count)
            )
    one = results["one run at a time"]["seconds"]
    two = results["2 celery worker(s)"]["seconds"]
    parts = backfill.where_the_time_goes(results)
    note = (
        f"{spec['days']} days of 2013 flights through raw_data, features, predictions, "
        f"drift_report and performance as one backfill of runs of {spec['per_run']} days on "
        f"PostgreSQL; wall time from the request to the final status. Baseline: one run at a "
        f"time, steps in the run's process. Celery: a Redis broker, workers of one pool "
        f"process each, up to {CELERY_RUNS} runs at once. Where the time goes (sums over "
        f"runs; a step's time on Celery includes its wait in the queue): {parts}."
    )
    ratio = two / one
    return [
        row(
            case="celery_backfill",
            figure=round(two, 1),
            unit="s",
            baseline=round(one, 1),
            ratio=round(ratio, 3),
            peak_memory_mb=None,
            size=f"{spec['days']} days of flights, runs of {spec['per_run']} days",
            target=f"2 Celery workers <= {TARGET}x one run at a time",
            met=ratio <= TARGET,
            note=note,
            seconds={name: round(r["seconds"], 1) for name, r in results.items()},
            breakdown=results,
            instance="postgres",
        )
    ]
