"""The persisted-query store's bounds (gateway/persisted_queries.py): a client that
registers hashes in bulk must not grow a worker, or the host's shared file, without end."""

from __future__ import annotations

import asyncio
import socket
import tracemalloc

import pytest

from gateway.persisted_queries import (
    PersistedQueries,
    PersistedQueryError,
    RedisSharedDocuments,
    SQLiteSharedDocuments,
    sha256_hex,
)


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


def test_the_hosts_shared_file_keeps_the_newest_registrations(tmp_path):
    async def scenario():
        shared = SQLiteSharedDocuments(tmp_path / "apq.sqlite3", max_entries=50)
        other = SQLiteSharedDocuments(tmp_path / "apq.sqlite3", max_entries=50)
        for k in range(200):
            await shared.put(*doc(k))
        await shared.put(*doc(199))  # again: no second row
        assert await other.get(doc(199)[0]) == doc(199)[1]  # another worker reads it
        assert await other.get(doc(149)[0]) is None and await other.get(doc(150)[0])
        conn = shared._connection()
        assert conn.execute("SELECT COUNT(*) FROM persisted_queries").fetchone() == (50,)
        await shared.close()
        await other.close()

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
