"""`python -m pipelines.serve --dataset flights`: a real-time endpoint for the champion.

    uv run python -m pipelines.serve --dataset flights [--host 127.0.0.1] [--port 5001]
        [--workers 1] [--threads 1] [--refresh-seconds 5] [--history-days 30]

The ASGI app (`driftloop.serving.app`: endpoints, error bodies, metrics) under uvicorn, the
server MLflow's own model server uses. Each worker process loads the champion and the
online feature state itself and keeps both fresh: the champion alias is re-resolved and
the lake looked at every --refresh-seconds, so a promotion, a rollback or a new day is
served within a few seconds, no restart. With several workers, /metrics merges them all
(prometheus-client's multiprocess mode) and events posted to any worker reach every worker
(through the event log under the data root). SIGTERM or Ctrl-C stops taking connections,
lets requests in flight finish (up to --graceful-seconds), then exits.

It binds to 127.0.0.1 unless --host says otherwise. Settings: DRIFTLOOP_DATA_DIR (the
lake), MLFLOW_TRACKING_URI (registry), DRIFTLOOP_CONTRACTS_DIR, as everywhere else.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from typing import Any

from driftloop.serving.app import DEFAULT_MAX_BODY_BYTES, AppSettings, create_app
from driftloop.serving.champion import DEFAULT_REFRESH_SECONDS
from driftloop.serving.installation import installation, online_scorer
from driftloop.serving.metrics import MULTIPROC_ENV
from driftloop.serving.online_state import DEFAULT_HISTORY_DAYS
from driftloop.serving.requests import DEFAULT_MAX_ROWS

log = logging.getLogger("driftloop.serve")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5001
SETTINGS_ENV = "DRIFTLOOP_SERVE_SETTINGS"  # how the settings reach uvicorn's workers


@dataclass
class ServeConfig:
    dataset: str
    data_dir: str | None = None
    tracking_uri: str | None = None
    refresh_seconds: float = DEFAULT_REFRESH_SECONDS
    history_days: int = DEFAULT_HISTORY_DAYS
    max_rows: int = DEFAULT_MAX_ROWS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    threads: int = 1
    access_log: bool = True


def build_app(config: ServeConfig) -> Any:
    """The app of one worker: contract, champion watcher, online state, scorer."""
    place = installation(config.dataset, config.data_dir, config.tracking_uri)
    scorer = online_scorer(place, config.refresh_seconds, config.history_days, config.max_rows)
    settings = AppSettings(
        max_body_bytes=config.max_body_bytes,
        refresh_seconds=config.refresh_seconds,
        threads=config.threads,
        access_log=config.access_log,
    )
    return create_app(scorer, settings)


def _logging(access_log: bool) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    if not access_log:
        logging.getLogger("driftloop.serve.access").setLevel(logging.WARNING)


def app_from_environment() -> Any:
    """uvicorn's factory in each worker: the settings come from SETTINGS_ENV."""
    config = ServeConfig(**json.loads(os.environ[SETTINGS_ENV]))
    _logging(config.access_log)
    return build_app(config)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.serve", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--dataset", required=True, help="the dataset (contract name)")
    parser.add_argument("--host", default=DEFAULT_HOST, help="bind address (default loopback)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--threads", type=int, default=1, help="scoring threads per worker")
    parser.add_argument("--data-dir", default=None, help="data root (default $DRIFTLOOP_DATA_DIR)")
    parser.add_argument("--tracking-uri", default=None, help="default $MLFLOW_TRACKING_URI")
    parser.add_argument(
        "--refresh-seconds",
        type=float,
        default=DEFAULT_REFRESH_SECONDS,
        help="how often the champion alias and the lake are looked at (0 = only at start)",
    )
    parser.add_argument("--history-days", type=int, default=DEFAULT_HISTORY_DAYS)
    parser.add_argument("--max-rows", type=int, default=DEFAULT_MAX_ROWS)
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument("--keep-alive-seconds", type=int, default=5)
    parser.add_argument("--graceful-seconds", type=int, default=10)
    parser.add_argument("--quiet", action="store_true", help="no access log")
    args = parser.parse_args(argv)
    installation(args.dataset, args.data_dir, args.tracking_uri)  # exits naming the known ones
    config = ServeConfig(
        dataset=args.dataset,
        data_dir=args.data_dir,
        tracking_uri=args.tracking_uri,
        refresh_seconds=args.refresh_seconds,
        history_days=args.history_days,
        max_rows=args.max_rows,
        max_body_bytes=args.max_body_bytes,
        threads=args.threads,
        access_log=not args.quiet,
    )
    os.environ[SETTINGS_ENV] = json.dumps(asdict(config))
    metrics_dir = None
    if args.workers > 1:
        metrics_dir = tempfile.mkdtemp(prefix="driftloop-metrics-")
        os.environ[MULTIPROC_ENV] = metrics_dir
    _logging(config.access_log)
    import uvicorn

    try:
        uvicorn.run(
            "pipelines.serve:app_from_environment",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            timeout_keep_alive=args.keep_alive_seconds,
            timeout_graceful_shutdown=args.graceful_seconds,
            access_log=False,  # ours carries the request id, the latency and the model
            log_config=None,
        )
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
