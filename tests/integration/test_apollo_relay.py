"""The feed through the client people use: Apollo Client 4's ``relayStylePagination``,
from Node, against a real uvicorn server. Apollo splices each fetched page after the
cached edge whose cursor is ``after``, so the feed's cursors decide what the app keeps:
after N pages its cache must hold every poll served, in order. And a full page asked the
way an app of components asks it (colocated fragments) must not be refused."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.integration.conftest import CLIENTS_DIR, Server, _user, token
from tests.integration.test_redis_sessions import redis_url  # noqa: F401 (fixture)

PAGES = 10  # as a user scrolls: ten fetchMore calls
FIRST = 10  # polls per page


def page_with_apollo(node_bin: str, server: Server, user: str) -> dict[str, list[str]]:
    done = subprocess.run(
        [node_bin, "page_feed.mjs", f"{server.url}/graphql", token(user), str(PAGES),
         str(FIRST)],
        cwd=CLIENTS_DIR, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def two_worker_server(request, home):
    """Two uvicorn workers, so pages of one session are served by either of them."""
    env = {"HUNCH_SESSION_STORE": request.param}
    if request.param == "redis":
        env["HUNCH_REDIS_URL"] = request.getfixturevalue("redis_url")
    srv = Server(home, workers=2, **env).start()
    yield srv
    srv.stop()


def test_apollo_cache_holds_every_poll_served_in_order(node, two_worker_server, home):
    pages = page_with_apollo(node, two_worker_server, _user(home))
    served, cached = pages["served"], pages["cached"]
    assert len(served) == PAGES * FIRST and len(set(served)) == len(served), served
    # Before edges had their own cursors: 19 of 100 (the first edge of each page).
    assert cached == served, f"the cache holds {len(cached)} of {len(served)} polls served"


@pytest.fixture(scope="module")
def one_worker_server(home):
    srv = Server(home).start()
    yield srv
    srv.stop()


def test_a_full_page_of_colocated_fragments_is_served(node, one_worker_server, home):
    """Two components' fragments each ask the author's 3 latest polls: execution merges
    them (3 polls per author, 400 nodes for a page of 100), and so must the node
    budget, which counted them twice (700 > 500) and refused the app's page."""
    done = subprocess.run(
        [node, "colocated_page.mjs", f"{one_worker_server.url}/graphql", token(_user(home)),
         "100"], cwd=CLIENTS_DIR, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    page = json.loads(done.stdout.strip().splitlines()[-1])
    assert page["errors"] is None, page["errors"]
    assert page["edges"] == 100
    polls = page["authorPolls"]
    assert all(1 <= len(p) <= 3 for p in polls), polls[:3]
    # both fragments' fields on one merged list (Apollo adds __typename)
    assert all(fields == ["__typename", "id", "question"] for p in polls for fields in p)


def page_with_apq(node_bin: str, server: Server, user: str, poll: str,
                  method: str = "post") -> dict:
    """apq_feed.mjs: Apollo Client 4 with PersistedQueryLink pages the feed and sends a
    mutation, twice with one link (an app whose screen is opened again); with "get",
    hashed queries go by GET."""
    done = subprocess.run(
        [node_bin, "apq_feed.mjs", f"{server.url}/graphql", token(user), str(PAGES),
         str(FIRST), "2", poll, method],
        cwd=CLIENTS_DIR, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _apq_user(home, k: int) -> str:
    """A user of its own (20 feed pages): the module's other tests spend _user's burst."""
    import csv

    with (home / "data" / "users.csv").open() as fh:
        return [r["USER_ID"] for r in csv.DictReader(fh)][k]


def _first_poll(home) -> str:
    import csv

    with (home / "data" / "items.csv").open() as fh:
        return next(csv.DictReader(fh))["ITEM_ID"]


def _check_apq_run(out: dict, workers: int, hashed_by: str = "POST") -> list[dict]:
    # Before the gateway spoke APQ: 400 "No GraphQL query found" for every operation,
    # on which Apollo Client 4's link neither retries nor disables itself.
    assert out["error"] is None and out["mutationError"] is None, out
    served, cached = out["served"], out["cached"]
    assert len(served) == PAGES * FIRST and len(set(served)) == len(served), served
    assert cached == served
    assert out["mutation"] == {"__typename": "Recorded", "stored": True}
    requests = out["requests"]
    assert all(r["status"] == 200 and r["hash"] for r in requests), requests
    # documents sent in full are POSTed; hashes alone as the link was told
    assert {r["method"] for r in requests if r["query"]} <= {"POST"}, requests
    assert {r["method"] for r in requests if not r["query"]} <= {hashed_by, "POST"}
    not_found = [r for r in requests if r["codes"] == ["PERSISTED_QUERY_NOT_FOUND"]]
    with_query = [r for r in requests if r["query"]]
    assert all(r["codes"] == [] for r in with_query), with_query
    # Each document (the feed and the mutation) is sent in full at most once per worker
    # (none when an earlier test registered it: the host's workers share them), always
    # right after a worker said it did not know the hash. With the documents per worker
    # only, Node's fetch sent hash-only requests on one pooled connection and resends on
    # another: one worker stored, the other was asked, and every operation took two.
    assert len(not_found) == len(with_query) <= 2 * workers
    operations = 2 * (PAGES + 1)
    assert len(requests) == operations + len(not_found)
    # the second screen: every operation one round trip, by hash alone
    assert all(not r["query"] and r["codes"] == [] for r in requests[-(PAGES + 1):])
    return requests


def test_apollo_persisted_queries_page_the_feed_and_mutate(node, one_worker_server, home):
    out = page_with_apq(node, one_worker_server, _apq_user(home, 2), _first_poll(home))
    requests = _check_apq_run(out, workers=1)
    assert len(requests) <= 2 * (PAGES + 1) + 2  # 24: two NotFound at most, then hashes


def test_apollo_persisted_queries_across_workers(node, two_worker_server, home):
    out = page_with_apq(node, two_worker_server, _apq_user(home, 3), _first_poll(home))
    _check_apq_run(out, workers=2)


def test_apollo_persisted_queries_by_get_as_apollo_kotlin_sends_them(node, one_worker_server,
                                                                    home):
    """useGETForHashedQueries: each query's hash by GET (Apollo Kotlin's default), the
    document POSTed when the server does not know it, mutations POSTed. The gateway
    answered every such GET with 405, on which the link neither resends nor falls back."""
    out = page_with_apq(node, one_worker_server, _apq_user(home, 5), _first_poll(home), "get")
    requests = _check_apq_run(out, workers=1, hashed_by="GET")
    assert [r for r in requests if r["method"] == "GET"], requests  # hashes went by GET
