"""Live PutEvents forwarding: a user's events queued together go to Amazon in one call.

PutEvents takes 1 to 10 events of one user and one session a call, and Amazon takes
1,000 calls a second per dataset group: one call per vote or comment capped a busy app
at ~1,000 events a second across its workers. Every request here goes through botocore's
Stubber (checked against the real service model; the model's maximum of 10 events is
Amazon's to enforce, so it is asserted here)."""

from __future__ import annotations

import asyncio
import threading

from botocore.stub import ANY, Stubber

from gateway import metrics
from gateway.services import Services
from recsys.backends.personalize import amazon_event_id
from recsys.events import Interaction
from tests.gateway.test_app import POLLS, settings  # noqa: F401 - a fixture


def _services(settings) -> tuple[Services, list[dict]]:  # noqa: F811
    configured = settings.model_copy(update={
        "backend": "personalize", "personalize_tracking_id": "tracking-1"})
    services = Services(configured)
    calls: list[dict] = []
    services.personalize_events.client.meta.events.register(
        "provide-client-params.personalize-events.PutEvents",
        lambda params, **_: calls.append(params))
    return services, calls


def _hold(services: Services, *users: str) -> threading.Event:
    """Keep the forwarder thread of each user busy (Amazon answering slowly) until the
    returned gate is set: the users' events queue up meanwhile."""
    gate = threading.Event()
    for user in users:
        services.forwarder.submit(user, lambda: gate.wait(10))
    return gate


def _vote(services: Services, user: str, poll: str) -> None:
    assert services.record_interaction(Interaction(
        user, poll, "HUNCH", services.event_rules.event_time(None), event_id=f"v-{poll}"))


def _call(user: str, polls: list[str]) -> dict:
    return {"trackingId": "tracking-1", "userId": user, "sessionId": user, "eventList": [
        {"eventId": amazon_event_id(user, f"v-{p}"), "eventType": "HUNCH", "sentAt": ANY,
         "itemId": p} for p in polls]}


def _polls(call: dict) -> list[str]:
    return [e["itemId"] for e in call["eventList"]]


def _fallbacks(reason: str) -> float:
    return metrics.FALLBACKS.labels("personalize-events", reason)._value.get()


def test_a_users_events_queued_together_go_in_one_call_in_their_order(settings):  # noqa: F811
    services, calls = _services(settings)
    try:
        with Stubber(services.personalize_events.client) as stub:
            stub.add_response("put_events", {}, _call("u1", POLLS[:5]))
            gate = _hold(services, "u1")
            for poll in POLLS[:5]:
                _vote(services, "u1", poll)
            gate.set()
            assert services.forwarder.wait_idle(10)
            stub.assert_no_pending_responses()
    finally:
        asyncio.run(services.close())
    assert [_polls(c) for c in calls] == [POLLS[:5]]


def test_more_than_ten_events_go_ten_to_a_call(settings):  # noqa: F811
    """23 queued votes: ceil(23 / 10) = 3 calls, none past the model's 10, in order."""
    services, calls = _services(settings)
    try:
        with Stubber(services.personalize_events.client) as stub:
            for part in (POLLS[:10], POLLS[10:20], POLLS[20:23]):
                stub.add_response("put_events", {}, _call("u1", part))
            gate = _hold(services, "u1")
            for poll in POLLS[:23]:
                _vote(services, "u1", poll)
            gate.set()
            assert services.forwarder.wait_idle(10)
            stub.assert_no_pending_responses()
    finally:
        asyncio.run(services.close())
    assert [len(c["eventList"]) for c in calls] == [10, 10, 3]
    assert [p for c in calls for p in _polls(c)] == POLLS[:23]


def test_two_users_events_never_share_a_call(settings):  # noqa: F811
    """PutEvents names one user and one session a call: events queued together of two
    users go in two calls, each user's in order."""
    services, calls = _services(settings)
    try:
        with Stubber(services.personalize_events.client) as stub:
            for _ in range(2):
                stub.add_response("put_events", {}, None)
            gate = _hold(services, "u1", "u2")
            for k, poll in enumerate(POLLS[:8]):
                _vote(services, ("u1", "u2")[k % 2], poll)
            gate.set()
            assert services.forwarder.wait_idle(10)
            stub.assert_no_pending_responses()
    finally:
        asyncio.run(services.close())
    by_user = {c["userId"]: c for c in calls}
    assert len(calls) == 2 and by_user.keys() == {"u1", "u2"}
    assert by_user["u1"] == _call("u1", POLLS[0:8:2]) | {"eventList": ANY}
    assert _polls(by_user["u1"]) == POLLS[0:8:2] and _polls(by_user["u2"]) == POLLS[1:8:2]
    for user, call in by_user.items():
        assert call["sessionId"] == user
        assert all(e["eventId"] == amazon_event_id(user, f"v-{e['itemId']}")
                   for e in call["eventList"])


