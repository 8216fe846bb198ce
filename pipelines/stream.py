"""`python -m pipelines.stream --dataset flights`: score a Redis stream's events with the champion.

    uv run python -m pipelines.stream --dataset flights [--redis-url redis://127.0.0.1:6379/0]
        [--group scorers] [--consumer NAME] [--batch 100] [--metrics-port 0]

Reads `<dataset>:events` in a consumer group, scores each event as the endpoint scores a
request (the same online feature state, champion watcher and canary router; every row in
the lake's request log) and writes each prediction once to `<dataset>:predictions`,
unscorable events to `<dataset>:dead` with the reason (`driftloop.serving.stream`). Start
several with different --consumer names to share the stream. --metrics-port serves the
consumer's Prometheus metrics on 127.0.0.1. SIGTERM or Ctrl-C stops after the batch in
hand. Settings: DRIFTLOOP_DATA_DIR, MLFLOW_TRACKING_URI, DRIFTLOOP_CONTRACTS_DIR,
DRIFTLOOP_REDIS_URL (the default --redis-url), DRIFTLOOP_COMPILED (off: LightGBM's own
predict instead of the champion's compiled trees).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
from typing import Any

from driftloop.serving.champion import DEFAULT_REFRESH_SECONDS
from driftloop.serving.installation import Installation, installation, online_scorer
from driftloop.serving.online_state import DEFAULT_HISTORY_DAYS
from driftloop.serving.stream import (
    DEFAULT_BATCH,
    DEFAULT_GROUP,
    DEFAULT_REDIS_URL,
    REDIS_URL_ENV,
    redis_url,
)

log = logging.getLogger("driftloop.stream")


def started_scorer(
    place: Installation,
    refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
    history_days: int = DEFAULT_HISTORY_DAYS,
) -> Any:
    """The endpoint's scorer (champion watcher, online state, canary router, request log),
    loaded, its background refreshes started (as the server's lifespan starts them)."""
    scorer = online_scorer(place, refresh_seconds, history_days)
    scorer.watcher.start()
    scorer.state.start(refresh_seconds)
    scorer.start_background()
    return scorer


def stop_scorer(scorer: Any) -> None:
    scorer.stop_background()
    scorer.state.stop()
    scorer.watcher.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.stream", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--dataset", required=True, help="the dataset (contract name)")
    parser.add_argument(
        "--redis-url", default=None, help=f"default ${REDIS_URL_ENV}, else {DEFAULT_REDIS_URL}"
    )
    parser.add_argument("--group", default=DEFAULT_GROUP, help="the consumer group")
    parser.add_argument("--consumer", default=None, help="this consumer's name (default host-pid)")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="events per read")
    parser.add_argument(
        "--claim-idle-ms",
        type=int,
        default=30_000,
        help="claim entries another consumer left unacknowledged this long",
    )
    parser.add_argument("--metrics-port", type=int, default=0, help="0: no metrics server")
    parser.add_argument("--refresh-seconds", type=float, default=DEFAULT_REFRESH_SECONDS)
    parser.add_argument("--history-days", type=int, default=DEFAULT_HISTORY_DAYS)
    parser.add_argument("--data-dir", default=None, help="data root (default $DRIFTLOOP_DATA_DIR)")
    parser.add_argument("--tracking-uri", default=None, help="default $MLFLOW_TRACKING_URI")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("mlflow").setLevel(logging.WARNING)

    import redis
    from prometheus_client import start_http_server

    from driftloop.serving.stream import StreamConsumer

    place = installation(args.dataset, args.data_dir, args.tracking_uri)
    url = redis_url(args.redis_url)
    scorer = started_scorer(place, args.refresh_seconds, args.history_days)
    name = args.consumer or f"{socket.gethostname()}-{os.getpid()}"
    consumer = StreamConsumer(
        scorer,
        redis.Redis.from_url(url),
        name,
        args.group,
        args.batch,
        claim_idle_ms=args.claim_idle_ms,
    )
    if args.metrics_port:
        start_http_server(args.metrics_port, addr="127.0.0.1", registry=consumer.metrics.registry)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info(
        "%s: consuming %s in group %s at %s", name, consumer.streams["events"], args.group, url
    )
    try:
        scored = consumer.run(stop)
    finally:
        stop_scorer(scorer)
    log.info("%s: stopped after %d events", name, scored)


if __name__ == "__main__":
    main()
