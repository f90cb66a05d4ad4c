"""What the API admits that Amazon Personalize could not hold: refused here too, so the
embedded and the production engines keep the same events."""

from __future__ import annotations

from tests.gateway.test_app import POLLS, gql, serve, settings  # noqa: F401 - a fixture

INTERACTION = """mutation($p: ID!, $seen: [ID!]) { recordInteraction(input: {
  pollId: $p, eventType: "HUNCH", impression: $seen }) {
  __typename ... on InvalidInputError { message } } }"""


def test_an_interaction_names_at_most_the_25_polls_putevents_takes(settings):  # noqa: F811
    async def scenario(client):
        async def send(poll, seen):
            body = (await gql(client, settings, INTERACTION, {"p": poll, "seen": seen},
                              user="voter")).json()
            return body["data"]["recordInteraction"]

        refused = await send("p29", POLLS[:26])
        assert refused["__typename"] == "InvalidInputError"
        assert "at most 25" in refused["message"]
        assert (await send("p29", POLLS[:25] + POLLS[:5]))["__typename"] == "Recorded"

    serve(settings, scenario)


def test_polls_written_together_reach_amazon_ten_to_a_putitems_call(settings):  # noqa: F811
    """PutItems takes 10 records a call and 10 calls a second per dataset group: one
    call per poll written (as before) capped the app at 10 new polls a second, and
    Amazon's throttling then dropped the copies. 25 polls written while a call waits go
    in calls of 10, each poll once, the edited one in its latest state."""
    import asyncio

    from botocore.stub import Stubber

    from gateway.services import Services

    items_arn = "arn:aws:personalize:us-east-1:123456789012:dataset/hunch/ITEMS"
    configured = settings.model_copy(update={
        "backend": "personalize", "personalize_tracking_id": "tracking-1",
        "personalize_items_dataset_arn": items_arn})
    services = Services(configured)
    calls: list[list[dict]] = []
    services.personalize_events.client.meta.events.register(
        "provide-client-params.personalize-events.PutItems",
        lambda params, **_: calls.append(params["items"]))
    services.item_copies._interval = 1.5  # a slow Amazon: the rest wait behind the first
    try:
        with Stubber(services.personalize_events.client) as stub:
            for _ in range(25):
                stub.add_response("put_items", {}, None)
            for k in range(25):
                services.upsert_poll({"ITEM_ID": f"new{k}", "CATEGORY": "news",
                                      "QUESTION": f"question {k}?"}, "author-1")
            services.upsert_poll({"ITEM_ID": "new3", "CATEGORY": "news",
                                  "QUESTION": "edited?"}, "author-1")
            assert services.forwarder.wait_idle(20)
    finally:
        asyncio.run(services.close())
    assert all(len(call) <= 10 for call in calls), [len(c) for c in calls]
    assert len(calls) <= 5, [len(c) for c in calls]  # 1, 10, 10, 4 on a quick machine
    sent = [item["itemId"] for call in calls for item in call]
    assert sorted(set(sent)) == sorted(f"new{k}" for k in range(25))
    last = [item for call in calls for item in call if item["itemId"] == "new3"][-1]
    assert "edited?" in last["properties"]
