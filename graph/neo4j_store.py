"""Neo4jGraphStore: the follower graph in Neo4j 5 through the official async driver.

Model: ``(:User {id, cluster, community})``, ``(:User)-[:FOLLOWS {since}]->(:User)``,
``(:User)-[:AUTHORED]->(:Poll {id, created_at})``, ``(:User)-[:ENGAGED {type, at}]->(:Poll)``
(one per user, poll and event type, holding the latest timestamp). Bulk writes go through ``UNWIND`` in
batches inside managed transactions (``execute_write``), so the driver retries transient
failures; each batch commits on its own except in ``set_labels``, which writes every
batch in one transaction so that a failure leaves all labels as they were. Follows of
users who followed nobody before the batch are CREATEd instead of MERGEd, under those
users' write locks, which is what lets 1M follows load well within a minute.

Cypher lives here as constants beside the method that runs it: each query is short and
read together with the Python that shapes its parameters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlparse

from neo4j import AsyncDriver, AsyncGraphDatabase, AsyncManagedTransaction
from neo4j.exceptions import AuthError, ConfigurationError, ServiceUnavailable, SessionExpired

from graph._validation import (
    check_engagements,
    check_follows,
    check_labels,
    check_limit,
    check_polls,
    check_user_ids,
    first_follows,
    last_by_key,
)
from graph.errors import GraphError, GraphUnavailable, UnknownUser
from graph.store import Engagement, Follow, Labels, PollAuthorship

T = TypeVar("T")

# Rows per UNWIND statement: big enough that round trips stop mattering (1M follows in
# ~40 s on 2 cores), small enough that a batch's transaction state stays a few MB.
BATCH_SIZE = 10_000
# Seconds to wait for a TCP connection; a refused port fails at once, this bounds a
# black-holed host so that `GraphUnavailable` arrives before a user gives up.
CONNECTION_TIMEOUT_S = 5.0
# Seconds the driver keeps retrying a transient failure inside execute_read/_write.
MAX_TRANSACTION_RETRY_S = 15.0
# Seconds ensure_schema waits for new indexes to come online, so the bulk writes that
# follow use them instead of scanning every :User.
INDEX_ONLINE_TIMEOUT_S = 120

# The driver's HTTP Query API is a preview and its async flavour needs aiohttp: Bolt only.
_BOLT_SCHEMES = frozenset(
    {"bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc"})

_SCHEMA = (
    "CREATE CONSTRAINT user_id IF NOT EXISTS FOR (u:User) REQUIRE u.id IS UNIQUE",
    "CREATE CONSTRAINT poll_id IF NOT EXISTS FOR (p:Poll) REQUIRE p.id IS UNIQUE",
    # polls_by_authors orders by it.
    "CREATE INDEX poll_created_at IF NOT EXISTS FOR (p:Poll) ON (p.created_at)",
    # The analyst queries (graph/cypher/) start from the members of one cluster or community.
    "CREATE INDEX user_cluster IF NOT EXISTS FOR (u:User) ON (u.cluster)",
    "CREATE INDEX user_community IF NOT EXISTS FOR (u:User) ON (u.community)",
)

_UPSERT_USERS = "UNWIND $ids AS id MERGE (:User {id: id})"

# Users merged before a load of follows, answering with each one's element id: the
# follows then find their endpoints by NodeByElementIdSeek, a direct record lookup,
# instead of two `User.id` index seeks per row (20-30 % less server CPU for the load,
# measured at 200k follows). Two lists rather than pairs, for the reason below. Users
# first, in their own statement: a MERGE of nodes then a MATCH of relationships in one
# query would put an Eager barrier in the plan.
_MERGE_USERS_WITH_ELEMENT_IDS = """
UNWIND $ids AS id
MERGE (u:User {id: id})
RETURN collect(id) AS ids, collect(elementId(u)) AS element_ids
"""

# Follows travel as parallel lists, not a list of maps: the driver packs a map per row
# in Python, which cost as much client CPU as the server spent writing (200k follows:
# 4.7 s -> 2.4 s of client CPU, measured here).
#
# Takes the write lock of each follower in the batch (a SET, even of an unchanged
# value, locks the node; a concurrent MERGE of a follow from that user waits for this
# transaction), then says which of them already follow someone. Only those need MERGE;
# the others' follows cannot exist yet, and nobody can add one before this commits.
# `a.id = id` also proves the element id still names that user: Neo4j may reuse the
# element id of a deleted node, and a user deleted since the merge is not found.
_LOCK_FOLLOWERS = """
UNWIND range(0, size($ids) - 1) AS i
MATCH (a:User) WHERE elementId(a) = $element_ids[i] AND a.id = $ids[i]
SET a.id = $ids[i]
RETURN count(a) AS locked,
       collect(CASE WHEN EXISTS { (a)-[:FOLLOWS]->() } THEN $ids[i] END) AS following
