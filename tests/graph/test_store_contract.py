"""One contract for every GraphStore: the in-memory store and Neo4j behave the same.

The ``neo4j`` parameter talks to the server at HUNCH_NEO4J_URI (start one with
``bash scripts/neo4j-for-tests.sh start``); without one it skips locally and fails in CI.
Each Neo4j test starts from an empty database.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
from neo4j import AsyncGraphDatabase
from neo4j.exceptions import ConstraintError

from graph.errors import GraphUnavailable, InvalidGraphData, UnknownUser
from graph.memory_store import InMemoryGraphStore
from graph.neo4j_store import Neo4jGraphStore
from graph.server import Neo4jSettings
from graph.store import Engagement, Follow, GraphStore, Labels, PollAuthorship
from tests.conftest import require_or_skip

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _clean_neo4j() -> Neo4jGraphStore:
    """A store on an empty database with its schema, or a skip (a failure in CI)."""
    settings = Neo4jSettings()
    neo = Neo4jGraphStore(settings.uri, settings.user, settings.password)
    try:
        await neo.counts()
    except GraphUnavailable as exc:
        await neo.close()
        require_or_skip(False, f"no Neo4j for the graph store tests: {exc}")
    auth = (settings.user, settings.password)
    async with AsyncGraphDatabase.driver(settings.uri, auth=auth) as raw:
        await raw.execute_query("MATCH (n) DETACH DELETE n")
    await neo.ensure_schema()
    return neo


@pytest.fixture(params=["memory", pytest.param("neo4j", marks=pytest.mark.neo4j)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[GraphStore]:
    if request.param == "memory":
        yield InMemoryGraphStore()
        return
    neo = await _clean_neo4j()
    try:
        yield neo
    finally:
        await neo.close()


def _follow_graph(users: int, follows: int, seed: int = 7) -> list[Follow]:
    rng = random.Random(seed)
    pairs: dict[tuple[str, str], Follow] = {}
    while len(pairs) < follows:
        a, b = rng.sample(range(users), 2)
        pairs[(f"u{a}", f"u{b}")] = Follow(f"u{a}", f"u{b}", 1_700_000_000 + len(pairs))
    return list(pairs.values())


async def test_ensure_schema_can_run_again_and_users_stay_unique(store: GraphStore) -> None:
    assert isinstance(store, GraphStore)
    await store.ensure_schema()
    await store.ensure_schema()
    assert await store.upsert_users(["ann", "bob", "ann"]) == 2
    assert await store.upsert_users(["ann"]) == 1
    assert (await store.counts())["users"] == 2


async def test_bulk_follows_span_batches_and_create_missing_users(store: GraphStore) -> None:
    if isinstance(store, Neo4jGraphStore):
        store.batch_size = 2_500  # three batches and a remainder, in seconds not minutes
    follows = _follow_graph(users=1_000, follows=8_000)
    assert await store.upsert_follows(follows) == 8_000

    counts = await store.counts()
    assert counts["follows"] == 8_000
    assert counts["users"] == len({u for f in follows for u in (f.follower, f.followee)})
    assert sorted(await store.edges()) == sorted((f.follower, f.followee) for f in follows)
    expected = sorted(f.followee for f in follows if f.follower == "u42")
    assert await store.followees("u42") == expected

    # Upserting again changes nothing but the timestamps: no duplicate edges.
    assert await store.upsert_follows(follows[:3_000]) == 3_000
    assert (await store.counts())["follows"] == 8_000


async def test_new_and_known_followers_in_one_upsert(store: GraphStore) -> None:
    # Neo4j writes follows of users who follow nobody yet another way than the rest.
    await store.upsert_follows([Follow("ann", "bob", 1), Follow("ann", "cat", 2)])
    again = [Follow("ann", "bob", 3), Follow("ann", "dan", 4), Follow("bob", "ann", 5),
             Follow("cat", "ann", 6), Follow("cat", "bob", 7)]
    assert await store.upsert_follows(again) == 5
    assert await store.followees("ann") == ["bob", "cat", "dan"]
    assert await store.followees("cat") == ["ann", "bob"]
    assert (await store.counts())["follows"] == 6


async def test_concurrent_upserts_of_the_same_follows_make_one_tie_each(
        store: GraphStore) -> None:
    # Writers that all find the same users following nobody must not all create the ties.
    follows = _follow_graph(users=300, follows=3_000)
    await asyncio.gather(*(store.upsert_follows(follows) for _ in range(3)),
                         *(store.follow(f.follower, f.followee, 1) for f in follows[:20]))
    assert (await store.counts())["follows"] == 3_000
    assert sorted(await store.edges()) == sorted((f.follower, f.followee) for f in follows)


async def test_duplicate_rows_in_one_upsert_count_once(store: GraphStore) -> None:
    rows = [Follow("ann", "bob", 1), Follow("ann", "bob", 2), Follow("bob", "ann", 3)]
    assert await store.upsert_follows(rows) == 2
    assert (await store.counts())["follows"] == 2


async def test_follow_and_unfollow(store: GraphStore) -> None:
    await store.follow("ann", "bob", 100)
    await store.follow("cat", "bob", 101)
    await store.follow("ann", "cat", 102)
    assert await store.followees("ann") == ["bob", "cat"]
    assert await store.followers("bob") == ["ann", "cat"]
    assert await store.followers("ann") == []

    assert await store.unfollow("ann", "bob") is True
    assert await store.unfollow("ann", "bob") is False
    assert await store.unfollow("nobody", "bob") is False
    assert await store.followees("ann") == ["cat"]
    assert await store.followers("bob") == ["cat"]
    # Unfollowing removes the tie, not the people.
    assert await store.counts() == {"users": 3, "follows": 2, "polls": 0}


async def test_followees_of_a_user_following_many_cost_the_caller_little(
        store: GraphStore) -> None:
    """helper-75: Neo4j answered followees() with a record per followee, decoded on the
    gateway's event loop (~75 us each): a user following 100k accounts cost 4.4 s of
    the loop's CPU, every other request waiting, on each in-network lookup."""
    fans = [Follow("whale", f"x{i:05d}", 1) for i in range(20_000)]
    await store.upsert_follows(fans + [Follow("x00001", "whale", 1)])
    followees = await store.followees("whale")
    assert followees == [f.followee for f in fans]
    assert await store.followers("whale") == ["x00001"]
    assert await store.followers("x00002") == ["whale"]
    if isinstance(store, Neo4jGraphStore):
        # What the caller decodes: one record holding the list (20,000 records before;
        # tests assert no timings: 0.9 s of the caller's CPU then, ~0.05 s now).
        from graph.neo4j_store import _FOLLOWEES, _FOLLOWERS

        for query in (_FOLLOWEES, _FOLLOWERS):
            assert len(await store._read_rows(query, id="whale")) == 1


