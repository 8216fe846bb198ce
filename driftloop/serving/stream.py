"""Streaming inference: events from a Redis stream, scored as the endpoint scores requests.

Each event is one entry of the input stream `<dataset>:events` with a field `record` (the
JSON object a client would send as one row of `/invocations`: the raw fields, the row id)
and optionally `event_id` (the producer's own id; else the entry id is used). Consumers
of one consumer group (`XREADGROUP`) share the stream: Redis hands each entry to one
consumer. A consumer reads up to `batch` entries at once, builds their features from the
same online state and scores them through the same scorer as the endpoint
(`CanaryScorer`: the champion, or the canary's arm by the row id, every row appended to
the lake's request log), then, per event, in one Lua script on the server:

- sets the prediction id `<dataset>:<event id>` (SET NX, kept `DEDUPE_SECONDS`),
- appends the prediction to the output stream `<dataset>:predictions` only if that id was
  new, and
- acknowledges the entry (XACK).

So delivery is at least once (an entry read but not acknowledged, by a consumer that
died, is claimed by another after `claim_idle_ms`: XAUTOCLAIM) and the output holds each
event once. An event that cannot be scored (not JSON, a field the request schema refuses)
goes to the dead-letter stream `<dataset>:dead` with the reason, and is acknowledged. The
model is resolved once per batch (`resolve_model`), so a promotion (the champion watcher
swaps models in the background) takes effect between batches and no event is lost or
scored by a mix. Lag, throughput, latency and errors are Prometheus metrics of a registry
of the consumer's own (`StreamMetrics`).

The mapping to Kafka: stream -> topic, entry id -> (partition, offset), consumer group ->
consumer group (partitions assigned to consumers instead of entries handed out),
XACK -> committed offset, XAUTOCLAIM -> a rebalance, the dead-letter stream -> a
dead-letter topic, and the SET NX of the prediction id -> an idempotent producer plus a
compacted output topic keyed by prediction id (or a transactional consume-produce).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from driftloop.serving.errors import RequestError

if TYPE_CHECKING:
    from driftloop.serving.online import OnlineScorer

log = logging.getLogger(__name__)

DEFAULT_GROUP = "scorers"
DEFAULT_BATCH = 100
DEDUPE_SECONDS = 7 * 24 * 3600
# Set the prediction id if new; append the prediction only then; acknowledge the entry.
# KEYS: dedupe key, output stream, input stream; ARGV: group, entry id, ttl, fields...
_DELIVER = """
local fresh = redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[3])
if fresh then redis.call('XADD', KEYS[2], '*', unpack(ARGV, 4)) end
redis.call('XACK', KEYS[3], ARGV[1], ARGV[2])
if fresh then return 1 end
return 0
"""


def stream_names(dataset: str) -> dict[str, str]:
    """The input, output and dead-letter streams of a dataset."""
    return {
        "events": f"{dataset}:events",
        "predictions": f"{dataset}:predictions",
        "dead": f"{dataset}:dead",
    }


class StreamMetrics:
    """The consumer's Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        labels = ["dataset", "group"]
        self.events = Counter(
            "driftloop_stream_events",
            "events scored",
            [*labels, "model_version"],
            registry=self.registry,
        )
        self.dead = Counter(
            "driftloop_stream_dead_letters",
            "events sent to the dead-letter stream",
            labels,
            registry=self.registry,
        )
        self.duplicates = Counter(
            "driftloop_stream_duplicates",
            "redelivered events already predicted",
            labels,
            registry=self.registry,
        )
        self.errors = Counter(
            "driftloop_stream_errors",
            "batches that failed (retried later)",
            labels,
            registry=self.registry,
        )
        self.lag = Gauge(
            "driftloop_stream_lag",
            "entries not yet delivered to the group",
            labels,
            registry=self.registry,
        )
        self.pending = Gauge(
            "driftloop_stream_pending",
            "entries delivered, not yet acknowledged",
            labels,
            registry=self.registry,
        )
        self.latency = Histogram(
            "driftloop_stream_latency_seconds",
            "event (entry time) to prediction",
            labels,
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


@dataclass
class Consumed:
    """What one `step` did."""

    read: int = 0
    scored: int = 0
    dead: int = 0
    duplicates: int = 0
    latencies_ms: list[float] = field(default_factory=list)


def group_state(client: Any, stream: str, group: str) -> dict[str, int]:
    """The group's lag (entries not yet delivered) and pending (not yet acknowledged)."""
    for info in client.xinfo_groups(stream):
        if _text(info["name"]) == group:
            return {"lag": int(info.get("lag") or 0), "pending": int(info["pending"])}
    raise KeyError(f"no consumer group {group!r} on stream {stream!r}")


class StreamConsumer:
    """One consumer of a dataset's event stream in a consumer group."""

    def __init__(
        self,
        scorer: OnlineScorer,
        client: Any,
        name: str,
        group: str = DEFAULT_GROUP,
        batch: int = DEFAULT_BATCH,
        block_ms: int = 200,
        claim_idle_ms: int = 30_000,
        metrics: StreamMetrics | None = None,
    ) -> None:
        self.scorer = scorer
        self.client = client
        self.name = name
        self.group = group
        self.batch = batch
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.dataset = scorer.contract.name
        self.streams = stream_names(self.dataset)
        self.metrics = metrics or StreamMetrics()
        self._deliver = client.register_script(_DELIVER)
        self.ensure_group()

    def ensure_group(self) -> None:
        """Create the stream and the group (reading from the start) unless they exist."""
        from redis.exceptions import ResponseError

        try:
            self.client.xgroup_create(self.streams["events"], self.group, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    def _read(self) -> list[tuple[str, dict[str, str]]]:
        """Entries to score: idle ones another consumer left unacknowledged first, else new."""
        events = self.streams["events"]
        claimed = self.client.xautoclaim(
            events, self.group, self.name, self.claim_idle_ms, "0-0", count=self.batch
        )
        entries = [(i, f) for i, f in claimed[1] if f]
        if not entries:
            answer = self.client.xreadgroup(
                self.group, self.name, {events: ">"}, count=self.batch, block=self.block_ms
            )
            entries = answer[0][1] if answer else []
        return [(_text(i), {_text(k): _text(v) for k, v in f.items()}) for i, f in entries]

    def step(self) -> Consumed:
        """Read, score and deliver one batch; the entries of a failed batch stay pending."""
        result = Consumed()
        entries = self._read()
        result.read = len(entries)
        if not entries:
            return result
        good: list[tuple[str, str, dict[str, Any]]] = []
        dead: list[tuple[str, str, str, str]] = []
        for entry, fields in entries:
            event_id = fields.get("event_id") or entry
            try:
                record = json.loads(fields["record"])
                if not isinstance(record, dict):
                    raise ValueError("the record is not a JSON object")
            except (KeyError, ValueError) as error:
                dead.append((entry, event_id, f"unreadable record: {error}", str(fields)[:2000]))
                continue
            good.append((entry, event_id, record))
        try:
            scored, refused = self._score(good)
        except Exception:
            self.metrics.errors.labels(self.dataset, self.group).inc()
            log.exception("%s: a batch of %d events failed; it stays pending", self.name, len(good))
            return result
        dead += refused
        self._send(scored, dead, result)
        return result

    def _score(self, events: list[tuple[str, str, dict[str, Any]]]) -> tuple[list, list]:
        """Scores of the events: all at once, else (a refused row) one by one, the refused
        ones dead-lettered with the scorer's reason."""
        if not events:
            return [], []
        try:
            return self._score_batch(events), []
        except RequestError:
            if len(events) == 1:
                raise
        scored, dead = [], []
        for event in events:
            try:
                scored += self._score_batch([event])
            except RequestError as error:
                dead.append((event[0], event[1], error.message, json.dumps(event[2])[:2000]))
        return scored, dead

    def _score_batch(self, events: list[tuple[str, str, dict[str, Any]]]) -> list[dict[str, str]]:
        request = {"request_id": f"stream:{self.name}"}
        answer = self.scorer.score({"dataframe_records": [e[2] for e in events]}, request)
        count = len(events)
        # Per-row headers while a canary runs; else every row is the champion's.
        routed = "X-Model-Version" in answer.headers
        versions = answer.headers["X-Model-Version"].split(",") if routed else []
        arms = answer.headers["X-Canary-Arm"].split(",") if routed else []
        if not routed:
            versions = [answer.body["model_version"]] * count
            arms = [answer.headers.get("X-Canary-Arm", "champion")] * count
        return [
            {
                "entry": entry,
                "event_id": event_id,
                "prediction_id": f"{self.dataset}:{event_id}",
                "prediction": repr(float(score)),
                "model_version": versions[i],
                "arm": arms[i],
            }
            for i, ((entry, event_id, _), score) in enumerate(
                zip(events, answer.body["predictions"], strict=True)
            )
        ]

    def _send(self, scored: list[dict[str, str]], dead: list, result: Consumed) -> None:
        """Deliver the predictions and dead letters, and acknowledge them, in one round trip."""
        names = self.streams
        pipe = self.client.pipeline(transaction=False)
        now_ms = time.time() * 1000
        for row in scored:
            row = {**row, "scored_at_ms": repr(now_ms)}
            fields = [x for k, v in row.items() if k != "entry" for x in (k, v)]
            self._deliver(
                keys=[
                    f"{names['predictions']}:seen:{row['prediction_id']}",
                    names["predictions"],
                    names["events"],
                ],
                args=[self.group, row["entry"], DEDUPE_SECONDS, *fields],
                client=pipe,
            )
        for entry, event_id, reason, payload in dead:
            fields = ["event_id", event_id, "entry", entry, "reason", reason, "payload", payload]
            self._deliver(
                keys=[f"{names['dead']}:seen:{event_id}", names["dead"], names["events"]],
                args=[self.group, entry, DEDUPE_SECONDS, *fields],
                client=pipe,
            )
        answers = pipe.execute()
        fresh = answers[: len(scored)]
        for row, new in zip(scored, fresh, strict=True):
            if new:
                result.scored += 1
                self.metrics.events.labels(self.dataset, self.group, row["model_version"]).inc()
                latency = now_ms - int(row["entry"].split("-")[0])
                result.latencies_ms.append(latency)
                self.metrics.latency.labels(self.dataset, self.group).observe(latency / 1000)
            else:
                result.duplicates += 1
                self.metrics.duplicates.labels(self.dataset, self.group).inc()
        result.dead = len(dead)
        if dead:
            self.metrics.dead.labels(self.dataset, self.group).inc(len(dead))
            log.warning("%s: %d events to %s", self.name, len(dead), names["dead"])

    def observe_lag(self) -> dict[str, int]:
        state = group_state(self.client, self.streams["events"], self.group)
        self.metrics.lag.labels(self.dataset, self.group).set(state["lag"])
        self.metrics.pending.labels(self.dataset, self.group).set(state["pending"])
        return state

    def run(self, stop: Any, idle_exit: bool = False) -> int:
        """Consume until `stop` (a threading.Event) is set, or, with `idle_exit`, until a
        read finds nothing and the group has no lag; returns the events scored."""
        total = 0
        while not stop.is_set():
            consumed = self.step()
            total += consumed.scored
            if consumed.read == 0:
                state = self.observe_lag()
                if idle_exit and state["lag"] == 0 and state["pending"] == 0:
                    break
        return total


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
