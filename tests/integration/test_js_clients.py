"""The feed through the other clients apps use, from Node against a real uvicorn server
(the packages pinned in tests/integration/clients/): Relay (relay-runtime's
ConnectionHandler, paging as usePaginationFragment's loadNext does) and urql
(@urql/exchange-graphcache's relayPagination). After N pages the list each client keeps
must be every poll served, in order, once; and each poll must keep the recommendation
that placed it (a vote names it), which a connection-level field cannot do once a client
merges pages."""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import CLIENTS_DIR, Server, _user, token

PAGES = 10
FIRST = 10


def run_node(node_bin: str, script: str, *args: str) -> dict:
    done = subprocess.run([node_bin, script, *args], cwd=CLIENTS_DIR, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def own_poll(home: Path, user: str) -> str:
    with (home / "data" / "items.csv").open() as fh:
        return next(r["ITEM_ID"] for r in csv.DictReader(fh) if r["AUTHOR_ID"] == user)


def shown_by(home: Path, recommendation_id: str, timeout: float = 10.0) -> list[str] | None:
    """The polls the server recorded as shown by a recommendation (its log is flushed to
    the event store every few seconds)."""
    deadline = time.time() + timeout
    while True:
        with sqlite3.connect(home / "events.sqlite3") as db:
            row = db.execute("SELECT item_ids FROM recommendations WHERE recommendation_id = ?",
                             (recommendation_id,)).fetchone()
        if row is not None or time.time() > deadline:
            return json.loads(row[0]) if row else None
        time.sleep(0.2)


def assert_kept_what_was_served(pages: dict) -> None:
    served, cached = pages["served"], pages["cached"]
    assert len(served) == PAGES * FIRST and len(set(served)) == len(served), served
    assert cached == served, f"the client keeps {len(cached)} of {len(served)} polls served"
    # each poll with the recommendation its page named for it
    assert pages["cachedRecommendationIds"] == pages["servedRecommendationIds"]


def test_relay_connection_holds_every_poll_served_in_order(node, server, home):
    user = _user(home)
    pages = run_node(node, "relay_feed.mjs", f"{server.url}/graphql", token(user),
                     str(PAGES), str(FIRST), own_poll(home, user))
    assert_kept_what_was_served(pages)
    assert len(set(pages["cursors"])) == len(pages["cursors"])
    assert pages["pageInfo"]["hasNextPage"] is True
    assert pages["pageInfo"]["endCursor"] == pages["cursors"][-1]
    # Relay's default record ids are `id` alone: the user's Me and the author of their own
    # poll are one record (Relay warns, naming the globally unique id requirement). Our
    # ids are unique per type only, so a Relay app sets getDataID (README); with it, no
    # warning and a record per type.
    assert pages["warnings"]["feed"] == [], pages["warnings"]["feed"]
    assert len(pages["records"]["default"]["user"]) == 1, pages["records"]
    assert any("globally unique id" in w for w in pages["warnings"]["default"]), pages["warnings"]
    assert pages["warnings"]["typename"] == [], pages["warnings"]["typename"]
    records = pages["records"]["typename"]
    assert [r["__typename"] for r in records["user"]] == ["Me", "Author"], records
    assert records["poll"]["__typename"] == "Poll"


@pytest.mark.parametrize("method", ["get", "post"])
def test_urql_graphcache_holds_every_poll_served_in_order(node, server, home, method):
    """urql's default sends each query by GET (within 2,048 characters of URL), which
    the gateway refused (a 405 for every feed page); "post" is preferGetMethod: false."""
    with (home / "data" / "users.csv").open() as fh:  # a user (and feed-rate burst) each
        user = [r["USER_ID"] for r in csv.DictReader(fh)][2 if method == "get" else 3]
    pages = run_node(node, "urql_feed.mjs", f"{server.url}/graphql", token(user),
                     str(PAGES), str(FIRST), method)
    assert_kept_what_was_served(pages)
    assert pages["cachedOnly"] == pages["served"]  # the list read again from the cache
    assert set(pages["methods"]) == {method.upper()}, pages["methods"]


@pytest.mark.parametrize("method", ["post", "get"])
def test_urql_persisted_exchange_pages_the_feed_and_mutates(node, server, home, method):
    """@urql/exchange-persisted (mutations too), twice with one client: by POST, and with
    queries and their hashes by GET (preferGetForPersistedQueries, as Apollo Kotlin's
    default sends hashes), which the gateway refused with 405. Before the gateway spoke
    APQ: 400 "No GraphQL query found", on which urql does not resend."""
    # A user of its own: this module's other tests spend _user's feed-rate burst.
    with (home / "data" / "users.csv").open() as fh:
        user = [r["USER_ID"] for r in csv.DictReader(fh)][1 if method == "post" else 4]
    out = run_node(node, "urql_apq.mjs", f"{server.url}/graphql", token(user),
                   str(PAGES), str(FIRST), "2", method)
    assert out["error"] is None, out["error"]
    assert len(out["served"]) == PAGES * FIRST == len(set(out["served"]))
    assert out["mutation"] == {"__typename": "Recorded", "stored": True}
    requests = out["requests"]
    assert all(r["status"] == 200 and r["hash"] for r in requests), requests
    by_hash = [r for r in requests if not r["query"]]
    assert {r["method"] for r in by_hash if r["operation"] == "mutation"} == {"POST"}
    assert {r["method"] for r in by_hash if r["operation"] == "query"} == {method.upper()}
    not_found = [r for r in requests if r["codes"] == ["PERSISTED_QUERY_NOT_FOUND"]]
    with_query = [r for r in requests if r["query"]]
    # each document in full once at most (none when the host already had it)
    assert len(not_found) == len(with_query) <= 2
    assert len(requests) == 2 * (PAGES + 1) + len(not_found)
    assert all(not r["query"] and r["codes"] == [] for r in requests[-(PAGES + 1):])


def test_each_edge_names_the_recommendation_that_placed_its_poll(server, home):
    """A page that starts inside one recommendation and goes past its end (`after` an edge
    that is not the last, or a larger `first`) holds polls of two: the page's
    recommendationId named only the first, and the second's was never handed out (votes on
    its polls could not name it). Each edge carries its own."""
    user_token = token("u0007")
    query = """query($first: Int!, $after: String) { feed(first: $first, after: $after) {
        recommendationId edges { cursor recommendationId node { id } } } }"""

    def page(**variables) -> dict:
        body = server.gql(query, variables, token=user_token).json()
        assert "errors" not in body, body["errors"]
        return body["data"]["feed"]

    first = page(first=10)
    straddling = page(first=10, after=first["edges"][4]["cursor"])
    names = [e["recommendationId"] for e in straddling["edges"]]
    assert names[:5] == [first["recommendationId"]] * 5
    assert len(set(names[5:])) == 1 and names[5] != names[0], names
    for name in set(names):
        polls = [e["node"]["id"] for e in straddling["edges"] if e["recommendationId"] == name]
        assert set(polls) <= set(shown_by(home, name) or []), (name, polls)


SESSION_SECONDS = 2


@pytest.fixture(scope="module")
def strict_server(home):
    """Small limits (bursts of 10 feed pages and 10 reads) and two-second sessions."""
    srv = Server(home, HUNCH_FEED_RATE_PER_MINUTE="3", HUNCH_READ_RATE_PER_MINUTE="1",
                 HUNCH_SESSION_TTL_SECONDS=str(SESSION_SECONDS)).start()
    yield srv
    srv.stop()


_users = iter(f"u{n:04d}" for n in range(100, 150))  # limits are per user: one each


@pytest.mark.parametrize("client", ["apollo", "relay", "urql"])
@pytest.mark.parametrize("scenario", ["unauthenticated", "expired", "rate-limited", "partial"])
def test_each_client_surfaces_our_errors_and_caches_nothing_wrong(node, strict_server, home,
                                                                  client, scenario):
    user = next(_users)
    user_token = "not-a-token" if scenario == "unauthenticated" else token(user)
    if scenario == "partial":  # the reads' burst spent: the poll is refused, the feed served
        for _ in range(10):
            strict_server.gql("{ me { id } }", token=user_token)
    out = run_node(node, "client_errors.mjs", client, f"{strict_server.url}/graphql", scenario,
                   user_token, "5", own_poll(home, "u0000"), str(SESSION_SECONDS))
    steps = out["steps"]
    if scenario == "unauthenticated":
        assert steps == [{"label": "first page", "codes": ["UNAUTHENTICATED"], "dataNull": True,
                          "merged": None}]
    elif scenario == "expired":
        one, expired, again = steps
        assert expired["codes"] == ["CURSOR_EXPIRED"] and expired["dataNull"]
        assert expired["merged"] == one["merged"] and len(one["merged"]) == 5  # kept as it was
        assert again["codes"] == [] and len(again["merged"]) == 5  # a new session
    elif scenario == "rate-limited":
        *served, refused = steps
        assert len(served) == 10 and all(s["codes"] == [] for s in served)
        assert refused["codes"] == ["RATE_LIMITED"] and refused["dataNull"]
        assert refused["merged"] == served[-1]["merged"] and len(set(refused["merged"])) == 50
    else:
        (answer,) = steps
        assert answer["codes"] == ["RATE_LIMITED"] and not answer["dataNull"]
        # What each client does with a partial result is its own documented policy:
        # Apollo's default errorPolicy "none" drops the whole result (the feed too);
        # Relay stores the poll as null (the field error is kept for @catch and
        # @throwOnFieldError, a plain read sees no poll); graphcache does not cache it.
        expected = {"apollo": (None, None),
                    "relay": (5, {"poll": None, "missing": False}),
                    "urql": (5, None)}[client]
        merged = answer["merged"]
        assert (None if merged is None else len(merged), out["cachedPoll"]) == expected
