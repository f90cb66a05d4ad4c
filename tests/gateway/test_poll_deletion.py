"""deletePoll: an author deletes their poll, an internal tool any; a deleted poll is never
served again (feeds opened before included), takes no events, and its id is never
written again. Real Services on a real SQLite file, over ASGI; two Services on one file
for another worker."""

from __future__ import annotations

import asyncio

from gateway.auth import issue_token
from gateway.services import Services
from recsys.events import EventStore
from recsys.promotions import Promotion
from tests.gateway.test_app import codes, gql, serve, settings  # noqa: F401 - the fixture

DELETE = """mutation($id: ID!) { deletePoll(pollId: $id) { __typename
  ... on DeletedPoll { id authorId deletedAt } ... on NotFoundError { message }
  ... on InvalidInputError { message } } }"""
FEED = """query($after: String) { feed(first: 5, after: $after) {
  pageInfo { endCursor hasNextPage } edges { cursor node { id } } } }"""
VOTE = """mutation($id: ID!) { recordInteraction(input: {pollId: $id}) { __typename
  ... on DeletedPollError { message pollId } } }"""
SEEN = """mutation($ids: [ID!]!) { recordImpressions(pollIds: $ids) { __typename
  ... on DeletedPollError { pollId } } }"""
UPSERT = """mutation($input: PollInput!) { upsertPoll(input: $input) { __typename
  ... on DeletedPollError { message } } }"""
READ = """query($id: ID!) { poll(id: $id) { id question author { polls(first: 50) { id } } } }"""


def _as(client, settings, query, variables, user, admin=False):  # noqa: F811
    token = issue_token(settings, user, admin=admin)
    return client.post("/graphql", json={"query": query, "variables": variables},
                       headers={"Authorization": f"Bearer {token}"})


def _feed_ids(feed: dict) -> list[str]:
    return [e["node"]["id"] for e in feed["edges"]]


def test_only_the_author_or_an_internal_tool_deletes_and_again_answers_the_same(
        settings):  # noqa: F811
    async def scenario(client):
        body = (await _as(client, settings, DELETE, {"id": "p3"}, "b")).json()
        assert codes(body) == ["FORBIDDEN"], body  # as a non-author's upsertPoll
        assert "only its author or an internal tool" in body["errors"][0]["message"]
        body = (await _as(client, settings, READ, {"id": "p3"}, "b")).json()
        assert body["data"]["poll"]["question"] == "question of p3?"  # untouched
        body = (await _as(client, settings, DELETE, {"id": "nope"}, "a1")).json()
        assert body["data"]["deletePoll"]["__typename"] == "NotFoundError", body
        for odd in ("", "x" * 300):
            body = (await _as(client, settings, DELETE, {"id": odd}, "a1")).json()
            assert body["data"]["deletePoll"]["__typename"] == "InvalidInputError", body
        first = (await _as(client, settings, DELETE, {"id": "p3"}, "a1")).json()
        assert first["data"]["deletePoll"]["__typename"] == "DeletedPoll", first
        assert first["data"]["deletePoll"]["authorId"] == "a1"
        again = (await _as(client, settings, DELETE, {"id": "p3"}, "a1")).json()
        assert again["data"] == first["data"]  # idempotent: the first deletion's time
        body = (await _as(client, settings, DELETE, {"id": "p3"}, "b")).json()
        assert codes(body) == ["FORBIDDEN"]
        tool = (await _as(client, settings, DELETE, {"id": "p4"}, "mod", admin=True)).json()
        assert tool["data"]["deletePoll"]["authorId"] == "a1", tool

    serve(settings, scenario)
    with EventStore(settings.events_db) as store:
        assert store.get_item("p3") is None and store.get_item("p4") is None
        assert store.deleted_item_ids(["p3", "p4", "p5"]) == ["p3", "p4"]


def test_a_deleted_poll_is_not_read_voted_on_or_written_again(settings):  # noqa: F811
    async def scenario(client):
        assert (await _as(client, settings, VOTE, {"id": "p7"}, "u1")).json()["data"][
            "recordInteraction"]["__typename"] == "Recorded"
        await _as(client, settings, DELETE, {"id": "p7"}, "a1")
        body = (await _as(client, settings, READ, {"id": "p7"}, "u1")).json()
        assert body["data"]["poll"] is None, body
        body = (await _as(client, settings, READ, {"id": "p8"}, "u1")).json()
        authored = [p["id"] for p in body["data"]["poll"]["author"]["polls"]]
        assert "p8" in authored and "p7" not in authored  # "more from this author"
        body = (await _as(client, settings, VOTE, {"id": "p7"}, "u2")).json()
        assert body["data"]["recordInteraction"] == {
            "__typename": "DeletedPollError", "pollId": "p7",
            "message": "poll 'p7' was deleted; nothing was stored: drop it from what the "
                       "client shows"}, body
        body = (await _as(client, settings, SEEN, {"ids": ["p8", "p7"]}, "u2")).json()
        assert body["data"]["recordImpressions"]["__typename"] == "DeletedPollError", body
        for user, admin in (("a1", False), ("b", False), ("tools", True)):
            body = (await _as(client, settings, UPSERT, {"input": {
                "id": "p7", "categories": ["X"], "question": "back again"}},
                user, admin)).json()
            assert body["data"]["upsertPoll"]["__typename"] == "DeletedPollError", body
            assert "stays deleted" in body["data"]["upsertPoll"]["message"]
        body = (await _as(client, settings, UPSERT, {"input": {
            "id": "mine", "categories": ["hunch-deleted"]}}, "b")).json()
        assert body["data"]["upsertPoll"]["__typename"] == "InvalidInputError", body

    serve(settings, scenario)
    with EventStore(settings.events_db) as store:
        assert store.get_item("p7") is None
        assert store.count_events(item_id="p7") == 1  # the vote before: history, kept


