"""The persisted-query store's bounds (gateway/persisted_queries.py): a client that
registers hashes in bulk must not grow a worker, or the host's shared file, without end."""

from __future__ import annotations

import asyncio
import socket
import tracemalloc

import pytest

from gateway.persisted_queries import (
    SHARED_MAX_DOCUMENT_BYTES,
    PersistedQueries,
    PersistedQueryError,
    RedisSharedDocuments,
    SQLiteSharedDocuments,
    sha256_hex,
)
from tests.integration.test_redis_sessions import redis_url  # noqa: F401 (fixture)


def doc(k: int, pad: int = 0) -> tuple[str, str]:
    query = f"query Q{k} {{ me {{ id }} }}" + " " * pad
    return sha256_hex(query), query


def test_a_worker_keeps_a_bounded_number_of_documents_and_characters():
    store = PersistedQueries(max_entries=100, max_chars=5_000, max_document_chars=1_000)
    for k in range(1_000):
        store.put(*doc(k))
    assert len(store) == 100 and store.get(doc(0)[0]) is None and store.get(doc(999)[0])
    store.get(doc(900)[0])  # used: kept over newer ones
    for k in range(1_000, 1_099):
        store.put(*doc(k))
    assert store.get(doc(900)[0]) is not None and store.get(doc(901)[0]) is None
    big = PersistedQueries(max_entries=100, max_chars=5_000, max_document_chars=1_000)
    for k in range(50):
        big.put(*doc(k, pad=900))
    assert big.chars <= 5_000 and len(big) == 5
    assert not big.put(*doc(99, pad=2_000)) and big.get(doc(99, pad=2_000)[0]) is None


def test_a_flood_of_hashes_leaves_a_worker_at_its_bound():
    """200,000 registrations of distinct documents (more than a client can send: the
    document rate stops it first) leave the default store at 1,000 entries."""
    store = PersistedQueries()
    tracemalloc.start()
    try:
        for k in range(200_000):
            store.put(*doc(k))
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(store) == 1_000
    assert current < 2_000_000, current  # ~0.3 MB for 1,000 short documents


async def _keeps_the_latest(shared, other, count) -> None:
    for k in range(200):
        await shared.put(*doc(k))
    await shared.put(*doc(150))  # registered again: now the latest, not a second entry
    await shared.put(*doc(200))  # pushes out the least recently registered: 151
    assert await other.get(doc(200)[0]) == doc(200)[1]  # another worker reads it
    assert await other.get(doc(150)[0]) == doc(150)[1]
    assert await other.get(doc(151)[0]) is None and await other.get(doc(149)[0]) is None
    assert await other.get(doc(152)[0]) == doc(152)[1]
    assert await count() == 50


def test_the_hosts_shared_file_keeps_the_latest_registrations(tmp_path):
    async def scenario():
        shared = SQLiteSharedDocuments(tmp_path / "apq.sqlite3", max_entries=50)
        other = SQLiteSharedDocuments(tmp_path / "apq.sqlite3", max_entries=50)

        async def count():
            return shared._connection().execute(
                "SELECT COUNT(*) FROM persisted_queries").fetchone()[0]

        await _keeps_the_latest(shared, other, count)
        await shared.close()
        await other.close()

    asyncio.run(scenario())


def test_redis_keeps_the_latest_registrations(redis_url):  # noqa: F811
    import redis

    from gateway.persisted_queries import REDIS_DOCUMENTS_KEY, REDIS_ORDER_KEY

    redis.Redis.from_url(redis_url).delete(REDIS_DOCUMENTS_KEY, REDIS_ORDER_KEY)

    async def scenario():
        shared = RedisSharedDocuments(redis_url, max_entries=50)
        other = RedisSharedDocuments(redis_url, max_entries=50)

        async def count():
            client = shared._redis()
            return max(await client.hlen(REDIS_DOCUMENTS_KEY),
                       await client.zcard(REDIS_ORDER_KEY))

        await _keeps_the_latest(shared, other, count)
        await shared.close()
        await other.close()

    asyncio.run(scenario())


def test_only_documents_of_bounded_size_are_shared(tmp_path):
    async def scenario():
        shared = SQLiteSharedDocuments(tmp_path / "apq.sqlite3")
        store = PersistedQueries(shared=shared)
        small, large = doc(1), doc(2, pad=SHARED_MAX_DOCUMENT_BYTES)
        await store.register(*small)
        await store.register(*large)
        assert store.get(large[0]) == large[1]  # this worker keeps it ...
        assert await shared.get(large[0]) is None  # ... the host does not
        assert await shared.get(small[0]) == small[1]
        await store.close()

    asyncio.run(scenario())


def test_a_shared_document_is_checked_against_its_hash(tmp_path):
    """What another process wrote under a hash is run only if it is that hash's
    document (a file edited, or a bug): else the client is asked to send it."""
    async def scenario():
        shared = SQLiteSharedDocuments(tmp_path / "apq.sqlite3")
        digest, _ = doc(1)
        await shared.put(digest, "mutation Evil { unfollow(userId: \"u1\") { __typename } }")
        store = PersistedQueries(shared=shared)
        with pytest.raises(PersistedQueryError) as refused:
            await store.resolve(None, {"persistedQuery": {"version": 1, "sha256Hash": digest}})
        assert refused.value.code == "PERSISTED_QUERY_NOT_FOUND"
        await store.close()

    asyncio.run(scenario())


def test_an_unreachable_redis_is_a_miss_not_a_failure():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there

    async def scenario():
        store = PersistedQueries(shared=RedisSharedDocuments(f"redis://127.0.0.1:{port}/0"))
        digest, query = doc(1)
        await store.register(digest, query)  # kept by the worker, Redis's error swallowed
        assert await store.lookup(digest) == query
        assert await store.lookup(doc(2)[0]) is None
        await store.close()

    asyncio.run(scenario())
