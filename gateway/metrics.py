"""Prometheus metrics of the gateway (served at /metrics).

With several uvicorn workers and HUNCH_METRICS_ACROSS_WORKERS=true every worker's
numbers are collected (prometheus-client's multiprocess mode): ``hunch serve --workers
N`` sets PROMETHEUS_MULTIPROC_DIR to an empty directory under HUNCH_HOME unless the
environment names one. Otherwise each worker reports its own.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from graphql import FieldNode, OperationDefinitionNode
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from strawberry.extensions import SchemaExtension

from recsys.refresher import RefreshHealth

# Buckets around the feed's goals (p99 of 10 ms in process, 50 ms over HTTP).
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

OPERATION_LATENCY = Histogram(
    "hunch_graphql_operation_seconds", "GraphQL operation latency by root field",
    ["operation"], buckets=_LATENCY_BUCKETS)
SOURCE_LATENCY = Histogram(
    "hunch_recipe_source_seconds", "Latency of each candidate source during a feed page",
    ["source"], buckets=_LATENCY_BUCKETS)
FALLBACKS = Counter(
    "hunch_fallbacks_total", "Times a source failed and a fallback served instead",
    ["source", "reason"])
EVENTS_INGESTED = Counter(
    "hunch_events_ingested_total", "Events stored (new, after de-duplication)", ["kind"])
EVENTS_NOT_FORWARDED = Counter(
    "hunch_events_not_forwarded_total",
    "Stored events not sent to Amazon Personalize (repeat: a user's same type on a poll again)",
    ["reason"])
IMPRESSIONS_NOT_FORWARDED = Counter(
    "hunch_impressions_not_forwarded_total",
    "Poll ids of stored impression lists left out of what Amazon Personalize was sent "
    "(PutEvents takes 25 an event; the 25 up to the poll acted on are sent)")
EVENTS_NOT_FOLDED_IN = Counter(
    "hunch_events_not_folded_in_total",
    "Stored events a live model rejected while catching up (they count from its next training)",
    ["recipe"])
ERRORS = Counter("hunch_graphql_errors_total", "GraphQL errors by code", ["code"])
# Per worker (multiprocess mode keeps one series per pid): one worker's refresher can
# fail while the others' do not.
# With several workers (multiprocess mode) a gauge is one number across the live ones:
# the stalest worker's last success and the worst one's failures, what an alert wants.
REFRESH_LAST_SUCCESS = Gauge(
    "hunch_refresh_last_success_timestamp_seconds",
    "Unix time a refresh task (catalog, models, follows) last caught up with the store", ["task"],
    multiprocess_mode="livemin")
REFRESH_FAILURES = Gauge(
    "hunch_refresh_consecutive_failures",
    "Failures in a row of a refresh task (0 when it is caught up)", ["task"],
    multiprocess_mode="livemax")


def observe_refresh(health: RefreshHealth) -> None:
    """Publish a refresh task's health (the refresher calls this after every try)."""
    REFRESH_FAILURES.labels(health.task).set(health.consecutive_failures)
    if health.last_success is not None:
        REFRESH_LAST_SUCCESS.labels(health.task).set(health.last_success)


class OperationLatency(SchemaExtension):
    """Observes each operation's latency under its first root field's name.

    Read from the document strawberry already parsed (the body is not decoded a
    second time). A document that did not parse or validate is labelled "unknown": its
    field names are whatever the client wrote, and labels must stay a bounded set.
    """

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        context = self.execution_context
        operation = "unknown" if context.pre_execution_errors else _root_field(
            context.graphql_document)
        OPERATION_LATENCY.labels(operation).observe(time.perf_counter() - started)


def _root_field(document: object) -> str:
    for definition in getattr(document, "definitions", ()):
        if isinstance(definition, OperationDefinitionNode):
            for selection in definition.selection_set.selections:
                if isinstance(selection, FieldNode):
                    return selection.name.value
    return "unknown"


def render() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
