"""loop latency: a file landed -> its predictions and drift verdict, under the running daemon.

`dagster dev` (webserver + daemon, `tests/e2e_helpers.dagster_dev`, a free port, its own
DAGSTER_HOME) runs on a temporary data root that is already in steady state: 30 days of
real flights ingested and featurized, a champion trained on them and promoted, every day
scored, measured and its reference cached, and each of those recorded in the Dagster
instance (`record_steady_state`) - so the automation and the catch-up sensor have nothing
to do and the retrain trigger cannot fire (the temporary contract asks for 60 breaches in 60 days).
The sensors and the automation run at their shipped intervals (sensors/new_data.py,
sensors/automation.py); `--compare` measures the previous, longer ones beside them.

One day of flights is then landed as a CSV (atomic rename, as `pipelines.replay` does) and
the clock runs until both the day's predictions partition and its drift `summary.json`
exist; the figure is the later of their modification times minus the landing time. In
between, one run: the new-data sensor's tick lists the file and requests the ingest run
(`<dataset>_ingest`), which waits in the queue, starts a process that loads the code
location, ingests the file (raw_data with its checks), and then, in the same process, runs
the daily job for the day (pipelines/ingest_daily.py: features, predictions, drift_report
with the Evidently HTML page on a 20k-row sample, its default, and performance). The note
splits the time at the ingest run's creation, start and end, and the daily run's start.
Target (issue 27): 20 s on SQLite, 25 s on PostgreSQL. Quick: one file; full: two, one
after another.
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

from assets.automation import INGEST_RUN_TAG
from benchmarks import PROJECT_ROOT, child_env, median, python_child, row

DATASET = "flights"
MODULE = "benchmarks.cases.loop_latency"
# Issue 27's targets, landed -> predictions and drift, with the shipped intervals.
TARGET_SECONDS = {"sqlite": 20.0, "postgres": 25.0}
INTERVAL_ENVS = ("DRIFTLOOP_NEW_DATA_SENSOR_SECONDS", "DRIFTLOOP_AUTOMATION_SECONDS")
# The intervals shipped before they were shortened: `--compare` measures them beside the
# shipped ones, alternating, on SQLite.
PREVIOUS_INTERVALS = dict(zip(INTERVAL_ENVS, ("15", "5"), strict=True))
HISTORY_DAYS = 30
# A file to copy `dagster dev`'s console log to (its daemon and run lines, timed).
KEEP_LOG_ENV = "LOOP_LATENCY_LOG"
QUICK_HISTORY_DAYS = 18  # enough for a training window (7 holdout + 7 validation days)
FIRST_DAY = date(2013, 1, 1)
# A policy that cannot fire during the benchmark: no retraining run competes for the cores.
QUIET_RETRAINING = {"n_breaches": 60, "window": 60, "cooldown_days": 365}


# ---------------------------------------------------------------------------- setup


def contracts_dir(folder: Path) -> Path:
    import yaml

    raw = yaml.safe_load((PROJECT_ROOT / "contracts" / f"{DATASET}.yaml").read_text())
    raw["retraining"] = QUIET_RETRAINING
    target = folder / "contracts"
    target.mkdir(parents=True, exist_ok=True)
    (target / f"{DATASET}.yaml").write_text(yaml.safe_dump(raw))
    return target


def prepare_steady_state(
    root: Path, contracts: Path, days: int = HISTORY_DAYS, dataset: str = DATASET
) -> None:
    """Raw, features, a promoted champion, predictions, performance and the reference, for
    `dataset` (its contract is `contracts/<dataset>.yaml`; the embedded flights feed it)."""
    from benchmarks.data import real_flights, write_features_lake, write_raw_lake
    from driftloop.data.contract import load_contract
    from driftloop.data.lake import write_parquet_atomic
    from driftloop.monitoring.realised import realised_performance
    from driftloop.monitoring.reference import reference_data
    from driftloop.monitoring.signals import (
        data_clock,
        labels_due,
        predictions_table,
        read_partition,
        score_frame,
    )
    from driftloop.names import PERFORMANCE_TABLE, PREDICTIONS_TABLE
    from driftloop.paths import dataset_paths
    from driftloop.training.mlflow_logging import log_training
    from driftloop.training.model_loading import load_scoring_model
    from driftloop.training.registry import make_client, set_alias
    from driftloop.training.train import TrainingConfig, load_training_frame, train

    contract = load_contract(contracts / f"{dataset}.yaml")
    paths = dataset_paths(dataset, root)
    written = write_raw_lake(contract, paths, real_flights(FIRST_DAY, days))
    write_features_lake(contract, paths, written)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    config = TrainingConfig.for_contract(contract, window_days=days)
    frame, used, digests = load_training_frame(contract, paths, None, days)
    result = train(contract, frame, config)
    registered = log_training(
        contract, result, used, digests, uri, artifact_root=root / "mlartifacts"
    )
    client = make_client(uri)
    set_alias(client, dataset, "champion", registered.version)
    version = client.get_model_version(dataset, registered.version)
    score = load_scoring_model(registered.model_uri, uri)
    clock = data_clock(contract, paths)
    holdout = float(result.holdout_metrics[result.primary_metric])
    for day in written:
        features = read_partition(paths, "features", day)
        scores = score_frame(score, features)
        table = predictions_table(contract, features, scores, registered.version)
        write_parquet_atomic(table, paths.partition_file(PREDICTIONS_TABLE, day))
        if labels_due(contract, day, clock):
            import pandas as pd

            performance = realised_performance(
                contract,
                day,
                features["label"].to_numpy(dtype="float64", na_value=float("nan")),
                scores,
                version=registered.version,
                reference=holdout,
            )
            write_parquet_atomic(
                pd.DataFrame([performance]), paths.partition_file(PERFORMANCE_TABLE, day)
            )
    reference_data(contract, paths, registered.version, dict(version.tags or {}), score)


def record_steady_state(home: Path, days: int) -> None:
    """The prepared days as the loop would have recorded them in the Dagster instance: a
    materialization per daily asset and day. Dagster's automation reads the event log, not
    the lake."""
    from dagster import AssetKey, AssetMaterialization

    from pipelines.instance import instance_at

    names = ("raw_data", "features", "predictions", "drift_report", "performance")
    with instance_at(home) as instance:
        for name in names:
            key = AssetKey([DATASET, name])
            for k in range(days):
                day = (FIRST_DAY + timedelta(days=k)).isoformat()
                instance.report_runless_asset_event(AssetMaterialization(key, partition=day))


def child_main(argv: list[str]) -> None:
    _, root, contracts, days = argv
    prepare_steady_state(Path(root), Path(contracts), int(days))


# ---------------------------------------------------------------------------- measure


def _daemon_ready(log: Path) -> bool:
    text = log.read_text(errors="replace") if log.exists() else ""
    return f"Checking for new runs for sensor: {DATASET}_new_data" in text


def _quiet(instance: Any) -> bool:
    from dagster import DagsterRunStatus, RunsFilter

    active = [
        DagsterRunStatus.QUEUED,
        DagsterRunStatus.NOT_STARTED,
        DagsterRunStatus.STARTING,
        DagsterRunStatus.STARTED,
    ]
    return not instance.get_runs(RunsFilter(statuses=active), limit=1)


def _done(paths: Any, day: str) -> float | None:
    """The time both outputs of `day` exist: the later modification time, else None."""
    from driftloop.monitoring.drift_outcome import summary_path

    outputs = [paths.partition_file("predictions", day), summary_path(paths, day)]
    if all(p.exists() for p in outputs):
        return max(p.stat().st_mtime for p in outputs)
    return None


def _run_times(instance: Any, tags: dict[str, str], after: float) -> dict[str, float]:
    """Created / started / ended times of the first run with `tags` created after `after`."""
    from dagster import RunsFilter

    records = instance.get_run_records(RunsFilter(tags=tags))
    records = [r for r in records if r.create_timestamp.timestamp() > after]
    if not records:
        return {}
    record = min(records, key=lambda r: r.create_timestamp)
    return {
        "run_id": record.dagster_run.run_id,
        "created": record.create_timestamp.timestamp(),
        "started": record.start_time or float("nan"),
        "ended": record.end_time or float("nan"),
    }


def measure(
    n_files: int,
    history_days: int = HISTORY_DAYS,
    postgres_url: str | None = None,
    intervals: dict[str, str] | None = None,
) -> list[dict[str, float]]:
    """Landing-to-verdict latencies of `n_files` days, on the SQLite default instance or,
    with `postgres_url`, on deploy/postgres/dagster.yaml with that database; the shipped
    sensor and automation intervals unless `intervals` sets their environment variables."""
    sys.path.insert(0, str(PROJECT_ROOT / "tests"))
    from e2e_helpers import dagster_dev, free_port, wait_for

    from driftloop.data.flights_source import flights_between
    from driftloop.data.replay import replay_days
    from driftloop.paths import dataset_paths
    from pipelines.instance import POSTGRES_URL_ENV, write_instance

    tmp = Path(tempfile.mkdtemp(prefix="bench-loop-"))
    log = tmp / "dagster_dev.log"
    try:
        root = tmp / "data"
        home = write_instance(tmp / "dagster_home", postgres=postgres_url is not None)
        contracts = contracts_dir(tmp)
        settings = {
            "DRIFTLOOP_DATA_DIR": str(root),
            "DAGSTER_HOME": str(home),
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
            "DRIFTLOOP_CONTRACTS_DIR": str(contracts),
            "DRIFTLOOP_REPLAY": "off",
            **(intervals or {}),
            **({POSTGRES_URL_ENV: postgres_url} if postgres_url else {}),
        }
        env = child_env(settings)
        for name in INTERVAL_ENVS:  # the shipped defaults, whatever this shell sets
            if name not in settings:
                env.pop(name, None)
        python_child(MODULE, "prepare", str(root), str(contracts), str(history_days), env=env)
        if postgres_url:  # the instance file names the database through the environment
            os.environ[POSTGRES_URL_ENV] = postgres_url
        record_steady_state(home, history_days)
        paths = dataset_paths(DATASET, root)
        results = []
        with dagster_dev(env, log, free_port()):
            wait_for("the sensor daemon", lambda: _daemon_ready(log), timeout=300, every=1)
            from pipelines.instance import instance_at

            with instance_at(home) as instance:
                for k in range(n_files):
                    day = FIRST_DAY + timedelta(days=history_days + k)
                    wait_for("a quiet instance", lambda: _quiet(instance), timeout=600, every=1)
                    # The upstream's own work is not the loop's: the embedded flights are
                    # read (seconds, once per process) before the clock starts.
                    flights_between(day, 1)
                    landed = time.time()
                    replay_days(paths, day, 1)
                    finished = wait_for(
                        f"predictions and drift of {day}",
                        lambda day=day: _done(paths, day.isoformat()),
                        timeout=600,
                        every=0.5,
                    )
                    # The run goes on (performance) after both outputs exist: let it end.
                    wait_for("the daily run to end", lambda: _quiet(instance), 600, every=1)
                    ingest = _run_times(instance, {"driftloop/trigger": "new_data"}, landed)
                    tag = {INGEST_RUN_TAG: str(ingest.get("run_id"))}
                    daily = _run_times(instance, tag, landed)
                    nan = float("nan")
                    results.append(
                        {
                            "seconds": finished - landed,
                            "to_ingest_created": ingest.get("created", nan) - landed,
                            "to_ingest_started": ingest.get("started", nan) - landed,
                            "to_ingest_ended": ingest.get("ended", nan) - landed,
                            "to_run_created": daily.get("created", nan) - landed,
                            "to_run_started": daily.get("started", nan) - landed,
                            "run_seconds": daily.get("ended", nan) - daily.get("started", nan),
                        }
                    )
        return results
    finally:
        if os.environ.get(KEEP_LOG_ENV) and log.exists():  # where the seconds went, by line
            shutil.copy(log, os.environ[KEEP_LOG_ENV])
        shutil.rmtree(tmp, ignore_errors=True)


def run(quick: bool) -> list[dict]:
    """One row per instance kind: the stock SQLite files, then a PostgreSQL server."""
    sys.path.insert(0, str(PROJECT_ROOT / "tests"))
    from engines import postgres_server

    rows = [run_on(quick, None)]
    with postgres_server() as server:
        rows.append(run_on(quick, server.create_database("loop_latency")))
    return rows


def _breakdown(results: list[dict[str, float]]) -> str:
    def m(key: str) -> str:
        return f"{median([r[key] for r in results]):.1f}"

    return (
        f"landing -> ingest run created {m('to_ingest_created')} s (the new-data tick), "
        f"started {m('to_ingest_started')} s; its daily run started {m('to_run_started')} s "
        f"and took {m('run_seconds')} s; the ingest run ended {m('to_ingest_ended')} s "
        "(medians; the daily run also computes performance after the drift summary is written)"
    )


def run_on(quick: bool, postgres_url: str | None, intervals: dict[str, str] | None = None) -> dict:
    from sensors.automation import AUTOMATION_SECONDS, AUTOMATION_SECONDS_ENV
    from sensors.new_data import NEW_DATA_SECONDS, NEW_DATA_SECONDS_ENV

    kind = "postgres" if postgres_url else "sqlite"
    n_files = 1 if quick else 2
    history = QUICK_HISTORY_DAYS if quick else HISTORY_DAYS
    results = measure(n_files, history, postgres_url, intervals)
    latency = median([r["seconds"] for r in results])
    new_data = int((intervals or {}).get(NEW_DATA_SECONDS_ENV, NEW_DATA_SECONDS))
    automation = (intervals or {}).get(AUTOMATION_SECONDS_ENV, AUTOMATION_SECONDS)
    target = TARGET_SECONDS[kind]
    met = latency <= target
    note = (
        f"Dagster instance on {kind}. landed -> predictions + drift summary: "
        + ", ".join(f"{r['seconds']:.1f}" for r in results)
        + f" s (median {latency:.1f} s) with the new-data sensor every {new_data} s and "
        f"the automation every {automation} s; " + _breakdown(results) + "."
    )
    return row(
        case="loop_latency" if kind == "sqlite" else f"loop_latency_{kind}",
        figure=round(latency, 1),
        unit="s",
        baseline=new_data,
        ratio=round(latency / target, 2),
        peak_memory_mb=None,
        size=f"1 day of flights (~900 rows) per file, {n_files} file(s)",
        target=f"<= {target:.0f} s",
        met=met,
        note=note,
        instance=kind,
        intervals=intervals or "shipped",
    )


def compare(quick: bool, rounds: int) -> list[dict]:
    """The shipped intervals and PREVIOUS_INTERVALS on SQLite, alternating, `rounds` each."""
    rows = []
    for _ in range(rounds):
        rows.append(run_on(quick, None))
        rows.append(run_on(quick, None, PREVIOUS_INTERVALS))
    return rows


if __name__ == "__main__":
    if sys.argv[1:2] == ["prepare"]:
        child_main(sys.argv[1:])
    else:
        os.environ.setdefault("PYTHONWARNINGS", "ignore")
        quick = "--quick" in sys.argv
        rows = compare(quick, rounds=1) if "--compare" in sys.argv else run(quick)
        for result in rows:
            print(result["case"], result["intervals"], result["figure"], result["note"])
