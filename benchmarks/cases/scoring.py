"""scoring: the predictions step end to end on one big partition vs bare `Booster.predict`.

Ours: the real `flights/predictions` asset (assets/predictions.py) materialized for one
day with `dagster.materialize` in a fresh process: resolve the champion in MLflow, load
it, read the features partition, turn it into the model's matrix, predict, and write the
predictions partition. The timed region is the `materialize` call (the step, with its
model loading); the interpreter and the dagster import are outside it.

Baseline: LightGBM's `Booster.predict` of that very champion on the feature matrix built
beforehand (`LightGBMModel._matrix` of the same partition, as float64 numpy), with the same
number of trees - the raw model throughput, nothing around it. Both in fresh processes,
alternating. Throughput = rows / seconds; the ratio is ours over bare (1.0 = no overhead).

Data: replicated flights; the champion is trained on the days before the scored day
(framework-free training, registered in MLflow with the `champion` alias).
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks import child_env, median, python_child, report, row, self_peak_mb
from benchmarks.data import START, replicated_flights, write_features_lake, write_raw_lake

TARGET_RATIO = 0.5
MODULE = "benchmarks.cases.scoring"
DATASET = "flights"


# ---------------------------------------------------------------------------- setup


def prepare(root: Path, score_rows: int, train_days: int, train_rows: int) -> str:
    """Raw + features for the training days and one big day; a champion. Returns the day."""
    from driftloop.contract import load_contract
    from driftloop.paths import PROJECT_ROOT, dataset_paths
    from driftloop.registry import log_training, make_client, set_alias
    from driftloop.training import TrainingConfig, load_training_frame, train

    contract = load_contract(PROJECT_ROOT / "contracts" / f"{DATASET}.yaml")
    paths = dataset_paths(DATASET, root)
    history = replicated_flights(train_rows, train_days, START, seed=1)
    day = START + timedelta(days=train_days)
    big = replicated_flights(score_rows, 1, day, seed=2, source_offset_days=train_days)
    days = write_raw_lake(contract, paths, history) + write_raw_lake(contract, paths, big)
    del history, big
    write_features_lake(contract, paths, days)
    config = TrainingConfig.for_contract(
        contract, window_days=train_days, end_date=day - timedelta(days=1)
    )
    frame, used, digests = load_training_frame(contract, paths, config.end_date, train_days)
    result = train(contract, frame, config)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    registered = log_training(
        contract, result, used, digests, uri, artifact_root=root / "mlartifacts"
    )
    set_alias(make_client(uri), DATASET, "champion", registered.version)
    return day.isoformat()


def scoring_env(root: Path) -> dict[str, str]:
    return child_env(
        {"DRIFTLOOP_DATA_DIR": str(root), "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    )


# ------------------------------------------------------------------------- children


def _ours(root: Path, day: str) -> dict[str, Any]:
    from dagster import DagsterInstance, materialize

    from assets.predictions import build_predictions
    from driftloop.contract import load_contract
    from driftloop.paths import PROJECT_ROOT
    from resources.lake import LakeResource
    from resources.mlflow import MlflowResource

    contract = load_contract(PROJECT_ROOT / "contracts" / f"{DATASET}.yaml")
    assets = build_predictions(contract).assets
    resources = {
        "lake": LakeResource(data_dir=str(root)),
        "mlflow": MlflowResource(tracking_uri=f"sqlite:///{root / 'mlflow.db'}"),
    }
    with DagsterInstance.ephemeral() as instance:
        started = time.perf_counter()
        result = materialize(assets, partition_key=day, resources=resources, instance=instance)
        seconds = time.perf_counter() - started
    if not result.success:
        raise RuntimeError("the predictions step failed")
    import pyarrow.parquet as pq

    rows = pq.ParquetFile(root / "lake" / DATASET / "predictions" / f"date={day}" / "data.parquet")
    return {"seconds": seconds, "rows": rows.metadata.num_rows, "peak_mb": self_peak_mb()}


def champion_model(root: Path) -> Any:
    """The champion's TabularModel, unwrapped from its MLflow pyfunc."""
    import mlflow.pyfunc

    from driftloop.registry import using_tracking_uri

    with using_tracking_uri(f"sqlite:///{root / 'mlflow.db'}"):
        loaded = mlflow.pyfunc.load_model(f"models:/{DATASET}@champion")
    return loaded.unwrap_python_model().tabular


