"""The served endpoint replays a full day as it happens, and survives a fuzzer.

Both against the documented command with two uvicorn workers, so events posted to one
worker must reach the other (the shared event log) and /metrics must merge both.

Replay: the server's lake holds the prepared installation's days up to D-1 (D = the last
day, whose batch predictions exist). Every flight of day D is requested at its scheduled
departure, before any later event; its departure (dep_delay) and arrival (arr_delay) are
posted to /events when they become known. Every prediction equals the `predictions`
asset's value for that flight, exactly. Then day D lands in the server's lake: the stored
rows replace the events and the predictions stay the same.

Fuzz: 600 generated malformed requests (seeded): each gets a 4xx with a message, on a
connection that stays open; /ping is healthy after, and nothing was a 5xx.

Shutdown: the server is stopped with SIGTERM while a 1,000-row request is in flight; the
request is answered and the server exits with 0 (`served(..., drain=True)`).
"""

from __future__ import annotations

import http.client
import json
import random
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import free_port, wait_for
from serving_helpers import FLIGHT, call, prepared_flights, served, timeline

from driftloop.monitoring.signals import PREDICTION, read_partition
from driftloop.paths import dataset_paths

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def replay_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any, Path]]:
    prepared, env = prepared_flights()
    tmp = tmp_path_factory.mktemp("replay")
    root = tmp / "data"
    source = dataset_paths("flights", prepared.root)
    mine = dataset_paths("flights", root)
    for day in prepared.days[:-1]:
        target = mine.partition_file("raw", day)
        target.parent.mkdir(parents=True)
        shutil.copy(source.partition_file("raw", day), target)
    env = {**env, "DRIFTLOOP_DATA_DIR": str(root)}
    args = ("--workers", "2", "--refresh-seconds", "1", "--quiet")
    with served(env, tmp / "serve.log", free_port(), *args, drain=True) as url:
        yield url, prepared, root


def _post(port: int, path: str, body: Any, connection: http.client.HTTPConnection | None = None):
    own = connection is None
    connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("POST", path, json.dumps(body), JSON)
    response = connection.getresponse()
    data = json.loads(response.read())
    if own:
        connection.close()
    return response.status, data


def test_a_replayed_day_is_scored_as_batch_scored_it(replay_server) -> None:
    url, prepared, root = replay_server
    from driftloop.data.contract import load_contract
    from driftloop.paths import PROJECT_ROOT

    contract = load_contract(PROJECT_ROOT / "contracts" / "flights.yaml")
    day = prepared.days[-1]
    source = dataset_paths("flights", prepared.root)
    raw = read_partition(source, "raw", day)
    batch = read_partition(source, "predictions", day).set_index("flight_id")[PREDICTION]
    port = int(url.rsplit(":", 1)[1])
    scoring = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    online: dict[str, float] = {}
    events = 0
    for kind, payload in timeline(raw, contract):
        if kind == "event":
            # A new connection per event: the kernel hands it to either worker.
            status, body = _post(port, "/events", {"dataframe_records": [payload]})
            assert status == 200 and body["ignored_stored"] == 0, body
            events += 1
            continue
        status, body = _post(port, "/invocations", {"dataframe_records": [payload]}, scoring)
        assert status == 200, body
        online[payload["flight_id"]] = body["predictions"][0]
    scoring.close()
    assert len(online) == len(raw) > 500 and events == 2 * len(raw)
    # The events went to both workers; a scrape of either counts them all (multiprocess).
    for _ in range(4):
        metrics = urllib.request.urlopen(url + "/metrics", timeout=30).read().decode()
        applied = [
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("driftloop_serving_events_total{") and 'outcome="applied"' in line
        ]
        assert applied == [events], applied
    wrong = {k: (v, batch[k]) for k, v in online.items() if v != batch[k]}
    assert wrong == {}, f"{len(wrong)} of {len(online)} differ, e.g. {list(wrong.items())[:3]}"

    # Day D lands in the server's lake: the stored rows replace the events.
    target = dataset_paths("flights", root).partition_file("raw", day)
    target.parent.mkdir(parents=True)
    shutil.copy(source.partition_file("raw", day), target)

    def landed() -> bool:
        state = call(url + "/version")[1]["online_state"]
        return state["last_day"] == day and state["event_rows"] == 0

    for _ in range(4):  # each worker answers some of these
        wait_for(f"{day} to replace the events", landed, timeout=60, every=0.5)
    sample = raw.iloc[::50]
    records = [p for k, p in timeline(sample, contract) if k == "request"]
    status, body = call(url + "/invocations", {"dataframe_records": records})
    assert status == 200, body
    assert body["predictions"] == [batch[r["flight_id"]] for r in records]


