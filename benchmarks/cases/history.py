"""history: a new user's history file landed and ingested in one run, beside pandas and
pyarrow reading and writing the same rows.

The file: `benchmarks.data.hourly_history` (one row an hour, ids, a timestamp, numeric and
categorical columns, a yes/no target), 730 days as one CSV (quick: QUICK_DAYS days). Three
sides, each in a fresh process on a fresh data root, in one invocation:

- baseline: pandas reads the CSV, pyarrow writes one Parquet file per day (the lake's
  layout), nothing else;
- core: `driftloop.data.raw_days.ingest_and_build` for every day of the file (read, cast,
  row rules, staging per day, assembly, the contract checks, raw files, sidecars), timed
  inside the process, imports excluded as in the baseline;
- the user's path: `cp FILE data/landing/NAME/` then `dg launch --assets NAME/raw_data
  --partition-range FIRST...LAST` on a new SQLite instance (DAGSTER_HOME with only
  telemetry off), and again on a new PostgreSQL instance (deploy/postgres), wall time of
  the command. Both with `DAGSTER_EVENT_BATCH_SIZE` set as docs/deploy.md advises: on
  PostgreSQL Dagster then stores a range run's per-day materializations in a few
  statements (its planned events still one by one in 1.13.27); SQLite's storage writes
  them one by one either way. Where the run's time goes comes from its own event log: the
  planned events (run creation), start of the step to the first per-day record (our
  compute), then the per-day materializations, then the per-day
  check evaluations (one `contract` check a day) to the step's end.

Target: the user's path at most TARGET_SECONDS for the 730 days.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from benchmarks import PROJECT_ROOT, child_env, python_child, report, row, run_child

MODULE = "benchmarks.cases.history"
NAME = "hourly"
FULL_DAYS = 730
QUICK_DAYS = 60
TARGET_SECONDS = 60.0
EVENT_BATCH_SIZE = "1000"
RECORDS = ("ASSET_MATERIALIZATION", "ASSET_CHECK_EVALUATION")


def prepare(folder: Path, days: int) -> tuple[Path, Path, list[str]]:
    """The contract folder and the CSV file; the file's days."""
    from benchmarks.data import HOURLY_START, day_range, hourly_contract, hourly_history

    contracts = folder / "contracts"
    contracts.mkdir(parents=True, exist_ok=True)
    (contracts / f"{NAME}.yaml").write_text(hourly_contract(NAME, days))
    source = folder / "history.csv"
    hourly_history(days).to_csv(source, index=False)
    return contracts, source, day_range(HOURLY_START, days)


def child_baseline(source: Path, out: Path) -> None:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    started = time.perf_counter()
    frame = pd.read_csv(source, parse_dates=["ts"])
    day = frame["ts"].dt.strftime("%Y-%m-%d")
    for value, rows in frame.groupby(day, sort=True):
        target = out / f"date={value}" / "data.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pandas(rows, preserve_index=False), target)
    report({"seconds": time.perf_counter() - started, "rows": len(frame)})


def child_core(contracts: Path, root: Path, first: str, last: str) -> None:
    # The libraries the core imports inside its functions, loaded before the clock as the
    # baseline loads pandas and pyarrow before its own: a run pays them once, at start-up.
    import duckdb  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow.compute
    import pyarrow.parquet  # noqa: F401

    from driftloop.data.contract import load_contract
    from driftloop.data.lake import days_between
    from driftloop.data.raw_days import ingest_and_build
    from driftloop.paths import dataset_paths

    contract = load_contract(contracts / f"{NAME}.yaml")
    paths = dataset_paths(NAME, root)
    days = days_between(date.fromisoformat(first), date.fromisoformat(last))
    started = time.perf_counter()
    run = ingest_and_build(contract, paths, days)
    seconds = time.perf_counter() - started
    if len(run.days.written) != len(days) or run.days.blocked:
        raise RuntimeError(f"{len(run.days.written)} days written, blocked {run.days.blocked}")
    report({"seconds": seconds, "days": len(run.days.written)})


def _land(source: Path, root: Path) -> None:
    landing = root / "landing" / NAME
    landing.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, landing / source.name)


def _run_breakdown(home: Path, postgres_url: str | None) -> dict[str, Any]:
    """Seconds from the run's event log: our compute, the per-day records, the whole run."""
    from dagster import AssetKey

    from pipelines.instance import POSTGRES_URL_ENV, instance_at

    if postgres_url:
        os.environ[POSTGRES_URL_ENV] = postgres_url
    with instance_at(home) as instance:
        [run] = instance.get_runs(limit=1)
        first: dict[str, float] = {}
        last: dict[str, float] = {}
        counts: dict[str, int] = {}
        for entry in instance.all_logs(run.run_id):
            if not entry.dagster_event:
                continue
            kind = entry.dagster_event_type.value
            first.setdefault(kind, entry.timestamp)
            last[kind] = entry.timestamp
            counts[kind] = counts.get(kind, 0) + 1
        # The days Dagster counts as materialized (batched writes included).
        materialized = len(instance.get_materialized_partitions(AssetKey([NAME, "raw_data"])))
    end = last.get("STEP_SUCCESS", last.get("STEP_FAILURE", 0.0))
    records_from = first.get("ASSET_MATERIALIZATION", end)
    checks_from = first.get("ASSET_CHECK_EVALUATION", end)
    planned_from = first.get("ASSET_MATERIALIZATION_PLANNED", first["PIPELINE_START"])
    return {
        "status": run.status.value,
        # Run creation: Dagster's planned events, one per day and asset (SQLite and, in
        # 1.13.27, PostgreSQL store them one by one), then the run's start.
        "planned_events": round(first["PIPELINE_START"] - planned_from, 1),
        "run_start_to_step": round(first["STEP_START"] - first["PIPELINE_START"], 1),
        "compute": round(records_from - first["STEP_START"], 1),
        "materializations": round(checks_from - records_from, 1),
        "check_evaluations": round(end - checks_from, 1),
        "events": {k: counts.get(k, 0) for k in RECORDS},
        "materialized_partitions": materialized,
    }


