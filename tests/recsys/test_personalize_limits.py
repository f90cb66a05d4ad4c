"""Amazon Personalize's limits on the production path: what the gateway admits is sent in
a shape Amazon takes. Every request is checked against the real service model by
botocore's Stubber; the limits the model leaves to the service (or states nowhere, as
numResults' 500) are asserted explicitly."""

from __future__ import annotations

import time

from botocore.stub import ANY, Stubber

from recsys.admission import MAX_LIVE_IMPRESSION_IDS, EventRules
from recsys.backends import PersonalizeEventSink, PersonalizeRecipeSource, make_clients
from recsys.backends.amazon_copy import replay
from recsys.backends.personalize import (
    MAX_IMPRESSION_IDS,
    OUTAGE_COOL_OFF_SECONDS,
    THROTTLE_COOL_OFF_SECONDS,
    PersonalizeConfig,
    amazon_event_id,
)
from recsys.errors import InvalidEvent
from recsys.events import EventStore, Impression, Interaction, derive_event_id
from tests.recsys.test_personalize_backend import ARN, CONFIG, popular_fallback, session

import pytest


def _model_max(client, operation: str, *path: str) -> int:
    shape = client.meta.service_model.operation_model(operation).input_shape
    for name in path:
        shape = shape.member if name == "[]" else shape.members[name]
    return shape.metadata["max"]


def _sent(client) -> list[dict]:
    """The parameters of every call ``client`` makes (what Amazon would be sent)."""
    calls: list[dict] = []
    client.meta.events.register("provide-client-params.*.*",
                                lambda params, **_: calls.append(params))
    return calls


def test_an_interaction_carries_the_25_polls_up_to_the_one_acted_on():
    """A page of 60 polls (this feed's recommendation, or imported history): Amazon was
    sent the first 25, without the poll voted on at position 41 or those seen before
    it. Now the 25 up to it, and the ids left out are counted."""
    _, events = make_clients(CONFIG, session())
    assert _model_max(events, "PutEvents", "eventList", "[]", "impression") == MAX_IMPRESSION_IDS
    cut: list[int] = []
    sink = PersonalizeEventSink(CONFIG, events, on_impressions_cut=cut.append)
    page = tuple(f"p{i}" for i in range(60))
    with Stubber(events) as stub:
        stub.add_response("put_events", {}, {
            "trackingId": "tracking-1", "userId": "u1", "sessionId": "u1", "eventList": [
                {"eventId": amazon_event_id("u1", "e1"), "eventType": "HUNCH", "sentAt": ANY, "itemId": "p40",
                 "impression": [f"p{i}" for i in range(16, 41)]},
                {"eventId": amazon_event_id("u1", "e2"), "eventType": "HUNCH", "sentAt": ANY, "itemId": "p3",
                 "impression": [f"p{i}" for i in range(25)]},
                {"eventId": amazon_event_id("u1", "e3"), "eventType": "HUNCH", "sentAt": ANY, "itemId": "zz",
                 "impression": [f"p{i}" for i in range(25)]}]})
        assert sink.put_events("u1", "u1", [
            Interaction("u1", "p40", "HUNCH", 1_700_000_000, impression=page, event_id="e1"),
            Interaction("u1", "p3", "HUNCH", 1_700_000_001, impression=page, event_id="e2"),
            Interaction("u1", "zz", "HUNCH", 1_700_000_002, impression=page, event_id="e3"),
        ]) == 3
        stub.assert_no_pending_responses()
    assert cut == [35, 35, 35]


def test_an_impression_only_event_of_more_than_25_polls_is_split_not_cut():
    """With HUNCH_PERSONALIZE_FORWARD_IMPRESSIONS, a recordImpressions of 60 polls (the
    API takes 100) reached Amazon as its first 25; now as three IMPRESSION events whose
    ids are derived from the stored one (a resend is ignored by Amazon as the first)."""
    _, events = make_clients(CONFIG, session())
    sink = PersonalizeEventSink(CONFIG, events)
    shown = tuple(f"p{i}" for i in range(60))
    sent = _sent(events)
    with Stubber(events) as stub:
        stub.add_response("put_events", {}, {"trackingId": "tracking-1", "userId": "u1",
                                             "sessionId": "u1", "eventList": ANY})
        assert sink.put_events("u1", "u1", [Impression("u1", shown, 1_700_000_000,
                                                       event_id="m1")]) == 3
        stub.assert_no_pending_responses()
    (call,) = sent
    first = amazon_event_id("u1", "m1")
    assert [e["eventId"] for e in call["eventList"]] == [
        first, derive_event_id("m", first, 1), derive_event_id("m", first, 2)]
    assert [e["impression"] for e in call["eventList"]] == [
        list(shown[:25]), list(shown[25:50]), list(shown[50:])]
    assert [e["itemId"] for e in call["eventList"]] == ["p0", "p25", "p50"]
    assert all(len(e["eventId"]) <= _model_max(events, "PutEvents", "eventList", "[]", "eventId")
               for e in call["eventList"])


