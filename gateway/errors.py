"""Stable error codes for every GraphQL error, and masking.

Each typed error maps to one ``extensions.code``. Errors that are not the client's fault
(bugs, and the engine's own failures: the event store, a model, configuration) are
logged with their traceback and reach the client only as "Unexpected error." with code
INTERNAL_SERVER_ERROR: no stack traces or internal messages to clients.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Iterator

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from gateway.auth import Forbidden, Unauthorized
from gateway.query_cost import ResponseTooLarge
from graph.errors import GraphUnavailable, InvalidGraphData, UnknownUser
from recsys.errors import HunchError, InvalidEvent, NotPollAuthor
from recsys.store_db import StoreUnavailable  # every shared store's, the event store's too
from recsys.feed import InvalidPageSize, PageSizeExceeded
from recsys.feed_sessions import ExpiredCursor, InvalidCursor
from recsys.filters import (
    FilterAlreadyExists,
    InvalidCatalogRecord,
    InvalidFilterExpression,
    UnknownFilter,
)
from recsys.filters.compiler import FilterNotApplicable, InvalidFilterValues
from recsys.filters.store import InvalidFilterName
from recsys.promotions import InvalidPromotion, PromotionAlreadyExists, UnknownPromotion

log = logging.getLogger("gateway.errors")


class RateLimited(HunchError):
    """Too many requests of one kind from one user in a short time; ``retry_after`` is
    when (seconds) the limiter will take the next one."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


# The engine's errors that a request can cause (what it names, the client can fix). Any
# other engine error (EventStoreError, CorruptArtifact, NotFitted, ...) is not the
# client's fault: it is masked like a bug. A new user-input error is added here.
USER_INPUT_ERRORS: tuple[type[BaseException], ...] = (
    InvalidEvent, InvalidCatalogRecord,
    InvalidFilterExpression, InvalidFilterValues, FilterNotApplicable, UnknownFilter,
    InvalidFilterName, FilterAlreadyExists,
    InvalidPromotion, UnknownPromotion, PromotionAlreadyExists,
    UnknownUser, InvalidGraphData, InvalidPageSize,  # first: 0 or below
)

# Most specific first: the first matching class decides the code.
ERROR_CODES: list[tuple[type[BaseException] | tuple[type[BaseException], ...], str]] = [
    (Unauthorized, "UNAUTHENTICATED"),
    (Forbidden, "FORBIDDEN"),
    (NotPollAuthor, "FORBIDDEN"),
    (RateLimited, "RATE_LIMITED"),
    (ExpiredCursor, "CURSOR_EXPIRED"),
    (InvalidCursor, "INVALID_CURSOR"),
    (PageSizeExceeded, "PAGE_SIZE_EXCEEDED"),
    (ResponseTooLarge, "RESPONSE_TOO_LARGE"),
    (GraphUnavailable, "GRAPH_UNAVAILABLE"),
    (StoreUnavailable, "STORE_UNAVAILABLE"),
    (USER_INPUT_ERRORS, "BAD_USER_INPUT"),
]

# Typed codes that are not the client's doing: a store or the graph is down.
OUTAGE_CODES = frozenset({"STORE_UNAVAILABLE", "GRAPH_UNAVAILABLE"})

# Codes whose message names internals (a database host): the client gets this instead.
PUBLIC_MESSAGES = {
    "STORE_UNAVAILABLE": "The event store is unavailable; retry in a moment (a repeated "
                         "event is stored once).",
}

# Messages can echo the client's input (an id, a filter name): a 60 KB id is not sent
# back whole. Our own messages are one line, well under this.
MAX_ERROR_MESSAGE_CHARS = 300

# graphql-core's " Did you mean 'createPromotion'?" names fields the caller may not see.
_SUGGESTION = re.compile(r" Did you mean [^?]*\?")


def clip_message(message: str) -> str:
    if len(message) <= MAX_ERROR_MESSAGE_CHARS:
        return message
    return message[:MAX_ERROR_MESSAGE_CHARS] + f"... ({len(message)} characters)"