def user_path(
    contracts: Path, source: Path, folder: Path, span: str, postgres_url: str | None = None
) -> dict[str, Any]:
    """cp and dg launch on a new instance: SQLite (only telemetry off), or PostgreSQL."""
    from pipelines.instance import POSTGRES_URL_ENV, write_instance

    root, home = folder / "data", folder / "dagster_home"
    if postgres_url:
        write_instance(home, postgres=True)
    else:
        home.mkdir(parents=True)
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = child_env(
        {
            "DRIFTLOOP_DATA_DIR": str(root),
            "DAGSTER_HOME": str(home),
            "DRIFTLOOP_CONTRACTS_DIR": str(contracts),
            "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
            "DRIFTLOOP_LANDING_QUIET_SECONDS": "0",
            "DRIFTLOOP_REPLAY": "off",
            "DAGSTER_EVENT_BATCH_SIZE": EVENT_BATCH_SIZE,
            **({POSTGRES_URL_ENV: postgres_url} if postgres_url else {}),
        }
    )
    _land(source, root)
    dg = str(Path(sys.executable).with_name("dg"))
    command = [dg, "launch", "--assets", f"{NAME}/raw_data", "--partition-range", span]
    child = run_child(command, env=env, timeout=4 * 3600)
    if child.returncode != 0:
        raise RuntimeError(f"dg launch failed:\n{child.log[-4000:]}")
    breakdown = _run_breakdown(home, postgres_url)
    return {"seconds": child.seconds, "peak_mb": child.peak_memory_mb, **breakdown}


def run(quick: bool) -> list[dict]:
    sys.path.insert(0, str(PROJECT_ROOT / "tests"))
    from engines import postgres_server

    days = QUICK_DAYS if quick else FULL_DAYS
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        folder = Path(tmp)
        contracts, source, span = prepare(folder, days)
        first, last = span[0], span[-1]
        env = child_env({"DRIFTLOOP_LANDING_QUIET_SECONDS": "0", "DRIFTLOOP_REPLAY": "off"})
        base_out = folder / "baseline"
        baseline = python_child(MODULE, "baseline", str(source), str(base_out), env=env)
        core_root = folder / "core"
        _land(source, core_root)
        core = python_child(MODULE, "core", str(contracts), str(core_root), first, last, env=env)
        launched = {"sqlite": user_path(contracts, source, folder / "sqlite", f"{first}...{last}")}
        with postgres_server() as server:
            database = server.create_database("history")
            launched["postgres"] = user_path(
                contracts, source, folder / "postgres", f"{first}...{last}", database
            )
    base_s, core_s = baseline.result["seconds"], core.result["seconds"]
    rows = days * 24
    size = f"{rows:,} rows, {days} days, one CSV"
    return [
        row(
            case="history_core",
            figure=round(core_s, 2),
            unit="s",
            baseline=round(base_s, 2),
            ratio=round(core_s / base_s, 2),
            peak_memory_mb=round(core.peak_memory_mb),
            size=size,
            target=None,
            met=None,
            note=(
                "ingest_and_build over every day of the file (read, cast, rules, staged pieces, "
                "assembly, the contract's rules per day, raw files and sidecars) against "
                "pandas read_csv + a pyarrow Parquet file per day, imports excluded in both."
            ),
        ),
        *(
            row(
                case=f"history_dg_launch_{kind}",
                figure=round(path["seconds"], 1),
                unit="s",
                baseline=round(base_s, 2),
                ratio=round(path["seconds"] / base_s, 1),
                peak_memory_mb=round(path["peak_mb"]),
                size=size,
                target=f"<= {TARGET_SECONDS:.0f} s for {FULL_DAYS} days",
                met=path["seconds"] <= TARGET_SECONDS if days == FULL_DAYS else None,
                note=(
                    f"cp + dg launch --partition-range {first}...{last} on a new {kind} "
                    f"instance, run {path['status']}. From the run's event log (s): the "
                    f"planned events {path['planned_events']}, to the "
                    f"step {path['run_start_to_step']}, our compute {path['compute']}, the "
                    f"per-day materializations {path['materializations']}, the per-day check "
                    f"evaluations {path['check_evaluations']} ({path['events']})."
                ),
                breakdown=path,
                instance=kind,
            )
            for kind, path in launched.items()
        ),
    ]


if __name__ == "__main__":
    if sys.argv[1] == "baseline":
        child_baseline(Path(sys.argv[2]), Path(sys.argv[3]))
    elif sys.argv[1] == "core":
        child_core(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4], sys.argv[5])