async def test_a_follow_sent_again_keeps_the_time_it_was_made(store: GraphStore) -> None:
    """helper-75: each repeated `follow` (a retry, a double tap, 1,000 a day) moved the
    follow's time to the latest, in both stores and the journal: a follow of 2020 looked
    made today. Unfollowing and following again is a new follow."""
    await store.follow("ann", "bob", 100)
    await store.follow("ann", "bob", 200)
    await store.upsert_follows([Follow("ann", "bob", 300), Follow("cat", "bob", 50),
                                Follow("cat", "bob", 40)])
    assert await store.follows() == [Follow("ann", "bob", 100), Follow("cat", "bob", 40)]
    await store.unfollow("ann", "bob")
    await store.follow("ann", "bob", 400)
    assert await store.follows() == [Follow("ann", "bob", 400), Follow("cat", "bob", 40)]


async def test_unknown_user_has_no_followees_or_followers(store: GraphStore) -> None:
    assert await store.followees("ghost") == []
    assert await store.followers("ghost") == []


async def test_self_follow_is_refused_and_nothing_is_written(store: GraphStore) -> None:
    with pytest.raises(InvalidGraphData, match="cannot follow themselves"):
        await store.upsert_follows([Follow("ann", "bob", 1), Follow("cat", "cat", 2)])
    assert await store.counts() == {"users": 0, "follows": 0, "polls": 0}


@pytest.mark.parametrize("write", [
    lambda s: s.upsert_follows([Follow("ann", "bob", 1), Follow("ann", "x" * 9_000, 2)]),
    lambda s: s.upsert_follows([Follow("ann", "bob", 1), Follow(None, "bob", 2)]),
    lambda s: s.follow("ann", "", 1),
    lambda s: s.follow("ann", "bob", "1700000000"),
    lambda s: s.follow("ann", "bob", 2**63),
    lambda s: s.follow("ann", "bob", 1.5),
    lambda s: s.upsert_users(["ann", "y" * 257]),
    lambda s: s.upsert_polls([PollAuthorship("p1", "ann", 1), PollAuthorship("p2", 7, 1)]),
    lambda s: s.upsert_polls([PollAuthorship("p1", "ann", None)]),
    lambda s: s.upsert_engagements([Engagement("ann", "p1", "HUNCH", 1),
                                    Engagement("ann", "p" * 300, "HUNCH", 1)]),
], ids=["long-id", "none-id", "empty-id", "text-time", "int64-overflow", "float-time",
        "long-user", "int-author", "no-created-at", "long-poll"])
