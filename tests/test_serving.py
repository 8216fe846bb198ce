"""The real-time endpoint: raw fields in, the champion's prediction out, equal to batch.

The unit tests check the request schema and validation on the shipped flights contract,
including hostile values (timestamps out of range, huge integers, non-finite numbers). The
end-to-end tests start the documented command (`python -m pipelines.serve --dataset
flights`, FastAPI under uvicorn) as a subprocess against an installation prepared in
process (35 replayed days, features, a champion trained, gated and promoted, every day
scored by `predictions`), and:

- check the operational endpoints: health, readiness, version, schema, OpenAPI, the
  offline /docs page, Prometheus metrics per model version, request ids;
- prove online == batch on stored flights sent with only their raw request-time fields;
- send malformed requests, each answered 4xx naming the field, the server staying up;
- promote another version and roll back (moving only the alias, as the promotion asset and
  the rollback job do): /version and the predictions follow, with no restart.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from browser_helpers import Prepared
from e2e_helpers import free_port, wait_for
from serving_helpers import FLIGHT, call, prepared_flights, served

from driftloop.data.contract import Contract
from driftloop.monitoring.signals import MODEL_VERSION, PREDICTION, read_partition
from driftloop.paths import dataset_paths
from driftloop.serving.champion import ChampionWatcher
from driftloop.serving.online import OnlineScorer
from driftloop.serving.requests import RequestError, RequestSchema, parse_request, raw_record

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


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
    assert rows.count == 1 and set(rows.columns) == {*schema.required, *schema.optional}
    assert rows.columns["carrier"] == ["UA"] and "dep_delay" not in rows.columns
    assert rows.columns["scheduled_departure"] == [pd.Timestamp("2013-02-05 08:30")]
    split = {"columns": list(FLIGHT), "data": [list(FLIGHT.values())]}
    assert parse_request({"dataframe_split": split}, schema) == rows
    # An offset is converted to the contract's zone (New York, UTC-5 in February).
    utc = FLIGHT | {"scheduled_departure": "2013-02-05T13:30:00+00:00"}
    utc_rows = parse_request({"dataframe_records": [utc]}, schema)
    assert utc_rows.columns["scheduled_departure"] == [pd.Timestamp("2013-02-05 08:30")]


EVENT = "scheduled_departure"
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
    # Hostile values: each a 4xx naming the field, never a 500 or a silent null.
    (
        "year 9999",
        [FLIGHT | {"scheduled_departure": "9999-12-31 23:59:00"}],
        422,
        "scheduled_departure",
    ),
    (
        "year 1600",
        [FLIGHT | {"scheduled_departure": "1600-01-01T00:00:00"}],
        422,
        "scheduled_departure",
    ),
    (
        "month 13",
        [FLIGHT | {"scheduled_departure": "2013-13-01 08:00"}],
        422,
        "scheduled_departure",
    ),
    ("huge integer", [FLIGHT | {"distance": 10**400}], 422, "distance"),
    ("NaN", [FLIGHT | {"wind_gust": float("nan")}], 422, "wind_gust"),
    ("-Infinity", [FLIGHT | {"temp": float("-inf")}], 422, "temp"),
    ("huge id", [FLIGHT | {"flight_id": 10**60}], 422, "flight_id"),
    ("list for a string", [FLIGHT | {"dest": ["ORD"]}], 422, "dest"),
    ("object for a number", [FLIGHT | {"visib": {"value": 10}}], 422, "visib"),
    ("row not an object", [FLIGHT, 42], 422, "row 1"),
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
    if field.startswith("row "):
        assert error.message.startswith(field), error.message
        return
    assert f"field '{field}'" in error.message, error.message
    assert error.body()["errors"][0]["field"] == field


def test_non_finite_numbers_in_json_text_are_refused(flights_contract: Contract) -> None:
    """Python's json reads NaN, -Infinity and 1e400 (as inf): each is refused, not nulled."""
    schema = RequestSchema.from_contract(flights_contract)
    for text in ("NaN", "-Infinity", "1e400"):
        body = json.dumps({"dataframe_records": [FLIGHT]}).replace(
            '"wind_gust": null', f'"wind_gust": {text}'
        )
        with pytest.raises(RequestError) as raised:
            parse_request(json.loads(body), schema)
        assert raised.value.status == 422
        assert "row 0, field 'wind_gust'" in raised.value.message
        assert "not a finite number" in raised.value.message


