"""The Neo4j bulk load of follows beyond the shared contract: what it does when a user
it merged is deleted before its follows are written. The load finds endpoints by the
element ids the merge returned, and Neo4j may reuse the element id of a deleted node.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from neo4j import AsyncGraphDatabase

from graph.neo4j_store import Neo4jGraphStore, UsersVanished
from graph.server import Neo4jSettings
from graph.store import Follow
from tests.graph.test_store_contract import _clean_neo4j

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def neo() -> AsyncIterator[Neo4jGraphStore]:
    store = await _clean_neo4j()
    try:
        yield store
    finally:
        await store.close()


async def _delete_user(user_id: str) -> None:
    settings = Neo4jSettings()
    async with AsyncGraphDatabase.driver(
            settings.uri, auth=(settings.user, settings.password)) as raw:
        await raw.execute_query("MATCH (u:User {id: $id}) DETACH DELETE u", id=user_id)


@pytest.mark.neo4j
@pytest.mark.parametrize("deleted", ["cat", "bob"], ids=["follower", "followee"])
async def test_a_user_deleted_during_the_load_fails_it_and_writes_nothing(
        neo: Neo4jGraphStore, deleted: str, monkeypatch: pytest.MonkeyPatch) -> None:
    merge = neo._merge_users

    async def merge_then_delete(user_ids):  # the race, made certain
        element_ids = await merge(user_ids)
        await _delete_user(deleted)
        return element_ids

    monkeypatch.setattr(neo, "_merge_users", merge_then_delete)
    with pytest.raises(UsersVanished, match="run the upsert again"):
        await neo.upsert_follows([Follow("ann", "bob", 1), Follow("cat", "bob", 2)])
    assert (await neo.counts())["follows"] == 0

    monkeypatch.undo()
    assert await neo.upsert_follows([Follow("ann", "bob", 1), Follow("cat", "bob", 2)]) == 2
    assert await neo.followers("bob") == ["ann", "cat"]
