"""The endpoint's Prometheus metrics (prometheus-client), per process or merged across workers.

With several worker processes the server sets PROMETHEUS_MULTIPROC_DIR before they start:
each worker then writes its samples to files there and `/metrics` merges every worker's
(prometheus-client's multiprocess mode), so a scrape that lands on any worker sees the
whole server.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from typing import Any

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Seconds: a 1-row request is a few milliseconds, a 1000-row one up to a second or so.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class ServingMetrics:
    requests: Any  # Counter: dataset, endpoint, method, status, model_version
    errors: Any  # Counter: dataset, endpoint, status, model_version (4xx and 5xx)
    latency: Any  # Histogram (seconds): dataset, endpoint, model_version
    rows: Any  # Counter: rows scored, dataset, model_version
    unseen: Any  # Counter: values the model never saw, dataset, column, model_version
    events: Any  # Counter: event records, dataset, outcome (applied / ignored)


@cache
def serving_metrics() -> ServingMetrics:
    """The metrics of this process, created once (after PROMETHEUS_MULTIPROC_DIR is set)."""
    from prometheus_client import Counter, Histogram, disable_created_metrics

    disable_created_metrics()  # the *_created series double the exposition for little use
    return ServingMetrics(
        requests=Counter(
            "driftloop_serving_requests",
            "HTTP requests answered, by endpoint, status and model version",
            ["dataset", "endpoint", "method", "status", "model_version"],
        ),
        errors=Counter(
            "driftloop_serving_errors",
            "Requests answered with a 4xx or 5xx status",
            ["dataset", "endpoint", "status", "model_version"],
        ),
        latency=Histogram(
            "driftloop_serving_request_seconds",
            "Time from the request's arrival to its response, as the server sees it",
            ["dataset", "endpoint", "model_version"],
            buckets=LATENCY_BUCKETS,
        ),
        rows=Counter(
            "driftloop_serving_rows",
            "Rows scored by /invocations",
            ["dataset", "model_version"],
        ),
        unseen=Counter(
            "driftloop_serving_unseen_categories",
            "Categorical values of scored rows that the model never saw in training",
            ["dataset", "column", "model_version"],
        ),
        events=Counter(
            "driftloop_serving_events",
            "Event records posted to /events: applied, or ignored (the lake holds the row)",
            ["dataset", "outcome"],
        ),
    )


def exposition() -> bytes:
    """Every metric in Prometheus' text format, merged across workers in multiprocess mode."""
    from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)