async def test_rows_neither_store_could_hold_are_refused_alike(store: GraphStore,
                                                               write) -> None:
    """helper-75: Neo4j refused an id of ~9,000 characters (its index key limit), None,
    and a time past 64 bits, each after writing the users merged before; the memory
    store took them all. Both refuse them now, before writing anything."""
    with pytest.raises(InvalidGraphData, match="nothing was written"):
        await write(store)
    assert await store.counts() == {"users": 0, "follows": 0, "polls": 0}


async def test_polls_and_their_authors(store: GraphStore) -> None:
    polls = [PollAuthorship("p1", "ann", 10), PollAuthorship("p2", "ann", 20),
             PollAuthorship("p3", "bob", 15)]
    assert await store.upsert_polls(polls) == 3
    # Authors become users.
    assert await store.counts() == {"users": 2, "follows": 0, "polls": 3}
    assert await store.authors(["p1", "p3", "p404"]) == {"p1": "ann", "p3": "bob"}

    # A poll has one author: upserting it again with another author moves it.
    await store.upsert_polls([PollAuthorship("p1", "cat", 10)])
    assert await store.authors(["p1"]) == {"p1": "cat"}
    assert await store.polls_by_authors(["ann"]) == ["p2"]
    assert (await store.counts())["polls"] == 3


async def test_polls_by_authors_newest_first_with_limit(store: GraphStore) -> None:
    await store.upsert_polls([
        PollAuthorship("old", "ann", 100), PollAuthorship("new", "ann", 300),
        PollAuthorship("mid", "bob", 200), PollAuthorship("tie-b", "bob", 250),
        PollAuthorship("tie-a", "ann", 250), PollAuthorship("other", "cat", 999),
    ])
    assert await store.polls_by_authors(["ann", "bob"]) == [
        "new", "tie-a", "tie-b", "mid", "old"]
    assert await store.polls_by_authors(["ann", "bob"], limit=2) == ["new", "tie-a"]
    assert await store.polls_by_authors(["ann", "ann"], limit=10) == ["new", "tie-a", "old"]
    assert await store.polls_by_authors(["ghost"]) == []
    assert await store.polls_by_authors(["ann"], limit=0) == []
    with pytest.raises(InvalidGraphData, match="limit"):
        await store.polls_by_authors(["ann"], limit=-1)


async def test_set_labels_and_read_them_back(store: GraphStore) -> None:
    await store.upsert_users(["ann", "bob", "cat"])
    written = await store.set_labels({"ann": Labels("c1", "k7"), "bob": Labels("c2", None)})
    assert written == 2
    assert await store.labels(["ann", "bob", "ghost"]) == {
        "ann": Labels("c1", "k7"), "bob": Labels("c2", None)}
    # Without ids: every user, labelled or not (the Users dataset export).
    assert await store.labels() == {
        "ann": Labels("c1", "k7"), "bob": Labels("c2", None), "cat": Labels()}
    # Labels replace the old ones, None included.
    await store.set_labels({"ann": Labels(None, "k8")})
    assert (await store.labels(["ann"]))["ann"] == Labels(None, "k8")


async def test_set_labels_is_all_or_nothing(store: GraphStore) -> None:
    if isinstance(store, Neo4jGraphStore):
        store.batch_size = 500  # several batches without a slow test
    users = [f"u{i}" for i in range(1_200)]
    await store.upsert_users(users)
    await store.set_labels({u: Labels("before", "b") for u in users})

    # The unknown user sits in the last batch: the first batch has been written by
    # the time it is found, and must be rolled back with it.
    relabel = {u: Labels("after", "a") for u in users}
    relabel["ghost"] = Labels("after", "a")
    with pytest.raises(UnknownUser, match="ghost"):
        await store.set_labels(relabel)

    labels = await store.labels()
    assert len(labels) == len(users)
    assert {lab.cluster for lab in labels.values()} == {"before"}


async def test_labels_must_be_strings(store: GraphStore) -> None:
    await store.upsert_users(["ann", "bob"])
    with pytest.raises(InvalidGraphData, match="cluster of user 'bob'"):
        await store.set_labels({"ann": Labels("c1"), "bob": Labels(3)})  # type: ignore[arg-type]
    assert await store.labels(["ann"]) == {"ann": Labels()}


async def test_counts_of_an_empty_graph(store: GraphStore) -> None:
    assert await store.counts() == {"users": 0, "follows": 0, "polls": 0}
    assert await store.edges() == []
    assert await store.labels() == {}



# -- engagements: (:User)-[:ENGAGED {type, at}]->(:Poll), for "polls popular inside a community"

