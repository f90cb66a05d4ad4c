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
