"""orchestration: the retraining path through the dagster CLI vs the same functions in one process.

Ours: one command, `dg launch --assets
flights/features,flights/model,flights/eval_report,flights/promotion --partition-range
FIRST...LAST`: one run that builds the features of the range (one DuckDB query) and then
trains, evaluates and gates once (docs/cli.md, "Land, ingest, train, promote"; every asset of the
path has a single-run backfill policy, assets/partitions.py). The run executes its steps in
the CLI's own process (the in-process executor, pipelines/executors.py), on the project's
own instance settings (deploy/dagster.yaml: stock SQLite storage; and, in a second row,
deploy/postgres/dagster.yaml on a PostgreSQL server started for the case, a fresh database
per run), from the same raw lake.

Baseline: `retrain_in_process`, the framework-free functions those assets call, in the same
order and with the same arguments (`write_features`; `train_and_register` under the retrain
lock; `evaluate_trained`, which reconciles, resolves the champion, scores, explains, gates
and writes the report; `promote`), in one fresh Python process.

Both sides: wall time of their process from start to exit (interpreter start and imports
included), on copies of the same raw lake (real 2013 flights) with an MLflow store and a
Dagster instance that exist already (their SQLite schemas are created before the clock
starts, as in a running deployment).
Sides alternate; the figures are medians, the ratio the median of the back-to-back pairs'
ratios (`benchmarks.paired_ratio`). `tests/test_benchmarks.py` checks that both sides
train the same model (same holdout metrics).

Where the CLI's time goes (`cli_phases`, read from the run's own event log after the
command, untimed): start-up (process start to the run's first event: interpreter, `import
dagster`, the CLI, loading the code location, opening the instance, creating the run), the
run's launch (from its first event, the planned materializations, one per partition, to
its start: writing them and preparing the execution), the steps' own compute (STEP_START
to STEP_OUTPUT: the same functions the baseline times), Dagster's bookkeeping inside the
run (resources, log capture, one materialization event per partition, step events) and
teardown (RUN_SUCCESS to process exit).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from benchmarks import (
    child_env,
    median,
    pair_ratios,
    paired_ratio,
    python_child,
    report,
    row,
    run_child,
)
from benchmarks.data import START, real_flights, write_raw_lake
from benchmarks.retrain_baseline import retrain_in_process

TARGET_RATIO = 1.5
INSTANCES = ("sqlite", "postgres")
MODULE = "benchmarks.cases.orchestration"
DATASET = "flights"

# ------------------------------------------------------------------------- the CLI path


def data_env(root: Path) -> dict[str, str]:
    """Both sides' environment: the data root and its MLflow store, no demo feed."""
    return child_env(
        {
            "DRIFTLOOP_DATA_DIR": str(root),
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
            "DRIFTLOOP_REPLAY": "off",
        }
    )


def dagster_env(root: Path, home: Path, postgres_url: str | None = None) -> dict[str, str]:
    """The CLI's environment, on an instance with the project's settings (on PostgreSQL
    when `postgres_url` names a database) whose storage exists already (as a running
    deployment's does: creating the schemas is not part of launching a run)."""
    from pipelines.instance import POSTGRES_URL_ENV, instance_at, write_instance

    extra = {POSTGRES_URL_ENV: postgres_url} if postgres_url else {}
    if not (home / "dagster.yaml").exists():
        write_instance(home, postgres=postgres_url is not None)
        with _environ(extra), instance_at(home) as instance:
            instance.get_runs(limit=1)
            instance.all_instigator_state()
    return {**data_env(root), "DAGSTER_HOME": str(home), **extra}


@contextmanager
def _environ(extra: dict[str, str]) -> Iterator[None]:
    """`extra` in this process's environment for a while (the instance file reads it)."""
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


RETRAIN_PATH = ("features", "model", "eval_report", "promotion")


def retrain_cli(
    root: Path, home: Path, days: list[str], postgres_url: str | None = None
) -> dict[str, Any]:
    """The CLI command; its wall time, peak RSS and where its time went."""
    dg = str(Path(sys.executable).with_name("dg"))
    selection = ",".join(f"{DATASET}/{name}" for name in RETRAIN_PATH)
    command = [dg, "launch", "--assets", selection, "--partition-range", f"{days[0]}...{days[-1]}"]
    env = dagster_env(root, home, postgres_url)  # creates the storage if needed: untimed
    started = time.time()
    run = run_child(command, env=env)
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{run.log[-4000:]}")
    return {
        "seconds": run.seconds,
        "peak_mb": run.peak_memory_mb,
        "phases": cli_phases(home, started, started + run.seconds, env),
    }


PHASES = ("startup", "planned_events", "compute", "run_bookkeeping", "teardown")


