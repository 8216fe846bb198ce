"""many_datasets: N datasets on one Dagster instance, on SQLite and on PostgreSQL.

The contracts are the flights contract under N names (`flights_01`...), each fed by the
embedded flights and with a retraining policy that cannot fire (loop_latency's), so every
dataset has its own asset graph, sensors, jobs, lake and registered model.

- Code location load time: a fresh process importing `pipelines.definitions` with the N
  contracts, against the same with one (median of REPEATS each, alternating). Target: under
  10 s at N = 20.
- Then, per instance kind: every dataset in steady state (loop_latency.prepare_steady_state:
  raw, features, a promoted champion, predictions, performance, the drift reference; untimed,
  and recorded in the instance as materializations: `record_steady_state`),
  `dagster dev` with the N datasets, one day of flights landed in every dataset at once, and
  the clock runs until each dataset's predictions and drift summary of that day exist
  (target: 10 minutes for all). Meanwhile the daemon records every sensor tick: their
  durations (median and maximum), and the resident memory of the daemon and of the code
  servers is read from /proc at the end.

Quick: N = QUICK_DATASETS (the load time is still measured at N = 20).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from benchmarks import PROJECT_ROOT, child_env, median, python_child, report, row

MODULE = "benchmarks.cases.many_datasets"
DATASETS = 20
QUICK_DATASETS = 3
REPEATS = 2
HISTORY_DAYS = 18  # enough for a training window (7 holdout + 7 validation days)
FIRST_DAY = date(2013, 1, 1)
LOAD_TARGET_SECONDS = 10.0
END_TO_END_TARGET_SECONDS = 600.0
SENSOR_SECONDS = 10


def dataset_names(n: int) -> list[str]:
    return [f"flights_{k:02d}" for k in range(1, n + 1)]


def write_contracts(folder: Path, n: int) -> Path:
    """The flights contract under n names, with a retraining policy that cannot fire."""
    import yaml

    from benchmarks.cases.loop_latency import QUIET_RETRAINING

    raw = yaml.safe_load((PROJECT_ROOT / "contracts" / "flights.yaml").read_text())
    raw["retraining"] = QUIET_RETRAINING
    folder.mkdir(parents=True, exist_ok=True)
    for name in dataset_names(n):
        (folder / f"{name}.yaml").write_text(yaml.safe_dump({**raw, "name": name}))
    return folder


# ---------------------------------------------------------------------------- children


def child_load() -> None:
    started = time.perf_counter()
    from pipelines.definitions import defs

    seconds = time.perf_counter() - started
    jobs = len(list(defs.resolve_all_job_defs()))
    report({"seconds": seconds, "jobs": jobs})


def child_prepare(root: Path, contracts: Path, n: int) -> None:
    from benchmarks.cases.loop_latency import prepare_steady_state

    for name in dataset_names(n):
        prepare_steady_state(root, contracts, HISTORY_DAYS, dataset=name)


def load_seconds(folder: Path, n: int) -> dict[str, Any]:
    """Import time of the code location with n contracts against one (fresh processes)."""
    many = write_contracts(folder / f"contracts_{n}", n)
    one = write_contracts(folder / "contracts_1", 1)
    times: dict[int, list[float]] = {n: [], 1: []}
    jobs = {}
    for _ in range(REPEATS):
        for count, contracts in ((n, many), (1, one)):
            env = child_env({"DRIFTLOOP_CONTRACTS_DIR": str(contracts), "DRIFTLOOP_REPLAY": "off"})
            result = python_child(MODULE, "load", env=env).result
            times[count].append(result["seconds"])
            jobs[count] = result["jobs"]
    return {"many": median(times[n]), "one": median(times[1]), "jobs": jobs, "all": times}


# ---------------------------------------------------------------------------- the loop


def _land_everywhere(root: Path, names: list[str], day: date) -> None:
    """The day's flights written once, then renamed into every landing zone at once."""
    from driftloop.data.replay import replay_days
    from driftloop.paths import dataset_paths

    scratch = root / "scratch"
    [landed] = replay_days(dataset_paths("flights", scratch), day, 1)
    staged = []
    for name in names:
        target = dataset_paths(name, root).landing / landed.path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(landed.path, temporary)
        staged.append((temporary, target))
    for temporary, target in staged:
        temporary.rename(target)


