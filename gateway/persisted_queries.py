"""Automatic Persisted Queries (APQ), the protocol of Apollo Client's PersistedQueryLink
and urql's persistedExchange.

A client sends ``extensions: {persistedQuery: {version: 1, sha256Hash}}`` and, the
first time, no ``query``. When this worker knows the hash it runs the document stored
under it; else it answers the GraphQL error ``PersistedQueryNotFound`` (code
``PERSISTED_QUERY_NOT_FOUND``, HTTP 200 and ``Cache-Control: private, no-cache,
must-revalidate``, as Apollo Server does), and the client sends the request again with
the query and the hash. The hash must be the SHA-256 of that query (a client cannot put
one document under another's hash); the document is stored once it has parsed and passed
validation, so only documents that can run are kept.

The stored text then goes the way of any query: it is parsed, validated and prepared by
:class:`gateway.schema.PreparedDocuments`, so every limit on a document (tokens, depth,
aliases, width, the node budget, the per-user rate of new documents, authentication,
POST only) applies to it as to a document sent in full. A hash-only request for a
document the worker has prepared costs what a cached query costs.

Per worker, not shared through Redis: a worker that has not seen a hash costs the client
one more round trip for that document (the link resends it at once), and each worker
prepares its documents anyway (the prepared documents are per worker, and so is the
rate of new ones). An app sends a handful of documents, so with N workers a client pays
at most N extra round trips per document after a deploy; a Redis look-up would cost every
miss a round trip to Redis and the feed a dependency.

Documents are not secret: any signed-in user may run a document another user stored,
as they could by sending its text; it runs as the caller, with the caller's limits.

Bounded: at most ``max_entries`` documents and ``max_chars`` characters of text in all,
the least recently used dropped first, and no document over ``max_document_chars``
kept. A client registering millions of hashes only pushes other documents out (their
clients resend them, one round trip more); it pays the document rate for each.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from typing import Any

VERSION = 1
NOT_FOUND_MESSAGE = "PersistedQueryNotFound"
NOT_FOUND_CODE = "PERSISTED_QUERY_NOT_FOUND"
# Apollo Server's header on the not-found answer: a cache must not keep it.
NOT_FOUND_HEADERS = {"cache-control": "private, no-cache, must-revalidate"}

# Documents one worker keeps by hash: an app has a handful, internal tools a few more.
PERSISTED_QUERIES_MAX_ENTRIES = 1_000
# Characters of document text in all (a feed document is ~200; ~4 MB of text at worst,
# four bytes a character, plus ~250 bytes of bookkeeping per entry).
PERSISTED_QUERIES_MAX_CHARS = 1_000_000
# A longer document is run but not kept: its client sends it in full each time (two
# round trips). A document of max_query_tokens tokens is a few KB.
PERSISTED_QUERY_MAX_DOCUMENT_CHARS = 64 * 1024

_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


class PersistedQueryError(Exception):
    """A persisted-query request refused before GraphQL runs: ``status`` and ``code``
    of the GraphQL-shaped answer (see gateway.app.graphql_error_response)."""

    def __init__(self, status: int, message: str, code: str,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers = headers or {}


def requested_hash(extensions: Any) -> str | None:
    """The hash a request's ``extensions`` names (lower case), None when it names none,
    or :class:`PersistedQueryError` (400) for a malformed ``persistedQuery``."""
    if not isinstance(extensions, dict) or "persistedQuery" not in extensions:
        return None
    persisted = extensions["persistedQuery"]
    if persisted is None:
        return None
    if not isinstance(persisted, dict):
        raise PersistedQueryError(
            400, "extensions.persistedQuery must be an object: "
                 '{"version": 1, "sha256Hash": "<64 hex digits>"}', "BAD_REQUEST")
    version = persisted.get("version")
    if version != VERSION or isinstance(version, bool):
        raise PersistedQueryError(
            400, f"unsupported persisted query version {str(version)[:20]!r}: "
                 f"only version {VERSION} is supported", "BAD_REQUEST")
    digest = persisted.get("sha256Hash")
    if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest):
        raise PersistedQueryError(
            400, "extensions.persistedQuery.sha256Hash must be a string of 64 hex digits "
                 "(the SHA-256 of the query)", "BAD_REQUEST")
    return digest.lower()


def sha256_hex(query: str) -> str:
    # surrogatepass: a lone surrogate is refused when the body is decoded, never here
    return hashlib.sha256(query.encode("utf-8", "surrogatepass")).hexdigest()


class PersistedQueries:
    """The documents this worker knows by hash: a bounded LRU (module docstring)."""

    def __init__(self, max_entries: int = PERSISTED_QUERIES_MAX_ENTRIES,
                 max_chars: int = PERSISTED_QUERIES_MAX_CHARS,
                 max_document_chars: int = PERSISTED_QUERY_MAX_DOCUMENT_CHARS):
        self.max_entries = max_entries
        self.max_chars = max_chars
        self.max_document_chars = max_document_chars
        self._documents: OrderedDict[str, str] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._documents)

    @property
    def chars(self) -> int:
        return self._chars

    def get(self, digest: str) -> str | None:
        with self._lock:
            query = self._documents.get(digest)
            if query is not None:
                self._documents.move_to_end(digest)
            return query

    def put(self, digest: str, query: str) -> bool:
        """Keep ``query`` under ``digest`` (which the caller checked is its hash);
        False when it is too long to keep."""
        if len(query) > self.max_document_chars:
            return False
        with self._lock:
            if digest in self._documents:
                self._documents.move_to_end(digest)
                return True
            self._documents[digest] = query
            self._chars += len(query)
            while self._documents and (len(self._documents) > self.max_entries
                                       or self._chars > self.max_chars):
                _, dropped = self._documents.popitem(last=False)
                self._chars -= len(dropped)
            return True

    def resolve(self, query: str | None, extensions: Any) -> tuple[str | None, str | None]:
        """``(query to run, hash to store it under once it validates)`` for a request's
        ``query`` and ``extensions``; raises :class:`PersistedQueryError` for a hash
        this worker does not know (the client resends with the query), a malformed
        ``persistedQuery``, or a query whose SHA-256 is not the hash."""
        digest = requested_hash(extensions)
        if digest is None:
            return query, None
        if query is None:
            found = self.get(digest)
            if found is None:
                raise PersistedQueryError(200, NOT_FOUND_MESSAGE, NOT_FOUND_CODE,
                                          NOT_FOUND_HEADERS)
            return found, None
        if sha256_hex(query) != digest:
            raise PersistedQueryError(
                400, "extensions.persistedQuery.sha256Hash is not the SHA-256 of the query "
                     "(hex of the UTF-8 query text as sent)", "BAD_REQUEST")
        if self.get(digest) is not None:
            return query, None  # known already (and just marked recently used)
        return query, digest
