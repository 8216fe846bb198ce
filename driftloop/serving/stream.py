"""Streaming inference: events from a Redis stream, scored as the endpoint scores requests.

Each event is one entry of the input stream `<dataset>:events` with a field `record` (the
JSON object a client would send as one row of `/invocations`: the raw fields, the row id)
and optionally `event_id` (the producer's own id; else the entry id is used). Consumers
of one consumer group (`XREADGROUP`) share the stream: Redis hands each entry to one
consumer. A consumer reads up to `batch` entries at once, builds their features from the
same online state and scores them through the same scorer as the endpoint
(`CanaryScorer`: the champion, or the canary's arm by the row id, with the compiled trees
when the model has them; the rows appended to the lake's request log as one batch), then
delivers the batch in one round trip: one Lua script on the server that, per event,

- sets the prediction id `<dataset>:<event id>` (SET NX, kept `DEDUPE_SECONDS`),
- appends the prediction to the output stream `<dataset>:predictions` only if that id was
  new,

and acknowledges the batch's entries (one XACK).

So delivery is at least once (an entry read but not acknowledged, by a consumer that
died, is claimed by another after `claim_idle_ms`: XAUTOCLAIM, tried every half of that)
and the output holds each event once. An event that cannot be scored (not JSON, a field
the request schema refuses) goes to the dead-letter stream `<dataset>:dead` alone, with
the reason, and is acknowledged; the rest of its batch is scored together (the refusal
names the rows). A refusal that names no row splits the batch in halves until it does. A
batch the scorer cannot answer at all (no champion yet: 503) stays pending. The model is
resolved once per batch (`resolve_model`), so a promotion (the champion watcher
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
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from driftloop.serving.errors import RequestError

if TYPE_CHECKING:
    from driftloop.serving.online import OnlineScorer

log = logging.getLogger(__name__)

DEFAULT_GROUP = "scorers"
REDIS_URL_ENV = "DRIFTLOOP_REDIS_URL"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_BATCH = 100
DEDUPE_SECONDS = 7 * 24 * 3600
# Per event: set its id if new and only then append its fields to the output stream; then
# acknowledge every entry at once. Returns 1 (appended) or 0 (seen before) per event.
# KEYS: output stream, input stream, then each event's id key.
# ARGV: group, ttl, k (fields per event), the k field names, then per event its entry id
# and its k values.
_DELIVER = """
local group, ttl, k = ARGV[1], ARGV[2], tonumber(ARGV[3])
local fresh, entries, at = {}, {}, 4 + k
for e = 3, #KEYS do
  entries[#entries + 1] = ARGV[at]
  if redis.call('SET', KEYS[e], '1', 'NX', 'EX', ttl) then
    local fields = {}
    for j = 1, k do
      fields[2 * j - 1] = ARGV[3 + j]
      fields[2 * j] = ARGV[at + j]
    end
    redis.call('XADD', KEYS[1], '*', unpack(fields))
    fresh[#fresh + 1] = 1
  else
    fresh[#fresh + 1] = 0
  end
  at = at + 1 + k
end
if #entries > 0 then redis.call('XACK', KEYS[2], group, unpack(entries)) end
return fresh
"""
PREDICTION_FIELDS = (
    "event_id",
    "prediction_id",
    "prediction",
    "model_version",
    "arm",
    "scored_at_ms",
)
DEAD_FIELDS = ("event_id", "entry", "reason", "payload")


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


def redis_url(given: str | None = None) -> str:
    """The Redis URL: `given`, else DRIFTLOOP_REDIS_URL, else the local default."""
    import os

    return given or os.environ.get(REDIS_URL_ENV) or DEFAULT_REDIS_URL


@dataclass(frozen=True)
class StreamStatus:
    """A dataset's streams as the broker sees them (what `stream_status` reads)."""

    events: int  # entries in the input stream
    predictions: int
    dead_letters: int
    lag: int  # entries not yet delivered to the group
    pending: int  # delivered, not yet acknowledged
    consumers: int
    recent_per_second: float  # predictions appended over the last `RECENT_SECONDS`
    last_prediction_age_seconds: float | None


RECENT_SECONDS = 10


def stream_status(client: Any, dataset: str, group: str = DEFAULT_GROUP) -> StreamStatus:
    """Lengths, the group's lag and pending, its consumers and the recent throughput."""
    names = stream_names(dataset)
    state = {"lag": 0, "pending": 0}
    consumers = 0
    if client.exists(names["events"]):
        for info in client.xinfo_groups(names["events"]):
            if _text(info["name"]) == group:
                state = {"lag": int(info.get("lag") or 0), "pending": int(info["pending"])}
                consumers = int(info["consumers"])
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    since = f"{now_ms - RECENT_SECONDS * 1000}-0"
    recent = client.xrange(names["predictions"], min=since, count=100_000)
    last = client.xrevrange(names["predictions"], count=1)
    age = (now_ms - int(_text(last[0][0]).split("-")[0])) / 1000 if last else None
    return StreamStatus(
        events=client.xlen(names["events"]),
        predictions=client.xlen(names["predictions"]),
        dead_letters=client.xlen(names["dead"]),
        lag=state["lag"],
        pending=state["pending"],
        consumers=consumers,
        recent_per_second=len(recent) / RECENT_SECONDS,
        last_prediction_age_seconds=age,
    )


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
        self._claimed_at = float("-inf")
        # New entries read in the delivery's round trip, scored at the next step.
        self._ahead: list[tuple[Any, dict]] = []
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
        """Entries to score: idle ones another consumer left unacknowledged first (looked
        for every half of `claim_idle_ms`: none can be idle longer sooner), else new."""
        events = self.streams["events"]
        entries = []
        now = time.monotonic()
        if now - self._claimed_at >= self.claim_idle_ms / 2000:
            claimed = self.client.xautoclaim(
                events, self.group, self.name, self.claim_idle_ms, "0-0", count=self.batch
            )
            entries = [(i, f) for i, f in claimed[1] if f]
            # A full answer may leave more behind: look again at the next read.
            self._claimed_at = now if len(entries) < self.batch else float("-inf")
        if not entries and self._ahead:
            entries, self._ahead = self._ahead, []
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
        """Scores of the events, together; an event the scorer refuses goes to the dead
        letters alone with its reason and the rest are scored together again. A refusal
        naming no row splits the events in halves. A 503 (no model) is raised: the batch
        stays pending."""
        if not events:
            return [], []
        try:
            return self._score_batch(events), []
        except RequestError as error:
            if error.status == 503:
                raise
            refused = error
        rows = {p.row for p in refused.problems}
        if None in rows or not rows <= set(range(len(events))):
            if len(events) == 1:
                return [], [_dead(events[0], refused.message)]
            half = len(events) // 2
            first, second = self._score(events[:half]), self._score(events[half:])
            return first[0] + second[0], first[1] + second[1]
        dead = [
            _dead(events[i], "; ".join(p.text() for p in refused.problems if p.row == i))
            for i in sorted(rows)
        ]
        scored, more = self._score([e for i, e in enumerate(events) if i not in rows])
        return scored, dead + more

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

    def deliver(
        self, output: str, fields: tuple[str, ...], rows: list[dict[str, str]], client: Any = None
    ) -> list[int]:
        """Append each row (its `fields`, keyed by `prediction_id` or else `event_id`) to
        `output` unless its id was seen before, and acknowledge the rows' entries, in one
        script call (`client` may be a pipeline; then its answer comes with the pipeline's)."""
        keys = [output, self.streams["events"]]
        keys += [f"{output}:seen:{r.get('prediction_id') or r['event_id']}" for r in rows]
        args: list[Any] = [self.group, DEDUPE_SECONDS, len(fields), *fields]
        for row in rows:
            args += [row["entry"], *(row[f] for f in fields)]
        return self._deliver(keys=keys, args=args, client=client or self.client)

    def _send(self, scored: list[dict[str, str]], dead: list, result: Consumed) -> None:
        """Deliver the predictions and dead letters, and acknowledge them, in one round trip."""
        names = self.streams
        pipe = self.client.pipeline(transaction=False)
        stamp = repr(time.time() * 1000)
        for row in scored:
            row["scored_at_ms"] = stamp
        if scored:
            self.deliver(names["predictions"], PREDICTION_FIELDS, scored, pipe)
        if dead:
            letters = [
                {"entry": entry, "event_id": event_id, "reason": reason, "payload": payload}
                for entry, event_id, reason, payload in dead
            ]
            self.deliver(names["dead"], DEAD_FIELDS, letters, pipe)
        # The next batch's read rides along (no blocking: an empty answer means the next
        # step waits for new entries as usual); a round trip less per batch under load.
        pipe.xreadgroup(self.group, self.name, {names["events"]: ">"}, count=self.batch)
        answers = pipe.execute()
        ahead = answers[-1]
        self._ahead = list(ahead[0][1]) if ahead else []
        done_ms = time.time() * 1000
        fresh = answers[0] if scored else []
        versions: Counter[str] = Counter()
        latency = self.metrics.latency.labels(self.dataset, self.group)
        for row, new in zip(scored, fresh, strict=True):
            if new:
                versions[row["model_version"]] += 1
                # Event (its entry's time on the Redis server) to its prediction written.
                took = done_ms - int(row["entry"].split("-")[0])
                result.latencies_ms.append(took)
                latency.observe(took / 1000)
            else:
                result.duplicates += 1
        result.scored += sum(versions.values())
        for version, count in versions.items():
            self.metrics.events.labels(self.dataset, self.group, version).inc(count)
        if result.duplicates:
            self.metrics.duplicates.labels(self.dataset, self.group).inc(result.duplicates)
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
        while not stop.is_set() or self._ahead:  # entries read ahead are scored first
            consumed = self.step()
            total += consumed.scored
            if consumed.read == 0:
                state = self.observe_lag()
                if idle_exit and state["lag"] == 0 and state["pending"] == 0:
                    break
        return total


def _dead(event: tuple[str, str, dict[str, Any]], reason: str) -> tuple[str, str, str, str]:
    """A dead letter of a parsed event: entry, event id, reason, payload."""
    return (event[0], event[1], reason, json.dumps(event[2])[:2000])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
