"""The serving ASGI app (FastAPI): MLflow-compatible endpoints over `OnlineScorer`, with
request ids, an access log and Prometheus metrics.

Endpoints (JSON unless said):
  GET  /ping, /health   200 {"status": "alive"} while the process runs
  GET  /ready           200 when a champion is loaded, else 503
  GET  /version         dataset, alias, model_version, model_uri, run_id, online state, ...,
                        and the canary routed now (its model_version, share), else null
  GET  /schema          the request fields: required / optional / ignored, types, allowed
  POST /invocations     {"dataframe_records": [...]} or {"dataframe_split": {...}}
                        -> {"predictions": [...], "model_version": "N", "model_uri": ...,
                            "run_id": ..., "dataset": ...[, "unseen_categories": {...}]}
  POST /events          facts known before the day lands, same body shapes, merged by id
  GET  /metrics         Prometheus text format
  GET  /openapi.json, /docs (a page of our own, served locally: no CDN)
Every malformed request gets a 4xx whose body is MLflow's {error_code, message} plus
`errors` [{row, field, message}]; every response carries an X-Request-ID (the client's, if
it sent a sane one).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from driftloop.serving.docs_page import DOCS_HTML, request_body_schema
from driftloop.serving.metrics import CONTENT_TYPE, exposition, serving_metrics
from driftloop.serving.online import OnlineScorer
from driftloop.serving.requests import RequestError, fail, parse_events

log = logging.getLogger("driftloop.serve")
access_log = logging.getLogger("driftloop.serve.access")

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_ROUTES = frozenset(
    [
        *("/ping", "/health", "/ready", "/version", "/schema"),
        *("/invocations", "/events", "/metrics", "/docs", "/openapi.json"),
    ]
)


@dataclass
class AppSettings:
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    refresh_seconds: float = 5.0
    threads: int = 1  # >1: scoring runs in a thread pool of this size, else on the loop
    access_log: bool = True


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    data = json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
    return Response(data, status, headers=headers, media_type="application/json")


def _error(status: int, code: str, message: str, **extra: Any) -> Response:
    return _json(status, {"error_code": code, "message": message, "errors": [], **extra})


class RequestContext:
    """Pure ASGI middleware: a request id, the access log line and the request metrics."""

    def __init__(self, app: Any, dataset: str, settings: AppSettings) -> None:
        self.app = app
        self.dataset = dataset
        self.settings = settings

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
        text = given.decode("latin-1")
        request_id = text if _REQUEST_ID.match(text) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        status = [500]

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._record(scope, state, status[0], time.perf_counter() - started, request_id)

    def _record(self, scope: dict, state: dict, status: int, seconds: float, rid: str) -> None:
        path = scope.get("path", "")
        endpoint = path if path in _ROUTES else "other"  # a fuzzer's paths stay out of labels
        version = state.get("model_version", "")
        metrics = serving_metrics()
        metrics.requests.labels(self.dataset, endpoint, scope["method"], status, version).inc()
        if status >= 400:
            metrics.errors.labels(self.dataset, endpoint, status, version).inc()
        metrics.latency.labels(self.dataset, endpoint, version).observe(seconds)
        if self.settings.access_log:
            client = scope.get("client") or ("-", 0)
            access_log.info(
                '%s "%s %s" %d %.1fms rid=%s model=%s',
                client[0],
                scope["method"],
                path[:200],
                status,
                seconds * 1000,
                rid,
                version or "-",
            )


async def _body(request: Request, limit: int) -> bytes | Response:
    """The body, or the 4xx response saying why it is refused (too large, not JSON)."""
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if kind.lower() not in ("application/json", "text/json"):
        return _error(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            f"Content-Type must be application/json, not {kind[:60]!r}",
        )
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        if not declared.isdigit():
            return _error(400, "BAD_REQUEST", f"Content-Length {declared[:40]!r} is not a length")
        return _error(413, "REQUEST_TOO_LARGE", f"the body has {declared} bytes; at most {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return _error(413, "REQUEST_TOO_LARGE", f"the body has over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_json(body: bytes) -> Any:
    """The payload, or the 400 response naming what is wrong with the JSON."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as error:  # also bad UTF-8 and 5,000-digit integers
        return _error(400, "BAD_REQUEST", f"the body is not valid JSON: {str(error)[:200]}")


