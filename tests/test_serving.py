"""The real-time endpoint: raw fields in, the champion's prediction out, equal to batch.

The unit tests check the request schema and validation on the shipped flights contract.
The end-to-end tests start the documented command (`python -m pipelines.serve --dataset
flights`) as a subprocess against an installation prepared in process (35 replayed days,
features, a champion trained, gated and promoted, every day scored by `predictions`), and:

- prove online == batch: flights stored in the lake, sent with only their raw request-time
  fields, get exactly the `predictions` asset's value (same champion, same features code);
- send ten malformed requests, each answered 4xx naming the field, the server staying up;
- promote another version and roll back (moving only the alias, as the promotion asset and
  the rollback job do): /version and the predictions follow, with no restart.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import pandas as pd
import pytest
from browser_helpers import Prepared, flights_env, prepare_flights, wait_http
from e2e_helpers import free_port, process_group, wait_for

from driftloop.data.contract import Contract
from driftloop.monitoring.signals import MODEL_VERSION, PREDICTION, read_partition
from driftloop.paths import dataset_paths
from driftloop.serving.online import (
    ChampionWatcher,
    OnlineScorer,
    RequestError,
    RequestSchema,
    _chunks,
    parse_request,
    raw_record,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

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


# --- the request schema and validation (no server) ------------------------------------------


def test_request_fields_are_what_the_features_read(flights_contract: Contract) -> None:
    schema = RequestSchema.from_contract(flights_contract)
    assert set(schema.required) == {
        "scheduled_departure",  # the event time, and hour / weekday / plane_age
        "carrier",
        "origin",
        "dest",  # features and rolling group_by columns
        "distance",
        *("temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip"),
        *("pressure", "visib"),
        "plane_year",  # only through the extra feature plane_age
    }
    assert schema.optional == ("flight_id",)
    # Outcomes (known after the flight) and columns no feature reads are not asked for.
    assert {"dep_delay", "arr_delay", "tailnum", "flight"} == set(schema.ignored)

    rows = parse_request({"dataframe_records": [FLIGHT]}, schema)
    assert list(rows.columns) == list(flights_contract.columns)
    assert rows.loc[0, "carrier"] == "UA" and rows["dep_delay"].isna().all()
    assert rows.loc[0, "scheduled_departure"] == pd.Timestamp("2013-02-05 08:30")
    split = {"columns": list(FLIGHT), "data": [list(FLIGHT.values())]}
    pd.testing.assert_frame_equal(parse_request({"dataframe_split": split}, schema), rows)
    # An offset is converted to the contract's zone (New York, UTC-5 in February).
    utc = FLIGHT | {"scheduled_departure": "2013-02-05T13:30:00+00:00"}
    utc_rows = parse_request({"dataframe_records": [utc]}, schema)
    assert utc_rows.loc[0, "scheduled_departure"] == pd.Timestamp("2013-02-05 08:30")


MALFORMED: list[tuple[str, Any, int, str]] = [
    ("missing field", [{k: v for k, v in FLIGHT.items() if k != "carrier"}], 422, "carrier"),
    ("wrong type", [FLIGHT | {"distance": "far"}], 422, "distance"),
    ("unknown category", [FLIGHT | {"origin": "XYZ"}], 422, "origin"),
    ("null where not nullable", [FLIGHT | {"dest": None}], 422, "dest"),
    ("out of range", [FLIGHT | {"temp": 500}], 422, "temp"),
    ("bad timestamp", [FLIGHT | {"scheduled_departure": "tomorrow"}], 422, "scheduled_departure"),
    ("boolean for a number", [FLIGHT | {"humid": True}], 422, "humid"),
    ("oversized batch", [FLIGHT] * 1001, 413, "dataframe_records"),
    ("not a list", {"carrier": "UA"}, 400, "dataframe_records"),
    ("empty batch", [], 400, "dataframe_records"),
]


@pytest.mark.parametrize(("case", "records", "status", "field"), MALFORMED, ids=lambda x: x)
def test_malformed_requests_name_the_field(
    flights_contract: Contract, case: str, records: Any, status: int, field: str
) -> None:
    schema = RequestSchema.from_contract(flights_contract)
    with pytest.raises(RequestError) as raised:
        parse_request({"dataframe_records": records}, schema)
    error = raised.value
    assert error.status == status, case
    assert f"field '{field}'" in error.message, error.message
    assert error.body()["errors"][0]["field"] == field


def test_every_problem_is_listed_with_its_row(flights_contract: Contract) -> None:
    schema = RequestSchema.from_contract(flights_contract)
    rows = [FLIGHT, FLIGHT | {"carrier": "ZZ"}, FLIGHT | {"distance": None, "origin": 3}]
    with pytest.raises(RequestError) as raised:
        parse_request({"dataframe_records": rows}, schema)
    problems = {(p["row"], p["field"]) for p in raised.value.body()["errors"]}
    assert problems == {(1, "carrier"), (2, "distance"), (2, "origin")}
    assert "row 1, field 'carrier': 'ZZ' is not an allowed value" in raised.value.message


def test_rows_of_one_request_are_cut_where_they_span_the_label_delay() -> None:
    times = pd.Series(
        pd.to_datetime(
            ["2013-02-05 09:00", "2013-02-04 08:00", "2013-02-05 07:59", "2013-02-06 00:00"]
        )
    )
    chunks = [list(c) for c in _chunks(pd.DataFrame({"t": times}), "t", pd.Timedelta("1d"))]
    assert chunks == [[1, 2], [0, 3]]  # event-time order; no chunk spans a whole day


def test_no_champion_is_a_503_not_a_crash(flights_contract: Contract, flights_paths) -> None:
    watcher = ChampionWatcher("flights", "sqlite:///unused.db", refresh_seconds=0)
    scorer = OnlineScorer(flights_contract, flights_paths, watcher)
    assert not scorer.ready
    with pytest.raises(RequestError) as raised:
        scorer.predict({"dataframe_records": [FLIGHT]})
    assert raised.value.status == 503 and "no 'champion' model" in raised.value.message


# --- end to end, against the served command --------------------------------------------------


@dataclass
class Served:
    url: str
    prepared: Prepared
    env: dict[str, str]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("serving")
    env = flights_env(tmp)
    prepared = prepare_flights(env, days=35, drift_days=0)
    port = free_port()
    full_env = {**os.environ, **env}
    log_path = tmp / "serve.log"
    command = [sys.executable, "-m", "pipelines.serve", "--dataset", "flights"]
    command += ["--port", str(port), "--refresh-seconds", "1", "--quiet"]
    with process_group(command, full_env, log_path) as process:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/ready", process, log_path, timeout=90)
        yield Served(url, prepared, env)
        assert process.poll() is None, "the server died during the tests"


def call(url: str, body: Any = None, raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def stored_flights(served: Served, day: str, n: int) -> tuple[list[dict], pd.DataFrame]:
    """n flights of a stored day as request records (raw fields only) and their batch rows."""
    from driftloop.data.contract import load_contract
    from driftloop.paths import PROJECT_ROOT

    contract = load_contract(PROJECT_ROOT / "contracts" / "flights.yaml")
    schema = RequestSchema.from_contract(contract)
    paths = dataset_paths("flights", served.prepared.root)
    raw = read_partition(paths, "raw", day)
    # Spread over the day, cancelled flights (no outcome) included.
    picked = raw.iloc[:: max(1, len(raw) // n)].head(n)
    records = [raw_record(row, schema) for _, row in picked.iterrows()]
    batch = read_partition(paths, "predictions", day).set_index("flight_id")
    return records, batch.loc[picked["flight_id"].tolist()]


@pytest.mark.slow
def test_serve_answers_health_and_names_the_champion(served: Served) -> None:
    for path in ("/ping", "/health", "/ready"):
        assert call(served.url + path)[0] == 200, path
    status, version = call(served.url + "/version")
    assert status == 200
    assert version["dataset"] == "flights"
    assert version["model_version"] == served.prepared.champion_version
    assert version["model_uri"] == f"models:/flights/{served.prepared.champion_version}"
    status, schema = call(served.url + "/schema")
    assert status == 200 and "carrier" in schema["required"] and schema["max_rows"] == 1000
    assert call(served.url + "/nothing")[0] == 404


@pytest.mark.slow
def test_online_prediction_equals_batch_prediction(served: Served) -> None:
    day = served.prepared.days[-1]
    records, batch = stored_flights(served, day, 100)
    assert len(records) == 100
    assert all("dep_delay" not in r and "arr_delay" not in r for r in records)

    # One flight alone, as a client sends it.
    status, body = call(served.url + "/invocations", {"dataframe_records": records[:1]})
    assert status == 200, body
    assert body["model_version"] == served.prepared.champion_version
    assert (batch[MODEL_VERSION] == body["model_version"]).all()
    assert body["predictions"] == [batch[PREDICTION].iloc[0]]  # exactly, not approximately

    # A hundred flights of the day in one request, in the split format.
    columns = list(records[0])
    split = {"columns": columns, "data": [[r[c] for c in columns] for r in records]}
    status, body = call(served.url + "/invocations", {"dataframe_split": split})
    assert status == 200, body
    assert body["predictions"] == batch[PREDICTION].tolist()

    # Flights of two different days in one request, shuffled: same answers, same order.
    earlier, earlier_batch = stored_flights(served, served.prepared.days[-10], 5)
    mixed = [*records[:5], *earlier][::-1]
    expected = [*batch[PREDICTION].iloc[:5], *earlier_batch[PREDICTION]][::-1]
    status, body = call(served.url + "/invocations", {"dataframe_records": mixed})
    assert status == 200, body
    assert body["predictions"] == expected

    # A flight nobody stored yet (the day after the lake's last day) is scored as well:
    # its aggregates come from the latest stored values.
    tomorrow = date.fromisoformat(day).toordinal() + 1
    future = FLIGHT | {"scheduled_departure": f"{date.fromordinal(tomorrow)} 09:15:00"}
    status, body = call(served.url + "/invocations", {"dataframe_records": [future]})
    assert status == 200, body
    assert 0.0 <= body["predictions"][0] <= 1.0


@pytest.mark.slow
def test_ten_malformed_requests_get_4xx_and_the_server_stays_up(served: Served) -> None:
    url = served.url + "/invocations"
    answers = [call(url, {"dataframe_records": records}) for _, records, _, _ in MALFORMED[:7]]
    answers.append(call(url, raw=b"{not json"))
    answers.append(call(url, {"instances": [FLIGHT]}))
    answers.append(call(url, {"dataframe_records": [FLIGHT] * 1001}))
    assert len(answers) == 10
    for (status, body), expected in zip(answers, [*MALFORMED[:7], None, None, None], strict=True):
        assert 400 <= status < 500, body
        assert body["message"], body
        if expected is not None:
            assert status == expected[2]
            assert f"field '{expected[3]}'" in body["message"], body["message"]
    assert answers[-1][0] == 413 and "at most 1000 rows" in answers[-1][1]["message"]
    assert answers[7][0] == 400 and "not valid JSON" in answers[7][1]["message"]
    assert call(served.url + "/ping")[0] == 200
    status, body = call(url, {"dataframe_records": [FLIGHT]})
    assert status == 200, body


@pytest.mark.slow
def test_promotion_and_rollback_are_served_without_restart(served: Served) -> None:
    import mlflow

    from driftloop.data.contract import load_contract
    from driftloop.paths import PROJECT_ROOT
    from driftloop.training.registry import (
        load_scoring_model,
        make_client,
        set_alias,
        using_tracking_uri,
    )
    from pipelines.rollback import RollbackConfig, rollback

    uri = served.prepared.tracking_uri
    client = make_client(uri)
    old = served.prepared.champion_version
    baseline_uri = client.get_model_version("flights", old).tags["driftloop.baseline_run_model_uri"]
    # Another version: the run's baseline model (same inputs, different scores).
    with using_tracking_uri(uri):
        new = str(mlflow.register_model(baseline_uri, "flights").version)
    assert new != old
    records, _ = stored_flights(served, served.prepared.days[-1], 20)
    body = {"dataframe_records": records}

    def served_version(expected: str):
        def probe():
            status, version = call(served.url + "/version")
            return status == 200 and version["model_version"] == expected

        return probe

    started = time.monotonic()
    set_alias(client, "flights", "champion", new)  # what the promotion asset does
    wait_for(f"the endpoint to serve v{new}", served_version(new), timeout=60, every=0.5)
    promoted_after = time.monotonic() - started
    status, answer = call(served.url + "/invocations", body)
    assert status == 200 and answer["model_version"] == new
    direct = load_scoring_model(f"models:/flights/{new}", tracking_uri=uri)
    paths = dataset_paths("flights", served.prepared.root)
    features = read_partition(paths, "features", served.prepared.days[-1]).set_index("flight_id")
    expected = direct(features.loc[[r["flight_id"] for r in records]].reset_index())
    assert answer["predictions"] == expected.tolist()

    contract = load_contract(PROJECT_ROOT / "contracts" / "flights.yaml")
    started = time.monotonic()
    rollback(contract, paths, client, RollbackConfig(to_version=old, reason="test"))
    wait_for(f"the endpoint to serve v{old} again", served_version(old), timeout=60, every=0.5)
    rolled_back_after = time.monotonic() - started
    status, answer = call(served.url + "/invocations", body)
    assert status == 200 and answer["model_version"] == old
    print(
        f"promotion served after {promoted_after:.1f} s, rollback after {rolled_back_after:.1f} s"
    )