def _bad_value(rng: random.Random) -> Any:
    return rng.choice(
        [
            "9999-12-31 00:00:00",
            "1600-01-01",
            "not a date",
            10 ** rng.randint(310, 600),
            -(10**400),
            [1, 2],
            {"nested": {"deeper": [None]}},
            True,
            "",
            "\u0000\ufffd" * rng.randint(1, 50),
            -1e308,
            1e9,
        ]
    )


def _bad_request(rng: random.Random, i: int) -> tuple[bytes, dict[str, str]]:
    """One malformed request: a broken body, a broken shape, or a row with a bad field."""
    kind = i % 6
    if kind == 0:  # not JSON, or JSON cut short, or hostile number literals
        good = json.dumps({"dataframe_records": [FLIGHT]})
        body = rng.choice(
            [
                good[: rng.randint(1, len(good) - 1)],
                good.replace('"temp": 35.1', '"temp": ' + "9" * 5000),
                good.replace('"temp": 35.1', '"temp": NaN'),
                good.replace('"temp": 35.1', '"temp": -Infinity'),
                good.replace('"temp": 35.1', '"temp": 1e400'),
                bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300))).decode("latin-1"),
                "[" * 100_000,
            ]
        )
        return body.encode("utf-8", "surrogatepass"), JSON
    if kind == 1:  # valid JSON, wrong shape
        body = rng.choice(
            [
                [],
                "text",
                {"instances": [FLIGHT]},
                {"dataframe_records": FLIGHT},
                {"dataframe_split": {"columns": ["carrier"], "data": [["UA", "AA"]]}},
                {"dataframe_records": [FLIGHT], "dataframe_split": {}},
                {"dataframe_records": [None, 3, "x"]},
            ]
        )
        return json.dumps(body).encode(), JSON
    if kind == 2:  # a required field missing
        record = dict(FLIGHT)
        record.pop(rng.choice([k for k in FLIGHT if k != "flight_id"]))
        return json.dumps({"dataframe_records": [record]}).encode(), JSON
    if kind == 3:  # wrong content type
        return json.dumps({"dataframe_records": [FLIGHT]}).encode(), {"Content-Type": "text/csv"}
    # kinds 4 and 5: one or more rows, one field of one row hostile
    records = [dict(FLIGHT) for _ in range(rng.randint(1, 5))]
    record = rng.choice(records)
    # Fields whose every value in `_bad_value` breaks a rule (dest takes any string).
    fields = [k for k in FLIGHT if k not in ("flight_id", "wind_gust", "dest")]
    record[rng.choice(fields)] = _bad_value(rng)
    text = json.dumps({"dataframe_records": records}, allow_nan=True)
    return text.encode(), JSON


def test_fuzzed_requests_get_4xx_on_a_live_connection(replay_server) -> None:
    url, _, _ = replay_server
    port = int(url.rsplit(":", 1)[1])
    rng = random.Random(20)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    statuses: dict[int, int] = {}
    for i in range(600):
        body, headers = _bad_request(rng, i)
        # An event may leave fields out (kind 2 is valid there): events get the others.
        path = "/events" if i % 10 == 0 and i % 6 != 2 else "/invocations"
        try:
            connection.request("POST", path, body, headers)
            response = connection.getresponse()
            data = response.read()
        except (ConnectionError, http.client.HTTPException) as error:
            message = f"request {i} dropped the connection: {error!r} {body[:200]!r}"
            raise AssertionError(message) from error
        statuses[response.status] = statuses.get(response.status, 0) + 1
        assert 400 <= response.status < 500, (i, response.status, data[:300], body[:200])
        answer = json.loads(data)
        assert answer["message"] and answer["error_code"], answer
        assert response.headers["X-Request-ID"]
    connection.close()
    assert sum(statuses.values()) == 600 and {400, 415, 422} <= set(statuses), statuses
    assert call(url + "/ping") == (200, {"status": "alive"})
    status, body = call(url + "/invocations", {"dataframe_records": [FLIGHT]})
    assert status == 200, body