async def test_engagements_are_one_per_user_poll_and_type_with_the_latest_time(
        store: GraphStore) -> None:
    await store.upsert_polls([PollAuthorship("p1", "ann", 10)])
    rows = [Engagement("bob", "p1", "HUNCH", 100), Engagement("bob", "p1", "COMMENT", 110),
            Engagement("bob", "p1", "HUNCH", 150),  # a second vote: still one HUNCH edge
            Engagement("cat", "p1", "HUNCH", 120), Engagement("cat", "p2", "HUNCH", 130)]
    assert await store.upsert_engagements(rows) == 4
    assert await store.engagements(["p1"]) == [
        Engagement("bob", "p1", "COMMENT", 110), Engagement("bob", "p1", "HUNCH", 150),
        Engagement("cat", "p1", "HUNCH", 120)]
    # Engagement creates the users and the polls it names, authorless ones included.
    assert await store.counts() == {"users": 3, "follows": 0, "polls": 2}
    assert await store.authors(["p1", "p2"]) == {"p1": "ann"}

    # Replaying the log changes nothing, and an older event never moves the time back.
    assert await store.upsert_engagements(rows + [Engagement("bob", "p1", "HUNCH", 1)]) == 4
    assert len(await store.engagements()) == 4
    assert Engagement("bob", "p1", "HUNCH", 150) in await store.engagements(["p1"])
    assert await store.engagements(["p404"]) == []


async def test_bulk_engagements_span_batches(store: GraphStore) -> None:
    if isinstance(store, Neo4jGraphStore):
        store.batch_size = 700  # several batches and a remainder
    rng = random.Random(3)
    rows = [Engagement(f"u{rng.randrange(300)}", f"p{rng.randrange(200)}",
                       rng.choice(["HUNCH", "COMMENT"]), 1_700_000_000 + i)
            for i in range(3_000)]
    distinct = {(e.user_id, e.poll_id, e.event_type) for e in rows}
    assert await store.upsert_engagements(rows) == len(distinct)
    stored = await store.engagements()
    assert {(e.user_id, e.poll_id, e.event_type) for e in stored} == distinct
    latest = {}
    for e in rows:
        latest[(e.user_id, e.poll_id, e.event_type)] = e.timestamp
    assert all(e.timestamp == latest[(e.user_id, e.poll_id, e.event_type)] for e in stored)
    assert stored == sorted(stored, key=lambda e: (e.poll_id, e.user_id, e.event_type))


async def test_an_engagement_without_event_type_is_refused(store: GraphStore) -> None:
    with pytest.raises(InvalidGraphData, match="EVENT_TYPE"):
        await store.upsert_engagements(
            [Engagement("ann", "p1", "HUNCH", 1), Engagement("bob", "p1", "", 2)])
    assert await store.counts() == {"users": 0, "follows": 0, "polls": 0}


# -- Neo4j only: its schema, and what happens when the server is not there or says no --

@pytest.mark.neo4j
async def test_neo4j_schema_refuses_a_second_user_or_poll_with_the_same_id() -> None:
    store = await _clean_neo4j()
    try:
        await store.ensure_schema()
        await store.upsert_users(["ann"])
    finally:
        await store.close()
    settings = Neo4jSettings()
    auth = (settings.user, settings.password)
    async with AsyncGraphDatabase.driver(settings.uri, auth=auth) as raw:
        with pytest.raises(ConstraintError):
            await raw.execute_query("CREATE (:User {id: 'ann'})")
        with pytest.raises(ConstraintError):
            await raw.execute_query("CREATE (:Poll {id: 'p1'}), (:Poll {id: 'p1'})")


@pytest.mark.neo4j
async def test_wrong_password_is_graph_unavailable() -> None:
    settings = Neo4jSettings()
    good = Neo4jGraphStore(settings.uri, settings.user, settings.password)
    try:
        await good.counts()
    except GraphUnavailable as exc:
        require_or_skip(False, f"no Neo4j to refuse a password: {exc}")
    finally:
        await good.close()
    bad = Neo4jGraphStore(settings.uri, settings.user, settings.password + "-wrong")
    try:
        with pytest.raises(GraphUnavailable, match="refused the credentials") as caught:
            await bad.counts()
    finally:
        await bad.close()
    assert "HUNCH_NEO4J_PASSWORD" in str(caught.value)
    assert "\n" not in str(caught.value)


async def test_unreachable_server_is_graph_unavailable_in_one_line() -> None:
    # Port 1 on loopback: nothing listens there, the connection is refused at once.
    store = Neo4jGraphStore("bolt://127.0.0.1:1", "neo4j", "whatever-password")
    try:
        with pytest.raises(GraphUnavailable, match="unreachable") as caught:
            await store.followees("ann")
    finally:
        await store.close()
    message = str(caught.value)
    assert "\n" not in message
    assert "bolt://127.0.0.1:1" in message and "hunch neo4j start" in message


def test_a_uri_that_is_not_neo4j_is_graph_unavailable() -> None:
    with pytest.raises(GraphUnavailable, match="HUNCH_NEO4J_URI"):
        Neo4jGraphStore("http://127.0.0.1:7474", "neo4j", "whatever-password")