def test_every_problem_is_listed_with_its_row(flights_contract: Contract) -> None:
    schema = RequestSchema.from_contract(flights_contract)
    rows = [FLIGHT, FLIGHT | {"carrier": "ZZ"}, FLIGHT | {"distance": None, "origin": 3}]
    with pytest.raises(RequestError) as raised:
        parse_request({"dataframe_records": rows}, schema)
    problems = {(p["row"], p["field"]) for p in raised.value.body()["errors"]}
    assert problems == {(1, "carrier"), (2, "distance"), (2, "origin")}
    assert "row 1, field 'carrier': 'ZZ' is not an allowed value" in raised.value.message


def test_no_champion_is_a_503_not_a_crash(flights_contract: Contract, flights_paths) -> None:
    watcher = ChampionWatcher("flights", "sqlite:///unused.db", refresh_seconds=0)
    scorer = OnlineScorer(flights_contract, flights_paths, watcher)
    assert not scorer.ready
    with pytest.raises(RequestError) as raised:
        scorer.predict({"dataframe_records": [FLIGHT]})
    assert raised.value.status == 503 and "no 'champion' model" in raised.value.message


def test_row_expressions_are_remembered_by_their_inputs(
    flights_contract: Contract, flights_paths
) -> None:
    watcher = ChampionWatcher("flights", "sqlite:///unused.db", refresh_seconds=0)
    scorer = OnlineScorer(flights_contract, flights_paths, watcher)
    other = {**FLIGHT, "scheduled_departure": "2013-02-06 17:45:00", "plane_year": 1999.0}
    both = parse_request({"dataframe_records": [FLIGHT, other]}, scorer.schema)
    first = scorer._expression_rows(both)
    assert first[1] == (17.75, 3.0, 14.0) and len(scorer._memo) == 2  # hour, weekday, age
    # A row seen before runs no query: the connection is closed and the answer comes.
    scorer._connection().close()
    again = parse_request({"dataframe_records": [other]}, scorer.schema)
    assert scorer._expression_rows(again) == [first[1]]


# --- end to end, against the served command --------------------------------------------------


@dataclass
class Served:
    url: str
    prepared: Prepared
    env: dict[str, str]
    log: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    prepared, env = prepared_flights()
    log = tmp_path_factory.mktemp("serving") / "serve.log"
    with served(env, log, free_port(), "--refresh-seconds", "1") as url:
        yield Served(url, prepared, env, log)


