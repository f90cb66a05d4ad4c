"""The Amazon Personalize backend: requests checked against the real service models with
botocore's Stubber, and a real HTTP round trip against a local endpoint that speaks the
same rest-json protocol (including throttling, where the local fallback takes over)."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from botocore.stub import ANY, Stubber

from recsys.backends import (
    PersonalizeConfig,
    PersonalizeEventSink,
    PersonalizeNotConfigured,
    PersonalizeRecipeSource,
    make_clients,
)
from recsys.backends.personalize import amazon_event_id
from recsys.events import Impression, Interaction
from recsys.feed import FeedService
from recsys.feed_sessions import CursorSigner, InMemoryFeedSessionStore
from recsys.mixer import Mixer, SlotPlan
from recsys.promotions import Promotion
from recsys.recipes.base import ScoredItem

ARN = "arn:aws:personalize:us-east-1:123456789012:campaign/hunch-up"
FILTER_ARN = "arn:aws:personalize:us-east-1:123456789012:filter/unseen"
PROMO_FILTER_ARN = "arn:aws:personalize:us-east-1:123456789012:filter/promo"
CONFIG = PersonalizeConfig(
    campaign_arns={"user-personalization": ARN},
    filter_arns={"unseen": FILTER_ARN, "promo": PROMO_FILTER_ARN},
    tracking_id="tracking-1",
    items_dataset_arn="arn:aws:personalize:us-east-1:123456789012:dataset/hunch/ITEMS",
    users_dataset_arn="arn:aws:personalize:us-east-1:123456789012:dataset/hunch/USERS",
)


def session():
    return boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test",
                                 region_name="us-east-1")


def popular_fallback(user_id, n, *, exclude=(), allow=None):
    return [ScoredItem(f"pop{i}", 1.0) for i in range(n)]


def test_get_recommendations_request_matches_the_service_model():
    runtime, _ = make_clients(CONFIG, session())
    source = PersonalizeRecipeSource("user-personalization", CONFIG, runtime)
    with Stubber(runtime) as stub:
        stub.add_response(
            "get_recommendations",
            {"itemList": [{"itemId": "p1", "score": 0.9}, {"itemId": "p2", "score": 0.5},
                          {"itemId": "p3", "score": 0.2, "promotionName": "spring"}],
             "recommendationId": "RID-1"},
            {"campaignArn": ARN, "userId": "u1", "numResults": 4, "filterArn": FILTER_ARN,
             "filterValues": {"CATEGORY": '"sports","music"'},
             "promotions": [{"name": "spring", "percentPromotedItems": 20,
                             "filterArn": PROMO_FILTER_ARN}]},
        )
        items, rec_id = source.get_recommendations(
            "u1", 4, filter_name="unseen", filter_values={"CATEGORY": ["sports", "music"]},
            promotion=Promotion("spring", 20, filter_name="promo"))
        stub.assert_no_pending_responses()
    assert rec_id == "RID-1" and items[2]["promotionName"] == "spring"


def test_candidates_drop_excluded_and_filtered_items():
    runtime, _ = make_clients(CONFIG, session())
    source = PersonalizeRecipeSource("user-personalization", CONFIG, runtime)
    with Stubber(runtime) as stub:
        stub.add_response(
            "get_recommendations",
            {"itemList": [{"itemId": f"p{i}", "score": 1 - i / 10} for i in range(6)],
             "recommendationId": "RID-2"},
            {"campaignArn": ARN, "userId": "u1", "numResults": 4},  # 3 asked + 1 excluded
        )
        out = source.candidates("u1", 3, exclude={"p0"}, allow=lambda i: i != "p2")
    assert [s.item_id for s in out] == ["p1", "p3", "p4"]


def test_throttling_falls_back_to_local_popularity_and_is_counted():
    runtime, _ = make_clients(CONFIG, session())
    seen = []
    source = PersonalizeRecipeSource("user-personalization", CONFIG, runtime,
                                     fallback=popular_fallback,
                                     on_fallback=lambda name, why: seen.append((name, why)))
    with Stubber(runtime) as stub:
        stub.add_client_error("get_recommendations", "ThrottlingException",
                              http_status_code=400)
        out = source.candidates("u1", 5)
    assert [s.item_id for s in out] == [f"pop{i}" for i in range(5)]
    assert source.fallbacks.count == 1 and seen == [("user-personalization", "ThrottlingException")]


def test_put_events_users_items_match_the_service_model():
    _, events = make_clients(CONFIG, session())
    sink = PersonalizeEventSink(CONFIG, events)
    interactions = [Interaction("u1", f"p{i}", "HUNCH", 1_700_000_000 + i, 1.0,
                                impression=tuple(f"p{j}" for j in range(30)),
                                recommendation_id="RID-1") for i in range(12)]
    with Stubber(events) as stub:
        for size in (10, 3):
            stub.add_response("put_events", {}, {"trackingId": "tracking-1", "userId": "u1",
                                                 "sessionId": "s1", "eventList": ANY})
        stub.add_response("put_users", {}, {"datasetArn": CONFIG.users_dataset_arn,
                                            "users": [{"userId": "u1",
                                                       "properties": '{"cluster":"c3","community":"m1"}'}]})
        stub.add_response("put_items", {}, {"datasetArn": CONFIG.items_dataset_arn,
                                            "items": [{"itemId": "p9",
                                                       "properties": '{"category":"SPORTS","creationTimestamp":1700000000,"pollText":"Who wins?"}'}]})
        assert sink.put_events("u1", "s1", interactions + [Impression("u1", ("p1", "p2"), 1_700_000_100)]) == 13
        sink.put_users({"u1": {"USER_ID": "u1", "CLUSTER": "c3", "COMMUNITY": "m1"}})
        sink.put_items({"p9": {"CATEGORY": "SPORTS", "CREATION_TIMESTAMP": 1700000000,
                               "QUESTION": "Who wins?", "COMMENTS": None}})
        stub.assert_no_pending_responses()


def test_forwarded_impressions_name_each_poll_once():
    # as the store keeps them: a poll repeated in one list counts once, first place kept
    _, events = make_clients(CONFIG, session())
    sink = PersonalizeEventSink(CONFIG, events)
    with Stubber(events) as stub:
        stub.add_response("put_events", {}, {
            "trackingId": "tracking-1", "userId": "u1", "sessionId": "s1", "eventList": [
                {"eventId": amazon_event_id("u1", "m1"), "eventType": "IMPRESSION", "sentAt": ANY,
                 "itemId": "p1",
                 "impression": ["p1", "p2"]},
                {"eventId": amazon_event_id("u1", "e1"), "eventType": "HUNCH", "sentAt": ANY,
                 "itemId": "p3",
                 "impression": ["p2", "p1"]}]})
        assert sink.put_events("u1", "s1", [
            Impression("u1", ("p1", "p1", "p2", "p1"), 1_700_000_000, event_id="m1"),
            Interaction("u1", "p3", "HUNCH", 1_700_000_001, impression=("p2", "p2", "p1"),
                        event_id="e1")]) == 2
        stub.assert_no_pending_responses()


def test_what_a_client_may_send_fits_the_service_model():
    """Amazon refuses a PutEvents recommendation id past 40 characters and PutItems
    properties past 32,000 (botocore's model; the Stubber checks types and minimums, the
    service the maximums): a client's id of up to 256 characters (what the API admits)
    failed the whole event, and a poll with long text never reached Amazon."""
    import json

    from recsys.backends.personalize import MAX_PROPERTIES_CHARS, _properties
    from recsys.schemas import MAX_TEXTUAL_LENGTH

    _, events = make_clients(CONFIG, session())
    model = events.meta.service_model
    event_shape = model.operation_model("PutEvents").input_shape.members["eventList"].member
    item_shape = model.operation_model("PutItems").input_shape.members["items"].member
    max_id = event_shape.members["recommendationId"].metadata["max"]
    max_properties = item_shape.members["properties"].metadata["max"]
    assert (max_id, max_properties) == (40, MAX_PROPERTIES_CHARS)
    sent: list[dict] = []
    events.meta.events.register("provide-client-params.personalize-events.*",
                                lambda params, **_: sent.append(params))
    sink = PersonalizeEventSink(CONFIG, events)
    poll = {"CATEGORY": "SPORTS", "AUTHOR_ID": "u1", "CREATION_TIMESTAMP": 1_700_000_000,
            "QUESTION": "Who wins?", "OPTIONS": "Home|Away",
            "DESCRIPTION": "d" * MAX_TEXTUAL_LENGTH, "COMMENTS": "c" * MAX_TEXTUAL_LENGTH}
    # letters go as themselves (one character each in the JSON), an escaped character
    # ('"' is two) is cut by what the JSON holds, not the text
    accented = {**poll, "DESCRIPTION": "\u00e9" * MAX_TEXTUAL_LENGTH, "COMMENTS": None}
    quoted = {**poll, "DESCRIPTION": '"' * MAX_TEXTUAL_LENGTH, "COMMENTS": None}
    with Stubber(events) as stub:
        stub.add_response("put_events", {}, {"trackingId": "tracking-1", "userId": "u1",
                                             "sessionId": "s1", "eventList": ANY})
        stub.add_response("put_items", {}, {"datasetArn": CONFIG.items_dataset_arn,
                                            "items": ANY})  # one call holds both polls
        assert sink.put_events("u1", "s1", [
            Interaction("u1", "p3", "HUNCH", 1_700_000_001, event_id="e1",
                        recommendation_id="r" * 41),
            Interaction("u1", "p4", "HUNCH", 1_700_000_002, event_id="e2",
                        recommendation_id="r" * 40)]) == 2
        assert sink.put_items({"p9": poll, "p10": accented, "p11": quoted}) == 3
        stub.assert_no_pending_responses()
    (put_events, put_items) = sent
    assert [e.get("recommendationId") for e in put_events["eventList"]] == [None, "r" * 40]
    lengths = [len(i["properties"]) for i in put_items["items"]]
    # the plain and the accented poll's text stop at Amazon's 20,000 characters, the
    # quoted one's at the properties' 32,000 (cut no more than it must)
    assert max(lengths) <= max_properties and lengths[2] > max_properties - 2
    long_poll, long_accents, long_quotes = (json.loads(i["properties"])
                                            for i in put_items["items"])
    # one textual field of Amazon's 20,000 characters at most; the least telling text is
    # cut first: the comments went whole, the description lost its end, not the question
    assert set(long_poll) == {"category", "authorId", "creationTimestamp", "pollText"}
    assert long_poll["pollText"] == ("Who wins? Home|Away " + poll["DESCRIPTION"])[
        :MAX_TEXTUAL_LENGTH]
    assert long_accents["pollText"] == ("Who wins? Home|Away " + accented["DESCRIPTION"])[
        :MAX_TEXTUAL_LENGTH]
    assert long_quotes["pollText"].startswith('Who wins? Home|Away "')
    assert len(long_quotes["pollText"]) < MAX_TEXTUAL_LENGTH
    assert _properties({"POLL_TEXT": "short"}) == '{"pollText":"short"}'


def test_missing_arns_are_a_clear_error():
    runtime, events = make_clients(CONFIG, session())
    with pytest.raises(PersonalizeNotConfigured, match="trending-now"):
        PersonalizeRecipeSource("trending-now", CONFIG, runtime)
    source = PersonalizeRecipeSource("user-personalization", CONFIG, runtime)
    with pytest.raises(PersonalizeNotConfigured, match="'nope'"):
        source.get_recommendations("u1", 5, filter_name="nope")


class _FakePersonalize(BaseHTTPRequestHandler):
    """A local endpoint speaking Personalize's rest-json protocol."""

    requests: list = []
    throttle = False
    item_ids: list[str] | None = None  # what the campaign recommends (default p0, p1, ...)
    fail_writes = False  # PutEvents/PutItems/PutUsers answer 500 (an outage at Amazon)
    hold = threading.Event()  # PutEvents answers once set (cleared: Amazon hangs)
    hold.set()

    def do_POST(self):  # noqa: N802 (http.server naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        if self.path == "/events":
            type(self).hold.wait(timeout=30)
        type(self).requests.append((self.path, body))
        if self.path == "/recommendations":
            if type(self).throttle:
                payload = json.dumps({"message": "Rate exceeded"}).encode()
                self.send_response(400)
                self.send_header("x-amzn-ErrorType", "ThrottlingException")
            else:
                n = body["numResults"]
                ids = type(self).item_ids or [f"p{i}" for i in range(n)]
                payload = json.dumps({
                    "itemList": [{"itemId": ids[i], "score": 1 / (i + 1)}
                                 for i in range(min(n, len(ids)))],
                    "recommendationId": "RID-HTTP"}).encode()
                self.send_response(200)
        elif type(self).fail_writes and self.path in ("/items", "/users", "/events"):
            payload = json.dumps({"message": "Internal failure"}).encode()
            self.send_response(500)
            self.send_header("x-amzn-ErrorType", "InternalFailure")
        else:
            payload = b"{}"
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    _FakePersonalize.requests = []
    _FakePersonalize.throttle = False
    _FakePersonalize.item_ids = None
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakePersonalize)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_real_http_round_trip_and_feed_fallback_under_throttling(endpoint):
    config = PersonalizeConfig(**{**CONFIG.__dict__, "endpoint_url": endpoint,
                                  "max_attempts": 2})
    runtime, events = make_clients(config, session())
    up = PersonalizeRecipeSource("user-personalization", config, runtime,
                                 fallback=popular_fallback)
    feed = FeedService(Mixer({"user-personalization": up},
                             SlotPlan(("user-personalization",), ("user-personalization",))),
                       InMemoryFeedSessionStore(), CursorSigner("s"))
    page = feed.page("u1", 5)
    assert [i.item_id for i in page.items] == ["p0", "p1", "p2", "p3", "p4"]
    path, body = _FakePersonalize.requests[0]
    assert path == "/recommendations" and body["campaignArn"] == ARN and body["userId"] == "u1"

    _FakePersonalize.throttle = True
    page = feed.page("u2", 5)
    assert [i.item_id for i in page.items] == [f"pop{i}" for i in range(5)]
    # the feed's path makes one attempt (runtime_max_attempts), then the fallback serves
    throttled = [r for r in _FakePersonalize.requests[1:] if r[0] == "/recommendations"]
    assert len(throttled) == 1 and up.fallbacks.by_reason == {"ThrottlingException": 1}

    sink = PersonalizeEventSink(config, events)
    sink.put_events("u1", "s1", [Interaction("u1", "p1", "HUNCH", 1_700_000_000,
                                             recommendation_id="RID-HTTP")])
    path, body = _FakePersonalize.requests[-1]
    assert path == "/events" and body["eventList"][0]["recommendationId"] == "RID-HTTP"
    assert body["eventList"][0]["sentAt"] == pytest.approx(
        datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc).timestamp())