def _done(root: Path, name: str, day: str) -> float | None:
    from driftloop.monitoring.drift_outcome import summary_path
    from driftloop.paths import dataset_paths

    paths = dataset_paths(name, root)
    outputs = [paths.partition_file("predictions", day), summary_path(paths, day)]
    if all(p.exists() for p in outputs):
        return max(p.stat().st_mtime for p in outputs)
    return None


def _ticks(instance: Any, since: float) -> list[float]:
    """Durations of every sensor tick that started after `since`."""
    durations = []
    for state in instance.all_instigator_state():
        for tick in instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=500):
            end = getattr(tick, "end_timestamp", None)
            if tick.timestamp >= since and end:
                durations.append(end - tick.timestamp)
    return durations


def _group_memory_mb(pgid: int) -> dict[str, float]:
    """Resident memory of the daemon and of the code servers in `dagster dev`'s group."""
    memory = {"daemon": 0.0, "code_servers": 0.0}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            status = (entry / "status").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[2]) != pgid:
            continue
        rss = next((int(x.split()[1]) for x in status.splitlines() if x.startswith("VmRSS")), 0)
        if "dagster-daemon" in cmdline or "dagster._daemon" in cmdline:
            memory["daemon"] += rss / 1024
        elif "grpc" in cmdline or "code-server" in cmdline:
            memory["code_servers"] += rss / 1024
    return {k: round(v, 1) for k, v in memory.items()}


def record_steady_state(home: Path, names: list[str]) -> None:
    """The prepared days of every dataset as the loop would have recorded them: a
    materialization per daily asset and day (the automation reads the event log, not the
    lake; an upstream day it has no record of counts as missing and holds the new day)."""
    from dagster import AssetKey, AssetMaterialization

    from pipelines.instance import instance_at

    assets = ("raw_data", "features", "predictions", "drift_report", "performance")
    days = [(FIRST_DAY + timedelta(days=k)).isoformat() for k in range(HISTORY_DAYS)]
    with instance_at(home) as instance:
        for name in names:
            for asset in assets:
                for day in days:
                    instance.report_runless_asset_event(
                        AssetMaterialization(AssetKey([name, asset]), partition=day)
                    )


