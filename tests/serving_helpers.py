"""Shared by the serving tests: a prepared flights installation, the served command, and a
day of flights replayed as the requests and events a live client would send."""

from __future__ import annotations

import atexit
import http.client
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
from browser_helpers import Prepared, flights_env, prepare_flights, wait_http
from e2e_helpers import process_group

from driftloop.data.contract import Contract
from driftloop.serving.requests import RequestSchema, raw_record

FLIGHT = {
    "flight_id": "demo-1",
    "scheduled_departure": "2013-02-05 08:30:00",
    "carrier": "UA",
    "origin": "EWR",
    "dest": "ORD",
    "distance": 719.0,
    "temp": 35.1,
    "dewp": 19.9,
    "humid": 53.5,
    "wind_dir": 260.0,
    "wind_speed": 11.5,
    "wind_gust": None,
    "precip": 0.0,
    "pressure": 1015.2,
    "visib": 10.0,
    "plane_year": 2004.0,
}


@cache
def prepared_flights(days: int = 35) -> tuple[Prepared, dict[str, str]]:
    """One installation per test session (35 replayed days, a champion, every day scored),
    shared by the serving test modules; removed when the session ends."""
    tmp = Path(tempfile.mkdtemp(prefix="serving-tests-"))
    atexit.register(shutil.rmtree, tmp, True)
    env = flights_env(tmp)
    return prepare_flights(env, days=days, drift_days=0), env


@contextmanager
def served(
    env: dict[str, str], log_path: Path, port: int, *args: str, drain: bool = False
) -> Iterator[str]:
    """`python -m pipelines.serve --dataset flights` on a loopback port, until ready.

    With `drain`, the server is stopped at the end as an operator stops it (SIGTERM) while
    a 1,000-row request is in flight: that request must still be answered, and the server
    must exit cleanly."""
    command = [sys.executable, "-m", "pipelines.serve", "--dataset", "flights"]
    command += ["--port", str(port), *args]
    with process_group(command, {**os.environ, **env}, log_path) as process:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/ready", process, log_path, timeout=180)
        yield url
        assert process.poll() is None, "the server died during the tests"
        if drain:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            body = json.dumps({"dataframe_records": [FLIGHT] * 1000})
            connection.request("POST", "/invocations", body, {"Content-Type": "application/json"})
            time.sleep(0.05)  # the request is being scored
            os.kill(process.pid, signal.SIGTERM)
            response = connection.getresponse()
            answer = json.loads(response.read())
            assert response.status == 200 and len(answer["predictions"]) == 1000, answer
            assert process.wait(timeout=60) == 0, log_path.read_text()[-2000:]


def call(url: str, body: Any = None, raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _json_value(value: Any) -> Any:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value


def timeline(raw: pd.DataFrame, contract: Contract) -> list[tuple[str, dict[str, Any]]]:
    """A stored day as it happens: each flight's request at its scheduled departure, its
    departure (the flight's fields and dep_delay) when it becomes known, and its arrival
    (arr_delay) one label delay later, in time order; at equal times a request goes first
    (a value known exactly at t is not used at t, by the definition)."""
    schema = RequestSchema.from_contract(contract)
    event = contract.event_time.column
    steps: list[tuple[pd.Timestamp, int, str, dict[str, Any]]] = []
    for _, row in raw.iterrows():
        at = row[event]
        steps.append((at, 0, "request", raw_record(row, schema)))
        flight = {
            name: _json_value(row[name])
            for name in contract.columns
            if name not in ("arr_delay", "_source_file")
        }
        departed = at
        if not pd.isna(row["dep_delay"]):
            departed = max(at, at + timedelta(minutes=int(row["dep_delay"])))
        steps.append((departed, 1, "event", flight))
        arrival = {"flight_id": row["flight_id"], "arr_delay": _json_value(row["arr_delay"])}
        steps.append((at + contract.label_delay, 1, "event", arrival))
    steps.sort(key=lambda s: (s[0], s[1]))
    return [(kind, payload) for _, _, kind, payload in steps]