def test_no_feed_serves_a_deleted_poll_and_open_sessions_keep_their_cursors(
        settings):  # noqa: F811
    async def scenario(client):
        page1 = (await gql(client, settings, FEED, {"after": None}, user="u1")).json()
        page1 = page1["data"]["feed"]
        shown = _feed_ids(page1)
        assert len(shown) == 5
        # What the next page would hold, from another session of the same ranking.
        peek = (await gql(client, settings, FEED, {"after": None}, user="u2")).json()
        peek2 = (await gql(client, settings, FEED, {
            "after": peek["data"]["feed"]["pageInfo"]["endCursor"]}, user="u2")).json()
        upcoming = _feed_ids(peek2["data"]["feed"])
        assert upcoming and not set(upcoming) & set(shown)
        on_page1, on_page2 = shown[2], upcoming[0]
        for poll in (on_page1, on_page2):
            body = (await _as(client, settings, DELETE, {"id": poll}, "a1")).json()
            assert body["data"]["deletePoll"]["__typename"] == "DeletedPoll", body
        # The session opened before: its next page has neither; cursors stay unique.
        page2 = (await gql(client, settings, FEED, {
            "after": page1["pageInfo"]["endCursor"]}, user="u1")).json()["data"]["feed"]
        assert len(page2["edges"]) == 5
        assert on_page2 not in _feed_ids(page2) and not set(_feed_ids(page2)) & set(shown)
        # Resuming inside the page already served: it is replayed without the deleted
        # poll, every other poll with the very cursor it had.
        replay = (await gql(client, settings, FEED, {
            "after": page1["edges"][0]["cursor"]}, user="u1")).json()["data"]["feed"]
        assert _feed_ids(replay)[:3] == [shown[1], shown[3], shown[4]]
        assert [e["cursor"] for e in replay["edges"][:3]] == [
            page1["edges"][k]["cursor"] for k in (1, 3, 4)]
        assert len({e["cursor"] for e in page1["edges"] + page2["edges"]}) == 10
        assert len({e["cursor"] for e in replay["edges"]}) == len(replay["edges"])
        # A new feed, and an internal tool's feed of a user: neither has them.
        for user, extra in (("u3", {}), ("tools", {"userId": "u4"})):
            query = ("query($u: ID) { feed(first: 30, userId: $u) { edges { node { id } } } }")
            body = (await _as(client, settings, query, {"u": extra.get("userId")}, user,
                              admin=bool(extra))).json()
            ids = _feed_ids(body["data"]["feed"])
            assert len(ids) == 28 and on_page1 not in ids and on_page2 not in ids, body

    serve(settings, scenario)


def test_another_worker_stops_serving_it_at_its_next_refresh(settings):  # noqa: F811
    a, b = Services(settings), Services(settings)
    try:
        assert "p29" in [i.item_id for i in b.feed("u1", 5, None).page.items]
        a.delete_poll("p29", "a1")
        assert "p29" not in [i.item_id for i in a.feed("u2", 30, None).page.items]
        b.refresher.refresh_catalog()  # what its refresher's thread does every 0.25 s
        assert "p29" not in [i.item_id for i in b.feed("u3", 30, None).page.items]
        assert b.polls_by_author("a1", 50).count("p29") == 0
    finally:
        for services in (a, b):
            asyncio.run(services.close())


def test_a_promotion_never_places_a_deleted_poll(settings):  # noqa: F811
    services = Services(settings)
    try:
        promotion = Promotion(name="all", percent_promoted_items=50,
                              filter_expression='INCLUDE ItemID WHERE Items.CATEGORY IN ("news")')
        services.feed_filters.begin_request()
        allowed = services.feed_filters.promotion_predicate(promotion, "u1")
        assert allowed("p5") and allowed("p6")
        services.delete_poll("p5", "a1")
        services.feed_filters.begin_request()
        allowed = services.feed_filters.promotion_predicate(promotion, "u1")
        assert not allowed("p5") and allowed("p6")
    finally:
        asyncio.run(services.close())


def test_a_restarted_worker_knows_every_deletion(settings):  # noqa: F811
    first = Services(settings)
    try:
        first.delete_poll("p29", "a1")
    finally:
        asyncio.run(first.close())
    services = Services(settings)  # the popularity model still ranks p29 first
    try:
        assert "p29" not in [i.item_id for i in services.feed("u1", 30, None).page.items]
    finally:
        asyncio.run(services.close())


