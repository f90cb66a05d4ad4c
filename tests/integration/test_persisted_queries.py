"""Automatic Persisted Queries over real HTTP (gateway/persisted_queries.py): the
protocol Apollo's PersistedQueryLink and urql's persistedExchange speak, and what a
hostile client may send in its place."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from tests.integration.conftest import Server, _user, token
from tests.integration.test_redis_sessions import redis_url  # noqa: F401 (fixture)

FEED = """query Feed($first: Int!, $after: String) {
  feed(first: $first, after: $after) {
    edges { cursor node { id } }
    pageInfo { hasNextPage endCursor }
  }
}"""
ME = "query Me { me { id } }"
SEEN = """mutation Seen($pollIds: [ID!]!) {
  recordImpressions(pollIds: $pollIds) { __typename ... on Recorded { stored } }
}"""


def sha(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()


def persisted(digest, version=1) -> dict:
    return {"persistedQuery": {"version": version, "sha256Hash": digest}}


def post(server: Server, body: dict, user: str | None, **kw) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token(user)}"} if user else {}
    return httpx.post(f"{server.url}/graphql", json=body, headers=headers, timeout=30, **kw)


def codes(response: httpx.Response) -> list[str]:
    return [e["extensions"]["code"] for e in response.json().get("errors", [])]


@pytest.fixture(scope="module")
def apq_server(home):
    srv = Server(home).start()
    yield srv
    srv.stop()


def test_a_hash_unknown_then_registered_then_run_by_hash(apq_server, home):
    user = _user(home)
    variables = {"first": 5}
    # a comment with non-ASCII text: the hash is of the UTF-8 bytes, as clients hash
    query = FEED + " # café"
    ask = {"variables": variables, "extensions": persisted(sha(query))}
    r = post(apq_server, ask, user)
    assert r.status_code == 200, r.text  # Apollo Server's answer: the links retry on it
    assert r.json() == {"errors": [{"message": "PersistedQueryNotFound",
                                    "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"}}]}
    assert r.headers["cache-control"] == "private, no-cache, must-revalidate"

    r = post(apq_server, {**ask, "query": query}, user)
    assert r.status_code == 200 and "errors" not in r.json(), r.text
    first = r.json()["data"]["feed"]["edges"]
    assert len(first) == 5

    r = post(apq_server, ask, user)  # by hash alone now: the stored document runs
    assert r.status_code == 200 and "errors" not in r.json(), r.text
    assert len(r.json()["data"]["feed"]["edges"]) == 5
    after = r.json()["data"]["feed"]["pageInfo"]["endCursor"]
    r = post(apq_server, {"variables": {"first": 5, "after": after},
                          "extensions": persisted(sha(query).upper())}, user)
    assert "errors" not in r.json(), r.text  # the hash in upper case is the same hash


def test_a_persisted_mutation_runs_by_hash(apq_server, home):
    user = _user(home)
    poll = post(apq_server, {"query": FEED, "variables": {"first": 1}}, user
                ).json()["data"]["feed"]["edges"][0]["node"]["id"]
    body = {"variables": {"pollIds": [poll]}, "extensions": persisted(sha(SEEN))}
    assert codes(post(apq_server, body, user)) == ["PERSISTED_QUERY_NOT_FOUND"]
    r = post(apq_server, {**body, "query": SEEN}, user)
    assert r.json()["data"]["recordImpressions"]["__typename"] == "Recorded", r.text
    r = post(apq_server, body, user)
    assert r.json()["data"]["recordImpressions"]["__typename"] == "Recorded", r.text


def test_a_mismatched_hash_is_refused_and_registers_nothing(apq_server, home):
    user = _user(home)
    other = "query Other { me { id locale } }"
    r = post(apq_server, {"query": other, "extensions": persisted(sha(ME))}, user)
    assert r.status_code == 400 and codes(r) == ["BAD_REQUEST"], r.text
    assert "is not the SHA-256 of the query" in r.json()["errors"][0]["message"]
    # ME's hash still names no document: the other one was not put under it ...
    assert codes(post(apq_server, {"extensions": persisted(sha(ME))}, user)) == [
        "PERSISTED_QUERY_NOT_FOUND"]
    # ... and once ME is stored, a mismatch cannot replace it
    assert "errors" not in post(apq_server, {"query": ME, "extensions": persisted(sha(ME))},
                                user).json()
    r = post(apq_server, {"query": other, "extensions": persisted(sha(ME))}, user)
    assert r.status_code == 400
    r = post(apq_server, {"extensions": persisted(sha(ME))}, user)
    assert r.json() == {"data": {"me": {"id": user}}}


@pytest.mark.parametrize("extensions", [
    {"persistedQuery": {"version": 2, "sha256Hash": "a" * 64}},
    {"persistedQuery": {"version": "1", "sha256Hash": "a" * 64}},
    {"persistedQuery": {"version": True, "sha256Hash": "a" * 64}},
    {"persistedQuery": {"sha256Hash": "a" * 64}},
    {"persistedQuery": {"version": 1, "sha256Hash": "a" * 63}},
    {"persistedQuery": {"version": 1, "sha256Hash": "g" * 64}},
    {"persistedQuery": {"version": 1, "sha256Hash": "a" * 64 + "\n"}},
    {"persistedQuery": {"version": 1, "sha256Hash": 12345}},
    {"persistedQuery": {"version": 1, "sha256Hash": ["a" * 64]}},
    {"persistedQuery": {"version": 1, "sha256Hash": None}},
    {"persistedQuery": {"version": 1}},
    {"persistedQuery": "a" * 64},
    {"persistedQuery": ["a" * 64]},
])
def test_a_malformed_persisted_query_is_a_400_saying_what_is_wrong(apq_server, home, extensions):
    for body in ({"extensions": extensions}, {"query": ME, "extensions": extensions}):
        r = post(apq_server, body, _user(home))
        assert r.status_code == 400 and codes(r) == ["BAD_REQUEST"], (body, r.text)
        message = r.json()["errors"][0]["message"]
        assert "persisted" in message.lower() or "persistedQuery" in message, message


def test_a_huge_extensions_object_is_bounded_by_the_body_limit(apq_server, home):
    user = _user(home)
    junk = {f"k{i}": "x" * 50 for i in range(1_000)}  # ~60 KB beside the hash
    r = post(apq_server, {"query": ME, "extensions": {**junk, **persisted(sha(ME))}}, user)
    assert r.json() == {"data": {"me": {"id": user}}}, r.text[:500]
    nested = {"persistedQuery": {"version": 1, "sha256Hash": sha(ME), "junk": junk}}
    assert post(apq_server, {"extensions": nested}, user).json() == {"data": {"me": {"id": user}}}
    r = post(apq_server, {"extensions": {"x" * 70_000: 1, **persisted(sha(ME))}}, user)
    assert r.status_code == 413 and codes(r) == ["PAYLOAD_TOO_LARGE"]


def test_documents_are_not_secret_but_run_as_the_caller(apq_server, home):
    """A hash another user registered runs for anyone signed in, as that caller (as
    sending the same text would); an anonymous caller learns nothing of it."""
    query = "query WhoAmI { me { id } }"
    author, reader = _user(home), "someone-else"
    post(apq_server, {"query": query, "extensions": persisted(sha(query))}, author)
    r = post(apq_server, {"extensions": persisted(sha(query))}, reader)
    assert r.json() == {"data": {"me": {"id": reader}}}
    r = post(apq_server, {"extensions": persisted(sha(query))}, None)
    assert codes(r) == ["UNAUTHENTICATED"]


def test_only_documents_that_validate_are_stored(apq_server, home):
    user = _user(home)
    for query in ("query Bad { me { nope } }",  # an unknown field
                  "query Broken { me { id }",  # a syntax error
                  "query Deep { feed(first: 1) { edges { node { author { polls { author {"
                  " polls { author { polls { id } } } } } } } } } }"):  # over the depth
        r = post(apq_server, {"query": query, "extensions": persisted(sha(query))}, user)
        assert r.json().get("errors") and not r.json().get("data"), (query, r.text)
        if query.startswith("query Deep"):
            assert "exceeds maximum operation depth" in r.text, r.text
        assert codes(post(apq_server, {"extensions": persisted(sha(query))}, user)) == [
            "PERSISTED_QUERY_NOT_FOUND"], query


def test_the_node_budget_applies_to_a_persisted_document(apq_server, home):
    user = _user(home)
    query = ("query Big($n: Int!) { feed(first: $n) { edges { node { id "
             "author { polls(first: $n) { id } } } } } }")
    body = {"variables": {"n": 5}, "extensions": persisted(sha(query))}
    assert "errors" not in post(apq_server, {**body, "query": query}, user).json()
    r = post(apq_server, {**body, "variables": {"n": 100}}, user)  # 100 x 100 polls
    assert r.json()["data"] is None and "over the budget of" in r.text, r.text


def get(server: Server, params: dict, user: str | None) -> httpx.Response:
    """A GET as Apollo Kotlin sends a persisted query's hash by default
    (``httpMethodForHashedQueries = HttpMethod.Get``): JSON values in the query string."""
    import json

    params = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in params.items()}
    headers = {"Accept": "application/json"}
    if user:
        headers["Authorization"] = f"Bearer {token(user)}"
    return httpx.get(f"{server.url}/graphql", params=params, headers=headers, timeout=30)


def test_a_persisted_query_runs_by_get_as_apollo_kotlin_sends_it(apq_server, home):
    user = _user(home)
    query = FEED + " # by GET"
    ask = {"variables": {"first": 3}, "extensions": persisted(sha(query)),
           "operationName": "Feed"}
    r = get(apq_server, ask, user)
    assert r.status_code == 200 and codes(r) == ["PERSISTED_QUERY_NOT_FOUND"], r.text
    assert "errors" not in post(apq_server, {**ask, "query": query}, user).json()  # resent
    r = get(apq_server, ask, user)
    assert r.status_code == 200 and "errors" not in r.json(), r.text
    assert len(r.json()["data"]["feed"]["edges"]) == 3
    # one user's page: kept by no cache (a shared one, nor the app's own HTTP cache)
    assert r.headers["cache-control"] == "no-store"
    # signed-in callers only, as by POST
    assert codes(get(apq_server, ask, None)) == ["UNAUTHENTICATED"]


def test_a_mutation_is_never_run_by_get(apq_server, home):
    """A GET must not change anything: a mutation sent by GET, as a document or by the
    hash of one stored before, is refused and does nothing."""
    user = _user(home)
    poll = post(apq_server, {"query": FEED, "variables": {"first": 1}}, user
                ).json()["data"]["feed"]["edges"][0]["node"]["id"]
    variables = {"pollIds": [poll]}
    refused = get(apq_server, {"query": SEEN, "variables": variables}, user)
    assert refused.status_code == 405 and codes(refused) == ["METHOD_NOT_ALLOWED"]
    assert "POST" in refused.json()["errors"][0]["message"]
    body = {"variables": variables, "extensions": persisted(sha(SEEN))}
    stored = post(apq_server, {**body, "query": SEEN}, user).json()
    assert stored["data"]["recordImpressions"]["__typename"] == "Recorded", stored
    refused = get(apq_server, body, user)
    assert refused.status_code == 405 and codes(refused) == ["METHOD_NOT_ALLOWED"]


def test_registering_documents_costs_the_document_rate(home):
    """A client that registers hashes in bulk is held to HUNCH_DOCUMENT_RATE_PER_MINUTE
    like one that sends new documents; a refused one is not stored."""
    srv = Server(home, HUNCH_DOCUMENT_RATE_PER_MINUTE="10").start()
    try:
        user = _user(home)
        answers = []
        for k in range(13):
            query = f"query Q{k} {{ me {{ id }} }}"
            answers.append((query, post(srv, {"query": query,
                                              "extensions": persisted(sha(query))}, user)))
        refused = [q for q, r in answers if codes(r) == ["RATE_LIMITED"]]
        assert len(refused) == 3, [r.text for _, r in answers]
        for query in refused:
            r = post(srv, {"extensions": persisted(sha(query))}, user)
            assert codes(r) == ["PERSISTED_QUERY_NOT_FOUND"]
        # one stored and prepared runs by hash at no cost to the rate
        stored = answers[0][0]
        r = post(srv, {"extensions": persisted(sha(stored))}, user)
        assert r.json() == {"data": {"me": {"id": user}}}, r.text
    finally:
        srv.stop()


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def two_workers(request, home):
    env = {"HUNCH_SESSION_STORE": request.param}
    if request.param == "redis":
        env["HUNCH_REDIS_URL"] = request.getfixturevalue("redis_url")
    srv = Server(home, workers=2, **env).start()
    yield srv, request.param
    srv.stop()


def test_a_document_registered_with_one_worker_runs_on_every_worker(two_workers, home):
    """The host's workers share registrations (SQLite), every host's do through Redis:
    each request below is a new connection, which either worker may take. Per worker
    only, about half of them were PersistedQueryNotFound, and a Node client that sent
    hashes and resends on different pooled connections got NotFound every time."""
    srv, store = two_workers
    user = _user(home)
    query = f"query Shared{store} {{ me {{ id }} }}"  # new to this home's shared file
    body = {"extensions": persisted(sha(query))}
    assert codes(post(srv, body, user)) == ["PERSISTED_QUERY_NOT_FOUND"]
    assert "errors" not in post(srv, {**body, "query": query}, user).json()
    answers = [post(srv, body, user).json() for _ in range(30)]
    assert all(a == {"data": {"me": {"id": user}}} for a in answers), answers