def code_for(error: GraphQLError) -> tuple[str, bool]:
    """(code, mask?) for one error."""
    original = error.original_error
    if original is None:
        # Raised by graphql-core itself: parse and validation failures (depth, aliases,
        # tokens, unknown fields, bad variables, the node budget of query_cost.py).
        # Their messages are safe to show.
        if "Syntax Error" in error.message or "exceeds the maximum" in error.message.lower():
            return "GRAPHQL_PARSE_FAILED", False
        return "GRAPHQL_VALIDATION_FAILED", False
    if isinstance(original, GraphQLError):
        return code_for(original)
    for cls, code in ERROR_CODES:
        if isinstance(original, cls):
            return code, False
    return "INTERNAL_SERVER_ERROR", True


# Tracebacks one request may log: a bug hit on every node of a page is one bug.
MAX_LOGGED_FAULTS = 3


def log_errors(errors: list[GraphQLError]) -> None:
    """The log of a request's errors (strawberry's ``Schema.process_errors``): a bug or an
    engine failure at ERROR with its traceback (at most :data:`MAX_LOGGED_FAULTS`, each
    outage code once); a client's mistakes (a bad cursor, a rate limit, a forbidden
    field) in one INFO line for the whole request, since clients make them all day: a
    traceback each (~2 KB) buried the real faults, and a line each let one 493-byte
    document of 120 unknown fields write 100 lines (17 KB) a request, ~10 ms apiece."""
    faults = 0
    outages: set[str] = set()
    mistakes: list[tuple[str, GraphQLError]] = []
    for error in errors:
        code, mask = code_for(error)
        if mask:
            faults += 1
            if faults <= MAX_LOGGED_FAULTS:
                log.error("unexpected error in %s", error.path, exc_info=error.original_error)
        elif code in OUTAGE_CODES:  # typed for the client, but ours to fix: alerting reads these
            if code not in outages:
                outages.add(code)
                log.error("%s at %s: %s", code, error.path, clip_message(error.message))
        else:
            mistakes.append((code, error))
    if faults > MAX_LOGGED_FAULTS:
        log.error("... and %d more unexpected errors in this request", faults - MAX_LOGGED_FAULTS)
    if mistakes:
        code, first = mistakes[0]
        first_line = clip_message(first.message).split("\n", 1)[0]
        more = ""
        if len(mistakes) > 1:
            counts = Counter(c for c, _ in mistakes[1:])
            more = f" (and {len(mistakes) - 1} more: " + ", ".join(
                f"{c} x{n}" for c, n in counts.most_common()) + ")"
        log.info("client error %s at %s: %s%s", code, first.path, first_line, more)


def retry_after_seconds(seconds: float) -> int:
    """A wait in whole seconds, rounded up and at least 1 (0 would invite a retry loop)."""
    return max(1, math.ceil(seconds))


class ErrorCodes(SchemaExtension):
    """Gives every error a code and masks the unexpected ones."""

    hide_suggestions = False

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is None or not getattr(result, "errors", None):
            return
        processed = []
        for error in result.errors:
            code, mask = code_for(error)
            if mask:  # logged, with its traceback, by log_errors
                error = GraphQLError("Unexpected error.", nodes=error.nodes,
                                     positions=error.positions, path=error.path,
                                     extensions={"code": code})
            else:
                message = PUBLIC_MESSAGES.get(code) or clip_message(error.message)
                if self.hide_suggestions:
                    message = _SUGGESTION.sub("", message)
                extensions = {**(error.extensions or {}), "code": code}
                if getattr(error.original_error, "retryable", False):
                    extensions["retryable"] = True  # the client may send it again
                retry_after = getattr(error.original_error, "retry_after", None)
                if retry_after is not None:  # whole seconds, as HTTP's Retry-After
                    extensions["retryAfter"] = retry_after_seconds(retry_after)
                error = GraphQLError(message, nodes=error.nodes, positions=error.positions,
                                     path=error.path, extensions=extensions)
            _count(code)
            processed.append(error)
        result.errors = processed


class ProductionErrorCodes(ErrorCodes):
    """Production: no "Did you mean ...?" (suggestions reveal fields a caller may not see)."""

    hide_suggestions = True


def _count(code: str) -> None:
    from gateway import metrics

    metrics.ERRORS.labels(code).inc()


class ResponseExtensions(SchemaExtension):
    """Adds ``extensions.degraded`` when part of the answer was served without a
    dependency (e.g. the follower graph)."""

    def get_results(self) -> dict:
        context = self.execution_context.context
        degraded = context.get("degraded") if isinstance(context, dict) else None
        return {"degraded": sorted(set(degraded))} if degraded else {}