def measure(source: Path, contracts: Path, n: int, postgres_url: str | None) -> dict[str, Any]:
    sys.path.insert(0, str(PROJECT_ROOT / "tests"))
    from e2e_helpers import dagster_dev, free_port, wait_for

    from pipelines.instance import POSTGRES_URL_ENV, instance_at, write_instance

    tmp = Path(tempfile.mkdtemp(prefix="bench-many-"))
    try:
        root = tmp / "data"
        shutil.copytree(source, root)
        home = write_instance(tmp / "dagster_home", postgres=postgres_url is not None)
        env = child_env(
            {
                "DRIFTLOOP_DATA_DIR": str(root),
                "DAGSTER_HOME": str(home),
                "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
                "DRIFTLOOP_CONTRACTS_DIR": str(contracts),
                "DRIFTLOOP_REPLAY": "off",
                "DRIFTLOOP_NEW_DATA_SENSOR_SECONDS": str(SENSOR_SECONDS),
                **({POSTGRES_URL_ENV: postgres_url} if postgres_url else {}),
            }
        )
        names = dataset_names(n)
        if postgres_url:
            os.environ[POSTGRES_URL_ENV] = postgres_url
        record_steady_state(home, names)
        day = FIRST_DAY + timedelta(days=HISTORY_DAYS)
        log = tmp / "dagster_dev.log"
        with dagster_dev(env, log, free_port()) as process:
            last = f"Checking for new runs for sensor: {names[-1]}_new_data"
            wait_for(
                "the sensor daemon",
                lambda: last in (log.read_text(errors="replace") if log.exists() else ""),
                timeout=900,
                every=1,
            )
            with instance_at(home) as instance:
                landed = time.time()
                _land_everywhere(root, names, day)
                finished = wait_for(
                    f"predictions and drift of {day} in {n} datasets",
                    lambda: (
                        [_done(root, name, day.isoformat()) for name in names]
                        if all(_done(root, name, day.isoformat()) for name in names)
                        else None
                    ),
                    timeout=3600,
                    every=2,
                )
                ticks = _ticks(instance, landed)
            memory = _group_memory_mb(process.pid)
        seconds = sorted(t - landed for t in finished)
        return {
            "seconds": round(seconds[-1], 1),
            "first_dataset_seconds": round(seconds[0], 1),
            "median_dataset_seconds": round(median(seconds), 1),
            "ticks": len(ticks),
            "tick_median_seconds": round(median(ticks), 3) if ticks else None,
            "tick_max_seconds": round(max(ticks), 3) if ticks else None,
            "memory_mb": memory,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(quick: bool) -> list[dict]:
    sys.path.insert(0, str(PROJECT_ROOT / "tests"))
    from engines import postgres_server

    n = QUICK_DATASETS if quick else DATASETS
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-many-") as tmp:
        folder = Path(tmp)
        load = load_seconds(folder, DATASETS)
        rows.append(
            row(
                case="many_datasets_load",
                figure=round(load["many"], 2),
                unit="s",
                baseline=round(load["one"], 2),
                ratio=round(load["many"] / load["one"], 2),
                size=f"{DATASETS} contracts ({load['jobs'][DATASETS]} jobs) vs 1",
                target=f"< {LOAD_TARGET_SECONDS:.0f} s",
                met=load["many"] < LOAD_TARGET_SECONDS,
                note=(
                    "Import of pipelines.definitions in a fresh process (the code location "
                    f"a code server, a run or a worker loads), median of {REPEATS}: "
                    f"{load['all']}."
                ),
            )
        )
        contracts = write_contracts(folder / "contracts", n)
        source = folder / "source"
        env = child_env({"DRIFTLOOP_DATA_DIR": str(source), "DRIFTLOOP_REPLAY": "off"})
        python_child(MODULE, "prepare", str(source), str(contracts), str(n), env=env)
        results = {"sqlite": measure(source, contracts, n, None)}
        with postgres_server() as server:
            database = server.create_database("many_datasets")
            results["postgres"] = measure(source, contracts, n, database)
    for kind, result in results.items():
        rows.append(
            row(
                case=f"many_datasets_{kind}",
                figure=result["seconds"],
                unit="s",
                baseline=None,
                ratio=None,
                size=f"{n} datasets, one day of flights landed in each at once",
                target=f"<= {END_TO_END_TARGET_SECONDS:.0f} s for all",
                met=result["seconds"] <= END_TO_END_TARGET_SECONDS,
                note=(
                    f"Instance on {kind}. Landing to the last dataset's predictions and drift "
                    f"summary {result['seconds']} s (first {result['first_dataset_seconds']} "
                    f"s, median {result['median_dataset_seconds']} s); {result['ticks']} "
                    f"sensor ticks meanwhile, median {result['tick_median_seconds']} s, max "
                    f"{result['tick_max_seconds']} s; resident memory at the end "
                    f"{result['memory_mb']} MB."
                ),
                instance=kind,
                **result,
            )
        )
    return rows


if __name__ == "__main__":
    if sys.argv[1:2] == ["load"]:
        child_load()
    elif sys.argv[1:2] == ["prepare"]:
        child_prepare(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
