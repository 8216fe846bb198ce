"""stream: `pipelines.stream` consumers on a real Redis server, compiled trees and LightGBM.

Consumers: `python -m pipelines.stream --dataset flights` processes (the command a user
runs), 1 or 2 in one consumer group, each loading the champion (a LightGBM model of real
flights) and the online feature state as the endpoint does; with its trees compiled
(`DRIFTLOOP_COMPILED=on`, the library built once beforehand, as a version's first load
does) and with LightGBM's own predict (`off`, the fallback), side by side. The events are
the raw request fields of a real day's flights (`record`, as a client sends one row of
`/invocations`), sent to Redis by this process.

Two phases per setting, after a warm-up:
- paced: events sent at `RATE` per second (a few every 5 ms) for `seconds`; the
  latency of each event is its prediction's entry time on the output stream minus its
  own entry time on the input stream (both the Redis server's clock, 1 ms resolution):
  p50 and p99 are reported, with the events/s the consumers kept up with;
- backlog: `backlog` events queued at once, then drained; events/s = events / (time of
  the last prediction - time the queue was full): the consumers' capacity.

Targets (issue 30): one consumer, compiled: at least 1,000 events/s (backlog) and p99
under 20 ms at 1,000 events/s (paced). Two consumers and the fallback are reported.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from benchmarks import child_env, row

DATASET = "flights"
RATE = 1000  # events per second in the paced phase
TARGET_RATE = 1000.0
TARGET_P99_MS = 20.0
WARM_UP = 300


def sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return {"days": 18, "seconds": 2.0, "backlog": 2000}
    return {"days": 24, "seconds": 10.0, "backlog": 20_000}


@contextmanager
def redis_server(folder: Path):
    """Debian's redis-server on a free loopback port, nothing kept on disk."""
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    args += ["--appendonly", "no", "--dir", str(folder)]
    with (folder / "redis.log").open("w") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 30
        while True:
            with suppress(redis.exceptions.ConnectionError):
                if redis.Redis.from_url(url).ping():
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def consumers(count: int, url: str, env: dict[str, str], folder: Path):
    """`count` consumer processes of the group, until each has its model and is reading
    (its log says `consuming`)."""
    processes = []
    names = [f"c{i}" for i in range(count)]
    for name in names:
        command = [sys.executable, "-m", "pipelines.stream", "--dataset", DATASET]
        command += ["--redis-url", url, "--consumer", name, "--refresh-seconds", "0"]
        with (folder / f"{name}.log").open("w") as log:
            processes.append(
                subprocess.Popen(
                    command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            )
    try:
        deadline = time.monotonic() + 600
        while True:
            logs = [(folder / f"{name}.log").read_text() for name in names]
            if all(": consuming " in text for text in logs):
                break
            for process, name in zip(processes, names, strict=True):
                if process.poll() is not None:
                    raise RuntimeError((folder / f"{name}.log").read_text()[-3000:])
            if time.monotonic() > deadline:
                raise RuntimeError("the consumers did not start")
            time.sleep(0.2)
        yield
    finally:
        for process in processes:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def _ms(entry: Any) -> int:
    text = entry.decode() if isinstance(entry, bytes) else str(entry)
    return int(text.split("-")[0])


def drained(client: Any, want: int, timeout: float = 900) -> None:
    from driftloop.serving.stream import stream_names

    output = stream_names(DATASET)["predictions"]
    deadline = time.monotonic() + timeout
    while client.xlen(output) < want:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{client.xlen(output)} of {want} predictions")
        time.sleep(0.02)


def outputs(client: Any, prefix: str) -> dict[str, int]:
    """event id -> its prediction's entry time (ms), for the events of a phase."""
    from driftloop.serving.stream import stream_names

    found = {}
    for entry, fields in client.xrange(stream_names(DATASET)["predictions"]):
        event = fields[b"event_id"].decode()
        if event.startswith(prefix):
            found[event] = _ms(entry)
    return found


def send(client: Any, records: list[dict], prefix: str, count: int, rate: float | None) -> dict:
    """Send `count` events (all at once, or paced at `rate`); event id -> entry time (ms)."""
    from driftloop.serving.stream import stream_names

    events = stream_names(DATASET)["events"]
    bodies = [json.dumps(records[i % len(records)]) for i in range(count)]
    sent: dict[str, int] = {}
    step = 5  # events per send when paced: one every 5 ms at 1,000/s
    started = time.perf_counter()
    for first in range(0, count, step if rate else 1000):
        last = min(count, first + (step if rate else 1000))
        pipe = client.pipeline(transaction=False)
        for i in range(first, last):
            pipe.xadd(events, {"event_id": f"{prefix}{i}", "record": bodies[i]})
        for i, entry in zip(range(first, last), pipe.execute(), strict=True):
            sent[f"{prefix}{i}"] = _ms(entry)
        if rate:
            wait = started + last / rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
    return sent


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure_setting(
    url: str, env: dict[str, str], count: int, records: list[dict], size: dict, folder: Path
) -> dict[str, Any]:
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    with consumers(count, url, env, folder):
        send(client, records, "w", WARM_UP, None)
        drained(client, WARM_UP)
        paced_count = int(RATE * size["seconds"])
        sent = send(client, records, "p", paced_count, RATE)
        drained(client, WARM_UP + paced_count)
        got = outputs(client, "p")
        latencies = [got[e] - sent[e] for e in sent]
        paced_span = (max(got.values()) - min(sent.values())) / 1000
        sent = send(client, records, "b", size["backlog"], None)
        queued = max(sent.values())
        drained(client, WARM_UP + paced_count + size["backlog"])
        got = outputs(client, "b")
        backlog_span = max(1e-3, (max(got.values()) - queued) / 1000)
    return {
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
        "paced_rate": paced_count / paced_span,
        "capacity": size["backlog"] / backlog_span,
        "events": paced_count + size["backlog"],
    }


def prepare(root: Path, days: int) -> str:
    """The serving case's installation with a LightGBM champion, its trees compiled."""
    from benchmarks.cases.serving import prepare as prepare_serving
    from driftloop.serving.scoring_model import ScoringModel
    from driftloop.training.registry import make_client, version_for_alias

    day = prepare_serving(root, days, lightgbm=True)
    os.environ["DRIFTLOOP_COMPILED"] = "on"
    uri = f"sqlite:///{root / 'mlflow.db'}"
    found = version_for_alias(make_client(uri), DATASET, "champion")
    number = str(found.version)
    model = ScoringModel.load(f"models:/{DATASET}/{number}", uri, number, str(found.run_id), root)
    if model.compiled is None:
        raise RuntimeError(f"no compiled trees: {model.compiled_reason}")
    return day


def run(quick: bool) -> list[dict]:
    from benchmarks.cases.serving import request_records

    size = sizes(quick)
    results: dict[tuple[int, str], dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        folder = Path(tmp)
        root = folder / "data"
        day = prepare(root, size["days"])
        records, _ = request_records(root, day)
        with redis_server(folder) as url:
            for compiled in ("on", "off"):
                env = child_env(
                    {
                        "DRIFTLOOP_DATA_DIR": str(root),
                        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
                        "DRIFTLOOP_COMPILED": compiled,
                    }
                )
                for count in (1, 2):
                    results[(count, compiled)] = measure_setting(
                        url, env, count, records, size, folder
                    )
    rows = []
    for (count, compiled), figures in results.items():
        held = count == 1 and compiled == "on"
        met = figures["capacity"] >= TARGET_RATE and figures["p99_ms"] < TARGET_P99_MS
        label = "compiled trees" if compiled == "on" else "LightGBM predict (fallback)"
        rows.append(
            row(
                case=f"stream_{count}consumer_{'compiled' if compiled == 'on' else 'lightgbm'}",
                figure=round(figures["capacity"]),
                unit="events/s",
                size=f"{count} consumer(s), {figures['events']:,} events, {label}",
                target=(
                    f">= {TARGET_RATE:,.0f} events/s; p99 < {TARGET_P99_MS:.0f} ms at {RATE:,}/s"
                    if held
                    else "reported"
                ),
                met=met if held else True,
                note=(
                    f"capacity {figures['capacity']:,.0f} events/s (a backlog drained); paced at "
                    f"{RATE:,}/s: p50 {figures['p50_ms']:.0f} ms, p99 {figures['p99_ms']:.0f} ms "
                    f"event to prediction ({figures['paced_rate']:,.0f} events/s kept)"
                ),
                p50_ms=figures["p50_ms"],
                p99_ms=figures["p99_ms"],
                paced_rate=round(figures["paced_rate"]),
            )
        )
    return rows
