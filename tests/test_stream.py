"""Streaming inference on a real Redis server: 10,000 events through two consumers of one
group, each scored exactly once (by prediction id), poison events in the dead-letter
stream with their reason, the champion promoted mid-stream without loss, entries a dead
consumer left behind claimed, online == batch for the events the first champion scored,
and the group's lag back to 0, as the flights/stream_status asset reads it."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator

import numpy as np
import pytest
from engines import redis_server
from serving_helpers import prepared_flights

from driftloop.data.contract import load_contract
from driftloop.monitoring.signals import read_partition
from driftloop.paths import PROJECT_ROOT, dataset_paths
from driftloop.serving.requests import RequestSchema, raw_record
from driftloop.serving.stream import StreamConsumer, group_state, stream_names

EVENTS = 10_000
UNREADABLE = 20  # not JSON
REFUSED = 20  # JSON the request schema refuses


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.mark.slow
def test_two_consumers_score_every_event_once_through_a_promotion(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    import redis

    from driftloop.serving.installation import Installation
    from driftloop.training.registry import make_client, set_alias, using_tracking_uri
    from pipelines.stream import started_scorer, stop_scorer

    prepared, _ = prepared_flights()
    contract = load_contract(PROJECT_ROOT / "contracts" / "flights.yaml")
    paths = dataset_paths("flights", prepared.root)
    day = prepared.days[-1]
    raw = read_partition(paths, "raw", day)
    schema = RequestSchema.from_contract(contract)
    records = [raw_record(row, schema) for _, row in raw.iterrows()]
    batch = read_partition(paths, "predictions", day).set_index("flight_id")["prediction"]

    client = redis.Redis.from_url(redis_url)
    names = stream_names("flights")
    producer = client.pipeline(transaction=False)
    unreadable = {f"e{i}" for i in range(7, 250 * UNREADABLE, 250)}
    refused = {f"e{i}" for i in range(11, 250 * REFUSED, 250)}
    poison = unreadable | refused
    sent = {}
    for i in range(EVENTS + len(poison)):
        event_id = f"e{i}"
        record = records[i % len(records)]
        if event_id in unreadable:
            text = "{not json"
        elif event_id in refused:
            text = json.dumps({**record, "distance": "far"})
        else:
            text, sent[event_id] = json.dumps(record), record
        producer.xadd(names["events"], {"event_id": event_id, "record": text})
    producer.execute()
    assert len(poison) == UNREADABLE + REFUSED

    uri = prepared.tracking_uri
    registry = make_client(uri)
    old = prepared.champion_version
    baseline_uri = registry.get_model_version("flights", old).tags[
        "driftloop.baseline_run_model_uri"
    ]
    with using_tracking_uri(uri):
        new = str(mlflow.register_model(baseline_uri, "flights").version)
    monkeypatch.setenv("DRIFTLOOP_COMPILED", "on")  # the champion's trees compiled
    place = Installation(contract, prepared.root, paths, uri)
    scorer = started_scorer(place, refresh_seconds=0.3)
    first_model = scorer.watcher.model
    try:
        first = StreamConsumer(scorer, client, "one", batch=100, claim_idle_ms=500)
        other = redis.Redis.from_url(redis_url)
        second = StreamConsumer(scorer, other, "two", batch=100, claim_idle_ms=500)
        # A consumer that reads 50 entries and dies before acknowledging them.
        client.xreadgroup(first.group, "ghost", {names["events"]: ">"}, count=50)
        stop = threading.Event()
        counts: dict[str, int] = {}
        threads = [
            threading.Thread(target=lambda c=c: counts.__setitem__(c.name, c.run(stop, True)))
            for c in (first, second)
        ]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        while client.xlen(names["predictions"]) < EVENTS // 3:
            time.sleep(0.05)
        set_alias(registry, "flights", "champion", new)  # promoted mid-stream
        for thread in threads:
            thread.join(timeout=600)
        assert not any(t.is_alive() for t in threads)
        seconds = time.perf_counter() - started
    finally:
        set_alias(registry, "flights", "champion", old)  # the other serving tests' champion
        stop_scorer(scorer)

    output = [
        {k.decode(): v.decode() for k, v in fields.items()}
        for _, fields in client.xrange(names["predictions"])
    ]
    ids = Counter(row["event_id"] for row in output)
    assert len(output) == EVENTS and max(ids.values()) == 1
    # Reported, not asserted (a figure, not a target: the events were all queued before the
    # consumers started, and the scorer is shared by the two consumer threads).
    print(
        f"2 consumers: {EVENTS / seconds:.0f} events/s over {seconds:.1f} s; first champion "
        f"{first_model.kind}, compiled: {first_model.compiled is not None}"
    )
    assert set(ids) == set(sent)
    assert all(row["prediction_id"] == f"flights:{row['event_id']}" for row in output)
    assert counts["one"] > 0 and counts["two"] > 0 and sum(counts.values()) == EVENTS
    versions = Counter(row["model_version"] for row in output)
    assert set(versions) == {old, new}, versions  # both, no event lost at the swap

    dead = [
        {k.decode(): v.decode() for k, v in fields.items()}
        for _, fields in client.xrange(names["dead"])
    ]
    assert {row["event_id"] for row in dead} == poison
    reasons = Counter(row["reason"].split(":")[0] for row in dead)
    assert reasons["unreadable record"] == UNREADABLE
    assert all("distance" in row["reason"] for row in dead if row["event_id"] in refused)

    # Online == batch: the first champion's predictions are the predictions partition's.
    scored_by_old = [row for row in output if row["model_version"] == old]
    assert len(scored_by_old) >= EVENTS // 3
    online = np.array([float(row["prediction"]) for row in scored_by_old])
    expected = batch.loc[[sent[row["event_id"]]["flight_id"] for row in scored_by_old]]
    np.testing.assert_allclose(online, expected.to_numpy(), rtol=0, atol=1e-12)

    # A redelivered event (its prediction id seen) is acknowledged, not predicted again.
    again = first.deliver(
        names["predictions"],
        ("event_id",),
        [{"entry": "0-1", "event_id": "e0", "prediction_id": "flights:e0"}],
    )
    assert again == [0] and client.xlen(names["predictions"]) == EVENTS
    assert group_state(client, names["events"], first.group) == {"lag": 0, "pending": 0}
    metrics = first.metrics.exposition().decode()
    assert "driftloop_stream_lag" in metrics and "driftloop_stream_latency_seconds" in metrics

    # The Dagster-visible status: the flights/stream_status asset reads the broker.
    from dagster import DagsterInstance, materialize

    from assets.stream_status import build_stream_status

    monkeypatch.setenv("DRIFTLOOP_REDIS_URL", redis_url)
    with DagsterInstance.ephemeral() as instance:
        result = materialize(build_stream_status(contract).assets, instance=instance)
    (event,) = result.get_asset_materialization_events()
    status = {k: v.value for k, v in event.event_specific_data.materialization.metadata.items()}
    assert (status["lag"], status["pending"], status["consumers"]) == (0, 0, 3)
    assert status["predictions"] == EVENTS and status["dead_letters"] == len(poison)
    assert status["events"] == EVENTS + len(poison) and status["last_prediction_age_seconds"] >= 0
