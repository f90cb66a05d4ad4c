"""Automatic Persisted Queries (APQ), the protocol of Apollo Client's PersistedQueryLink
and urql's persistedExchange.

A client sends ``extensions: {persistedQuery: {version: 1, sha256Hash}}`` and, the
first time, no ``query``. When the hash is known it runs the document stored under
it; else it answers the GraphQL error ``PersistedQueryNotFound`` (code
``PERSISTED_QUERY_NOT_FOUND``, HTTP 200 and ``Cache-Control: private, no-cache,
must-revalidate``, as Apollo Server does), and the client sends the request again with
the query and the hash. The hash must be the SHA-256 of that query (a client cannot put
one document under another's hash); the document is stored once it has parsed and passed
validation, so only documents that can run are kept.

The stored text then goes the way of any query: it is parsed, validated and prepared by
:class:`gateway.schema.PreparedDocuments`, so every limit on a document (tokens, depth,
aliases, width, the node budget, the per-user rate of new documents, authentication,
mutations by POST only) applies to it as to a document sent in full. A hash-only request for a
document the worker has prepared costs what a cached query costs.

Two tiers. Each worker keeps the documents it has used in a bounded LRU, which answers
almost every request. Behind it the host's workers share what was registered: a SQLite
file beside the feed sessions' (``<home>/persisted-queries.sqlite3`` unless
``HUNCH_SESSIONS_PATH`` puts them elsewhere), or Redis, every host alike, when the feed
sessions are in Redis (``HUNCH_SESSION_STORE=redis``); the shared tier is read only on a
worker's miss and written once per registration. Per worker alone was not enough: Node's
fetch (undici) sent the link's hash-only requests on one pooled connection and its
resends on another, so with two workers one worker stored every document and the other
was asked every hash; in one run of four, every operation took two round trips, for
good. A failing shared tier only costs round trips: its errors are misses.

Documents are not secret: any signed-in user may run a document another user stored,
as they could by sending its text; it runs as the caller, with the caller's limits.

Bounded: a worker keeps at most ``max_entries`` documents and ``max_chars`` characters
of text in all, the least recently used dropped first, and no document over
``max_document_chars``. The shared tier keeps the SHARED_MAX_ENTRIES latest
registrations of at most SHARED_MAX_DOCUMENT_BYTES each (SQLite and Redis alike). A
client registering hashes in bulk pays the document rate (HUNCH_DOCUMENT_RATE_PER_MINUTE)
for each and only pushes other documents out (their clients resend them: one round trip
more).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import sqlite3
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Protocol

from gateway import metrics

log = logging.getLogger(__name__)

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

# Registrations shared in SQLite or Redis, the most recently registered kept, and the
# longest document shared (UTF-8 bytes; a longer one stays in its worker): 32 MB at
# worst, some hundreds of KB for an app's real documents (a few KB each).
SHARED_MAX_ENTRIES = 2_000
SHARED_MAX_DOCUMENT_BYTES = 16 * 1024
REDIS_TIMEOUT_SECONDS = 0.2  # as the rate limiter's: a hung Redis must not stall requests
SHARED_RETRY_SECONDS = 5.0  # after a failure, the shared tier is left alone this long

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
                 max_document_chars: int = PERSISTED_QUERY_MAX_DOCUMENT_CHARS,
                 shared: SharedDocuments | None = None):
        self.shared = shared
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

    async def lookup(self, digest: str) -> str | None:
        """The document stored under ``digest``: this worker's, else the shared tier's
        (then kept here too), else None."""
        query = self.get(digest)
        if query is None and self.shared is not None:
            query = await self.shared.get(digest)
            # what another process wrote is checked as a client's registration is
            if query is not None and sha256_hex(query) == digest:
                self.put(digest, query)
            else:
                query = None
        return query

    async def register(self, digest: str, query: str) -> None:
        """Keep a validated document here and in the shared tier."""
        if (self.put(digest, query) and self.shared is not None
                and len(query.encode("utf-8", "surrogatepass")) <= SHARED_MAX_DOCUMENT_BYTES):
            await self.shared.put(digest, query)

    async def resolve(self, query: str | None, extensions: Any
                      ) -> tuple[str | None, str | None]:
        """``(query to run, hash to store it under once it validates)`` for a request's
        ``query`` and ``extensions``; raises :class:`PersistedQueryError` for a hash
        no tier knows (the client resends with the query), a malformed
        ``persistedQuery``, or a query whose SHA-256 is not the hash."""
        digest = requested_hash(extensions)
        if digest is None:
            return query, None
        if query is None:
            found = await self.lookup(digest)
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

    async def close(self) -> None:
        if self.shared is not None:
            await self.shared.close()


class SharedDocuments(Protocol):
    async def get(self, digest: str) -> str | None: ...

    async def put(self, digest: str, query: str) -> None: ...

    async def close(self) -> None: ...


class _Failures:
    """Errors of a shared tier are misses: counted, logged once per outage, and the
    tier left alone SHARED_RETRY_SECONDS after one."""

    def __init__(self, name: str):
        self.name = name
        self.failed_at: float | None = None

    def resting(self) -> bool:
        return (self.failed_at is not None
                and time.monotonic() - self.failed_at < SHARED_RETRY_SECONDS)

    def failed(self, exc: BaseException) -> None:
        if self.failed_at is None:
            log.warning("persisted queries: the shared %s tier failed (%s); this "
                        "worker's own documents answer meanwhile", self.name, exc)
        self.failed_at = time.monotonic()
        metrics.FALLBACKS.labels(f"persisted-queries-{self.name}", type(exc).__name__).inc()

    def ok(self) -> None:
        self.failed_at = None


class SQLiteSharedDocuments:
    """Registrations shared by the workers of one host, in a SQLite file of their own
    (soft state: deleting it costs clients one round trip per document)."""

    def __init__(self, path: str | Path, max_entries: int = SHARED_MAX_ENTRIES):
        self.path = Path(path)
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._failures = _Failures("sqlite")

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            from recsys.sqlite_wal import enable_wal

            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=1.0, check_same_thread=False,
                                   isolation_level=None)
            enable_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("CREATE TABLE IF NOT EXISTS persisted_queries ("
                         "sha256 TEXT PRIMARY KEY, query TEXT NOT NULL, "
                         "stored INTEGER NOT NULL)")
            conn.execute("CREATE INDEX IF NOT EXISTS persisted_queries_stored "
                         "ON persisted_queries (stored)")
            self._conn = conn
        return self._conn

    def _get(self, digest: str) -> str | None:
        with self._lock:
            row = self._connection().execute(
                "SELECT query FROM persisted_queries WHERE sha256 = ?", (digest,)).fetchone()
        return None if row is None else row[0]

    def _put(self, digest: str, query: str) -> None:
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                # `stored` counts up: the latest registrations are kept
                conn.execute(
                    "INSERT INTO persisted_queries (sha256, query, stored) "
                    "VALUES (?, ?, (SELECT COALESCE(MAX(stored), 0) + 1 "
                    "FROM persisted_queries)) "
                    "ON CONFLICT (sha256) DO UPDATE SET stored = excluded.stored",
                    (digest, query))
                conn.execute(
                    "DELETE FROM persisted_queries WHERE stored <= "
                    "(SELECT MAX(stored) FROM persisted_queries) - ?", (self.max_entries,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    async def get(self, digest: str) -> str | None:
        if self._failures.resting():
            return None
        try:
            found = await asyncio.to_thread(self._get, digest)
        except sqlite3.Error as exc:
            self._failures.failed(exc)
            return None
        self._failures.ok()
        return found

    async def put(self, digest: str, query: str) -> None:
        if self._failures.resting():
            return
        try:
            await asyncio.to_thread(self._put, digest, query)
        except sqlite3.Error as exc:
            self._failures.failed(exc)
            return
        self._failures.ok()

    async def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


# Keeps a document and drops the least recently registered past ARGV[4] (one script:
# atomic, one round trip). A hash of documents and a sorted set of when each was
# registered, both in one slot (the braces) for Redis Cluster.
_REGISTER = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if over > 0 then
  local dropped = redis.call('ZRANGE', KEYS[2], 0, over - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, over - 1)
  redis.call('HDEL', KEYS[1], unpack(dropped))
end
return over
"""
REDIS_DOCUMENTS_KEY = "hunch:{apq}:documents"
REDIS_ORDER_KEY = "hunch:{apq}:registered"


