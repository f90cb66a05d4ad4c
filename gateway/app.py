"""The Starlette application: GraphQL at /graphql, /healthz, /readyz, /metrics.

``create_app()`` is the uvicorn factory (``uvicorn --factory gateway.app:create_app``);
each worker process builds its own :class:`Services` at startup and closes them at
shutdown (uvicorn's graceful shutdown lets in-flight requests finish first; every
acknowledged event is already committed to SQLite, so nothing is buffered to lose).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import copy
import json
import logging
import logging.handlers
import queue
import re
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

import orjson
from cross_web import HTTPException
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLRequestData

from gateway import metrics
from gateway.auth import Authenticator, Principal, Unauthorized
from gateway.daily_quota import make_daily_quota
from gateway.errors import clip_message
from gateway.ops import OpsAccess, SharedReadiness
from gateway.persisted_queries import (
    PersistedQueries,
    PersistedQueryError,
    make_persisted_queries,
)
from gateway.production import check_production
from gateway.rate_limit import (
    LocalRateLimiter,
    Quota,
    RateLimiter,
    make_rate_limiter,
)
from gateway.schema import build_schema
from gateway.services import Services
from gateway.settings import Settings, load_settings
from recsys.errors import HunchError

log = logging.getLogger("gateway")

# Threads per worker that compute feed pages. A page is mostly Python holding the GIL,
# so more threads do not add throughput; they only make the pages in flight take turns
# (every one finishes late) and contend on the recipes' and stores' locks. Measured with
# bench/bench_gateway.py at 200 feed req/s: two threads cost 6.3-6.5 ms of server CPU
# per page and p99 55-61 ms (lock and GIL hand-offs); one thread 5.0-6.0 ms and 39-41 ms.
FEED_THREADS = 1
# Request headers a page may send cross-origin: the token, JSON, and what Apollo Client
# and its tooling add (client name and version, the CSRF-prevention header).
CORS_HEADERS = ["authorization", "content-type", "apollographql-client-name",
                "apollographql-client-version", "apollo-require-preflight",
                "x-apollo-operation-name"]
# How long a browser may reuse a preflight's answer (Chromium caps it at 2 hours).
CORS_MAX_AGE_SECONDS = 600
_ORIGIN = re.compile(r"https?://[^/\s?#]+")
# zlib level of compressed answers (settings.gzip_min_bytes says which are).
GZIP_LEVEL = 6


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


# Log records waiting for the writer thread; past this many (stderr stalled) new ones are
# dropped and counted, so that memory stays bounded.
LOG_QUEUE_RECORDS = 10_000


class _LogHandoff(logging.handlers.QueueHandler):
    """Hands records to the writer thread (:func:`configure_logging`). The message is
    merged here (its arguments may change later); the traceback is formatted there,
    still as its own field (QueueHandler's own prepare folded it into the message)."""

    dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record = copy.copy(record)
        record.msg, record.args = record.getMessage(), None
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:  # handleError would write to the stalled stream itself
            self.dropped += 1


_log_writer: logging.handlers.QueueListener | None = None  # this process's, once set up


def configure_logging(level: int = logging.INFO) -> logging.handlers.QueueListener:
    """JSON lines on stderr, written by a thread of their own: a log call on the event
    loop (every client error logs a line) wrote to stderr there, and a stalled reader of
    the stream (a log shipper, a paused terminal) froze every request of the worker.
    Returns the writer (``stop()`` writes what is queued; done at exit). Once a process:
    a second call returns the writer the first set up."""
    global _log_writer
    root = logging.getLogger()
    if _log_writer is not None and any(isinstance(h, _LogHandoff) for h in root.handlers):
        return _log_writer
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter())
    listener = logging.handlers.QueueListener(queue.Queue(LOG_QUEUE_RECORDS), handler)
    root.handlers[:] = [_LogHandoff(listener.queue)]
    root.setLevel(level)
    listener.start()
    atexit.register(listener.stop)
    _log_writer = listener
    return listener


def create_worker_app() -> Starlette:
    """What ``hunch serve`` runs in each worker. With ``--workers N`` uvicorn spawns
    processes that import the app afresh, so the logging the parent set up never reached
    them: a worker's lines (its start, every warning and error) were lost, or plain text
    through Python's last resort, in the mode production runs."""
    configure_logging()
    return create_app()


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


# A JSON string escape of a UTF-16 surrogate (\ud800-\udfff). Paired ones decode to one
# character; a lone one decodes to a str that cannot be encoded (SQLite, UTF-8 output).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")

