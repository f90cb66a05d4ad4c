"""Two stateless gateways serving one population (issue 16: several hosts).

Two real uvicorn processes with separate home directories stand in for two hosts. They
share only what a deployment shares: the event store, filters and promotions (one
PostgreSQL database through ``HUNCH_STORE_URL``), the trained models (one artifacts
directory, trained once), Redis for feed sessions and rate limits, and the JWT and
cursor secrets. Everything else, each host keeps to itself.
"""

from __future__ import annotations

import csv
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid

import httpx
import pytest

from gateway.auth import issue_token
from gateway.rate_limit import WINDOW_SECONDS
from gateway.settings import Settings
from tests.integration.conftest import Server

# The issue's bound: what one host writes, the other serves within a second.
PROPAGATION_SECONDS = 1.0
# Low enough to reach in a test, high enough that the other tests' pages stay under it.
FEED_RATE_PER_MINUTE = 30
JWT_SECRET = "two-hosts-test-jwt-secret-0123456789abcdef"
CURSOR_SECRET = "two-hosts-test-cursor-secret"
PAGES = 6

FEED = """query($first: Int!, $after: String, $filter: String, $values: JSON) {
  feed(first: $first, after: $after, filter: $filter, filterValues: $values) {
    pageInfo { endCursor } edges { node { id question categories } } } }"""
VOTE = """mutation($p: ID!, $e: String) { recordInteraction(input: {pollId: $p,
  eventType: "HUNCH", eventId: $e}) { __typename ... on Recorded { stored eventId } } }"""
UPSERT = """mutation($input: PollInput!) { upsertPoll(input: $input) {
  __typename ... on Poll { id question categories } ... on InvalidInputError { message } } }"""
CATEGORY_FILTER = "INCLUDE ItemID WHERE Items.CATEGORY IN ($CATEGORY)"

def token(user: str, admin: bool = False) -> str:
    return issue_token(Settings(jwt_secret=JWT_SECRET), user, admin=admin)


def _hunch(env: dict[str, str], *args: str) -> None:
    run = subprocess.run([sys.executable, "-m", "gateway", *args], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]


@pytest.fixture(scope="module")
def shared(home, tmp_path_factory, postgres_server, redis_server) -> dict[str, str]:
    """What every host of one deployment is configured with: the store, the models
    (the session demo engine's, trained once), Redis, the secrets."""
    root = tmp_path_factory.mktemp("two-hosts")
    artifacts = root / "artifacts"
    shutil.copytree(home / "artifacts", artifacts)
    database = f"two_hosts_{uuid.uuid4().hex[:8]}"
    env = {"HUNCH_STORE_URL": postgres_server.create_database(database),
           "HUNCH_ARTIFACTS_PATH": str(artifacts), "HUNCH_SESSION_STORE": "redis",
           # A Redis database of its own: other tests' rate-limit windows stay apart.
           "HUNCH_REDIS_URL": redis_server.url.rsplit("/", 1)[0] + "/1",
           "HUNCH_JWT_SECRET": JWT_SECRET, "HUNCH_CURSOR_SECRET": CURSOR_SECRET,
           "HUNCH_FEED_RATE_PER_MINUTE": str(FEED_RATE_PER_MINUTE),
           "HUNCH_MUTATION_RATE_PER_MINUTE": "1000000",
           "HUNCH_POLL_WRITES_PER_DAY": "1000000", "HUNCH_FOLLOW_CHANGES_PER_DAY": "1000000",
           "HUNCH_DOCUMENT_RATE_PER_MINUTE": "1000000"}
    # Set up and imported once, by a home of its own (as a deploy step would): the hosts
    # find it through the shared settings.
    deploy = {**_clean_env(), "HUNCH_HOME": str(root / "importer"), **env}
    _hunch(deploy, "db", "upgrade")
    _hunch(deploy, "data", "import", str(home / "data"))
    yield env
    # Dropped afterwards: a kept database slows the shutdown checkpoint of restart tests.
    postgres_server.drop_database(database)


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("HUNCH_")}


