"""`python -m pipelines.serve --dataset flights`: a real-time endpoint for the champion.

    uv run python -m pipelines.serve --dataset flights [--host 127.0.0.1] [--port 5001]

Why our own thin server and not `mlflow models serve -m models:/flights@champion`: see
`driftloop/serving/online.py` (MLflow resolves the alias once and expects precomputed features).
This is only the HTTP layer, on the standard library's ThreadingHTTPServer (HTTP/1.1,
keep-alive, one thread per connection); validation and scoring live in driftloop.serving.online.

Endpoints (JSON everywhere):
  GET  /ping, /health   200 {"status": "alive"} while the process runs
  GET  /ready           200 when a champion is loaded, else 503 (the alias does not exist)
  GET  /version         dataset, alias, model_version, model_uri, run_id, loaded_at, ...
  GET  /schema          the request fields: required / optional / ignored, types, allowed
  POST /invocations     MLflow-compatible bodies:
                          {"dataframe_records": [{"scheduled_departure": ..., ...}, ...]}
                          {"dataframe_split": {"columns": [...], "data": [[...], ...]}}
                        -> 200 {"predictions": [...], "model_version": "N",
                                "model_uri": "models:/flights/N", "run_id": ..., "dataset": ...}
Errors: {"error_code": ..., "message": "row 0, field 'carrier': 'ZZ' is not an allowed
value (allowed: ...)", "errors": [{"row": 0, "field": "carrier", "message": ...}]} with
400 (not JSON, wrong body shape, no rows), 411 (no Content-Length), 413 (more than
--max-rows rows or --max-body-bytes bytes), 415 (not application/json), 422 (a field's
value: missing, wrong type, not allowed, out of range), 503 (no champion yet), 404/405.
An unexpected error is a 500 with its message; the server keeps running either way.

It binds to 127.0.0.1 unless --host says otherwise. The champion alias is re-resolved
every --refresh-seconds (default 5): a promotion or a rollback is served within a few
seconds, no restart. Settings: DRIFTLOOP_DATA_DIR (the lake), MLFLOW_TRACKING_URI
(registry), DRIFTLOOP_CONTRACTS_DIR, as everywhere else.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from driftloop.data.contract import load_contracts
from driftloop.paths import contracts_dir, data_root, dataset_paths, default_mlflow_uri
from driftloop.serving.online import (
    DEFAULT_MAX_ROWS,
    DEFAULT_REFRESH_SECONDS,
    ChampionWatcher,
    OnlineScorer,
    RequestError,
)

log = logging.getLogger("driftloop.serve")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5001
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024


class ServingServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], scorer: OnlineScorer, max_body_bytes: int, quiet: bool
    ) -> None:
        self.scorer = scorer
        self.max_body_bytes = max_body_bytes
        self.quiet = quiet
        super().__init__(address, Handler)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a client reuses its connection
    server: ServingServer
    server_version = "driftloop-serve"

    # --- plumbing ---------------------------------------------------------------------

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, allow_nan=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, code: str | None = None, **extra: Any) -> None:
        body = {"error_code": code or HTTPStatus(status).phrase.upper().replace(" ", "_")}
        self._send(status, body | {"message": message, "errors": [], **extra})

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    # --- routes -----------------------------------------------------------------------

    def do_GET(self) -> None:
        scorer = self.server.scorer
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        if path in ("/ping", "/health"):
            self._send(200, {"status": "alive"})
        elif path == "/ready":
            if scorer.ready:
                self._send(200, {"status": "ready"} | scorer.version())
            else:
                self._error(
                    503,
                    f"no '{scorer.watcher.alias}' model for {scorer.contract.name} yet",
                    "NOT_READY",
                )
        elif path == "/version":
            self._send(200, scorer.version())
        elif path == "/schema":
            self._send(200, scorer.schema.describe())
        elif path == "/invocations":
            self._error(405, "use POST for /invocations", "METHOD_NOT_ALLOWED")
        else:
            self._error(404, f"no such endpoint {path!r}", "ENDPOINT_NOT_FOUND")

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            self.close_connection = True  # an unread body of unknown length
            self._error(411, "a Content-Length header is required", "LENGTH_REQUIRED")
            return
        try:
            length = int(length_header)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            self._error(400, f"Content-Length {length_header!r} is not a length", "BAD_REQUEST")
            return
        if length > self.server.max_body_bytes:
            self.close_connection = True  # not read: the connection cannot be reused
            self._error(
                413,
                f"the body has {length} bytes; at most {self.server.max_body_bytes}",
                "REQUEST_TOO_LARGE",
            )
            return
        body = self.rfile.read(length)
        if path != "/invocations":
            self._error(404, f"no such endpoint {path!r}", "ENDPOINT_NOT_FOUND")
            return
        kind = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        if kind not in ("application/json", "text/json"):
            self._error(415, f"Content-Type must be application/json, not {kind!r}")
            return
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
            self._error(400, f"the body is not valid JSON: {error}", "BAD_REQUEST")
            return
        started = time.perf_counter()
        try:
            response = self.server.scorer.predict(payload)
        except RequestError as error:
            self._send(error.status, error.body())
            return
        except Exception as error:  # a bug of ours, not the client's: say so, keep serving
            log.exception("scoring failed")
            self._error(500, f"scoring failed: {type(error).__name__}: {error}", "INTERNAL_ERROR")
            return
        response["seconds"] = round(time.perf_counter() - started, 6)
        self._send(200, response)


def make_server(
    dataset: str,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    data_dir: str | None = None,
    tracking_uri: str | None = None,
    refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    quiet: bool = False,
) -> ServingServer:
    """A bound server whose champion watcher has started (call serve_forever)."""
    contracts = load_contracts(contracts_dir())
    if dataset not in contracts:
        raise SystemExit(
            f"no contract for dataset {dataset!r} in {contracts_dir()} "
            f"(known: {', '.join(sorted(contracts)) or 'none'})"
        )
    root = data_root(data_dir)
    uri = tracking_uri or default_mlflow_uri(root)
    watcher = ChampionWatcher(dataset, uri, refresh_seconds=refresh_seconds)
    scorer = OnlineScorer(contracts[dataset], dataset_paths(dataset, root), watcher, max_rows)
    server = ServingServer((host, port), scorer, max_body_bytes, quiet)
    watcher.start()
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.serve", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--dataset", required=True, help="the dataset (contract name)")
    parser.add_argument("--host", default=DEFAULT_HOST, help="bind address (default loopback)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--data-dir", default=None, help="data root (default $DRIFTLOOP_DATA_DIR)")
    parser.add_argument("--tracking-uri", default=None, help="default $MLFLOW_TRACKING_URI")
    parser.add_argument(
        "--refresh-seconds",
        type=float,
        default=DEFAULT_REFRESH_SECONDS,
        help="how often the champion alias is re-resolved (0 = only at start)",
    )
    parser.add_argument("--max-rows", type=int, default=DEFAULT_MAX_ROWS)
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument("--quiet", action="store_true", help="no access log")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("mlflow").setLevel(logging.WARNING)

    server = make_server(
        args.dataset,
        args.host,
        args.port,
        data_dir=args.data_dir,
        tracking_uri=args.tracking_uri,
        refresh_seconds=args.refresh_seconds,
        max_rows=args.max_rows,
        max_body_bytes=args.max_body_bytes,
        quiet=args.quiet,
    )
    scorer = server.scorer
    model = scorer.watcher.model
    host, port = server.server_address[:2]
    print(
        f"driftloop: serving {args.dataset}@champion "
        f"({'v' + model.version if model else 'none yet: /ready is 503'}) "
        f"on http://{host}:{port} (POST /invocations; GET /ping /ready /version /schema)",
        flush=True,
    )

    def stop(signum: int, frame: Any) -> None:
        # shutdown() waits for serve_forever, so it must run on another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        scorer.watcher.stop()
        server.server_close()


if __name__ == "__main__":
    main()