def stored_flights(server: Served, day: str, n: int) -> tuple[list[dict], pd.DataFrame]:
    """n flights of a stored day as request records (raw fields only) and their batch rows."""
    from driftloop.data.contract import load_contract
    from driftloop.paths import PROJECT_ROOT

    contract = load_contract(PROJECT_ROOT / "contracts" / "flights.yaml")
    schema = RequestSchema.from_contract(contract)
    paths = dataset_paths("flights", server.prepared.root)
    raw = read_partition(paths, "raw", day)
    # Spread over the day, cancelled flights (no outcome) included.
    picked = raw.iloc[:: max(1, len(raw) // n)].head(n)
    records = [raw_record(row, schema) for _, row in picked.iterrows()]
    batch = read_partition(paths, "predictions", day).set_index("flight_id")
    return records, batch.loc[picked["flight_id"].tolist()]


@pytest.mark.slow
def test_serve_answers_health_and_names_the_champion(server: Served) -> None:
    for path in ("/ping", "/health", "/ready"):
        assert call(server.url + path)[0] == 200, path
    status, version = call(server.url + "/version")
    assert status == 200
    assert version["dataset"] == "flights"
    assert version["model_version"] == server.prepared.champion_version
    assert version["model_uri"] == f"models:/flights/{server.prepared.champion_version}"
    # The suite scores with LightGBM's predict (tests/conftest.py), and says why.
    assert version["compiled"] is False and "DRIFTLOOP_COMPILED=off" in version["compiled_reason"]
    status, schema = call(server.url + "/schema")
    assert status == 200 and "carrier" in schema["required"] and schema["max_rows"] == 1000
    assert call(server.url + "/nothing")[0] == 404

    # OpenAPI, with the contract's fields in the request body, and a docs page that
    # needs nothing but this server.
    status, spec = call(server.url + "/openapi.json")
    assert status == 200 and {"/invocations", "/events", "/ready"} <= set(spec["paths"])
    body = spec["paths"]["/invocations"]["post"]["requestBody"]["content"]["application/json"]
    records = body["schema"]["oneOf"][0]["properties"]["dataframe_records"]["items"]
    assert records["properties"]["origin"]["enum"] == ["EWR", "JFK", "LGA"]
    connection = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]))
    connection.request("GET", "/docs")
    docs = connection.getresponse()
    page = docs.read().decode()
    assert docs.status == 200 and "/openapi.json" in page and "driftloop serving" in page
    assert "http://" not in page and "https://" not in page  # no CDN

    # Request ids: the client's is echoed, else one is made; the access log names it.
    connection.request("GET", "/ping", headers={"X-Request-ID": "trace-42"})
    answer = connection.getresponse()
    answer.read()
    assert answer.headers["X-Request-ID"] == "trace-42"
    connection.request("GET", "/ping", headers={"X-Request-ID": "bad id\twith spaces"})
    answer = connection.getresponse()
    answer.read()
    assert len(answer.headers["X-Request-ID"]) == 32
    connection.close()
    wait_for("the access log line", lambda: "rid=trace-42" in server.log.read_text(), 10, 0.2)


@pytest.mark.slow
def test_metrics_count_requests_errors_and_unseen_values(server: Served) -> None:
    version = server.prepared.champion_version
    unseen = FLIGHT | {"dest": "ZZZ"}  # dest lists no allowed values: the model decides
    status, body = call(server.url + "/invocations", {"dataframe_records": [FLIGHT, unseen]})
    assert status == 200, body
    assert body["unseen_categories"] == {"dest": 1}
    assert call(server.url + "/invocations", {"dataframe_records": [{}]})[0] == 422
    url = server.url.removeprefix("http://")
    connection = http.client.HTTPConnection(*url.split(":"))
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    connection.close()

    def sample(name: str, **labels: str) -> float:
        """The sum of a metric's series that carry these labels."""
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items())
        )

    ok = {"endpoint": "/invocations", "status": "200", "model_version": version}
    assert sample("driftloop_serving_requests_total", **ok) >= 1
    assert sample("driftloop_serving_errors_total", endpoint="/invocations", status="422") >= 1
    assert sample("driftloop_serving_unseen_categories_total", column="dest") >= 1
    count = sample("driftloop_serving_request_seconds_count", endpoint="/invocations")
    assert count >= 2
    assert sample("driftloop_serving_rows_total", model_version=version) >= 2