def _host(shared: dict[str, str], tmp_path_factory, name: str) -> Server:
    server = Server(tmp_path_factory.mktemp(f"host-{name}"), **shared)
    server.env = {**_clean_env(), **server.env}
    return server


@pytest.fixture(scope="module")
def hosts(shared, tmp_path_factory):
    a = _host(shared, tmp_path_factory, "a").start()
    try:
        b = _host(shared, tmp_path_factory, "b").start()
    except BaseException:
        a.stop()
        raise
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture(scope="module")
def users(home) -> list[str]:
    with (home / "data" / "users.csv").open() as fh:
        return [row["USER_ID"] for row in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def polls(home) -> list[str]:
    with (home / "data" / "items.csv").open() as fh:
        return [row["ITEM_ID"] for row in csv.DictReader(fh)]


def _page(host: Server, user: str, first: int = 10, after: str | None = None,
          **variables) -> dict:
    body = host.gql(FEED, {"first": first, "after": after, **variables}, token(user)).json()
    assert "errors" not in body, body
    return body["data"]["feed"]


def _ids(page: dict) -> list[str]:
    return [edge["node"]["id"] for edge in page["edges"]]


def _within(deadline_seconds: float, check) -> bool:
    """Ask ``check`` until it holds or the deadline passes: the deadline bounds the
    wait, it is not a measurement (a slow machine fails it, a fast one is not faster)."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def test_a_vote_on_one_host_excludes_the_poll_from_the_others_next_page(hosts, users):
    a, b = hosts
    voter = users[1]
    top = _ids(_page(b, voter))[0]
    # Ranking is deterministic: a new session on B places the same poll first again ...
    assert _ids(_page(b, voter))[0] == top
    r = a.gql(VOTE, {"p": top, "e": None}, token(voter)).json()
    assert r["data"]["recordInteraction"]["__typename"] == "Recorded", r
    # ... until the vote, stored through A, excludes it on B's very next page.
    assert top not in _ids(_page(b, voter))
    assert top not in _ids(_page(a, voter))


def test_a_cursor_issued_by_one_host_resumes_on_the_other(hosts, users):
    a, b = hosts
    reader = users[2]
    cursors, pages, after = [], [], None
    for turn in range(PAGES):  # A, B, A, B, ...
        host = (a, b)[turn % 2]
        cursors.append(after)
        page = _page(host, reader, 8, after)
        pages.append(_ids(page))
        after = page["pageInfo"]["endCursor"]
    served = [poll for page in pages for poll in page]
    assert len(served) == PAGES * 8 == len(set(served))
    # Staying on A gives the same sequence: each cursor B resumed, A resumes alike.
    for cursor, page in zip(cursors[1:], pages[1:]):
        assert _ids(_page(a, reader, 8, cursor)) == page


def test_a_users_feed_rate_limit_is_shared_by_both_hosts(hosts, users):
    a, b = hosts
    scroller = users[3]
    # The limit is a fixed window in Redis: start in a fresh one when little of this one
    # is left, so that the burst below cannot straddle two windows.
    left = WINDOW_SECONDS - time.time() % WINDOW_SECONDS
    if left < WINDOW_SECONDS / 3:
        time.sleep(left)
    codes = []
    for i in range(FEED_RATE_PER_MINUTE + 2):
        body = (a, b)[i % 2].gql(FEED, {"first": 1}, token(scroller)).json()
        codes.append(body["errors"][0]["extensions"]["code"] if "errors" in body else "OK")
    # Each host alone would allow the whole budget; together they allow it once.
    assert codes == ["OK"] * FEED_RATE_PER_MINUTE + ["RATE_LIMITED"] * 2


def test_a_poll_upserted_on_one_host_is_served_by_the_other_and_edits_reach_both(
        hosts, users):
    a, b = hosts
    admin = token("tools", admin=True)
    name = f"by-category-{uuid.uuid4().hex[:6]}"
    r = a.gql("""mutation($n: String!, $e: String!) { createFilter(name: $n, expression: $e) {
        __typename } }""", {"n": name, "e": CATEGORY_FILTER}, admin).json()
    assert r["data"]["createFilter"]["__typename"] == "Filter", r
    author, reader = f"author-{uuid.uuid4().hex[:6]}", users[4]
    poll, first, second = f"poll-{uuid.uuid4().hex[:8]}", f"C{uuid.uuid4().hex[:8]}", \
        f"C{uuid.uuid4().hex[:8]}"

    def served(host: Server, category: str) -> list[dict]:
        page = _page(host, reader, 5, filter=name, values={"CATEGORY": f'"{category}"'})
        return [edge["node"] for edge in page["edges"]]

    created = a.gql(UPSERT, {"input": {"id": poll, "categories": [first], "createdAt": int(
        time.time()), "question": "Which host answers first?"}}, token(author)).json()
    assert created["data"]["upsertPoll"]["__typename"] == "Poll", created
    assert served(b, second) == []  # nothing yet in the category the edit will move it to
    assert _within(PROPAGATION_SECONDS, lambda: [n["id"] for n in served(b, first)] == [poll])

    # The author edits it on B: new text, new category; both hosts serve the edit.
    edited = b.gql(UPSERT, {"input": {"id": poll, "categories": [second],
                                      "question": "Which host answers second?"}},
                   token(author)).json()
    assert edited["data"]["upsertPoll"]["__typename"] == "Poll", edited
    for host in (a, b):
        assert _within(PROPAGATION_SECONDS, lambda h=host: served(h, second) == [
            {"id": poll, "question": "Which host answers second?", "categories": [second]}])
        assert served(host, first) == []
    # Only its author may edit it, through either host.
    other = a.gql(UPSERT, {"input": {"id": poll, "categories": [first]}}, token(reader)).json()
    assert other["errors"][0]["extensions"]["code"] == "FORBIDDEN"


class Writer(threading.Thread):
    """Votes of one user through one host, back to back, until stopped or the host is
    gone; remembers the event ids the host acknowledged and the error codes it sent."""

    def __init__(self, host: Server, polls: list[str]):
        super().__init__(daemon=True)
        self.host, self.polls = host, polls
        self.user = f"writer-{uuid.uuid4().hex[:6]}"
        self.acknowledged: list[str] = []
        self.counted: dict[str, str] = {}  # event id -> the id of the event that counts
        self.error_codes: list[str] = []
        self.stopping = threading.Event()

    def poll_of(self, event_id: str) -> str:
        return self.polls[int(event_id.rsplit("-", 1)[1]) % len(self.polls)]

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {token(self.user)}"}
        with httpx.Client(timeout=30) as client:
            for i in range(1_000_000):
                if self.stopping.is_set():
                    return
                event_id = f"{self.user}-{i}"
                try:
                    body = client.post(f"{self.host.url}/graphql", headers=headers, json={
                        "query": VOTE, "variables": {"p": self.poll_of(event_id),
                                                     "e": event_id}}).json()
                except (httpx.HTTPError, ValueError):
                    return  # the host is gone
                if body.get("errors"):
                    self.error_codes.append(body["errors"][0]["extensions"]["code"])
                elif body["data"]["recordInteraction"]["__typename"] == "Recorded":
                    self.acknowledged.append(event_id)
                    # a second vote on a poll is answered with the first vote's id
                    self.counted[event_id] = body["data"]["recordInteraction"]["eventId"]

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=60)

    def not_stored(self, host: Server) -> list[str]:
        """The acknowledged events ``host`` does not find: retrying a stored event id
        answers ``stored: false`` (events are de-duplicated by id), whichever the store."""
        missing = []
        with httpx.Client(timeout=30) as client:
            for event_id in self.acknowledged:
                body = client.post(f"{host.url}/graphql", headers={
                    "Authorization": f"Bearer {token(self.user)}"}, json={
                    "query": VOTE, "variables": {"p": self.poll_of(event_id),
                                                 "e": event_id}}).json()
                if body.get("data", {}).get("recordInteraction") != {
                        "__typename": "Recorded", "stored": False,
                        "eventId": self.counted.get(event_id, event_id)}:
                    missing.append(event_id)
        return missing


def test_kill_9_of_a_host_during_writes_loses_no_acknowledged_event(
        shared, hosts, polls, tmp_path_factory):
    _, b = hosts
    victim = _host(shared, tmp_path_factory, "victim").start()
    writer = Writer(victim, polls)
    writer.start()
    try:
        assert _within(30, lambda: len(writer.acknowledged) >= 50), "the writes did not start"
        victim.stop(signal.SIGKILL)  # mid-stream: the writer is still sending
    finally:
        victim.stop(signal.SIGKILL)
        writer.stop()
    assert len(writer.acknowledged) >= 50 and writer.error_codes == []
    assert writer.not_stored(b) == []


# The typed error a write gets while the store's server is down: the client retries it
# (events are de-duplicated by id, so a retry of one that did commit is harmless).
STORE_UNAVAILABLE = "STORE_UNAVAILABLE"
# Bounds the wait while the store's pool notices the server went away or came back (it
# retries with a doubling backoff); times nothing.
STORE_RECONNECT_SECONDS = 60.0


def test_a_postgresql_restart_mid_load_fails_writes_retryably_and_keeps_the_feed(
        hosts, users, polls, postgres_server):
    postgres = postgres_server
    a, b = hosts
    reader = users[5]
    writer = Writer(a, polls)
    writer.start()
    try:
        assert _within(30, lambda: len(writer.acknowledged) >= 20), "the writes did not start"
        postgres.stop()
        # Writes fail with the typed, retryable error on both hosts ...
        for host in (a, b):
            probe = Writer(host, polls)
            assert _within(STORE_RECONNECT_SECONDS, lambda p=probe: _write_code(p) ==
                           STORE_UNAVAILABLE), "writes while PostgreSQL is down"
        # ... while the feed keeps serving from the models in memory.
        for host in (a, b):
            body = host.gql(FEED, {"first": 10}, token(reader)).json()
            assert "errors" not in body, body
            assert len(body["data"]["feed"]["edges"]) == 10
            assert "event-store" in body["extensions"]["degraded"]  # says what it lacks
    finally:
        if postgres.proc is None:
            postgres.start()  # session-scoped: the other tests need it back
    try:
        # Back without restarting the gateways: writes succeed again on both.
        for host in (a, b):
            probe = Writer(host, polls)
            assert _within(STORE_RECONNECT_SECONDS, lambda p=probe: _write_code(p) == "OK"), \
                "writes after PostgreSQL is back"
    finally:
        writer.stop()
    assert set(writer.error_codes) <= {STORE_UNAVAILABLE}
    # Nothing acknowledged before, during or after the restart was lost.
    assert writer.not_stored(b) == []


def _write_code(writer: Writer) -> str:
    """One vote through ``writer``'s host: "OK" when stored, else the error code."""
    event_id = f"{writer.user}-{len(writer.acknowledged) + len(writer.error_codes)}"
    body = writer.host.gql(VOTE, {"p": writer.poll_of(event_id), "e": event_id},
                           token(writer.user)).json()
    if body.get("errors"):
        extensions = body["errors"][0]["extensions"]
        writer.error_codes.append(extensions["code"])
        if extensions["code"] == STORE_UNAVAILABLE:
            assert extensions.get("retryable") is True, body  # the client may resend it
        return writer.error_codes[-1]
    writer.acknowledged.append(event_id)
    return "OK"