_HTTP_ERROR_CODES = {400: "BAD_REQUEST", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED",
                     413: "PAYLOAD_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE"}


def _media_type_lowercased(scope: Scope) -> Scope:
    """``scope`` with its Content-Type's media type in lower case: media types are
    case-insensitive (RFC 9110, 8.3.1), and strawberry compares them as written, so
    ``APPLICATION/JSON`` was refused. Parameters (a multipart boundary) stay as sent."""
    headers = scope.get("headers") or []
    for k, (name, value) in enumerate(headers):
        if name.lower() == b"content-type":
            media_type, sep, parameters = value.partition(b";")
            if media_type != media_type.lower():
                headers = list(headers)
                headers[k] = (name, media_type.lower() + sep + parameters)
                return {**scope, "headers": headers}
            break
    return scope


def cors_origins(settings: Settings) -> list[str]:
    """``settings.cors_origins`` checked: a browser sends an origin as scheme://host[:port],
    never with a path or a trailing slash, so an entry written otherwise would match
    nothing and the page would fail with no word of why."""
    for origin in settings.cors_origins:
        if origin != "*" and not _ORIGIN.fullmatch(origin):
            raise HunchError(f"HUNCH_CORS_ORIGINS: {origin!r} is not an origin; write "
                             "scheme://host[:port] with no path or trailing slash, e.g. "
                             '["https://hunch.app"], or ["*"] for every page')
    return list(settings.cors_origins)


def graphql_error_response(status: int, message: str, code: str | None = None,
                           headers: dict[str, str] | None = None) -> Response:
    """A refusal before GraphQL runs, shaped like a GraphQL error so clients parse one form."""
    code = code or _HTTP_ERROR_CODES.get(status, "BAD_REQUEST")
    metrics.ERRORS.labels(code).inc()
    return JSONResponse({"errors": [{"message": clip_message(message),
                                     "extensions": {"code": code}}]}, status_code=status,
                        headers=headers)


