"""Hostile clients against a real uvicorn server: schemathesis-generated GraphQL for every
field of schema.graphql (valid and invalid arguments, with tokens that let the
resolvers run) and hand-written requests that broke the gateway before (non-object
JSON, bad UTF-8, lone surrogates, huge ids and numbers, deep documents, wrong types).

Every answer is judged the same way: no 5xx, no INTERNAL_SERVER_ERROR, no stack trace
or internal path. A test prints one summary line (cases tried, 5xx, internal errors,
leaks) and fails listing the first offending requests.
"""

from __future__ import annotations

import csv
import http.client
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import jwt
import pytest

from gateway.auth import issue_token
from gateway.settings import Settings
from tests.integration.conftest import _free_port

REPO = Path(__file__).resolve().parents[2]

# Generated cases per schema field and mode (valid / invalid arguments): 15 fields x 2
# modes x 25 is ~750 requests, ~30 s on a 2-core machine. Raise it to search longer:
# ADVERSARIAL_EXAMPLES=500 python -m pytest tests/integration/test_adversarial.py
EXAMPLES_PER_OPERATION = int(os.environ.get("ADVERSARIAL_EXAMPLES", "25"))

# What a response must never contain: signs of a traceback or of the server's files.
LEAK_MARKERS = ("Traceback", 'File "', '.py"', ".py'", "site-packages", "/work/",
                str(REPO))

# The largest body the gateway takes is HUNCH_MAX_BODY_BYTES (64 KiB): ids this long fit.
HUGE = 60_000


@dataclass
class Tally:
    """Counts what hostile requests got back; keeps the first offenders to show."""

    name: str
    cases: int = 0
    server_errors: int = 0
    internal_errors: int = 0
    leaks: int = 0
    not_graphql: int = 0  # answers from /graphql that are not GraphQL-shaped JSON
    offenders: list[str] = field(default_factory=list)
    stalled: bool = False  # a request got no answer: the server is pinned, stop sending

    def send(self, label: str, sent: bytes | str, call, graphql_shaped: bool = True) -> None:
        """Make one request with ``call()`` and judge its answer (none is a failure)."""
        if self.stalled:
            return
        try:
            response = call()
        except httpx.HTTPError as exc:
            self.stalled = True
            self.judge(f"{label} (no answer; nothing more sent)", sent, None, text=repr(exc))
            return
        self.judge(label, sent, response, graphql_shaped=graphql_shaped)

    def judge(self, label: str, sent: bytes | str, response: httpx.Response | None,
              *, status: int | None = None, text: str | None = None,
              graphql_shaped: bool = False) -> None:
        self.cases += 1
        status = response.status_code if response is not None else status
        text = response.text if response is not None else text or ""
        sent_text = sent.decode("utf-8", "replace") if isinstance(sent, bytes) else sent
        problems = []
        if status is None or status >= 500:
            self.server_errors += 1
            problems.append(f"HTTP {status}" if status else "no answer")
        if "INTERNAL_SERVER_ERROR" in text or "Unexpected error." in text:
            self.internal_errors += 1
            problems.append("INTERNAL_SERVER_ERROR")
        leaked = [m for m in LEAK_MARKERS if m in text and m not in sent_text]
        if leaked:
            self.leaks += 1
            problems.append(f"leaks {leaked}")
        if graphql_shaped and not _graphql_shaped(text):
            self.not_graphql += 1
            problems.append("not GraphQL-shaped JSON")
        if problems and len(self.offenders) < 15:
            self.offenders.append(f"{label}: {', '.join(problems)}\n    sent: {sent_text[:300]!r}"
                                  f"\n    got: {text[:300]!r}")

    def line(self) -> str:
        return (f"{self.name}: {self.cases} cases tried, {self.server_errors} 5xx, "
                f"{self.internal_errors} internal errors, {self.leaks} leaks, "
                f"{self.not_graphql} not GraphQL-shaped")

    def report(self, capsys: pytest.CaptureFixture) -> None:
        with capsys.disabled():  # the summary shows in every run, not only on failure
            print("\n" + self.line())
        assert self.cases > 0
        assert not (self.server_errors or self.internal_errors or self.leaks
                    or self.not_graphql), (
            self.line() + "\n" + "\n".join(self.offenders))