@pytest.mark.slow
def test_online_prediction_equals_batch_prediction(server: Served) -> None:
    day = server.prepared.days[-1]
    records, batch = stored_flights(server, day, 100)
    assert len(records) == 100
    assert all("dep_delay" not in r and "arr_delay" not in r for r in records)

    # One flight alone, as a client sends it.
    status, body = call(server.url + "/invocations", {"dataframe_records": records[:1]})
    assert status == 200, body
    assert body["model_version"] == server.prepared.champion_version
    assert (batch[MODEL_VERSION] == body["model_version"]).all()
    assert body["predictions"] == [batch[PREDICTION].iloc[0]]  # exactly, not approximately

    # A hundred flights of the day in one request, in the split format.
    columns = list(records[0])
    split = {"columns": columns, "data": [[r[c] for c in columns] for r in records]}
    status, body = call(server.url + "/invocations", {"dataframe_split": split})
    assert status == 200, body
    assert body["predictions"] == batch[PREDICTION].tolist()

    # Flights of two different days in one request, shuffled: same answers, same order.
    earlier, earlier_batch = stored_flights(server, server.prepared.days[-10], 5)
    mixed = [*records[:5], *earlier][::-1]
    expected = [*batch[PREDICTION].iloc[:5], *earlier_batch[PREDICTION]][::-1]
    status, body = call(server.url + "/invocations", {"dataframe_records": mixed})
    assert status == 200, body
    assert body["predictions"] == expected

    # A flight nobody stored yet (the day after the lake's last day) is scored as well:
    # its aggregates come from the latest stored values.
    tomorrow = date.fromisoformat(day).toordinal() + 1
    future = FLIGHT | {"scheduled_departure": f"{date.fromordinal(tomorrow)} 09:15:00"}
    status, body = call(server.url + "/invocations", {"dataframe_records": [future]})
    assert status == 200, body
    assert 0.0 <= body["predictions"][0] <= 1.0


@pytest.mark.slow
def test_ten_malformed_requests_get_4xx_and_the_server_stays_up(server: Served) -> None:
    url = server.url + "/invocations"
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
    assert call(server.url + "/ping")[0] == 200
    status, body = call(url, {"dataframe_records": [FLIGHT]})
    assert status == 200, body


@pytest.mark.slow
def test_promotion_and_rollback_are_served_without_restart(server: Served) -> None:
    import mlflow

    from driftloop.data.contract import load_contract
    from driftloop.paths import PROJECT_ROOT
    from driftloop.training.model_loading import load_scoring_model
    from driftloop.training.registry import make_client, set_alias, using_tracking_uri
    from pipelines.rollback import RollbackConfig, rollback

    uri = server.prepared.tracking_uri
    client = make_client(uri)
    old = server.prepared.champion_version
    baseline_uri = client.get_model_version("flights", old).tags["driftloop.baseline_run_model_uri"]
    # Another version: the run's baseline model (same inputs, different scores).
    with using_tracking_uri(uri):
        new = str(mlflow.register_model(baseline_uri, "flights").version)
    assert new != old
    records, _ = stored_flights(server, server.prepared.days[-1], 20)
    body = {"dataframe_records": records}

    def served_version(expected: str):
        def probe():
            status, version = call(server.url + "/version")
            return status == 200 and version["model_version"] == expected

        return probe

    started = time.monotonic()
    set_alias(client, "flights", "champion", new)  # what the promotion asset does
    wait_for(f"the endpoint to serve v{new}", served_version(new), timeout=60, every=0.5)
    promoted_after = time.monotonic() - started
    status, answer = call(server.url + "/invocations", body)
    assert status == 200 and answer["model_version"] == new
    direct = load_scoring_model(f"models:/flights/{new}", tracking_uri=uri)
    paths = dataset_paths("flights", server.prepared.root)
    features = read_partition(paths, "features", server.prepared.days[-1]).set_index("flight_id")
    expected = direct(features.loc[[r["flight_id"] for r in records]].reset_index())
    assert answer["predictions"] == expected.tolist()

    contract = load_contract(PROJECT_ROOT / "contracts" / "flights.yaml")
    started = time.monotonic()
    rollback(contract, paths, client, RollbackConfig(to_version=old, reason="test"))
    wait_for(f"the endpoint to serve v{old} again", served_version(old), timeout=60, every=0.5)
    rolled_back_after = time.monotonic() - started
    status, answer = call(server.url + "/invocations", body)
    assert status == 200 and answer["model_version"] == old
    print(
        f"promotion served after {promoted_after:.1f} s, rollback after {rolled_back_after:.1f} s"
    )