def decode_request_json(data: str | bytes) -> Any:
    """The request body as JSON, or HTTP 400 naming what is wrong with it.

    Strict where the standard library is lenient: UTF-8 only (RFC 8259 section 8.1;
    ``json.loads`` of bytes would guess UTF-16/32), no NaN/Infinity literals (they are
    not JSON and reach resolvers as floats no field accepts), valid Unicode strings.
    """
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise HTTPException(400, f"the request body is not valid UTF-8 "
                                     f"(byte {exc.start}); send JSON encoded as UTF-8") from exc
    try:
        value = json.loads(data, parse_constant=_not_json)
    except RecursionError as exc:
        raise HTTPException(400, "the request body nests JSON too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, and the constants refused above
        raise HTTPException(400, f"the request body is not valid JSON: {exc}") from exc
    if _SURROGATE_ESCAPE.search(data):
        where = _lone_surrogate(value)
        if where is not None:
            raise HTTPException(400, f"{where} holds a lone UTF-16 surrogate "
                                     "(\\ud800-\\udfff): strings must be valid Unicode")
    return value


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _lone_surrogate(value: Any) -> str | None:
    """Where a string that is not valid Unicode sits in ``value`` (None if nowhere).

    Linear in the body: each value keeps (label, parent) and a path is spelled only for
    the string that fails. Spelling every value's path up front cost 440 MB and 0.3 s
    for one 60 KB body (a 30,000-character key over 15,000 list items: helper-66)."""
    steps: list[tuple[str, int]] = [("request", -1)]  # (how it is reached, parent step)
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:  # iterative: the body's nesting is the client's choice
        item, step = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                steps.append((f".{key}", step))
                stack.append((child, len(steps) - 1))
                steps.append(("(a key)", step))
                stack.append((key, len(steps) - 1))
        elif isinstance(item, list):
            for i, child in enumerate(item):
                steps.append((f"[{i}]", step))
                stack.append((child, len(steps) - 1))
        elif isinstance(item, str) and not item.isascii():
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return _spelled(steps, step)
    return None


def _spelled(steps: list[tuple[str, int]], step: int) -> str:
    parts: list[str] = []
    while step >= 0:
        label, step = steps[step]
        parts.append(label if len(label) <= 100 else label[:100] + "...")
    where = "".join(reversed(parts))
    if where.endswith("(a key)"):
        where = "a key in " + where[: -len("(a key)")]
    return where.encode("utf-8", "backslashreplace").decode()[:200]


class HunchGraphQL(GraphQL):
    """Strawberry's ASGI view with our context (services, lazy auth, the feed's threads).

    Operation latency is observed by :class:`gateway.metrics.OperationLatency`, a schema
    extension that reads the parsed document rather than decoding the body again.
    """

    def __init__(self, schema, services_ref: dict, authenticator: Authenticator,
                 rate_limiter: RateLimiter, development: bool,
                 feed_executor: Executor | None = None,
                 feed_rate_limiter: RateLimiter | None = None,
                 read_rate_limiter: RateLimiter | None = None,
                 poll_write_quota: Quota | None = None,
                 follow_quota: Quota | None = None,
                 document_rate_limiter: RateLimiter | None = None,
                 persisted_queries: PersistedQueries | None = None):
        # Queries by GET too (mutations stay POST; strawberry refuses them with 405):
        # Apollo Kotlin sends persisted queries' hashes by GET by default, and urql
        # every query within 2,048 characters. A feed page's side effects are a new
        # session and its log, which a repeated GET repeats as a repeated POST would
        # (the same `after` gives the same page); no cache keeps the answer (no-store,
        # and a shared cache does not keep answers to requests with Authorization).
        super().__init__(schema, graphql_ide="graphiql" if development else None,
                         allow_queries_via_get=True)
        self.persisted_queries = (persisted_queries if persisted_queries is not None
                                  else PersistedQueries())
        self.services_ref = services_ref
        self.authenticator = authenticator
        self.rate_limiter = rate_limiter
        self.feed_rate_limiter = feed_rate_limiter
        self.read_rate_limiter = read_rate_limiter
        self.poll_write_quota = poll_write_quota
        self.follow_quota = follow_quota
        self.document_rate_limiter = document_rate_limiter
        self.feed_executor = feed_executor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Every answer is GraphQL-shaped JSON; a request the view cannot handle is a 400
        (strawberry's is text/plain) and a bug a masked 500, never a dropped connection."""
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope=_media_type_lowercased(scope), receive=receive)
        # Every request but the GraphiQL page itself (a GET without a query string): a
        # GET carrying a query was decoded and reached the document limit anonymously.
        if request.method != "GET" or request.url.query:
            # Every operation needs a signed-in caller, and parsing and validating a
            # document runs on the event loop: checked first, a client without a token
            # cannot make a worker parse anything (2,000 tokens of unknown fields took
            # ~300 ms each, and two such clients held a `me` query up for 1.8 s).
            try:
                # async: a token under the identity provider's new key waits for
                # the JWKS document to be fetched again, off the event loop.
                request.scope["hunch.principal"] = await self.authenticator.authenticate_async(
                    request.headers.get("authorization"))
            except Unauthorized as exc:
                # HTTP 200, as a resolver's UNAUTHENTICATED was: Apollo Kotlin and iOS
                # raise on a 401 without reading the body, and token-refresh logic keys
                # on the code (helper-65).
                response = graphql_error_response(200, str(exc), "UNAUTHENTICATED")
                await response(scope, receive, send)
                return
        try:
            response = await self.run(request)
        except HTTPException as exc:
            status, reason = exc.status_code, exc.reason
            if reason == "Unsupported content type":  # strawberry's 400: say what to send
                status, reason = 415, ("unsupported Content-Type: send the request as JSON "
                                       "(Content-Type: application/json)")
            elif reason == "mutations are not allowed when using GET":  # GraphQL over HTTP
                status, reason = 405, ("mutations are sent by POST; GET runs queries only "
                                       "(a GET must change nothing)")
            response = graphql_error_response(status, reason)
        except PersistedQueryError as exc:
            # PersistedQueryNotFound included: HTTP 200 with the code the links retry on
            response = graphql_error_response(exc.status, str(exc), exc.code, exc.headers)
        except _TooLarge:
            raise  # BodySizeLimit answers 413
        except Exception:
            log.exception("unexpected error serving a GraphQL request")
            response = graphql_error_response(500, "Unexpected error.", "INTERNAL_SERVER_ERROR")
        # Every answer is one user's (a feed page, their polls): kept by no cache, not
        # even the client's HTTP cache, which would answer a GET of the same page again
        # (PersistedQueryNotFound keeps Apollo Server's own no-cache).
        response.headers.setdefault("Cache-Control", "no-store")
        await response(scope, receive, send)

    async def process_result(self, request: Request, result: Any) -> Any:
        """ErrorCodes gives every error a code; one without escaped it (an exception
        outside the resolvers, e.g. in a validation rule, whose message strawberry
        passes on): masked like any bug."""
        response = await super().process_result(request, result)
        if not response.get("errors"):
            return response
        for i, error in enumerate(response["errors"]):
            if not (error.get("extensions") or {}).get("code"):
                original = result.errors[i].original_error if i < len(result.errors) else None
                log.error("unexpected error outside the resolvers", exc_info=original)
                metrics.ERRORS.labels("INTERNAL_SERVER_ERROR").inc()
                response["errors"][i] = {"message": "Unexpected error.",
                                         "extensions": {"code": "INTERNAL_SERVER_ERROR"}}
        return response

    async def execute_operation(self, request, request_adapter, request_data, context,
                                root_value, sub_response):
        """Automatic Persisted Queries (gateway/persisted_queries.py): a request that
        names a hash runs the document this worker stored under it, or is answered
        PersistedQueryNotFound; one that also sends the query has the hash checked, and
        the document is stored once it validates (by the prepared documents' step)."""
        if isinstance(request_data, GraphQLRequestData) and request_data.extensions:
            query, register = await self.persisted_queries.resolve(
                request_data.query, request_data.extensions)
            request_data.query = query
            if register is not None and isinstance(context, dict):
                context["persisted_query_hash"] = register
        return await super().execute_operation(
            request=request, request_adapter=request_adapter, request_data=request_data,
            context=context, root_value=root_value, sub_response=sub_response)

    def decode_json(self, data: str | bytes) -> object:
        return decode_request_json(data)

    def encode_json(self, data: object) -> str | bytes:
        """orjson: a feed page's 2 KB in 5 us of CPU against 50 us with json. Its bytes
        are UTF-8 where json escapes non-ASCII (the same JSON to a parser); what it
        refuses (a lone surrogate, an integer over 64 bits) is encoded as before."""
        try:
            return orjson.dumps(data)
        except TypeError:  # orjson.JSONEncodeError
            return super().encode_json(data)

    def parse_json(self, data: str | bytes) -> Any:
        value = super().parse_json(data)
        if isinstance(value, list):
            # A batch: several operations in one request, each with its own side effects
            # (a feed page, a vote) and limits; refused, as Apollo Server 4 does by
            # default. strawberry said only "Batching is not enabled".
            raise HTTPException(400, "batched requests (a JSON array of operations) are "
                                     "not taken: send one operation per request (Apollo "
                                     "Client: HttpLink, not BatchHttpLink)")
        if not isinstance(value, dict):
            raise HTTPException(400, 'the request body must be a JSON object: '
                                     '{"query": "...", "variables": {...}}')
        return value

    async def get_context(self, request, response) -> dict[str, Any]:
        checked = request.scope.get("hunch.principal")  # by __call__, before parsing
        cached: list[Principal] = [] if checked is None else [checked]

        def principal() -> Principal:
            if not cached:
                cached.append(self.authenticator.authenticate(
                    request.headers.get("authorization")))
            return cached[0]

        return {"request": request, "response": response, "principal": principal,
                "services": self.services_ref["services"], "rate_limiter": self.rate_limiter,
                "feed_rate_limiter": self.feed_rate_limiter,
                "read_rate_limiter": self.read_rate_limiter,
                "poll_write_quota": self.poll_write_quota,
                "follow_quota": self.follow_quota,
                "document_rate_limiter": self.document_rate_limiter,
                "persisted_queries": self.persisted_queries,
                "feed_executor": self.feed_executor, "degraded": []}


async def _nothing() -> None:
    pass


def create_app(settings: Settings | None = None, services: Services | None = None,
               authenticator: Authenticator | None = None) -> Starlette:
    settings = settings or load_settings()
    check_production(settings)
    authenticator = authenticator if authenticator is not None else Authenticator(settings)
    services_ref: dict[str, Any] = {"services": services}
    schema = build_schema(settings.development, settings.max_query_depth,
                          settings.max_query_tokens, settings.max_aliases,
                          settings.max_query_nodes, settings.max_page_size,
                          settings.max_response_text_chars)
    feed_executor = ThreadPoolExecutor(FEED_THREADS, thread_name_prefix="feed")
    limiters = [make_rate_limiter(scope, rate, settings.session_store, settings.redis_url)
                for scope, rate in (("mutation", settings.mutation_rate_per_minute),
                                    ("feed", settings.feed_rate_per_minute),
                                    ("read", settings.read_rate_per_minute))]
    # Daily quotas hold across the host's workers and restarts: a file beside the
    # sessions' (or Redis, every host, when the sessions are there).
    limiters.append(make_daily_quota("poll", settings.poll_writes_per_day,
                                     settings.session_store, settings.redis_url,
                                     settings.sessions_db.parent))
    limiters.append(make_daily_quota("follow", settings.follow_changes_per_day,
                                     settings.session_store, settings.redis_url,
                                     settings.sessions_db.parent))
    # New documents are new to this worker's cache: counted by the worker, the whole
    # minute's worth at once (a fresh worker's first users bring the app's documents).
    limiters.append(LocalRateLimiter(settings.document_rate_per_minute,
                                     burst=settings.document_rate_per_minute))
    graphql_app = HunchGraphQL(schema, services_ref, authenticator, limiters[0],
                               settings.development, feed_executor, limiters[1], limiters[2],
                               limiters[3], limiters[4], limiters[5],
                               make_persisted_queries(settings.session_store,
                                                      settings.sessions_db.parent,
                                                      settings.redis_url))

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    # /readyz and /metrics: details for operators only in production (gateway/ops.py)
    ops_access = OpsAccess(settings, authenticator)

    async def readiness() -> dict[str, Any]:
        checks = await services_ref["services"].readiness()
        jwks = authenticator.readiness()
        if jwks is not None:
            # A worker that never obtained the identity provider's keys verifies no one.
            checks["jwks"] = jwks
            checks["ready"] = bool(checks["ready"] and jwks["ready"])
        return checks

    public_readiness = SharedReadiness(readiness)

    async def readyz(request: Request) -> Response:
        if await ops_access.allows(request.headers.get("authorization")):
            checks = await readiness()
        else:
            checks = {"ready": await public_readiness.ready()}
        return JSONResponse(checks, status_code=200 if checks["ready"] else 503)

    async def metrics_route(request: Request) -> Response:
        if not await ops_access.allows(request.headers.get("authorization")):
            return PlainTextResponse(
                "metrics are for operators: send 'Authorization: Bearer <HUNCH_OPS_TOKEN>' "
                "(or an admin token)\n", status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        # off the loop: with several workers it reads every worker's files of metrics
        body, content_type = await asyncio.to_thread(metrics.render)
        return PlainTextResponse(body, media_type=content_type)

    async def ping(request: Request) -> Response:
        """A trivial route: the baseline that the load benchmark compares with."""
        return PlainTextResponse("pong")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        if services_ref["services"] is None:
            services_ref["services"] = Services(settings)
        services_ref["services"]._loop = asyncio.get_running_loop()
        # The JWKS document's first fetch (bounded by its timeout; a failure leaves the
        # worker unready and retrying, gateway/jwks.py) runs off the event loop while
        # the models load.
        await asyncio.gather(services_ref["services"].start(),
                             asyncio.to_thread(authenticator.start))
        log.info("gateway ready", extra={"path": str(settings.home)})
        try:
            yield
        finally:
            await asyncio.to_thread(authenticator.close)
            feed_executor.shutdown(wait=True)  # in-flight pages finish before the stores close
            for limiter in limiters:
                with contextlib.suppress(Exception):  # shutting down anyway
                    await getattr(limiter, "close", _nothing)()
            with contextlib.suppress(Exception):  # soft state
                await graphql_app.persisted_queries.close()
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
    if settings.gzip_min_bytes:
        # Outside the body limit, so every answer (refusals too) goes compressed. Level 6:
        # level 9 saves 0.6 % more bytes of a feed page for 12 % more CPU. No secret is
        # ever in a body beside text a client chose (tokens travel in headers only, the
        # cursors are signed, not secret), so compression leaks nothing (BREACH).
        app.add_middleware(GZipMiddleware, minimum_size=settings.gzip_min_bytes,
                           compresslevel=GZIP_LEVEL)
    if settings.cors_origins:
        # Outside compression and the body limit, so that their answers (a 413, a
        # rate limit's Retry-After) reach the page too: a browser hides an answer
        # without CORS headers from the script that asked.
        app.add_middleware(CORSMiddleware, allow_origins=cors_origins(settings),
                           allow_methods=["POST", "GET"], allow_headers=CORS_HEADERS,
                           expose_headers=["Retry-After"], max_age=CORS_MAX_AGE_SECONDS)
    return app