def cli_phases(
    home: Path, start: float, end: float, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Split the command's wall time (`start`, `end`: wall clock) by its run's event log.

    See the module docstring; the instance holds exactly that one run. Also reports what the
    run was: its job, tags, how many events and the processes that executed steps.
    """
    from pipelines.instance import POSTGRES_URL_ENV, instance_at

    extra = {k: v for k, v in (env or {}).items() if k == POSTGRES_URL_ENV}
    with _environ(extra), instance_at(home) as instance:
        records = instance.get_run_records()
        if len(records) != 1:
            raise RuntimeError(f"expected one run in {home}, found {len(records)}")
        record = records[0]
        events = [e for e in instance.all_logs(record.dagster_run.run_id) if e.dagster_event]

    def at(kind: str) -> list[float]:
        return [e.timestamp for e in events if e.dagster_event_type.value == kind]

    run_start, run_end = at("PIPELINE_START")[0], at("PIPELINE_SUCCESS")[0]
    compute = sum(
        output - begin for begin, output in zip(at("STEP_START"), at("STEP_OUTPUT"), strict=True)
    )
    first = events[0].timestamp
    return {
        "startup": first - start,
        "planned_events": run_start - first,
        "compute": compute,
        "run_bookkeeping": (run_end - run_start) - compute,
        "teardown": end - run_end,
        "events": len(events),
        "planned": len(at("ASSET_MATERIALIZATION_PLANNED")),
        "materializations": len(at("ASSET_MATERIALIZATION")),
        "job": record.dagster_run.job_name,
        "tags": dict(record.dagster_run.tags),
        # Processes that executed steps, from the executors' engine events: the in-process
        # executor logs one "Executing steps in process (pid: ...)", the multiprocess one
        # 'Executing step "..." in subprocess.' per step.
        "step_processes": sum(
            (e.message or "").startswith("Executing steps in process")
            or (e.message or "").endswith("in subprocess.")
            for e in events
            if e.dagster_event_type.value == "ENGINE_EVENT"
        ),
    }


def registered_holdout_metrics(root: Path, version: str = "1") -> dict[str, float]:
    """The holdout metrics MLflow holds for a registered version of the flights model."""
    from driftloop.training.registry import make_client

    client = make_client(f"sqlite:///{root / 'mlflow.db'}")
    run_id = client.get_model_version(DATASET, version).run_id
    metrics = client.get_run(run_id).data.metrics
    return {k.removeprefix("holdout_"): v for k, v in metrics.items() if k.startswith("holdout_")}


# ---------------------------------------------------------------------------- setup


def prepare_raw(folder: Path, days: int, start: date = START) -> tuple[Path, list[str]]:
    """A data root holding the raw partitions of `days` days of real flights."""
    from driftloop.data.contract import load_contract
    from driftloop.paths import PROJECT_ROOT, dataset_paths

    contract = load_contract(PROJECT_ROOT / "contracts" / f"{DATASET}.yaml")
    root = folder / "raw_root"
    written = write_raw_lake(contract, dataset_paths(DATASET, root), real_flights(start, days))
    # An existing MLflow store (schemas created) for both sides, as in a running deployment.
    from driftloop.training.registry import make_client

    make_client(f"sqlite:///{root / 'mlflow.db'}").search_experiments()
    return root, written


def fresh_copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def child_main(argv: list[str]) -> None:
    root, first, last, *rest = argv
    window = int(rest[0]) if rest else None
    start, end = date.fromisoformat(first), date.fromisoformat(last)
    days = [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]
    report(retrain_in_process(Path(root), days, window))


def breakdown_note(
    phases: dict[str, float], own_seconds: float, own_timings: dict[str, float]
) -> str:
    """Where the CLI's time went beside the baseline's, in words (phases: medians)."""
    own_work = sum(own_timings[k] for k in RETRAIN_PATH)
    return (
        f"Where the CLI's time went: the steps' own compute {phases['compute']:.1f} s (the "
        f"baseline's same stages {own_work:.1f} s); start-up {phases['startup']:.1f} s "
        f"(interpreter, `import dagster`, the CLI, the code location, the instance, creating "
        f"the run); the launch {phases['planned_events']:.1f} s (writing the planned events, "
        f"one per partition, and preparing the execution); bookkeeping inside the run "
        f"{phases['run_bookkeeping']:.1f} s (one materialization event per partition, step "
        f"events, resources, log capture); "
        f"teardown {phases['teardown']:.1f} s (closing the instance, interpreter exit). The "
        f"baseline outside its stages: {own_seconds - own_work:.1f} s (interpreter, imports, "
        f"exit)."
    )


MISSED = (
    " Missed: the steps take the same time on both sides; what remains is Dagster's fixed "
    "cost per command (an interpreter with `import dagster`, the code location, the "
    "instance, creating the run) and its event log: a planned and a materialization event "
    "per partition, in the instance's storage (two SQLite files by default, tables in "
    "PostgreSQL on the other row). Dagster starts "
    "every run in a new process whoever launches it (CLI, UI, daemon), so the start-up "
    "stays. The fixed cost does not grow with the data."
)


def run(quick: bool) -> list[dict]:
    """One row per instance kind: the stock SQLite files, then PostgreSQL."""
    with ExitStack() as stack:
        return [measure(kind, quick, stack) for kind in INSTANCES]


def _postgres(stack: ExitStack) -> Any:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
    from engines import postgres_server

    return stack.enter_context(postgres_server())


def measure(kind: str, quick: bool, stack: ExitStack) -> dict:
    n_days, reps = (20, 1) if quick else (60, 3)
    server = _postgres(stack) if kind == "postgres" else None
    cli_seconds, own_seconds, cli_peak, own_peak = [], [], [], []
    cli_phase_reps: list[dict[str, Any]] = []
    own_timing_reps: list[dict[str, float]] = []
    details: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-orchestration-") as tmp:
        folder = Path(tmp)
        source, days = prepare_raw(folder, n_days)
        for rep in range(reps):
            # Alternate which side goes first.
            for side in ("cli", "own") if rep % 2 == 0 else ("own", "cli"):
                root = fresh_copy(source, folder / f"{side}{rep}")
                home = folder / f"home{rep}"
                if side == "cli":
                    database = server.create_database("orchestration") if server else None
                    result = retrain_cli(root, home, days, database)
                    cli_seconds.append(result["seconds"])
                    cli_peak.append(result["peak_mb"])
                    cli_phase_reps.append(result["phases"])
                    details["cli_metrics"] = registered_holdout_metrics(root)
                else:
                    env = data_env(root)  # the CLI's environment, without an instance
                    run_ = python_child(MODULE, str(root), days[0], days[-1], env=env)
                    own_seconds.append(run_.seconds)
                    own_peak.append(run_.peak_memory_mb)
                    own_timing_reps.append(run_.result["timings"])
                    details["own_metrics"] = registered_holdout_metrics(root)
                    details["rows"] = run_.result["feature_rows"]
                shutil.rmtree(root, ignore_errors=True)
    ours, theirs = median(cli_seconds), median(own_seconds)
    ratio = paired_ratio(cli_seconds, own_seconds)  # each back-to-back pair's, median
    each_pair = ", ".join(f"{r:.3f}" for r in pair_ratios(cli_seconds, own_seconds))
    same = details["cli_metrics"] == details["own_metrics"]
    met = ratio <= TARGET_RATIO
    own_t = {name: median([t[name] for t in own_timing_reps]) for name in own_timing_reps[0]}
    phases = {phase: median([rep[phase] for rep in cli_phase_reps]) for phase in PHASES}
    last = cli_phase_reps[-1]
    note = (
        f"dagster CLI on {kind} {ours:.1f} s (one `dg launch` over the path) "
        f"vs one "
        f"Python process {theirs:.1f} s (stages "
        + ", ".join(f"{k} {v:.1f}" for k, v in own_t.items())
        + f" s); medians of {reps} alternating run(s) each; the ratio is the median of the "
        f"pairs' ratios ({each_pair}; of the medians: {ours / theirs:.3f}). Both trained "
        "the same model: "
        f"{'yes' if same else 'NO'} (holdout roc_auc {details['cli_metrics'].get('roc_auc')}"
        f" vs {details['own_metrics'].get('roc_auc')}). Steps ran in "
        f"{last['step_processes']} process(es) over {last['events']} events. "
        + breakdown_note(phases, theirs, own_t)
        + ("" if met else MISSED)
    )
    return row(
        case="orchestration" if kind == "sqlite" else f"orchestration_{kind}",
        figure=round(ours, 2),
        unit="s",
        baseline=round(theirs, 2),
        ratio=round(ratio, 3),
        peak_memory_mb=round(max(cli_peak), 1),
        size=f"{n_days} days of flights, {details['rows']:,} rows",
        target=f"<= {TARGET_RATIO}x the framework-free path",
        met=met and same,
        note=note,
        baseline_peak_memory_mb=round(max(own_peak), 1),
        ratio_of_medians=round(ours / theirs, 3),
        cli_phases={k: round(v, 2) for k, v in phases.items()},
        baseline_stages={k: round(v, 2) for k, v in own_t.items()},
        instance=kind,
    )


if __name__ == "__main__":
    child_main(sys.argv[1:])
