"""Queries by GET (gateway/app.py): hostile query strings get the answers hostile bodies
get, a clear 4xx and never a 500 or a traceback."""

from __future__ import annotations

import pytest

from gateway.auth import issue_token
from tests.gateway.test_app import codes, serve, settings  # noqa: F401 - a fixture

FEED = "query Feed($first: Int!) { feed(first: $first) { edges { cursor node { id } } } }"


@pytest.mark.parametrize("params, status, code", [
    ({"query": FEED, "variables": '{"first": "\\ud800"}'}, 400, "BAD_REQUEST"),
    ({"query": FEED, "variables": "[1, 2]"}, 400, "BAD_REQUEST"),
    ({"query": FEED, "variables": "{not json"}, 400, "BAD_REQUEST"),
    ({"query": FEED, "variables": '{"first": 3}', "extensions": "[]"}, 400, "BAD_REQUEST"),
    ({"query": FEED, "variables": '{"first": 3}', "extensions": '{"persistedQuery": 1}'},
     400, "BAD_REQUEST"),
    ({"query": FEED, "variables": '{"first": 3}', "operationName": "Other"}, 400,
     "BAD_REQUEST"),
    ({"query": "{ feed(first: ", "variables": "{}"}, 200, "GRAPHQL_PARSE_FAILED"),
    ({"query": "mutation { follow(userId: \"x\") { __typename } }"}, 405, "METHOD_NOT_ALLOWED"),
    ({"query": "subscription { x }"}, 200, "GRAPHQL_VALIDATION_FAILED"),
    ({"variables": '{"first": 3}'}, 404, "NOT_FOUND"),  # no query: nothing to run
    ("query=%FF%FE%ED%B3%BF&variables=%7B%7D", 200, "GRAPHQL_PARSE_FAILED"),  # not UTF-8
])
def test_a_hostile_get_is_a_clear_refusal(settings, params, status, code):  # noqa: F811
    async def scenario(client):
        headers = {"authorization": f"Bearer {issue_token(settings, 'reader')}"}
        if isinstance(params, str):  # bytes no client library would encode
            response = await client.get(f"/graphql?{params}", headers=headers)
        else:
            response = await client.get("/graphql", params=params, headers=headers)
        assert response.status_code == status, response.text
        body = response.json()
        assert body.get("data") is None and body["errors"], body
        if code is not None:
            assert codes(body) == [code], body
        assert "Traceback" not in response.text

    serve(settings, scenario)


def test_bytes_that_are_not_utf8_reach_no_store_as_surrogates(settings):  # noqa: F811
    """An encoded surrogate (ED B3 BF) in a GET's variables becomes U+FFFD when the query
    string is decoded, never a lone surrogate (which a JSON body's "\\udcff" would be,
    and which the body's decoder refuses)."""
    async def scenario(client):
        headers = {"authorization": f"Bearer {issue_token(settings, 'reader')}"}
        response = await client.get(
            "/graphql?query=query%20Q(%24p%3A%20ID!)%7Bpoll(id%3A%24p)%7Bid%7D%7D"
            "&variables=%7B%22p%22%3A%22%ED%B3%BF%22%7D", headers=headers)
        assert response.status_code == 200, response.text
        assert response.json() == {"data": {"poll": None}}, response.text

    serve(settings, scenario)


def test_a_query_by_get_serves_the_feed(settings):  # noqa: F811
    async def scenario(client):
        headers = {"authorization": f"Bearer {issue_token(settings, 'reader')}"}
        response = await client.get("/graphql", params={"query": FEED,
                                                        "variables": '{"first": 4}'},
                                    headers=headers)
        assert response.status_code == 200, response.text
        assert len(response.json()["data"]["feed"]["edges"]) == 4
        assert response.headers["cache-control"] == "no-store"

    serve(settings, scenario)