def _bare(root: Path, day: str) -> dict[str, Any]:
    import numpy as np
    import pyarrow.parquet as pq

    model = champion_model(root)
    path = root / "lake" / DATASET / "features" / f"date={day}" / "data.parquet"
    matrix = model._matrix(pq.read_table(path).to_pandas()).to_numpy(dtype=np.float64)
    started = time.perf_counter()
    scores = model.booster.predict(matrix, num_iteration=model.best_iteration)
    seconds = time.perf_counter() - started
    np.save(root / "bare_scores.npy", np.asarray(scores, dtype=np.float64))
    return {
        "seconds": seconds,
        "rows": len(matrix),
        "trees": model.best_iteration,
        "threads": model.params.get("num_threads"),
        "peak_mb": self_peak_mb(),
    }


def child_main(argv: list[str]) -> None:
    side, root, day = argv
    report((_ours if side == "ours" else _bare)(Path(root), day))


# ---------------------------------------------------------------------------- parent


def sizes(quick: bool) -> dict[str, int]:
    if quick:
        return {"score_rows": 100_000, "train_days": 16, "train_rows": 20_000, "reps": 1}
    return {"score_rows": 1_000_000, "train_days": 16, "train_rows": 80_000, "reps": 2}


def run(quick: bool) -> list[dict]:
    size = sizes(quick)
    ours_s, bare_s, ours_peak = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as tmp:
        root = Path(tmp) / "data"
        day = prepare(root, size["score_rows"], size["train_days"], size["train_rows"])
        env = scoring_env(root)
        for rep in range(size["reps"]):
            for side in ("ours", "bare") if rep % 2 == 0 else ("bare", "ours"):
                child = python_child(MODULE, side, str(root), day, env=env)
                if side == "ours":
                    ours_s.append(child.result["seconds"])
                    ours_peak.append(child.peak_memory_mb)
                    rows = child.result["rows"]
                else:
                    bare_s.append(child.result["seconds"])
                    bare = child.result
    ours_rate, bare_rate = rows / median(ours_s), rows / median(bare_s)
    ratio = ours_rate / bare_rate
    met = ratio >= TARGET_RATIO
    note = (
        f"predictions step {median(ours_s):.2f} s ({ours_rate:,.0f} rows/s) vs bare "
        f"Booster.predict {median(bare_s):.2f} s ({bare_rate:,.0f} rows/s) on {rows:,} rows, "
        f"{bare['trees']} trees, num_threads={bare['threads']}; medians of "
        f"{size['reps']} alternating run(s). The step includes resolving and loading the "
        "champion from MLflow (a fixed cost per run), reading, the matrix, predicting and "
        "writing the partition."
    )
    if not met:
        note += (
            " Missed: fixed per-run costs (importing mlflow and loading the pyfunc) and the "
            "per-row preparation (MLflow's input schema checks, string casts of the "
            "categorical columns) weigh more than the trees themselves at this size."
        )
    return [
        row(
            case="scoring",
            figure=round(ours_rate),
            unit="rows/s",
            baseline=round(bare_rate),
            ratio=round(ratio, 3),
            peak_memory_mb=round(median(ours_peak), 1),
            size=f"1 partition of {rows:,} rows",
            target=">= 0.5x bare Booster.predict throughput",
            met=met,
            note=note,
        )
    ]


if __name__ == "__main__":
    child_main(sys.argv[1:])
