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
