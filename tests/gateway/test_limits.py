"""Limits that hold (issue 13): rate limits on the feed too, bounded limiter memory,
limits shared through Redis, resolvers that touch the stores off the event loop, and a
bounded ``Author.polls(first:)``."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from gateway import app as gateway_app
from gateway.app import create_app
from gateway.auth import issue_token
from gateway.daily_quota import DAY_SECONDS, QUOTA_BUCKET_SECONDS, make_daily_quota
from gateway.rate_limit import (
    REDIS_WINDOW_SLACK_SECONDS,
    WINDOW_SECONDS,
    LocalRateLimiter,
    RedisRateLimiter,
    make_rate_limiter,
)
from gateway.services import Services
from tests.gateway.test_app import ID_ONLY, codes, gql, serve, settings  # noqa: F401
from tests.integration.test_redis_sessions import redis_url  # noqa: F401 - the fixture

FROZEN = 1_800_000_030.0  # mid-window: a test never straddles a window boundary


def test_the_feed_is_rate_limited_per_user(settings):  # noqa: F811
    # Bursts of 10 pages (the floor), refilled at one a minute: no slow CI run refills
    # a token between the 10th and the 12th request.
    settings.feed_rate_per_minute = 1

    async def scenario(client):
        responses = [await gql(client, settings, ID_ONLY, user="scraper") for _ in range(12)]
        bodies = [r.json() for r in responses]
        assert all("errors" not in b for b in bodies[:10]), bodies[:10]
        assert all("retry-after" not in r.headers for r in responses[:10])
        assert codes(bodies[11]) == ["RATE_LIMITED"]
        error = bodies[11]["errors"][0]
        assert "too many feed pages" in error["message"]
        # when to come back: the bucket refills one page a minute and is empty
        wait = error["extensions"]["retryAfter"]
        assert 50 <= wait <= 60, wait
        assert responses[11].headers["retry-after"] == str(wait)
        assert f"retry in {wait} s" in error["message"]
        assert responses[11].status_code == 200  # GraphQL over HTTP: errors in the body
        other = (await gql(client, settings, ID_ONLY, user="reader")).json()
        assert "errors" not in other  # one user's flood costs only that user

    serve(settings, scenario)


def test_poll_writes_are_limited_per_author_a_day(settings):  # noqa: F811
    """Every new poll is explored in other users' feeds: within the mutation limit one
    account put 300 polls into everyone's feed in 34 s. Authors get a daily quota of
    poll writes; internal tools (catalog ingest) are not counted."""
    settings.poll_writes_per_day = 3
    upsert = ('mutation($i: PollInput!) { upsertPoll(input: $i) { __typename '
              '... on InvalidInputError { message } } }')

    async def scenario(client):
        def poll(k):
            return {"i": {"id": f"spam{k}", "categories": ["news"], "question": "buy?"}}

        answers = [(await gql(client, settings, upsert, poll(k), user="spammer")).json()
                   for k in range(4)]
        assert [a["data"]["upsertPoll"]["__typename"] for a in answers[:3]] == ["Poll"] * 3
        assert codes(answers[3]) == ["RATE_LIMITED"], answers[3]
        error = answers[3]["errors"][0]
        assert "too many poll writes today" in error["message"]
        # the next write once the first leaves the 24-hour window (its quarter hour's
        # end, plus a day); a bucket that refilled over the day said 8 hours
        assert DAY_SECONDS < error["extensions"]["retryAfter"] <= (
            DAY_SECONDS + QUOTA_BUCKET_SECONDS), error
        assert (await client.post("/graphql", json={  # not stored
            "query": '{ poll(id: "spam3") { id } }'}, headers={
            "Authorization": f"Bearer {issue_token(settings, 'reader')}"})).json()[
            "data"]["poll"] is None
        # an edit counts too; another author and an internal tool are not held back
        edit = (await gql(client, settings, upsert, poll(0), user="spammer")).json()
        assert codes(edit) == ["RATE_LIMITED"]
        other = (await gql(client, settings, upsert, poll("x"), user="writer")).json()
        assert other["data"]["upsertPoll"]["__typename"] == "Poll", other
        # Refused writes cost nothing: an invalid poll, another author's poll.
        writer = [(await gql(client, settings, upsert, body, user="writer")).json()
                  for body in ({"i": {"id": "bad|id", "categories": ["news"]}},
                               {"i": {"id": "spam0", "categories": ["news"]}},
                               {"i": {"id": "spam1", "categories": ["news"]}},
                               {"i": {"id": "no-categories", "categories": []}})] + [
            (await gql(client, settings, upsert, poll(f"w{k}"), user="writer")).json()
            for k in range(2)]
        assert [codes(b) or [b["data"]["upsertPoll"]["__typename"]] for b in writer] == [
            ["InvalidInputError"], ["FORBIDDEN"], ["FORBIDDEN"], ["InvalidInputError"],
            ["Poll"], ["Poll"]], writer  # with "x" above: its 3 of the day
        admin = issue_token(settings, "ingest", admin=True)
        for k in range(5):
            body = (await client.post("/graphql", json={"query": upsert, "variables": {
                "i": {"id": f"bulk{k}", "categories": ["news"], "authorId": "a1"}}},
                headers={"Authorization": f"Bearer {admin}"})).json()
            assert body["data"]["upsertPoll"]["__typename"] == "Poll", body

    serve(settings, scenario)


def test_a_daily_quota_through_redis_counts_every_host_for_the_day(redis_url):  # noqa: F811
    day = DAY_SECONDS + QUOTA_BUCKET_SECONDS  # a day after the count's quarter hour ends

    async def main():
        clock = [FROZEN]
        hosts = [make_daily_quota("poll", 3, "redis", redis_url) for _ in range(2)]
        for host in hosts:
            host._clock = lambda: clock[0]
        try:
            assert [await hosts[k % 2].allow("ann") for k in range(3)] == [True] * 3
            await hosts[0].refund("ann")  # a write the store refused gives its count back
            assert [await hosts[k % 2].allow("ann") for k in range(2)] == [True, False]
            # the host that refused says when (the gateway asks the limiter that refused)
            assert day - QUOTA_BUCKET_SECONDS < hosts[1].retry_after("ann") <= day
            clock[0] += hosts[1].retry_after("ann")  # ann's writes left the window
            await hosts[0].refund("bob")  # nothing counted: nothing to give back
            assert [await hosts[1].allow("bob") for _ in range(4)] == [True] * 3 + [False]
            assert await hosts[1].allow("ann")
        finally:
            for host in hosts:
                await host.close()

    asyncio.run(main())


def test_the_local_limiter_keeps_a_bounded_number_of_users():
    now = [0.0]
    limiter = LocalRateLimiter(600, max_users=50, clock=lambda: now[0])
    for k in range(1_000):
        assert limiter.allow_now(f"user{k}")
    assert len(limiter) == 50  # the least recently seen were forgotten
    # a user that exhausted its burst is refused, and refilled with time
    assert all(limiter.allow_now("busy") for _ in range(60))
    assert not limiter.allow_now("busy")
    # a refused user is told when a token is back (10 a second: within 0.1 s)
    assert 0.0 < limiter.retry_after("busy") <= 0.1
    assert limiter.retry_after("someone-new") == 0.0
    now[0] += 1.0
    assert limiter.retry_after("busy") == 0.0
    assert limiter.allow_now("busy")  # 10 tokens a second
    # idle buckets expire once they would be full again: nothing is kept for them
    now[0] += 60.0 / 10 + 1
    assert len(limiter) == 0


def test_limits_are_shared_through_redis_by_every_host(redis_url):  # noqa: F811
    async def main():
        host_a = RedisRateLimiter(redis_url, "feed", 5, clock=lambda: FROZEN)
        host_b = RedisRateLimiter(redis_url, "feed", 5, clock=lambda: FROZEN)
        try:
            assert [await host_a.allow("ann") for _ in range(3)] == [True] * 3
            assert [await host_b.allow("ann") for _ in range(2)] == [True] * 2
            assert not await host_a.allow("ann") and not await host_b.allow("ann")
            assert await host_b.allow("bob")  # per user
            mutations = RedisRateLimiter(redis_url, "mutation", 5, clock=lambda: FROZEN)
            assert await mutations.allow("ann")  # per kind of request
            await mutations.close()
            later = RedisRateLimiter(redis_url, "feed", 5, clock=lambda: FROZEN + 60)
            assert await later.allow("ann")  # the next window
            await later.close()
        finally:
            await host_a.close()
            await host_b.close()

    asyncio.run(main())


def _commands_run(client) -> int:
    """Commands Redis has run since its statistics were reset, the INFO calls aside
    (those of a script count too: Redis runs them as well)."""
    stats = client.info("commandstats")
    return sum(s["calls"] for name, s in stats.items() if not name.startswith("cmdstat_info"))


def test_a_redis_rate_check_costs_redis_one_script_call(redis_url):  # noqa: F811
    """Each check is one command sent (EVALSHA) and two run (its INCR), not a MULTI,
    INCR, EXPIRE, EXEC transaction: four commands for every feed page of every host."""
    import redis

    checks = 20
    admin = redis.Redis.from_url(redis_url)

    async def main():
        limiter = RedisRateLimiter(redis_url, "feed", checks, clock=lambda: FROZEN)
        try:
            assert await limiter.allow("cal")  # the first: the script may be loaded here
            admin.config_resetstat()
            assert [await limiter.allow("cal") for _ in range(checks - 1)] == [True] * (checks - 1)
            run = _commands_run(admin) - 1  # less the CONFIG RESETSTAT
            assert not await limiter.allow("cal")  # the limit still holds
        finally:
            await limiter.close()
        return run

    run = asyncio.run(main())
    assert run <= 2 * (checks - 1), f"{run} commands for {checks - 1} checks"
    # the window's key still expires once its window (and the slack) is over
    keys = admin.keys("hunch:rate:feed:cal:*")
    assert len(keys) == 1 and 0 < admin.ttl(keys[0]) <= WINDOW_SECONDS + REDIS_WINDOW_SLACK_SECONDS


def test_a_redis_that_lost_its_scripts_still_counts(redis_url):  # noqa: F811
    import redis

    async def main():
        limiter = RedisRateLimiter(redis_url, "feed", 3, clock=lambda: FROZEN)
        try:
            assert await limiter.allow("dee")
            redis.Redis.from_url(redis_url).script_flush()  # as a restart does
            assert [await limiter.allow("dee") for _ in range(3)] == [True, True, False]
            assert not limiter._degraded  # counted in Redis, not by the local fallback
        finally:
            await limiter.close()

    asyncio.run(main())


def test_without_redis_the_limits_still_hold_per_worker():
    async def main():
        # a port nothing listens on (bound, never listening)
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            url = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
            limiter = RedisRateLimiter(url, "feed", 1)  # a burst of 10, one a minute
            allowed = [await limiter.allow("ann") for _ in range(12)]
        assert allowed == [True] * 10 + [False] * 2  # the local bucket: a burst of 10

    asyncio.run(main())


def test_two_gateways_on_redis_share_a_users_feed_limit(settings, redis_url,  # noqa: F811
                                                         monkeypatch):
    settings.session_store = "redis"
    settings.redis_url = redis_url
    settings.feed_rate_per_minute = 4

    def frozen(*args, **kwargs):
        limiter = make_rate_limiter(*args, **kwargs)
        assert isinstance(limiter, RedisRateLimiter)
        limiter._clock = lambda: FROZEN + 120  # a window no other test used
        return limiter

    monkeypatch.setattr(gateway_app, "make_rate_limiter", frozen)
    apps = [create_app(settings, Services(settings)) for _ in range(2)]

    async def main():
        async with apps[0].router.lifespan_context(apps[0]), \
                apps[1].router.lifespan_context(apps[1]):
            clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=a),
                                         base_url="http://gw") for a in apps]
            token = issue_token(settings, "two-host-reader")
            bodies, waits = [], []
            for k in range(6):
                r = await clients[k % 2].post(
                    "/graphql", json={"query": ID_ONLY},
                    headers={"Authorization": f"Bearer {token}"})
                bodies.append(r.json())
                waits.append(r.headers.get("retry-after"))
            for c in clients:
                await c.aclose()
        assert [codes(b) for b in bodies] == [[]] * 4 + [["RATE_LIMITED"]] * 2
        # the shared window ends 30 s after the frozen clock: both hosts say so
        assert waits == [None] * 4 + ["30"] * 2
        assert [b["errors"][0]["extensions"]["retryAfter"] for b in bodies[4:]] == [30, 30]

    asyncio.run(main())


def test_resolvers_that_touch_the_stores_run_off_the_event_loop(settings):  # noqa: F811
    services = Services(settings)
    threads: dict[str, set[int]] = {}

    def spy(owner, name):
        method = getattr(owner, name)

        def called(*args, **kwargs):
            threads.setdefault(f"{type(owner).__name__}.{name}", set()).add(
                threading.get_ident())
            return method(*args, **kwargs)

        setattr(owner, name, called)

    for owner, name in ((services.reads, "get_item"), (services.reads, "get_user"),
                        (services, "upsert_poll"), (services, "polls_by_author"),
                        (services.promotions, "list"), (services.promotions, "create"),
                        (services.filters, "list"), (services.filters, "create")):
        spy(owner, name)
    app = create_app(settings, services)
    admin = issue_token(settings, "tools", admin=True)

    async def main():
        loop_thread = threading.get_ident()
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
                for query in (
                        '{ poll(id: "p1") { id author { polls(first: 2) { id } } } }',
                        "{ me { id cluster } }",
                        'mutation { upsertPoll(input: {id: "p1", categories: ["news"]}) '
                        "{ __typename } }",
                        "{ promotions { name } filters { name } }",
                        'mutation { createPromotion(name: "p", input: {percentPromotedItems: 10,'
                        ' filterExpression: "INCLUDE ItemID WHERE Items.CATEGORY IN (\\"news\\")"})'
                        " { __typename } }",
                        'mutation { createFilter(name: "f", expression: '
                        '"EXCLUDE ItemID WHERE Items.CATEGORY IN (\\"x\\")") { __typename } }'):
                    body = (await client.post("/graphql", json={"query": query}, headers={
                        "Authorization": f"Bearer {admin}"})).json()
                    assert "errors" not in body, (query, body)
        return loop_thread

    loop_thread = asyncio.run(main())
    assert set(threads) == {
        "EventStore.get_item", "EventStore.get_user", "Services.upsert_poll",
        "Services.polls_by_author", "PromotionStore.list", "PromotionStore.create",
        "FilterStore.list", "FilterStore.create"}
    on_loop = sorted(name for name, idents in threads.items() if loop_thread in idents)
    assert on_loop == [], f"ran on the event loop: {on_loop}"


@pytest.mark.parametrize("first, code, says", [
    (101, "PAGE_SIZE_EXCEEDED", "at most 100"), (10_000, "PAGE_SIZE_EXCEEDED", "at most 100"),
    (-1, "BAD_USER_INPUT", "at least 0")])
def test_author_polls_first_is_bounded_with_a_typed_error(settings, first, code,  # noqa: F811
                                                          says):
    async def scenario(client):
        query = '{ poll(id: "p1") { author { polls(first: %d) { id } } } }' % first
        body = (await gql(client, settings, query)).json()
        assert codes(body) == [code], body
        assert says in body["errors"][0]["message"]
        assert "endCursor" not in body["errors"][0]["message"]  # a plain list: no cursor
        ok = (await gql(client, settings,
                        '{ poll(id: "p1") { author { polls(first: 100) { id } } } }')).json()
        assert len(ok["data"]["poll"]["author"]["polls"]) == 30  # all of a1's polls

    serve(settings, scenario)


def test_follow_changes_are_limited_per_user_a_day(settings):  # noqa: F811
    """helper-63: follows of made-up ids and unfollows, each a journal row and a graph
    node, at the mutation limit (~860k a day for one account). A daily quota, refunded
    when the change is refused; internal tools are not counted."""
    settings.follow_changes_per_day = 3
    follow = ('mutation($u: ID!) { follow(userId: $u) { __typename } }')
    unfollow = ('mutation($u: ID!) { unfollow(userId: $u) { __typename } }')

    async def scenario(client):
        changes = [(await gql(client, settings, q, {"u": u}, user="churner")).json()
                   for q, u in ((follow, "a"), (unfollow, "a"), (follow, "b"), (follow, "c"))]
        assert [c["data"]["follow" if "follow" in c["data"] else "unfollow"]["__typename"]
                for c in changes[:3]] == ["FollowChanged"] * 3, changes
        assert codes(changes[3]) == ["RATE_LIMITED"], changes[3]
        assert "too many follows and unfollows today" in changes[3]["errors"][0]["message"]
        # refused before the quota: following oneself, a bad id
        for body in ((follow, "other"), (follow, "bad\x00id")):
            answer = (await gql(client, settings, body[0], {"u": body[1]},
                                user="other")).json()
            assert answer["data"]["follow"]["__typename"] == "InvalidInputError"
        for k in range(3):  # the refusals above cost "other" nothing
            body = (await gql(client, settings, follow, {"u": f"x{k}"}, user="other")).json()
            assert body["data"]["follow"]["__typename"] == "FollowChanged", body
        admin = issue_token(settings, "ops", admin=True)
        for k in range(5):
            body = (await client.post("/graphql", json={"query": follow, "variables": {
                "u": f"y{k}"}}, headers={"Authorization": f"Bearer {admin}"})).json()
            assert body["data"]["follow"]["__typename"] == "FollowChanged", body

    serve(settings, scenario)


def test_a_follow_change_the_graph_refuses_is_given_back(settings):  # noqa: F811
    """The quota is charged before the graph is asked; a change the graph refuses
    (GraphUnavailableError) costs nothing (helper-65: the refund was never exercised)."""
    from gateway.app import create_app
    from gateway.services import Services
    from graph.errors import GraphUnavailable

    settings.follow_changes_per_day = 1
    services = Services(settings)
    follow = services.follow
    down = [True]

    async def flaky(follower, followee):
        if down[0]:
            raise GraphUnavailable("Neo4j is restarting")
        return await follow(follower, followee)

    services.follow = flaky
    query = 'mutation($u: ID!) { follow(userId: $u) { __typename } }'

    async def scenario(client):
        async def ask(u):
            return (await gql(client, settings, query, {"u": u}, user="fan")).json()

        assert (await ask("a"))["data"]["follow"]["__typename"] == "GraphUnavailableError"
        down[0] = False
        assert (await ask("a"))["data"]["follow"]["__typename"] == "FollowChanged"
        assert codes(await ask("b")) == ["RATE_LIMITED"]

    serve(settings, scenario, create_app(settings, services))


def test_a_daily_quota_falls_back_to_a_daily_bucket_when_redis_fails():
    """helper-66: `fallback or LocalRateLimiter(rate)` took the quota's own (empty, so
    falsy) daily bucket for absent: with Redis down, 100 poll writes a day became 100 a
    minute with bursts of 10."""
    from gateway.daily_quota import MemoryDailyQuota

    quota = make_daily_quota("poll", 2, "redis", "redis://127.0.0.1:1/0")  # nothing there
    assert isinstance(quota.fallback, MemoryDailyQuota) and quota.fallback.per_day == 2

    async def main():
        try:
            return [await quota.allow("ann") for _ in range(5)]
        finally:
            await quota.close()

    assert asyncio.run(main()) == [True, True, False, False, False]


def test_a_failing_redis_is_left_alone_for_a_while():
    """helper-66: with Redis hung, every rate check waited its whole timeout (`me` took
    0.2 s). After a failed check the worker's own buckets answer for
    REDIS_RETRY_SECONDS without asking Redis."""
    import redis

    tried: list[str] = []

    async def hung(keys, args):
        tried.append(keys[0])
        raise redis.exceptions.TimeoutError("Timeout reading from socket")

    async def main():
        limiter = RedisRateLimiter("redis://127.0.0.1:1/0", "feed", 600)
        limiter._client = object()  # "connected"
        limiter._count_in_window = hung
        answers = [await limiter.allow("ann") for _ in range(5)]
        limiter._client = None
        return answers

    assert asyncio.run(main()) == [True] * 5  # the local bucket's burst
    assert len(tried) == 1


def test_a_poll_write_the_store_could_not_take_costs_no_quota(settings, monkeypatch):  # noqa: F811
    """A write refused as STORE_UNAVAILABLE (the store down, or busy with an import) is
    retried by the client; each try was charged, and an author with a few writes a day
    ran out during an outage without a poll stored."""
    import gateway.services as services_module

    settings.poll_writes_per_day = 1
    upsert = ('mutation($i: PollInput!) { upsertPoll(input: $i) { __typename } }')
    poll = {"i": {"id": "during-an-import", "categories": ["news"], "question": "now?"}}

    async def scenario(client):
        monkeypatch.setattr(services_module, "STORE_WRITE_BACKLOG", 0)  # every write busy
        for _ in range(3):
            busy = (await gql(client, settings, upsert, poll, user="author")).json()
            assert codes(busy) == ["STORE_UNAVAILABLE"], busy
        monkeypatch.setattr(services_module, "STORE_WRITE_BACKLOG", 64)
        stored = (await gql(client, settings, upsert, poll, user="author")).json()
        assert stored["data"]["upsertPoll"]["__typename"] == "Poll", stored

    serve(settings, scenario)
