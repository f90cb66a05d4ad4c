"""The Starlette application: GraphQL at /graphql, /healthz, /readyz, /metrics.

``create_app()`` is the uvicorn factory (``uvicorn --factory gateway.app:create_app``);
each worker process builds its own :class:`Services` at startup and closes them at
shutdown (uvicorn's graceful shutdown lets in-flight requests finish first; every
acknowledged event is already committed to SQLite, so nothing is buffered to lose).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.asgi import GraphQL

from gateway import metrics
from gateway.auth import Authenticator, Principal
from gateway.rate_limit import RateLimiter, make_rate_limiter
from gateway.schema import build_schema
from gateway.services import Services
from gateway.settings import Settings, load_settings

log = logging.getLogger("gateway")

# Threads per worker that compute feed pages. A page is mostly Python holding the GIL,
# so more threads do not add throughput; they only make the pages in flight take turns
# (every one finishes late) and contend on the recipes' and stores' locks. Measured with
# bench/bench_gateway.py at 200 feed req/s: two threads cost 6.3-6.5 ms of server CPU
# per page and p99 55-61 ms (lock and GIL hand-offs); one thread 5.0-6.0 ms and 39-41 ms.
FEED_THREADS = 1


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: easy to ship and query."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": round(record.created, 3), "level": record.levelname.lower(),
            "logger": record.name, "msg": record.getMessage(),
        }
        for key in ("operation", "status", "duration_ms", "user", "path"):
            if hasattr(record, key):
                payload[key] = getattr(record, key)
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload)


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class BodySizeLimit:
    """Refuses request bodies over ``max_bytes`` with 413 before they are parsed."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        too_large = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"errors": [{
            "message": f"request body over {self.max_bytes} bytes",
            "extensions": {"code": "PAYLOAD_TOO_LARGE"}}]}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


class HunchGraphQL(GraphQL):
    """Strawberry's ASGI view with our context (services, lazy auth, the feed's threads).

    Operation latency is observed by :class:`gateway.metrics.OperationLatency`, a schema
    extension that reads the parsed document rather than decoding the body again.
    """

    def __init__(self, schema, services_ref: dict, authenticator: Authenticator,
                 rate_limiter: RateLimiter, development: bool,
                 feed_executor: Executor | None = None,
                 feed_rate_limiter: RateLimiter | None = None):
        super().__init__(schema, graphql_ide="graphiql" if development else None,
                         allow_queries_via_get=False)
        self.services_ref = services_ref
        self.authenticator = authenticator
        self.rate_limiter = rate_limiter
        self.feed_rate_limiter = feed_rate_limiter
        self.feed_executor = feed_executor

    async def get_context(self, request, response) -> dict[str, Any]:
        cached: list[Principal] = []

        def principal() -> Principal:
            if not cached:
                cached.append(self.authenticator.authenticate(
                    request.headers.get("authorization")))
            return cached[0]

        return {"request": request, "response": response, "principal": principal,
                "services": self.services_ref["services"], "rate_limiter": self.rate_limiter,
                "feed_rate_limiter": self.feed_rate_limiter,
                "feed_executor": self.feed_executor, "degraded": []}


async def _nothing() -> None:
    pass


def create_app(settings: Settings | None = None, services: Services | None = None) -> Starlette:
    settings = settings or load_settings()
    services_ref: dict[str, Any] = {"services": services}
    schema = build_schema(settings.development, settings.max_query_depth,
                          settings.max_query_tokens, settings.max_aliases)
    feed_executor = ThreadPoolExecutor(FEED_THREADS, thread_name_prefix="feed")
    limiters = [make_rate_limiter(scope, rate, settings.session_store, settings.redis_url)
                for scope, rate in (("mutation", settings.mutation_rate_per_minute),
                                    ("feed", settings.feed_rate_per_minute))]
    graphql_app = HunchGraphQL(schema, services_ref, Authenticator(settings), limiters[0],
                               settings.development, feed_executor, limiters[1])

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        checks = await services_ref["services"].readiness()
        return JSONResponse(checks, status_code=200 if checks["ready"] else 503)

    async def metrics_route(request: Request) -> Response:
        body, content_type = metrics.render()
        return PlainTextResponse(body, media_type=content_type)

    async def ping(request: Request) -> Response:
        """A trivial route: the baseline that the load benchmark compares with."""
        return PlainTextResponse("pong")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        if services_ref["services"] is None:
            services_ref["services"] = Services(settings)
        services_ref["services"]._loop = asyncio.get_running_loop()
        await services_ref["services"].start()
        log.info("gateway ready", extra={"path": str(settings.home)})
        try:
            yield
        finally:
            feed_executor.shutdown(wait=True)  # in-flight pages finish before the stores close
            for limiter in limiters:
                with contextlib.suppress(Exception):  # shutting down anyway
                    await getattr(limiter, "close", _nothing)()
            await services_ref["services"].close()
            log.info("gateway stopped")

    app = Starlette(
        routes=[
            Route("/graphql", graphql_app, methods=["GET", "POST"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_route),
            Route("/ping", ping),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app
