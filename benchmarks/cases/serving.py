"""serving: the real-time endpoint under a closed-loop load on loopback vs bare predict.

Ours: `python -m pipelines.serve --dataset flights` (a child process, its own group) on a
free 127.0.0.1 port. One client thread on one keep-alive connection sends requests back
to back: single-row requests, then 100-row requests, each a set of real stored flights
with only their raw request-time fields (the server builds their features from the lake:
the same DuckDB definition as batch, over the ~10 stored days the rolling windows reach,
then scores them with the champion pyfunc). Figures per size: requests/s and p50 / p99
latency as the client sees it (HTTP, JSON, validation, features, model). Bounded: at
most `requests` requests and `seconds` seconds per size, only to 127.0.0.1.

Baseline: the bare model's in-process predict (the champion's `TabularModel.predict`,
unwrapped from MLflow, on the precomputed features of the same rows), median of repeats,
in a child of its own. The ratio is ours over bare latency (how much the request path
costs on top of the trees). Peak memory: the server's own peak RSS (VmHWM).

Data: 24 real days of flights written as raw and features partitions, a champion trained
framework-free and registered with the `champion` alias (as benchmarks/cases/scoring.py).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks import child_env, high_water_kb_of, python_child, report, row
from benchmarks.data import START, real_flights, write_features_lake, write_raw_lake

MODULE = "benchmarks.cases.serving"
DATASET = "flights"
TARGET_P50_MS = {1: 1000.0, 100: 1500.0}  # a request's features come from ~10 stored days
SIZES = (1, 100)


# ---------------------------------------------------------------------------- setup


def prepare(root: Path, days: int) -> str:
    """Raw + features of `days` real days and a champion; returns the last day."""
    from driftloop.data.contract import load_contract
    from driftloop.paths import PROJECT_ROOT, dataset_paths
    from driftloop.training.registry import log_training, make_client, set_alias
    from driftloop.training.train import TrainingConfig, load_training_frame, train

    contract = load_contract(PROJECT_ROOT / "contracts" / f"{DATASET}.yaml")
    paths = dataset_paths(DATASET, root)
    written = write_raw_lake(contract, paths, real_flights(START, days))
    write_features_lake(contract, paths, written)
    end = START + timedelta(days=days - 1)
    config = TrainingConfig.for_contract(contract, window_days=days, end_date=end)
    frame, used, digests = load_training_frame(contract, paths, end, days)
    result = train(contract, frame, config)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    registered = log_training(
        contract, result, used, digests, uri, artifact_root=root / "mlartifacts"
    )
    set_alias(make_client(uri), DATASET, "champion", registered.version)
    return end.isoformat()


def request_bodies(root: Path, day: str, size: int, count: int) -> list[bytes]:
    """`count` JSON bodies of `size` stored flights of `day` (raw request fields only)."""
    import pyarrow.parquet as pq

    from driftloop.data.contract import load_contract
    from driftloop.paths import PROJECT_ROOT
    from driftloop.serving.online import RequestSchema, raw_record

    contract = load_contract(PROJECT_ROOT / "contracts" / f"{DATASET}.yaml")
    schema = RequestSchema.from_contract(contract)
    raw = pq.read_table(root / "lake" / DATASET / "raw" / f"date={day}" / "data.parquet")
    records = [raw_record(r, schema) for _, r in raw.to_pandas().iterrows()]
    bodies = []
    for i in range(count):
        start = (i * size) % max(1, len(records) - size)
        chunk = records[start : start + size]
        bodies.append(json.dumps({"dataframe_records": chunk}).encode())
    return bodies


# ------------------------------------------------------------------------- children


def _bare(root: Path, day: str) -> dict[str, Any]:
    """Median in-process predict time of the unwrapped champion on 1 and 100 rows."""
    import pyarrow.parquet as pq

    from benchmarks.cases.scoring import champion_model

    model = champion_model(root)
    features = pq.read_table(
        root / "lake" / DATASET / "features" / f"date={day}" / "data.parquet"
    ).to_pandas()
    out: dict[str, Any] = {}
    for size in SIZES:
        times = []
        for i in range(60):
            part = features.iloc[(i * size) % (len(features) - size) :].head(size)
            started = time.perf_counter()
            model.predict(part)
            times.append(time.perf_counter() - started)
        out[str(size)] = statistics.median(times[10:])  # the first calls warm caches
    return out


def child_main(argv: list[str]) -> None:
    _, root, day = argv
    report(_bare(Path(root), day))


# ---------------------------------------------------------------------------- parent


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_ready(port: int, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        with suppress(OSError):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/ready")
            if connection.getresponse().status == 200:
                connection.close()
                return
            connection.close()
        time.sleep(0.5)
    raise RuntimeError(f"the server was not ready within {timeout:.0f} s")


def load(port: int, bodies: list[bytes], seconds: float) -> dict[str, Any]:
    """Closed loop on one keep-alive connection: latencies (s) and requests per second."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json"}
    latencies: list[float] = []
    errors = 0
    started = time.perf_counter()
    for body in bodies:
        sent = time.perf_counter()
        connection.request("POST", "/invocations", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        latencies.append(time.perf_counter() - sent)
        errors += response.status != 200
        if time.perf_counter() - started > seconds:
            break
    elapsed = time.perf_counter() - started
    connection.close()
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / elapsed,
        "p50": pct(0.50),
        "p99": pct(0.99),
        "mean": statistics.fmean(latencies),
    }


def sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return {"days": 18, "requests": {1: 20, 100: 10}, "seconds": 30.0, "warmup": 2}
    return {"days": 24, "requests": {1: 300, 100: 100}, "seconds": 120.0, "warmup": 5}


def run(quick: bool) -> list[dict]:
    size = sizes(quick)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        root = Path(tmp) / "data"
        day = prepare(root, size["days"])
        env = child_env(
            {
                "DRIFTLOOP_DATA_DIR": str(root),
                "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
            }
        )
        bare = python_child(MODULE, "bare", str(root), day, env=env).result
        port = _free_port()
        command = [sys.executable, "-m", "pipelines.serve", "--dataset", DATASET]
        command += ["--host", "127.0.0.1", "--port", str(port), "--quiet"]
        log_path = Path(tmp) / "serve.log"
        with log_path.open("w") as log:
            server = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            _wait_ready(port, server, timeout=120)
            results = {}
            for n in SIZES:
                bodies = request_bodies(root, day, n, size["requests"][n] + size["warmup"])
                load(port, bodies[: size["warmup"]], seconds=30)  # warm caches, not counted
                results[n] = load(port, bodies[size["warmup"] :], seconds=size["seconds"])
            peak = high_water_kb_of(server.pid) / 1024 or float("nan")
        finally:
            with suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=10)
    for n in SIZES:
        r = results[n]
        bare_ms = bare[str(n)] * 1000
        p50_ms, p99_ms = r["p50"] * 1000, r["p99"] * 1000
        met = r["errors"] == 0 and p50_ms <= TARGET_P50_MS[n]
        label = "1 row" if n == 1 else f"{n} rows"
        note = (
            f"{r['requests']} sequential requests of {label} on one keep-alive loopback "
            f"connection: {r['rps']:.2f} requests/s ({r['rps'] * n:.1f} rows/s), p50 "
            f"{p50_ms:.0f} ms, p99 {p99_ms:.0f} ms, mean {r['mean'] * 1000:.0f} ms, "
            f"{r['errors']} errors; bare TabularModel.predict on the precomputed features "
            f"{bare_ms:.2f} ms (median). The gap is the request path's feature query over the "
            "stored raw days the rolling windows reach, plus MLflow's pyfunc input checks."
        )
        common = {"peak_memory_mb": round(peak, 1), "size": f"{label} per request"}
        rows.append(
            row(
                case=f"serving_{n}row_p50",
                figure=round(p50_ms, 1),
                unit="ms",
                baseline=round(bare_ms, 3),
                ratio=round(p50_ms / bare_ms, 1) if bare_ms else None,
                target=f"p50 <= {TARGET_P50_MS[n]:.0f} ms, no errors",
                met=met,
                note=note,
                **common,
            )
        )
        rows.append(
            row(
                case=f"serving_{n}row_p99",
                figure=round(p99_ms, 1),
                unit="ms",
                baseline=round(bare_ms, 3),
                ratio=round(p99_ms / bare_ms, 1) if bare_ms else None,
                target="reported",
                met=r["errors"] == 0,
                note=f"p99 of the same {r['requests']} requests",
                **common,
            )
        )
        rows.append(
            row(
                case=f"serving_{n}row_rps",
                figure=round(r["rps"], 2),
                unit="requests/s",
                baseline=round(1.0 / bare[str(n)], 1),
                ratio=round(r["rps"] * bare[str(n)], 4),
                target="reported (one client, sequential)",
                met=r["errors"] == 0,
                note=f"baseline: bare predict calls per second on {label}",
                **common,
            )
        )
    return rows


if __name__ == "__main__":
    child_main(sys.argv[1:])