def test_a_live_interaction_names_at_most_25_polls_seen():
    """The store took 1,000 characters of ids (~100 polls) from a live interaction and
    the local recipes counted each as seen, while Amazon held 25: both backends now hold
    the same list. Imported history keeps the bulk column's 1,000 characters."""
    rules = EventRules(clock=lambda: 1_700_000_100)
    ok = Interaction("u1", "p1", "HUNCH", 1_700_000_000,
                     impression=tuple(f"p{i}" for i in range(MAX_LIVE_IMPRESSION_IDS)))
    rules.check_live(ok)
    rules.check_live(Interaction("u1", "p1", "HUNCH", 1_700_000_000,
                                 impression=ok.impression * 3))  # each poll once: 25
    too_many = Interaction("u1", "p1", "HUNCH", 1_700_000_000,
                           impression=tuple(f"p{i}" for i in range(26)))
    with pytest.raises(InvalidEvent, match="at most 25"):
        rules.check_live(too_many)
    rules.check_history(too_many)


def test_a_throttled_campaign_is_left_alone_for_a_second():
    """A throttled GetRecommendations made 3 calls (botocore's attempts) and waited
    0.8-2.2 s of backoff in every feed request; now the first throttle turns the source
    to its fallback for THROTTLE_COOL_OFF_SECONDS, without calling Amazon."""
    runtime, _ = make_clients(CONFIG, session())
    now = [100.0]
    seen: list[tuple[str, str]] = []
    source = PersonalizeRecipeSource("user-personalization", CONFIG, runtime,
                                     fallback=popular_fallback,
                                     on_fallback=lambda name, why: seen.append((name, why)))
    source.clock = lambda: now[0]
    with Stubber(runtime) as stub:
        stub.add_client_error("get_recommendations", "ThrottlingException",
                              http_status_code=400)
        assert [s.item_id for s in source.candidates("u1", 2)] == ["pop0", "pop1"]
        # within the cool-off: no call (the Stubber would fail an unexpected one)
        now[0] += THROTTLE_COOL_OFF_SECONDS / 2
        assert [s.item_id for s in source.candidates("u2", 2)] == ["pop0", "pop1"]
        stub.assert_no_pending_responses()
        now[0] += THROTTLE_COOL_OFF_SECONDS
        stub.add_response("get_recommendations",
                          {"itemList": [{"itemId": "a", "score": 1.0}], "recommendationId": "R"},
                          {"campaignArn": ARN, "userId": "u3", "numResults": 1})
        assert [s.item_id for s in source.candidates("u3", 1)] == ["a"]
        stub.assert_no_pending_responses()
    assert seen == [("user-personalization", "ThrottlingException"),
                    ("user-personalization", "ThrottlingException-cool-off")]


def test_a_filter_without_a_personalize_arn_is_applied_locally_not_a_failed_feed():
    """A filter made with createFilter (or a promotion's) and no ARN in the settings
    raised PersonalizeNotConfigured out of the source: every feed naming it failed."""
    runtime, _ = make_clients(CONFIG, session())
    seen: list[str] = []
    source = PersonalizeRecipeSource("user-personalization", CONFIG, runtime,
                                     fallback=popular_fallback,
                                     on_fallback=lambda name, why: seen.append(why))
    with Stubber(runtime) as stub:  # nothing is sent
        out = source.candidates("u1", 2, filter_name="made-locally",
                                filter_values={"C": '"x"'})
        stub.assert_no_pending_responses()
    assert [s.item_id for s in out] == ["pop0", "pop1"] and seen == ["no-filter-arn"]


def test_one_event_amazon_refuses_does_not_cost_the_nine_beside_it(tmp_path):
    """Replay sends 10 events a call: one Amazon refused failed all ten, at every
    replay. A call refused for what it holds is now sent again one event at a time."""
    now = int(time.time())
    with EventStore(tmp_path / "events.sqlite3") as store:
        for k in range(3):
            store.append(Interaction("u1", f"p{k}", "HUNCH", now - 10 + k, event_id=f"v{k}"))
        _, events = make_clients(CONFIG, session())
        sink = PersonalizeEventSink(CONFIG, events)
        failures: list[str] = []
        with Stubber(events) as stub:
            stub.add_client_error("put_events", "InvalidInputException",
                                  http_status_code=400)
            for k in range(3):
                expected = {"trackingId": "tracking-1", "userId": "u1", "sessionId": "u1",
                            "eventList": [{"eventId": amazon_event_id("u1", f"v{k}"),
                                           "eventType": "HUNCH",
                                           "sentAt": ANY, "itemId": f"p{k}"}]}
                if k == 1:
                    stub.add_client_error("put_events", "InvalidInputException",
                                          http_status_code=400, expected_params=expected)
                else:
                    stub.add_response("put_events", {}, expected)
            counts = replay(store, sink, None, now - 100, now + 100,
                            on_failure=lambda user, exc: failures.append(user))
            stub.assert_no_pending_responses()
            # a rate refusal is not about what the call holds: not resent event by event
            stub.add_client_error("put_events", "ThrottlingException", http_status_code=400)
            throttled = replay(store, sink, None, now - 100, now + 100)
            stub.assert_no_pending_responses()
    assert (counts.sent, counts.failed, failures) == (2, 1, ["u1"])
    assert (throttled.sent, throttled.failed) == (0, 3)