def _graphql_shaped(text: str) -> bool:
    try:
        payload = json.loads(text)
    except ValueError:
        return False
    errors = payload.get("errors") if isinstance(payload, dict) else None
    if errors is not None:  # each error has a message and a code
        return isinstance(errors, list) and all(
            isinstance(e, dict) and e.get("message") and (e.get("extensions") or {}).get("code")
            for e in errors)
    return isinstance(payload, dict) and "data" in payload


class HostileServer:
    """``hunch serve`` on a copy of the demo home (fuzzed admin mutations change its
    promotions and filters), its log in a file (a pipe nobody reads would fill and
    stall the server under thousands of logged errors)."""

    def __init__(self, home: Path, log: Path):
        self.home, self.log = home, log
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.users = _users(home)
        # Per-user limits would turn most fuzzed requests into RATE_LIMITED before a
        # resolver runs; the limiters have their own tests.
        env = {**os.environ, "HUNCH_HOME": str(home), "HUNCH_PORT": str(self.port),
               "HUNCH_MUTATION_RATE_PER_MINUTE": "1000000", "HUNCH_FEED_RATE_PER_MINUTE": "1000000",
               "HUNCH_READ_RATE_PER_MINUTE": "1000000", "HUNCH_POLL_WRITES_PER_DAY": "1000000",
               "HUNCH_FOLLOW_CHANGES_PER_DAY": "1000000",
               "HUNCH_DOCUMENT_RATE_PER_MINUTE": "1000000"}
        with log.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve"], env=env,
                                         stdout=out, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("server did not start in 60 s")

    def token(self, user: str | None = None, admin: bool = False) -> str:
        return issue_token(Settings(), user or self.users[0], admin=admin)

    def post(self, content: bytes | str, token: str | None = None,
             content_type: str | None = "application/json", **headers: str) -> httpx.Response:
        if content_type:
            headers["content-type"] = content_type
        if token:
            headers["authorization"] = f"Bearer {token}"
        return httpx.post(f"{self.url}/graphql", content=content, headers=headers, timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:  # a request pinned the event loop
                self.proc.kill()
                self.proc.wait(timeout=30)
                raise


def _users(home: Path) -> list[str]:
    with (home / "data" / "users.csv").open() as fh:
        return [row["USER_ID"] for row in csv.DictReader(fh)]


def _polls(home: Path) -> list[str]:
    with (home / "data" / "items.csv").open() as fh:
        return [row["ITEM_ID"] for row in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def hostile(home, tmp_path_factory):
    copy = tmp_path_factory.mktemp("hostile") / "home"
    shutil.copytree(home, copy)
    server = HostileServer(copy, copy.parent / "server.log")
    yield server
    server.stop()


# ----------------------------------------------------------------- schemathesis


def test_schemathesis_finds_no_server_error_internal_error_or_leak(hostile, capsys):
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.generation import GenerationMode

    tally = Tally("adversarial schemathesis")
    schema = schemathesis.graphql.from_path(REPO / "schema.graphql")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15  # every Query and Mutation field
    # Tokens that let resolvers run: admins for the internal-tool fields, users for the
    # rest, several users so per-user state (sessions, history) varies.
    tokens = itertools.cycle([hostile.token(u, admin=(i % 2 == 0))
                              for i, u in enumerate(hostile.users[:8])])
    base_url = f"{hostile.url}/graphql"
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                      derandomize=True,  # the same cases in every CI run
                      suppress_health_check=list(HealthCheck),
                      phases=[Phase.explicit, Phase.generate])
            @given(case=operation.as_strategy(generation_mode=mode))
            def call(case) -> None:
                response = case.call(base_url=base_url, timeout=60,
                                     headers={"Authorization": f"Bearer {next(tokens)}"})
                tally.judge(f"{operation.label} ({mode.value})", json.dumps(case.body),
                            None, status=response.status_code, text=response.text)

            call()
    tally.report(capsys)


# ----------------------------------------------------------------- hand-written


def _gql(query: str, variables: dict | None = None) -> str:
    return json.dumps({"query": query, "variables": variables or {}})


def _surrogate(query: str, variables: dict) -> str:
    """A body whose variables hold lone surrogates as JSON escapes ("\\ud800"), which
    json.dumps writes for a Python str holding one."""
    return json.dumps({"query": query, "variables": variables})


FEED = "query($f: Int, $a: String, $u: ID, $n: String, $v: JSON) { feed(first: $f, after: $a, userId: $u, filter: $n, filterValues: $v) { recommendationId edges { cursor node { id } } } }"
POLL = "query($id: ID!) { poll(id: $id) { id question author { id polls(first: 3) { id } } } }"
IMPRESSIONS = "mutation($p: [ID!]!, $r: String, $at: Float) { recordImpressions(pollIds: $p, recommendationId: $r, at: $at) { __typename } }"
INTERACTION = "mutation($i: InteractionInput!) { recordInteraction(input: $i) { __typename } }"
FOLLOW = "mutation($u: ID!) { follow(userId: $u) { __typename } unfollow(userId: $u) { __typename } }"
UPSERT = "mutation($i: PollInput!) { upsertPoll(input: $i) { __typename } }"
CREATE_FILTER = "mutation($n: String!, $e: String!) { createFilter(name: $n, expression: $e) { __typename } }"
CREATE_PROMOTION = "mutation($n: String!, $i: PromotionInput!) { createPromotion(name: $n, input: $i) { __typename } }"


def _bodies(poll: str, user: str) -> list[tuple[str, bytes | str, bool]]:
    """(label, body, needs admin) for every hand-written hostile request."""
    lone = "\ud800"
    interaction = {"pollId": poll, "eventType": "HUNCH"}
    upsert = {"id": "hostile-poll", "categories": ["X"], "authorId": user}
    cases: list[tuple[str, bytes | str, bool]] = []
    add = lambda label, body, admin=False: cases.append((label, body, admin))  # noqa: E731
    # JSON that is not a GraphQL request
    for body in ("null", "123", '"x"', "true", "false", "[]", "[1]", '[{"query": "{ me { id } }"}]',
                 "{}", '{"query": 123}', '{"query": null}', '{"query": "{ me { id } }", "variables": []}',
                 '{"query": "{ me { id } }", "variables": "x"}',
                 '{"query": "{ me { id } }", "operationName": 123}',
                 '{"query": "{ me { id } }", "operationName": "Nope"}',
                 '{"query": "{ me { id } }", "extensions": []}',
                 '{"query": "query A { me { id } } query B { me { id } }"}',
                 '{"query": "subscription { me { id } }"}',
                 '{"query": "{ me { id } }", "variables": {"a": NaN}}',
                 '{"query": "{ me { id } }", "variables": {"a": Infinity}}',
                 '{"query": "{ me { id } }", "variables": {"a": -Infinity}}',
                 "", "{", '{"query": "{ me { id } }"', "\ufeff{}"):
        add(f"body {body[:40]!r}", body)
    # bytes that are not UTF-8, or JSON in another encoding
    for raw in (b"\xff\xfe", b'{"query": "\xc3\x28"}', b'{"query": "\xc0\xaf"}',
                b'{"query": "\xed\xa0\x80"}', b'{"query": "{ me { id } }"}\xff',
                '{"query": "{ me { id } }"}'.encode("utf-16"),
                '{"query": "{ me { id } }"}'.encode("utf-32")):
        add(f"bytes {raw[:20]!r}", raw)
    # nesting deeper than any parser recursion limit, in JSON and in GraphQL
    add("JSON nested 30000 deep", "[" * 30_000 + "]" * 30_000)
    add("variables nested 900 deep", _gql(FEED, {"v": json.loads("[" * 900 + "]" * 900)}))
    add("JSON literal nested 500 deep", _gql("{ feed(filterValues: " + "[" * 500 + "]" * 500
                                              + ") { recommendationId } }"))
    add("object literal nested 300 deep", _gql("{ feed(filterValues: " + "{a: " * 300 + "1"
                                                + "}" * 300 + ") { recommendationId } }"))
    add("selection 40 deep", _gql("{ poll(id: \"%s\") { " % poll
                                  + "author { polls { " * 20 + "id" + " } }" * 20 + " } }"))
    add("braces 3000 deep", _gql("{" * 3000 + "}" * 3000))
    add("fragment cycle", _gql("{ me { ...A } } fragment A on Me { ...B } fragment B on Me { ...A }"))
    fragments = " ".join(f"fragment F{i} on Poll {{ id ...F{i + 1} ...F{i + 1} }}"
                         for i in range(30)) + " fragment F30 on Poll { id }"
    add("fragments doubling 30 times", _gql(f'{{ poll(id: "{poll}") {{ ...F0 }} }} {fragments}'))
    add("500 directives", _gql("{ me { id " + "@include(if: true) " * 500 + "} }"))
    add("aliases 40", _gql("{ " + " ".join(f"a{i}: feed(first: 100) {{ recommendationId }}"
                                          for i in range(40)) + " }"))
    # lone surrogates, in variables (JSON escapes) and in GraphQL literals
    add("lone surrogate in feed.after", _surrogate(FEED, {"a": lone}))
    add("lone surrogate in feed.filter", _surrogate(FEED, {"n": lone}))
    add("lone surrogate in feed.userId", _surrogate(FEED, {"u": lone}), True)
    add("lone surrogate in feed.filterValues", _surrogate(FEED, {"n": "f", "v": {lone: lone}}))
    add("lone surrogate in poll.id", _surrogate(POLL, {"id": "p" + lone}))
    add("lone surrogate in recommendationId", _surrogate(IMPRESSIONS, {"p": [poll], "r": lone}))
    add("lone surrogate in pollIds", _surrogate(IMPRESSIONS, {"p": [lone]}))
    for key in ("pollId", "eventType", "recommendationId", "eventId"):
        add(f"lone surrogate in recordInteraction.{key}",
            _surrogate(INTERACTION, {"i": {**interaction, key: "\udfff" + key}}))
    add("lone surrogate in impression", _surrogate(INTERACTION, {"i": {**interaction,
                                                                       "impression": [lone]}}))
    add("lone surrogate in follow.userId", _surrogate(FOLLOW, {"u": lone}))
    add("lone surrogate in upsertPoll.question", _surrogate(UPSERT, {"i": {**upsert,
                                                                         "question": lone}}))
    add("lone surrogate in a variable name", _surrogate(FEED, {lone: 1}))
    add("lone surrogate in createFilter", _surrogate(CREATE_FILTER, {"n": lone, "e": lone}), True)
    add("lone surrogate in a GraphQL literal", _gql('{ feed(after: "\\ud800") { recommendationId } }'))
    add("lone low surrogate in a GraphQL literal", _gql('{ poll(id: "\\udc00x") { id } }'))
    # huge ids (the body cap allows ~60 KB)
    big = "p" * HUGE
    add("huge poll(id)", _gql(POLL, {"id": big}))
    add("huge feed.after", _gql(FEED, {"a": big}))
    add("huge feed.filter", _gql(FEED, {"n": big}))
    add("huge feed.userId", _gql(FEED, {"u": big}), True)
    add("huge pollIds", _gql(IMPRESSIONS, {"p": [big]}))
    add("huge recommendationId", _gql(IMPRESSIONS, {"p": [poll], "r": big}))
    add("huge recordInteraction.pollId", _gql(INTERACTION, {"i": {**interaction, "pollId": big}}))
    add("huge eventType", _gql(INTERACTION, {"i": {**interaction, "eventType": big}}))
    add("huge eventId", _gql(INTERACTION, {"i": {**interaction, "eventId": big}}))
    add("huge follow.userId", _gql(FOLLOW, {"u": big}))
    add("huge upsertPoll.id", _gql(UPSERT, {"i": {**upsert, "id": big}}))
    add("huge upsertPoll.question", _gql(UPSERT, {"i": {**upsert, "question": big}}))
    add("huge filter name", _gql(CREATE_FILTER, {"n": big, "e": "EXCLUDE ItemID WHERE Items.CATEGORY IN (\"x\")"}), True)
    add("huge filter expression", _gql(CREATE_FILTER, {"n": "f", "e": "(" * 20_000}), True)
    add("1000 impressions", _gql(IMPRESSIONS, {"p": [poll] * 1000}))
    # huge and odd numbers
    for first in (2**31, -(2**31) - 1, 1e308, -1, 0, 1.5):
        add(f"feed.first {first}", _gql(FEED, {"f": first}))
    add("feed.first literal 2^31", _gql("{ feed(first: 2147483648) { recommendationId } }"))
    add("feed.first literal 1e999", _gql("{ feed(first: 1e999) { recommendationId } }"))
    for at in (1e19, 1e308, -1e308, -1e18, 0, 4102444800, 2**63, -0.0):
        add(f"impressions at {at}", _gql(IMPRESSIONS, {"p": [poll], "at": at}))
        add(f"interaction at {at}", _gql(INTERACTION, {"i": {**interaction, "at": at}}))
    add("at literal 1e999", _gql(f'mutation {{ recordImpressions(pollIds: ["{poll}"], at: 1e999) {{ __typename }} }}'))
    for value in (1e308, -1e308, 2**64):
        add(f"eventValue {value}", _gql(INTERACTION, {"i": {**interaction, "eventValue": value}}))
    for created in (2**31 - 1, -(2**31)):
        add(f"upsertPoll createdAt {created}", _gql(UPSERT, {"i": {**upsert, "createdAt": created}}))
    for percent, priority in ((2**31 - 1, 0), (-5, 0), (10, 2**31 - 1)):
        add(f"promotion {percent}% priority {priority}", _gql(CREATE_PROMOTION, {
            "n": f"hostile-{percent}-{priority}", "i": {"percentPromotedItems": percent,
                                                         "priority": priority,
                                                         "startAt": -1e308, "endAt": 1e308}}), True)
    add("promotion filterValues not strings", _gql(CREATE_PROMOTION, {
        "n": "hostile-values", "i": {"percentPromotedItems": 10, "filterValues": {"a": [1]}}}), True)
    # wrong types
    add("first as string", _gql(FEED, {"f": "ten"}))
    add("after as number", _gql(FEED, {"a": 123}))
    add("filterValues as string", _gql(FEED, {"n": "f", "v": "x"}))
    add("filterValues with numbers", _gql(FEED, {"n": "f", "v": {"a": 1}}))
    add("pollIds as string", _gql(IMPRESSIONS, {"p": poll}))
    add("pollIds with null", _gql(IMPRESSIONS, {"p": [None]}))
    add("input null", _gql(INTERACTION, {"i": None}))
    add("input missing pollId", _gql(INTERACTION, {"i": {"eventType": "HUNCH"}}))
    add("input extra field", _gql(INTERACTION, {"i": {**interaction, "admin": True}}))
    add("eventValue as string", _gql(INTERACTION, {"i": {**interaction, "eventValue": "x"}}))
    add("at as boolean", _gql(INTERACTION, {"i": {**interaction, "at": True}}))
    add("categories empty", _gql(UPSERT, {"i": {**upsert, "categories": []}}))
    add("categories huge list", _gql(UPSERT, {"i": {**upsert, "categories": ["c"] * 5000}}))
    add("unknown filter", _gql(FEED, {"n": "no-such-filter"}))
    add("bad filter expression", _gql(CREATE_FILTER, {"n": "bad", "e": "EXCLUDE WHERE ("}), True)
    add("control characters", _gql(INTERACTION, {"i": {**interaction, "eventType": "\x00\x1b[2J"}}))
    add("emoji pairs", _gql(INTERACTION, {"i": {**interaction, "eventType": "\U0001f600"}}))
    return cases


def test_hand_written_hostile_requests(hostile, capsys):
    tally = Tally("adversarial hand-written")
    poll = _polls(hostile.home)[0]
    user, admin = hostile.token(), hostile.token(admin=True)
    for label, body, needs_admin in _bodies(poll, hostile.users[0]):
        tally.send(label, body, lambda: hostile.post(body, admin if needs_admin else user))
    # content types and methods
    for content_type in ("text/plain", None, "multipart/form-data; boundary=x",
                         "application/json; charset=latin-1", "application/graphql"):
        body = _gql("{ me { id } }")
        tally.send(f"content-type {content_type}", body,
                   lambda: hostile.post(body, user, content_type))
    for method, path in (("PUT", "/graphql"), ("DELETE", "/graphql"), ("GET", "/graphql?query=%7Bme%7Bid%7D%7D"),
                         ("GET", "/graphql?query=mutation%7Bfollow(userId:%22x%22)%7B__typename%7D%7D"),
                         ("GET", "/graphql?query=%7Bme%7Bid%7D%7D&variables=%5B%5D")):
        tally.send(f"{method} {path}", path, lambda: httpx.request(
            method, hostile.url + path, timeout=30, headers={"authorization": f"Bearer {user}"}),
            graphql_shaped=False)  # Starlette's own 405 for PUT and DELETE is plain text
    # hostile tokens: the principal's id reaches stores and sessions
    secret = Settings().jwt_secret
    claims = {"aud": Settings().jwt_audience, "iss": Settings().jwt_issuer,
              "exp": int(time.time()) + 600}
    for label, token in (
            ("sub lone surrogate", jwt.encode({**claims, "sub": "\ud800"}, secret)),
            ("sub huge", jwt.encode({**claims, "sub": "u" * 4000}, secret)),
            ("sub number", jwt.encode({**claims, "sub": 12345}, secret)),
            ("sub object", jwt.encode({**claims, "sub": {"a": 1}}, secret)),
            ("sub empty", jwt.encode({**claims, "sub": ""}, secret)),
            ("role object", jwt.encode({**claims, "sub": "u", "role": {"x": 1}}, secret)),
            ("exp string", jwt.encode({**claims, "sub": "u", "exp": "soon"}, secret)),
            ("alg none", jwt.encode({**claims, "sub": "u"}, None, algorithm="none")),
            ("other key", jwt.encode({**claims, "sub": "u"}, "k" * 40)),
            ("garbage", "x" * 6000),
            ("not base64", "a.b.c")):
        for query in ("{ me { id } }", "{ feed(first: 3) { recommendationId } }",
                      f'mutation {{ recordImpressions(pollIds: ["{poll}"]) {{ __typename }} }}'):
            body = _gql(query)
            tally.send(f"token {label}: {query[:30]}", body, lambda: hostile.post(body, token))
    tally.report(capsys)


def test_a_bad_request_keeps_the_connection_usable(hostile):
    """After a refused body the same keep-alive connection serves the next request
    (a 500 from an exception used to drop it without a Connection: close)."""
    good = _gql("{ me { id } }").encode()
    headers = {"content-type": "application/json",
               "authorization": f"Bearer {hostile.token()}"}
    connection = http.client.HTTPConnection("127.0.0.1", hostile.port, timeout=30)
    try:
        for bad in (b"null", b"123", b'"x"', b"true", b"\xff\xfe", b"[" * 30_000):
            connection.request("POST", "/graphql", body=bad, headers=headers)
            response = connection.getresponse()
            body = json.loads(response.read())
            assert response.status == 400, (bad[:20], body)
            assert body["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
            assert body["errors"][0]["message"]
            connection.request("POST", "/graphql", body=good, headers=headers)
            response = connection.getresponse()
            assert response.status == 200 and "errors" not in json.loads(response.read())
    finally:
        connection.close()


def test_the_server_survived(hostile):
    """After everything above: still serving, the process still up."""
    assert hostile.proc.poll() is None
    response = hostile.post(_gql("{ feed(first: 5) { edges { node { id } } } }"),
                            hostile.token())
    assert response.status_code == 200 and len(response.json()["data"]["feed"]["edges"]) == 5
    with socket.create_connection(("127.0.0.1", hostile.port), timeout=5):
        pass