def test_a_refused_call_is_sent_again_event_by_event_and_only_the_bad_one_is_lost(
        settings):  # noqa: F811
    """Amazon refuses a whole call for one event it cannot take: the others of the call
    go again one by one, and only the refused event is counted as not sent."""
    services, calls = _services(settings)
    refused_before = _fallbacks("InvalidInputException")
    try:
        with Stubber(services.personalize_events.client) as stub:
            stub.add_client_error("put_events", "InvalidInputException", http_status_code=400,
                                  expected_params=_call("u1", POLLS[:3]))
            for poll in POLLS[:3]:
                if poll == POLLS[1]:
                    stub.add_client_error("put_events", "InvalidInputException",
                                          http_status_code=400,
                                          expected_params=_call("u1", [poll]))
                else:
                    stub.add_response("put_events", {}, _call("u1", [poll]))
            gate = _hold(services, "u1")
            for poll in POLLS[:3]:
                _vote(services, "u1", poll)
            gate.set()
            assert services.forwarder.wait_idle(10)
            stub.assert_no_pending_responses()
    finally:
        asyncio.run(services.close())
    assert [_polls(c) for c in calls] == [POLLS[:3], POLLS[0:1], POLLS[1:2], POLLS[2:3]]
    assert _fallbacks("InvalidInputException") - refused_before == 1


def test_a_throttled_call_goes_again_whole(settings, monkeypatch):  # noqa: F811
    """A call refused for the rate (once botocore's attempts were too) is sent again
    as it was, after a pause: none of its events is lost or counted as not sent."""
    from recsys.backends import forwarder

    monkeypatch.setattr(forwarder, "EVENT_RETRY_SECONDS", (0.01, 0.05), raising=False)
    services, calls = _services(settings)
    throttled_before = _fallbacks("ThrottlingException")
    retried_before = _fallbacks("throttled-retried")
    try:
        with Stubber(services.personalize_events.client) as stub:
            stub.add_client_error("put_events", "ThrottlingException", http_status_code=400,
                                  expected_params=_call("u1", POLLS[:4]))
            stub.add_response("put_events", {}, _call("u1", POLLS[:4]))
            gate = _hold(services, "u1")
            for poll in POLLS[:4]:
                _vote(services, "u1", poll)
            gate.set()
            assert services.forwarder.wait_idle(10)
            stub.assert_no_pending_responses()
    finally:
        asyncio.run(services.close())
    assert [_polls(c) for c in calls] == [POLLS[:4], POLLS[:4]]
    assert _fallbacks("ThrottlingException") == throttled_before
    assert _fallbacks("throttled-retried") - retried_before == 1


def test_an_idle_queue_sends_an_event_at_once_and_what_queues_meanwhile_goes_together(
        settings):  # noqa: F811
    """No waiting for a call to fill: a vote with nothing queued goes at once, alone;
    the votes made while its call waits on Amazon go together in the next."""
    services, calls = _services(settings)
    in_flight, answer = threading.Event(), threading.Event()

    def slow_amazon(params, **_) -> None:
        if len(calls) == 1:  # the first call: Amazon answers when the test says
            in_flight.set()
            answer.wait(10)

    services.personalize_events.client.meta.events.register(
        "provide-client-params.personalize-events.PutEvents", slow_amazon)
    try:
        with Stubber(services.personalize_events.client) as stub:
            stub.add_response("put_events", {}, _call("u1", POLLS[:1]))
            stub.add_response("put_events", {}, _call("u1", POLLS[1:4]))
            _vote(services, "u1", POLLS[0])
            # Sent alone, with nothing else queued (how soon is bench_putevents.py's:
            # tests assert no timings).
            assert in_flight.wait(10)
            for poll in POLLS[1:4]:
                _vote(services, "u1", poll)
            answer.set()
            assert services.forwarder.wait_idle(10)
            stub.assert_no_pending_responses()
    finally:
        asyncio.run(services.close())
    assert [_polls(c) for c in calls] == [POLLS[:1], POLLS[1:4]]