"""

_MERGE_FOLLOWS = """
UNWIND range(0, size($followers) - 1) AS i
MATCH (a:User), (b:User)
WHERE elementId(a) = $followers[i] AND elementId(b) = $followees[i]
MERGE (a)-[f:FOLLOWS]->(b)
ON CREATE SET f.since = $since[i]
ON MATCH SET f.since = CASE WHEN f.since IS NULL OR $since[i] < f.since
                            THEN $since[i] ELSE f.since END
"""

# For followers with no follows yet (see _LOCK_FOLLOWERS): CREATE skips MERGE's search
# of the follower's relationships and its lock-and-recheck.
_CREATE_FOLLOWS = """
UNWIND range(0, size($followers) - 1) AS i
MATCH (a:User), (b:User)
WHERE elementId(a) = $followers[i] AND elementId(b) = $followees[i]
CREATE (a)-[:FOLLOWS {since: $since[i]}]->(b)
"""

_UNFOLLOW = """
MATCH (:User {id: $follower})-[f:FOLLOWS]->(:User {id: $followee})
DELETE f
RETURN count(f) AS removed
"""

# One record holding the sorted list, for the reason given at _EDGES: a record per
# followee cost ~75 us of the gateway's event loop each, so one account following 100k
# users spent 7.5 s (4.4 s of CPU on the loop every other request waits for) per feed
# page's in-network lookup; as one list, ~0.3 s (measured here).
_FOLLOWEES = """
MATCH (:User {id: $id})-[:FOLLOWS]->(b:User)
WITH b.id AS id ORDER BY id
RETURN collect(id) AS ids
"""
_FOLLOWERS = """
MATCH (a:User)-[:FOLLOWS]->(:User {id: $id})
WITH a.id AS id ORDER BY id
RETURN collect(id) AS ids
"""

# A poll has one author: re-upserting it with another author moves the AUTHORED edge.
_UPSERT_POLLS = """
UNWIND $rows AS row
MATCH (a:User {id: row.author})
MERGE (p:Poll {id: row.poll})
SET p.created_at = row.created_at
WITH a, p
OPTIONAL MATCH (other:User)-[old:AUTHORED]->(p) WHERE other <> a
DELETE old
WITH DISTINCT a, p
MERGE (a)-[:AUTHORED]->(p)
"""

_AUTHORS = """
UNWIND $ids AS id
MATCH (a:User)-[:AUTHORED]->(p:Poll {id: id})
RETURN p.id AS poll, a.id AS author
"""

_POLLS_BY_AUTHORS = """
UNWIND $ids AS id
MATCH (:User {id: id})-[:AUTHORED]->(p:Poll)
RETURN p.id AS id
ORDER BY p.created_at DESC, p.id
LIMIT $limit
"""

_UPSERT_ENGAGED_POLLS = "UNWIND $ids AS id MERGE (:Poll {id: id})"

# Users and polls are merged first, in their own statements, for the reason at
# _UPSERT_FOLLOWS. A replayed older event never moves `at` back.
_UPSERT_ENGAGEMENTS = """
UNWIND $rows AS row
MATCH (u:User {id: row.user}), (p:Poll {id: row.poll})
MERGE (u)-[e:ENGAGED {type: row.type}]->(p)
ON CREATE SET e.at = row.at
ON MATCH SET e.at = CASE WHEN row.at > e.at THEN row.at ELSE e.at END
"""

# One record of rows, for the reason given at _EDGES.
_ALL_ENGAGEMENTS = """
MATCH (u:User)-[e:ENGAGED]->(p:Poll)
WITH u.id AS user, p.id AS poll, e.type AS type, e.at AS at
ORDER BY poll, user, type
RETURN collect([user, poll, type, at]) AS rows
"""
_SOME_ENGAGEMENTS = """
UNWIND $ids AS id
MATCH (u:User)-[e:ENGAGED]->(p:Poll {id: id})
WITH u.id AS user, p.id AS poll, e.type AS type, e.at AS at
ORDER BY poll, user, type
RETURN collect([user, poll, type, at]) AS rows
"""

# Parallel lists, for the reason given at _LOCK_FOLLOWERS.
_SET_LABELS = """
UNWIND range(0, size($ids) - 1) AS i
MATCH (u:User {id: $ids[i]})
SET u.cluster = $clusters[i], u.community = $communities[i]
RETURN collect(u.id) AS found
"""

# One record holding a list of [id, cluster, community] rows, for the reason given at
# _EDGES; rows rather than three collect()s because collect() drops nulls.
_ALL_LABELS = "MATCH (u:User) RETURN collect([u.id, u.cluster, u.community]) AS rows"
_SOME_LABELS = """
UNWIND $ids AS id
MATCH (u:User {id: id})
RETURN collect([u.id, u.cluster, u.community]) AS rows
"""

# Two parallel lists in ONE record: the driver decodes a list in one go, where a record
# per edge costs ~100 us each in Python (100k edges: 0.7 s instead of 10 s, measured
# here). The price is both lists in the server's heap at once: ~100 MB per million edges.
_EDGES = """
MATCH (a:User)-[:FOLLOWS]->(b:User)
RETURN collect(a.id) AS followers, collect(b.id) AS followees
"""

_FOLLOWS_WITH_TIME = """
MATCH (a:User)-[f:FOLLOWS]->(b:User)
RETURN a.id AS follower, b.id AS followee, coalesce(f.since, 0) AS since
ORDER BY follower, followee
"""

# Each count reads Neo4j's count store: constant time whatever the graph's size.
_COUNT_USERS = "MATCH (u:User) RETURN count(u) AS n"
_COUNT_FOLLOWS = "MATCH ()-[f:FOLLOWS]->() RETURN count(f) AS n"
_COUNT_POLLS = "MATCH (p:Poll) RETURN count(p) AS n"


class UsersVanished(GraphError):
    """Users merged at the start of a follows load were deleted before its end."""


def _batches(rows: list[T], size: int) -> Iterable[list[T]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


class Neo4jGraphStore:
    """The GraphStore protocol over a Neo4j 5 database (Community, Enterprise or Aura)."""

    def __init__(self, uri: str, user: str, password: str, *, database: str = "neo4j",
                 batch_size: int = BATCH_SIZE) -> None:
        self.uri = uri
        self.database = database
        self.batch_size = batch_size
        scheme = urlparse(uri).scheme
        if scheme not in _BOLT_SCHEMES:
            raise GraphUnavailable(
                f"{uri!r} is not a Bolt URI (scheme {scheme!r}); set HUNCH_NEO4J_URI to "
                "e.g. bolt://127.0.0.1:7687 or neo4j+s://<host> for a cluster or Aura"
            )
        try:
            self._driver: AsyncDriver = AsyncGraphDatabase.driver(
                uri, auth=(user, password),
                connection_timeout=CONNECTION_TIMEOUT_S,
                max_transaction_retry_time=MAX_TRANSACTION_RETRY_S,
            )
        except (ConfigurationError, ValueError) as exc:
            raise GraphUnavailable(
                f"{uri!r} is not a Neo4j URI ({_one_line(exc)}); "
                "set HUNCH_NEO4J_URI to e.g. bolt://127.0.0.1:7687"
            ) from exc
        self._checked = False
        self._check_lock = asyncio.Lock()

    @classmethod
    def from_env(cls) -> Neo4jGraphStore:
        """Connect with HUNCH_NEO4J_URI, HUNCH_NEO4J_USER and HUNCH_NEO4J_PASSWORD."""
        from graph.server import Neo4jSettings

        settings = Neo4jSettings()
        return cls(settings.uri, settings.user, settings.password)

    # -- plumbing -------------------------------------------------------------------

    def _unavailable(self, exc: Exception) -> GraphUnavailable:
        if isinstance(exc, AuthError):
            return GraphUnavailable(
                f"Neo4j at {self.uri} refused the credentials ({_one_line(exc)}); "
                "check HUNCH_NEO4J_USER and HUNCH_NEO4J_PASSWORD"
            )
        return GraphUnavailable(
            f"Neo4j at {self.uri} is unreachable ({_one_line(exc)}); start it with "
            "`hunch neo4j start` or point HUNCH_NEO4J_URI at a running server"
        )

    async def _ensure_reachable(self) -> None:
        # Checked once, without the retry loop of managed transactions, so that a server
        # that is down or a wrong password fails in milliseconds, not after 15 s of retries.
        if self._checked:
            return
        async with self._check_lock:
            if self._checked:
                return
            try:
                await self._driver.verify_connectivity()
                await self._driver.verify_authentication()
            except (ServiceUnavailable, SessionExpired, AuthError, OSError) as exc:
                raise self._unavailable(exc) from exc
            self._checked = True

    async def _run(self, write: bool,
                   work: Callable[[AsyncManagedTransaction], Awaitable[T]]) -> T:
        await self._ensure_reachable()
        try:
            async with self._driver.session(database=self.database) as session:
                if write:
                    return await session.execute_write(work)
                return await session.execute_read(work)
        except (ServiceUnavailable, SessionExpired, AuthError) as exc:
            raise self._unavailable(exc) from exc

    async def _read_rows(self, query: str, **params: Any) -> list[dict[str, Any]]:
        async def work(tx: AsyncManagedTransaction) -> list[dict[str, Any]]:
            result = await tx.run(query, params)
            return await result.data()

        return await self._run(False, work)

    async def _write(self, query: str, **params: Any) -> list[dict[str, Any]]:
        async def work(tx: AsyncManagedTransaction) -> list[dict[str, Any]]:
            result = await tx.run(query, params)
            return await result.data()

        return await self._run(True, work)

    # -- the GraphStore protocol ------------------------------------------------------

    async def ensure_schema(self) -> None:
        for statement in _SCHEMA:
            await self._write(statement)
        await self._write("CALL db.awaitIndexes($timeout)", timeout=INDEX_ONLINE_TIMEOUT_S)

    async def upsert_users(self, user_ids: Iterable[str]) -> int:
        ids = list(dict.fromkeys(check_user_ids(user_ids)))
        for batch in _batches(ids, self.batch_size):
            await self._write(_UPSERT_USERS, ids=batch)
        return len(ids)

    async def upsert_follows(self, follows: Iterable[Follow]) -> int:
        rows = first_follows(check_follows(follows))
        # Every user once, before the follows: merging each batch's users again cost as
        # much as the follows themselves. Sorted by follower so that a batch touches few
        # users' relationship chains.
        element_ids = await self._merge_users(
            u for f in rows for u in (f.follower, f.followee))
        rows.sort(key=lambda f: (f.follower, f.followee))
        # One writer. Two concurrent ones over disjoint followers still lock common
        # followees (and their relationship groups) in different orders: at 1M follows on
        # a freshly started server, 12 of ~100 batches deadlocked and the driver's
        # backoff slept up to 6.7 s per retry, for no less server CPU (measured here).
        for batch in _batches(rows, self.batch_size):
            await self._run(True, lambda tx, batch=batch: _write_follows(tx, batch, element_ids))
        return len(rows)

    async def _merge_users(self, user_ids: Iterable[str]) -> dict[str, str]:
        """Merges the users and answers user id -> element id."""
        ids = list(dict.fromkeys(user_ids))
        element_ids: dict[str, str] = {}
        for batch in _batches(ids, self.batch_size):
            record = (await self._write(_MERGE_USERS_WITH_ELEMENT_IDS, ids=batch))[0]
            element_ids.update(zip(record["ids"], record["element_ids"]))
        return element_ids

    async def follow(self, follower: str, followee: str, timestamp: int) -> None:
        await self.upsert_follows([Follow(follower, followee, timestamp)])

    async def unfollow(self, follower: str, followee: str) -> bool:
        rows = await self._write(_UNFOLLOW, follower=follower, followee=followee)
        return rows[0]["removed"] > 0

    async def followees(self, user_id: str) -> list[str]:
        return (await self._read_rows(_FOLLOWEES, id=user_id))[0]["ids"]

    async def followers(self, user_id: str) -> list[str]:
        return (await self._read_rows(_FOLLOWERS, id=user_id))[0]["ids"]

    async def upsert_polls(self, polls: Iterable[PollAuthorship]) -> int:
        rows = last_by_key(check_polls(polls), lambda p: p.poll_id)
        for batch in _batches(rows, self.batch_size):
            authors = list(dict.fromkeys(p.author_id for p in batch))
            params = [{"poll": p.poll_id, "author": p.author_id, "created_at": p.created_at}
                      for p in batch]

            async def work(tx: AsyncManagedTransaction, authors=authors, params=params) -> None:
                await (await tx.run(_UPSERT_USERS, ids=authors)).consume()
                await (await tx.run(_UPSERT_POLLS, rows=params)).consume()

            await self._run(True, work)
        return len(rows)

    async def authors(self, poll_ids: Iterable[str]) -> dict[str, str]:
        rows = await self._read_rows(_AUTHORS, ids=list(dict.fromkeys(poll_ids)))
        return {r["poll"]: r["author"] for r in rows}

    async def polls_by_authors(self, author_ids: Iterable[str], limit: int = 500) -> list[str]:
        check_limit(limit)
        rows = await self._read_rows(
            _POLLS_BY_AUTHORS, ids=list(dict.fromkeys(author_ids)), limit=limit)
        return [r["id"] for r in rows]

    async def upsert_engagements(self, engagements: Iterable[Engagement]) -> int:
        latest: dict[tuple[str, str, str], int] = {}
        for e in check_engagements(engagements):
            key = (e.user_id, e.poll_id, e.event_type)
            latest[key] = max(e.timestamp, latest.get(key, e.timestamp))
        rows = [{"user": u, "poll": p, "type": t, "at": at} for (u, p, t), at in latest.items()]
        for batch in _batches(rows, self.batch_size):
            users = list(dict.fromkeys(r["user"] for r in batch))
            polls = list(dict.fromkeys(r["poll"] for r in batch))

            async def work(tx: AsyncManagedTransaction, users=users, polls=polls,
                           batch=batch) -> None:
                await (await tx.run(_UPSERT_USERS, ids=users)).consume()
                await (await tx.run(_UPSERT_ENGAGED_POLLS, ids=polls)).consume()
                await (await tx.run(_UPSERT_ENGAGEMENTS, rows=batch)).consume()

            await self._run(True, work)
        return len(rows)

    async def engagements(self, poll_ids: Iterable[str] | None = None) -> list[Engagement]:
        if poll_ids is None:
            rows = await self._read_rows(_ALL_ENGAGEMENTS)
        else:
            rows = await self._read_rows(_SOME_ENGAGEMENTS, ids=list(dict.fromkeys(poll_ids)))
        return [Engagement(u, p, t, at) for u, p, t, at in rows[0]["rows"]]

    async def set_labels(self, labels: Mapping[str, Labels]) -> int:
        check_labels(labels)
        rows = list(labels.items())

        async def work(tx: AsyncManagedTransaction) -> int:
            # Every batch in this one transaction: raising rolls all of them back.
            missing: list[str] = []
            for batch in _batches(rows, self.batch_size):
                ids = [u for u, _ in batch]
                record = await (await tx.run(
                    _SET_LABELS, ids=ids, clusters=[lab.cluster for _, lab in batch],
                    communities=[lab.community for _, lab in batch])).single(strict=True)
                found = set(record["found"])
                missing.extend(u for u in ids if u not in found)
            if missing:
                raise UnknownUser(missing)
            return len(rows)

        return await self._run(True, work)

    async def labels(self, user_ids: Iterable[str] | None = None) -> dict[str, Labels]:
        if user_ids is None:
            rows = await self._read_rows(_ALL_LABELS)
        else:
            rows = await self._read_rows(_SOME_LABELS, ids=list(dict.fromkeys(user_ids)))
        return {u: Labels(cluster=c, community=k) for u, c, k in rows[0]["rows"]}

    async def edges(self) -> list[tuple[str, str]]:
        async def work(tx: AsyncManagedTransaction) -> list[tuple[str, str]]:
            record = await (await tx.run(_EDGES)).single(strict=True)
            return list(zip(record["followers"], record["followees"]))

        return await self._run(False, work)

    async def follows(self) -> list[Follow]:
        """Every follow with the time it was made: what `hunch graph export-follows`
        writes."""
        async def work(tx: AsyncManagedTransaction) -> list[Follow]:
            result = await tx.run(_FOLLOWS_WITH_TIME)
            return [Follow(r["follower"], r["followee"], int(r["since"]))
                    async for r in result]

        return await self._run(False, work)

    async def counts(self) -> dict[str, int]:
        async def work(tx: AsyncManagedTransaction) -> dict[str, int]:
            counts = {}
            for name, query in (("users", _COUNT_USERS), ("follows", _COUNT_FOLLOWS),
                                ("polls", _COUNT_POLLS)):
                counts[name] = (await (await tx.run(query)).single(strict=True))["n"]
            return counts

        return await self._run(False, work)

    async def close(self) -> None:
        await self._driver.close()


async def _write_follows(tx: AsyncManagedTransaction, batch: list[Follow],
                         element_ids: Mapping[str, str]) -> None:
    """One batch of follows, sorted by follower, all in ``tx`` (see _LOCK_FOLLOWERS)."""
    followers = list(dict.fromkeys(f.follower for f in batch))
    record = await (await tx.run(
        _LOCK_FOLLOWERS, ids=followers, element_ids=[element_ids[u] for u in followers],
    )).single(strict=True)
    following = set(record["following"])
    if record["locked"] < len(followers):
        raise _vanished()
    for query, part in ((_MERGE_FOLLOWS, [f for f in batch if f.follower in following]),
                        (_CREATE_FOLLOWS, [f for f in batch if f.follower not in following])):
        if not part:
            continue
        summary = await (await tx.run(
            query, followers=[element_ids[f.follower] for f in part],
            followees=[element_ids[f.followee] for f in part],
            since=[f.timestamp for f in part])).consume()
        # A CREATE row whose followee was deleted since the merge matches nothing.
        if query is _CREATE_FOLLOWS and summary.counters.relationships_created < len(part):
            raise _vanished()


def _vanished() -> UsersVanished:
    return UsersVanished(
        "users were deleted while their follows were being loaded; nothing of this "
        "batch was written: run the upsert again, which merges them anew")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