def test_with_personalize_the_tombstone_replaces_amazons_record_and_its_answers_drop_it(
        settings):  # noqa: F811
    """Personalize cannot delete one item: PutItems replaces the record with the
    tombstone's (no text, the reserved category a campaign filter excludes), and the
    gateway drops the poll from Amazon's answers at once (same semantics as local)."""
    from botocore.stub import Stubber

    from tests.gateway.test_app import T0

    arn = "arn:aws:personalize:us-east-1:123456789012:campaign/hunch-up"
    items_arn = "arn:aws:personalize:us-east-1:123456789012:dataset/hunch/ITEMS"
    configured = settings.model_copy(update={
        "backend": "personalize", "personalize_campaign_arns": {"user-personalization": arn},
        "personalize_tracking_id": "tracking-1", "personalize_items_dataset_arn": items_arn})
    services = Services(configured)
    source = services.mixer.sources["user-personalization"]
    try:
        with Stubber(services.personalize_events.client) as events, \
                Stubber(source.client) as runtime:
            events.add_response("put_items", {}, {"datasetArn": items_arn, "items": [{
                "itemId": "p29", "properties": '{"category":"hunch-deleted","authorId":"a1",'
                                               '"creationTimestamp":%d}' % T0}]})
            services.delete_poll("p29", "a1")
            services.forwarder.close()  # sends what waits
            events.assert_no_pending_responses()
            runtime.add_response("get_recommendations", {
                "itemList": [{"itemId": p, "score": 1.0} for p in ("p29", "p28", "p27")],
                "recommendationId": "RID"}, None)
            services.feed_filters.begin_request()
            allow = services.feed_filters.allow("u1")
            assert [c.item_id for c in source.candidates("u1", 3, allow=allow)] == [
                "p28", "p27"]
    finally:
        asyncio.run(services.close())


def test_an_edit_whose_copy_follows_the_deletion_does_not_bring_its_text_back_to_amazon(
        settings):  # noqa: F811
    """An edit committed just before the deletion, its PutItems copy submitted just
    after (another request's thread, or another worker): the edit replaced the
    tombstone waiting in the batcher's map, and Amazon kept the text and the poll as a
    live one. What goes is checked against the store when it is sent."""
    from botocore.stub import Stubber

    from tests.gateway.test_app import T0

    arn = "arn:aws:personalize:us-east-1:123456789012:campaign/hunch-up"
    items_arn = "arn:aws:personalize:us-east-1:123456789012:dataset/hunch/ITEMS"
    configured = settings.model_copy(update={
        "backend": "personalize", "personalize_campaign_arns": {"user-personalization": arn},
        "personalize_tracking_id": "tracking-1", "personalize_items_dataset_arn": items_arn})
    services = Services(configured)
    try:
        with Stubber(services.personalize_events.client) as events:
            events.add_response("put_items", {}, {"datasetArn": items_arn, "items": [{
                "itemId": "p29", "properties": '{"category":"hunch-deleted","authorId":"a1",'
                                               '"creationTimestamp":%d}' % T0}]})
            edited = services.events.upsert_item(
                {"ITEM_ID": "p29", "QUESTION": "my phone number is ..."}, acting_user="a1")
            with services.item_copies._cond:  # both reach the map before a call goes
                services.delete_poll("p29", "a1")
                services._forward_poll(edited)  # the edit's request, a moment late
            services.forwarder.close()
            events.assert_no_pending_responses()
    finally:
        asyncio.run(services.close())


def test_a_vote_forwarded_to_amazon_leaves_a_deleted_poll_out_of_what_was_shown(
        settings):  # noqa: F811
    """A vote naming a page's recommendation goes to Amazon with the page's polls as its
    impression list: a poll of that page deleted since went with it, and Amazon was
    taught it again as seen."""
    from botocore.stub import ANY, Stubber

    from recsys.events import Interaction

    arn = "arn:aws:personalize:us-east-1:123456789012:campaign/hunch-up"
    configured = settings.model_copy(update={
        "personalize_tracking_id": "tracking-1", "backend": "personalize",
        "personalize_campaign_arns": {"user-personalization": arn}})
    services = Services(configured)
    try:
        page = services.feed("u1", 3, None).page  # Amazon's campaign is not stubbed:
        shown = [i.item_id for i in page.items]  # the local fallback's page
        services.recommendation_log.flush()
        services.delete_poll(shown[0], "a1")
        with Stubber(services.personalize_events.client) as events:
            events.add_response("put_events", {}, {
                "trackingId": "tracking-1", "userId": "u1", "sessionId": "u1",
                "eventList": [{"eventId": ANY, "eventType": "HUNCH", "sentAt": ANY,
                               "itemId": shown[1], "impression": shown[1:],
                               "recommendationId": page.recommendation_id}]})
            services.record_interaction(Interaction(
                "u1", shown[1], "HUNCH", services.event_rules.event_time(None),
                recommendation_id=page.recommendation_id, event_id="v1"))
            services.forwarder.close()
            events.assert_no_pending_responses()
    finally:
        asyncio.run(services.close())