def create_app(
    scorer: OnlineScorer, settings: AppSettings | None = None, *, start: bool = True
) -> Any:
    """The ASGI app; with `start`, its lifespan loads the champion and the online state and
    keeps both fresh in background threads until shutdown."""
    settings = settings or AppSettings()
    dataset = scorer.contract.name
    metrics = serving_metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if start:
            scorer.watcher.start()
            scorer.state.start(settings.refresh_seconds)
            scorer.start_background()
        try:
            yield
        finally:
            if start:
                scorer.watcher.stop()
                scorer.state.stop()
                scorer.stop_background()

    app = FastAPI(
        title=f"driftloop serving: {dataset}",
        description=f"Real-time scoring of {dataset}@champion from raw request fields.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )

    async def run(function: Callable[[], Any]) -> Any:
        if settings.threads > 1:
            from anyio import to_thread

            return await to_thread.run_sync(function, limiter=limiter)
        return function()

    limiter = None
    if settings.threads > 1:
        from anyio import CapacityLimiter

        limiter = CapacityLimiter(settings.threads)

    async def handle(request: Request, work: Callable[[Any], Response]) -> Response:
        body = await _body(request, settings.max_body_bytes)
        if isinstance(body, Response):
            return body
        payload = _parse_json(body)
        if isinstance(payload, Response):
            return payload
        try:
            return await run(lambda: work(payload))
        except RequestError as error:
            return _json(error.status, error.body())
        except Exception as error:  # a bug of ours, not the client's: say so, keep serving
            log.exception("request %s failed", request.state.request_id)
            return _error(500, "INTERNAL_ERROR", f"{type(error).__name__}: {error}"[:500])

    @app.get("/ping", summary="Liveness: 200 while the process runs")
    @app.get("/health", summary="Liveness (MLflow's name)")
    async def ping() -> Response:
        return _json(200, {"status": "alive"})

    @app.get("/ready", summary="Readiness: 200 once a champion is loaded, else 503")
    async def ready() -> Response:
        if scorer.ready:
            return _json(200, {"status": "ready"} | scorer.version())
        return _error(503, "NOT_READY", f"no '{scorer.watcher.alias}' model for {dataset} yet")

    @app.get("/version", summary="The served model version and the online state")
    async def version() -> Response:
        return _json(200, scorer.version())

    @app.get("/schema", summary="The request fields, their types and rules")
    async def schema() -> Response:
        return _json(200, scorer.schema.describe())

    def score(request: Request, payload: Any) -> Response:
        explain = request.query_params.get("explain", "").lower() in ("true", "1", "yes")
        asked = {"request_id": request.state.request_id, "explain": explain}
        scored = scorer.score(payload, asked)
        version = scored.model.version
        request.state.model_version = version
        metrics.rows.labels(dataset, version).inc(scored.rows)
        headers = {"X-Model-Version": version, **scored.headers}
        if scored.unseen:
            for column, count in scored.unseen.items():
                metrics.unseen.labels(dataset, column, version).inc(count)
            headers["X-Unseen-Categories"] = ",".join(f"{c}={n}" for c, n in scored.unseen.items())
        return _json(200, scored.body, headers)

    @app.post(
        "/invocations",
        summary="Score rows with the champion (MLflow's body shapes)",
        openapi_extra={"requestBody": request_body_schema(scorer.schema, events=False)},
    )
    async def invocations(request: Request) -> Response:
        return await handle(request, lambda payload: score(request, payload))

    def accept_events(payload: Any) -> Response:
        if not scorer.contract.id_columns:
            fail(422, f"the {dataset} contract has no id_columns: events cannot name their rows")
        records = parse_events(payload, scorer.contract, scorer.schema.max_rows)
        state = scorer.state
        ignored = sum(state.stored(state.row_id(r)) for r in records)
        if state.event_log is not None:
            state.event_log.append(records)
            state.catch_up()
        else:
            state.apply_events(records)
        metrics.events.labels(dataset, "applied").inc(len(records) - ignored)
        metrics.events.labels(dataset, "ignored").inc(ignored)
        body = {"accepted": len(records), "ignored_stored": ignored}
        return _json(200, body | {"event_rows": state.event_rows})

    @app.post(
        "/events",
        summary="Facts known before their day lands in the lake (merged per row id)",
        openapi_extra={"requestBody": request_body_schema(scorer.schema, events=True)},
    )
    async def events(request: Request) -> Response:
        return await handle(request, accept_events)

    @app.get("/metrics", summary="Prometheus metrics (text format)")
    async def prometheus() -> Response:
        return Response(exposition(), media_type=CONTENT_TYPE)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(DOCS_HTML.replace("{{title}}", app.title))

    @app.exception_handler(404)
    async def not_found(request: Request, error: Exception) -> Response:
        return _error(404, "ENDPOINT_NOT_FOUND", f"no such endpoint {request.url.path[:200]!r}")

    @app.exception_handler(405)
    async def not_allowed(request: Request, error: Exception) -> Response:
        return _error(405, "METHOD_NOT_ALLOWED", f"{request.method} is not allowed here")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error")
        body = {"error_code": "INTERNAL_ERROR", "message": type(error).__name__, "errors": []}
        return JSONResponse(body, 500)

    app.add_middleware(RequestContext, dataset=dataset, settings=settings)
    return app