def test_two_users_events_of_the_same_client_id_reach_amazon_as_two_ids():
    """Event ids are unique per user here (a client may number its events 1, 2, 3),
    while Amazon trains on the first event of each eventId only, whoever sent it: two
    users' "1" reached Amazon as one id, and one of the two votes was left out of
    training. Now each is sent as an id derived from its user and its own id, the same
    at every resend (Amazon still ignores a resent event)."""
    _, events = make_clients(CONFIG, session())
    sink = PersonalizeEventSink(CONFIG, events)
    sent = _sent(events)
    with Stubber(events) as stub:
        for user in ("u1", "u2", "u1"):
            stub.add_response("put_events", {}, {"trackingId": "tracking-1", "userId": user,
                                                 "sessionId": user, "eventList": ANY})
        for user in ("u1", "u2", "u1"):  # u1's event sent twice (a replay)
            sink.put_events(user, user, [Interaction(user, "p1", "HUNCH", 1_700_000_000,
                                                     event_id="1")])
        stub.assert_no_pending_responses()
    first, other, again = (call["eventList"][0]["eventId"] for call in sent)
    assert first != other and first == again
    limit = _model_max(events, "PutEvents", "eventList", "[]", "eventId")
    assert all(len(i) <= limit for i in (first, other))


def test_a_hung_campaign_costs_one_short_wait_then_the_fallback_serves_at_once():
    """Against an endpoint that accepts and never answers, every feed request waited
    7.4-8.5 s (3 attempts of 1 s connect + 2 s read) for its fallback, so a handful of
    requests held a worker's feed threads. Now one attempt with a short read timeout,
    then OUTAGE_COOL_OFF_SECONDS without calling Amazon; then one request tries again."""
    import socket
    import threading

    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(hung.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    config = PersonalizeConfig(**{**CONFIG.__dict__, "runtime_read_timeout": 0.2,
                                  "endpoint_url": f"http://127.0.0.1:{hung.getsockname()[1]}"})
    runtime, _ = make_clients(config, session())
    now = [100.0]
    seen: list[str] = []
    source = PersonalizeRecipeSource("user-personalization", config, runtime,
                                     fallback=popular_fallback,
                                     on_fallback=lambda name, why: seen.append(why))
    source.clock = lambda: now[0]
    try:
        assert [s.item_id for s in source.candidates("u1", 2)] == ["pop0", "pop1"]
        assert len(accepted) == 1  # one attempt, not three
        now[0] += OUTAGE_COOL_OFF_SECONDS / 2
        assert [s.item_id for s in source.candidates("u2", 2)] == ["pop0", "pop1"]
        assert len(accepted) == 1  # within the cool-off: Amazon is not asked
        now[0] += OUTAGE_COOL_OFF_SECONDS
        source.candidates("u3", 2)
        assert len(accepted) == 2  # then tried again
    finally:
        hung.close()
        for conn in accepted:
            conn.close()
    assert seen == ["ReadTimeoutError", "ReadTimeoutError-cool-off", "ReadTimeoutError"]


def test_a_campaign_answering_5xx_is_left_alone_but_a_refused_request_is_not():
    """A 5xx is the campaign failing: the cool-off applies. A 4xx refusing this request
    (a bad filter value, say) says nothing of the next one: no cool-off."""
    runtime, _ = make_clients(CONFIG, session())
    now = [100.0]
    source = PersonalizeRecipeSource("user-personalization", CONFIG, runtime,
                                     fallback=popular_fallback)
    source.clock = lambda: now[0]
    answer = {"itemList": [{"itemId": "a", "score": 1.0}], "recommendationId": "R"}
    with Stubber(runtime) as stub:
        stub.add_client_error("get_recommendations", "InvalidInputException",
                              http_status_code=400)
        stub.add_response("get_recommendations", answer, None)
        assert [s.item_id for s in source.candidates("u1", 1)] == ["pop0"]
        assert [s.item_id for s in source.candidates("u1", 1)] == ["a"]  # asked again
        stub.add_client_error("get_recommendations", "InternalServerError",
                              http_status_code=500)
        assert [s.item_id for s in source.candidates("u1", 1)] == ["pop0"]
        assert [s.item_id for s in source.candidates("u1", 1)] == ["pop0"]  # not asked
        stub.assert_no_pending_responses()