class RedisSharedDocuments:
    """Registrations shared by every worker of every host: the latest
    ``max_entries`` kept, in one Redis hash and one sorted set."""

    def __init__(self, url: str, max_entries: int = SHARED_MAX_ENTRIES):
        self.url = url
        self.max_entries = max_entries
        self._client = None  # made in the event loop that uses it (redis.asyncio)
        self._register = None
        self._failures = _Failures("redis")

    def _redis(self):
        if self._client is None:
            import redis.asyncio as redis

            self._client = redis.Redis.from_url(
                self.url, socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS)
            self._register = self._client.register_script(_REGISTER)
        return self._client

    async def get(self, digest: str) -> str | None:
        from redis.exceptions import RedisError

        if self._failures.resting():
            return None
        try:
            value = await self._redis().hget(REDIS_DOCUMENTS_KEY, digest)
        except (RedisError, OSError) as exc:
            self._failures.failed(exc)
            return None
        self._failures.ok()
        return None if value is None else value.decode("utf-8", "replace")

    async def put(self, digest: str, query: str) -> None:
        from redis.exceptions import RedisError

        if self._failures.resting():
            return
        try:
            self._redis()
            await self._register(keys=[REDIS_DOCUMENTS_KEY, REDIS_ORDER_KEY],
                                 args=[digest, query.encode("utf-8", "surrogatepass"),
                                       time.time(), self.max_entries])
        except (RedisError, OSError) as exc:
            self._failures.failed(exc)
            return
        self._failures.ok()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
            self._register = None


def make_persisted_queries(session_store: str, directory: Path, redis_url: str
                           ) -> PersistedQueries:
    """This worker's documents, shared as the feed sessions are: through Redis when
    they are (every host), else through a SQLite file beside the host's sessions."""
    shared: SharedDocuments = (RedisSharedDocuments(redis_url) if session_store == "redis"
                               else SQLiteSharedDocuments(directory / "persisted-queries.sqlite3"))
    return PersistedQueries(shared=shared)
