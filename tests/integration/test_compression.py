"""Answers are gzip-compressed over real HTTP for clients that accept it (mobile HTTP
stacks and browsers all do), identical once undone, and sent as they are to clients
that do not."""

from __future__ import annotations

import gzip
import json

import httpx

from tests.integration.conftest import Server, _user, token

FEED = """query Feed($first: Int!) {
  feed(first: $first) {
    pageInfo { endCursor }
    edges { cursor source node { id question categories } }
  }
}"""


def _post(server, body: bytes, headers: dict[str, str]) -> httpx.Response:
    # a raw stream: httpx would otherwise undo the compression before the test sees it
    with httpx.Client(timeout=30) as client:
        request = client.build_request("POST", f"{server.url}/graphql", content=body,
                                       headers={"content-type": "application/json",
                                                **headers})
        response = client.send(request, stream=True)
        response.raw_body = b"".join(response.iter_raw())
        response.close()
        return response


def test_a_feed_page_is_compressed_for_clients_that_accept_gzip(server, home):
    auth = {"authorization": f"Bearer {token(_user(home))}"}
    body = json.dumps({"query": FEED, "variables": {"first": 20}}).encode()
    packed = _post(server, body, {**auth, "accept-encoding": "gzip, deflate, br"})
    assert packed.status_code == 200
    assert packed.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in packed.headers["vary"].lower()  # caches keep both forms
    assert int(packed.headers["content-length"]) == len(packed.raw_body)
    page = json.loads(gzip.decompress(packed.raw_body))
    assert "errors" not in page and len(page["data"]["feed"]["edges"]) == 20
    text = json.dumps(page).encode()
    assert len(packed.raw_body) * 2 < len(text)

    # a client that does not accept gzip gets the answer as it is
    plain = _post(server, body, {**auth, "accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers
    again = json.loads(plain.raw_body)
    assert "errors" not in again and len(again["data"]["feed"]["edges"]) == 20


def test_small_answers_and_refusals_go_uncompressed(server, home):
    # under HUNCH_GZIP_MIN_BYTES (1024) compression would cost more than it saves
    auth = {"authorization": f"Bearer {token(_user(home))}"}
    small = _post(server, b'{"query": "{ __typename }"}', {**auth, "accept-encoding": "gzip"})
    assert "content-encoding" not in small.headers
    assert json.loads(small.raw_body) == {"data": {"__typename": "Query"}}
    refused = _post(server, b"[]", {**auth, "accept-encoding": "gzip"})
    assert refused.status_code == 400 and "content-encoding" not in refused.headers


def test_compression_can_be_turned_off(home):
    server = Server(home, HUNCH_GZIP_MIN_BYTES="0").start()
    try:
        auth = {"authorization": f"Bearer {token(_user(home))}"}
        body = json.dumps({"query": FEED, "variables": {"first": 20}}).encode()
        response = _post(server, body, {**auth, "accept-encoding": "gzip"})
        assert response.status_code == 200
        assert "content-encoding" not in response.headers
        assert "errors" not in json.loads(response.raw_body)
    finally:
        server.stop()
