"""GraphQL responses are encoded by orjson (gateway/app.py HunchGraphQL.encode_json):
the same JSON to a client, less CPU per feed page."""

from __future__ import annotations

import json

from strawberry.http.base import BaseView

from gateway.app import create_app
from recsys.events import EventStore
from tests.gateway.test_app import ID_ONLY, gql, serve, settings  # noqa: F401 (fixture)


def test_a_feed_page_is_encoded_without_the_standard_librarys_json(settings, monkeypatch):  # noqa: F811
    """strawberry's encoder (json.dumps) is left for what orjson refuses."""
    encoded = []
    stdlib = BaseView.encode_json
    monkeypatch.setattr(BaseView, "encode_json",
                        lambda self, data: (encoded.append(data), stdlib(self, data))[1])

    async def scenario(client):
        response = await gql(client, settings, ID_ONLY)
        assert response.headers["content-type"] == "application/json"
        assert len(response.json()["data"]["feed"]["edges"]) == 5

    serve(settings, scenario)
    assert encoded == []


def test_text_beyond_ascii_reads_back_as_stored(settings):  # noqa: F811
    question = 'sondage \u00e9t\u00e9 \u2603 "quoted" \\ \U0001f600?'
    events = EventStore(settings.events_db)
    events.upsert_items([{"ITEM_ID": "p-unicode", "CATEGORY": "news", "QUESTION": question}])
    events.close()

    async def scenario(client):
        response = await gql(client, settings, '{ poll(id: "p-unicode") { id question } }')
        assert response.json() == {"data": {"poll": {"id": "p-unicode", "question": question}}}
        assert json.loads(response.content.decode("utf-8"))["data"]["poll"]["question"] == question

    serve(settings, scenario)


def test_what_orjson_refuses_is_encoded_as_before(settings):  # noqa: F811
    """A lone surrogate or an integer over 64 bits: json.dumps's output, not an error."""
    view = next(r.endpoint for r in create_app(settings).routes if r.path == "/graphql")
    for data in ({"data": {"text": "lone \ud800"}}, {"data": {"big": 2**70}}):
        assert view.encode_json(data) == json.dumps(data, separators=(",", ":"))
    assert json.loads(view.encode_json({"data": {"x": [1, "\u00e9"]}})) == {"data": {"x": [1, "\u00e9"]}}
