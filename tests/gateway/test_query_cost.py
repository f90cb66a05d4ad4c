"""The node budget (gateway/query_cost.py) and the read rate limit, in process over ASGI.

A hostile client's probe: 15 aliases of ``poll { author { polls(first: 100) { <text> } } }``
(1.4 KB) returned 90 MB of poll text in 0.67 s, and 15 aliased feed pages each asking
``author { polls(first: 100) }`` returned 9.85 MB; ``poll``, ``me`` and ``Author.polls``
had no rate limit."""

from __future__ import annotations

import time

import pytest

from gateway.app import create_app
from gateway.auth import issue_token
from gateway.services import Services
from recsys.events import EventStore
from tests.gateway.test_app import codes, gql, serve, settings  # noqa: F401 - a fixture

TEXT = "x" * 2_000  # the probe's polls had ~60 KB of text; 6 KB keeps the test light
HOARD = 100  # polls the probe's user created (the mutation rate limit allows it)

ATTACK_POLLS = "{ " + " ".join(
    f'a{i}: poll(id: "p1") {{ author {{ polls(first: 100) '
    "{ id question options description } } }" for i in range(15)) + " }"
ATTACK_FEED = "{ " + " ".join(
    f"a{i}: feed(first: 100) {{ edges {{ node {{ question options description "
    "author { polls(first: 100) { id question options description } } } } }"
    for i in range(15)) + " }"
# What the app asks: a full page with the poll's text and its author's id.
FULL_PAGE = """query($first: Int!) { feed(first: $first) {
  pageInfo { endCursor hasNextPage } recommendationId
  edges { cursor source score rank node { id question options description categories
    createdAt author { id } } } } }"""
# The same page where every poll also asks for its author's other polls.
PAGE_WITH_AUTHOR_POLLS = """query($first: Int!, $more: Int!) { feed(first: $first) {
  edges { node { id question author { id polls(first: $more) { id question } } } } } }"""


def _write_hoard(settings, prefix: str, text: str):  # noqa: F811
    """a1 (author of the feed's polls) writes HOARD more polls whose question, options
    and description are each ``text``."""
    events = EventStore(settings.events_db)
    events.upsert_items([
        {"ITEM_ID": f"{prefix}{k}", "CATEGORY": "news", "AUTHOR_ID": "a1",
         "CREATION_TIMESTAMP": 1_700_000_000 + k, "QUESTION": text, "OPTIONS": text,
         "DESCRIPTION": text} for k in range(HOARD)])
    events.close()
    return settings


@pytest.fixture
def hoard(settings):  # noqa: F811
    """The probe's set-up: a1 (author of the feed's polls) wrote 100 more, text and all."""
    return _write_hoard(settings, "h", TEXT)


def _spied(settings) -> tuple[Services, list[str]]:  # noqa: F811
    """Services whose store reads (every resolver's way to data) are recorded."""
    services = Services(settings)
    calls: list[str] = []
    for owner, name in ((services.reads, "get_item"), (services.reads, "get_items"),
                        (services.reads, "get_user"), (services, "polls_by_author"),
                        (services, "feed")):
        method = getattr(owner, name)

        def called(*args, _method=method, _name=name, **kwargs):
            calls.append(_name)
            return _method(*args, **kwargs)

        setattr(owner, name, called)
    return services, calls


def _refused(body: dict) -> str:
    assert codes(body) == ["GRAPHQL_VALIDATION_FAILED"], str(body)[:500]
    assert body.get("data") is None
    return body["errors"][0]["message"]


def test_the_probes_two_queries_are_refused_before_any_resolver_runs(hoard):
    services, calls = _spied(hoard)

    async def scenario(client):
        for query, nodes in ((ATTACK_POLLS, 15 * 100), (ATTACK_FEED, 15 * (100 + 100 * 100))):
            started = time.perf_counter()
            response = await gql(client, hoard, query)
            took = time.perf_counter() - started
            message = _refused(response.json())
            assert calls == [], calls  # not one store read: nothing was executed
            assert took < 1.0, took
            assert len(response.content) < 1_000
            assert f"up to {nodes:,} nodes" in message and "budget of 500" in message
            assert "fewer items per list" in message
            error = response.json()["errors"][0]
            assert error["extensions"]["nodes"] == nodes
            assert error["extensions"]["maxNodes"] == 500
        # the same user's ordinary reads still work
        body = (await gql(client, hoard, '{ poll(id: "p1") { author { polls(first: 100) '
                                         "{ id } } } }")).json()
        assert "errors" not in body and len(body["data"]["poll"]["author"]["polls"]) == 100

    serve(hoard, scenario, create_app(hoard, services))


def test_the_apps_full_page_passes_and_the_page_with_author_polls_does_not(settings):  # noqa: F811
    async def scenario(client):
        page = (await gql(client, settings, FULL_PAGE, {"first": 100})).json()  # 100 nodes
        assert "errors" not in page, page
        edges = page["data"]["feed"]["edges"]
        assert len(edges) == 30 and all(e["node"]["author"] == {"id": "a1"} for e in edges)
        # "more from this author" with 3 each: 100 + 100 * 3 = 400
        more = (await gql(client, settings, PAGE_WITH_AUTHOR_POLLS,
                          {"first": 100, "more": 3})).json()
        assert "errors" not in more, more
        assert all(len(e["node"]["author"]["polls"]) == 3 for e in more["data"]["feed"]["edges"])
        # the probe's shape, one page: 100 + 100 * 100 = 10,100
        message = _refused((await gql(client, settings, PAGE_WITH_AUTHOR_POLLS,
                                      {"first": 100, "more": 100})).json())
        assert "up to 10,100 nodes" in message

    serve(settings, scenario)


def test_variables_defaults_and_fragments_are_counted(settings):  # noqa: F811
    polls_of_author = "fragment More on Poll { author { polls(first: $n) { id } } }"

    def aliased(count: int) -> str:
        return ("query($n: Int! = 100) { " + " ".join(
            f'a{i}: poll(id: "p1") {{ id ...More }}' for i in range(count)) + " } "
            + polls_of_author)

    async def scenario(client):
        # through a fragment, with a variable's default: 5 * 100 is the budget, 6 * 100 over
        assert "errors" not in (await gql(client, settings, aliased(5))).json()
        assert "up to 600 nodes" in _refused((await gql(client, settings, aliased(6))).json())
        # the variable's value, not its default, is what counts
        small = (await gql(client, settings, aliased(6), {"n": 2})).json()
        assert "errors" not in small and len(small["data"]["a5"]["author"]["polls"]) == 2
        # an inline fragment and a missing `first` (the field's default: 20 and 10)
        default = "{ feed { edges { node { ... on Poll { author { polls { id } } } } } } }"
        assert "errors" not in (await gql(client, settings, default)).json()  # 20 + 200
        full = "{ feed(first: 100) { edges { node { author { polls { id } } } } } }"
        assert "up to 1,100 nodes" in _refused((await gql(client, settings, full)).json())
        # @include with a variable: what is left out is not counted
        optional = ("query($more: Boolean!) { feed(first: 100) { edges { node { id "
                    "author @include(if: $more) { polls(first: 100) { id } } } } } }")
        assert "errors" not in (await gql(client, settings, optional, {"more": False})).json()
        _refused((await gql(client, settings, optional, {"more": True})).json())
        # a `first` the resolver refuses still gets its typed error, counted as a page
        too_big = (await gql(client, settings, '{ poll(id: "p1") { author { polls('
                                               "first: 10000) { id } } } }")).json()
        assert codes(too_big) == ["PAGE_SIZE_EXCEEDED"]

    serve(settings, scenario)


def test_the_budget_is_a_setting(settings):  # noqa: F811
    settings = settings.model_copy(update={"max_query_nodes": 50})
    query = '{ poll(id: "p1") { author { polls(first: 30) { id } } } }'

    async def scenario(client):
        assert "errors" not in (await gql(client, settings, query)).json()  # 30
        message = _refused((await gql(client, settings, query.replace("30", "51"))).json())
        assert "up to 51 nodes, over the budget of 50" in message

    serve(settings, scenario)


def _count(query: str, variables: dict | None = None) -> int:
    from graphql import parse
    from graphql.execution import get_variable_values

    from gateway.query_cost import operation_nodes
    from gateway.schema import schema

    operation, *definitions = parse(query).definitions
    coerced = get_variable_values(schema._schema, operation.variable_definitions or [],
                                  variables or {})
    return operation_nodes(schema._schema, operation,
                           {d.name.value: d for d in definitions}, coerced, 100)


def test_a_fragment_spread_twice_counts_once_and_the_walk_stays_linear():
    """Fragments that each spread the next twice: execution merges the two spreads (one
    author.polls of 2), and so does the count, visiting each fragment once."""
    fragments = " ".join(f"fragment F{i} on Poll {{ id ...F{i + 1} ...F{i + 1} }}"
                         for i in range(30))
    query = ('{ poll(id: "p") { ...F0 } } ' + fragments
             + " fragment F30 on Poll { author { polls(first: 2) { id } } }")
    started = time.perf_counter()
    assert _count(query) == 2
    assert time.perf_counter() - started < 0.5


def test_a_document_merging_into_too_many_fields_is_refused_not_walked():
    """Distinct aliases do not merge: 2**30 fields. Validation refuses such a document
    first; called directly, the count gives up after MAX_VISITS fields."""
    from gateway.query_cost import TooComplexToCount

    fragments = " ".join(
        f"fragment F{i} on Poll {{ a: author {{ polls(first: 1) {{ ...F{i + 1} }} }} "
        f"b: author {{ polls(first: 1) {{ ...F{i + 1} }} }} }}" for i in range(30))
    query = '{ poll(id: "p") { ...F0 } } ' + fragments + " fragment F30 on Poll { id }"
    started = time.perf_counter()
    with pytest.raises(TooComplexToCount):
        _count(query)
    assert time.perf_counter() - started < 5.0


def test_fields_merge_as_execution_merges_them_and_aliases_do_not():
    polls = "author { polls(first: 3) { id } }"
    # one response key asked twice (Apollo's colocated fragments, or plain repetition)
    assert _count("{ feed(first: 100) { edges { node { ...A ...B } } } } "
                  f"fragment A on Poll {{ id {polls} }} "
                  f"fragment B on Poll {{ question {polls} }}") == 100 + 100 * 3
    assert _count(f"{{ feed(first: 100) {{ edges {{ node {{ {polls} {polls} }} }} }} }}") == 400
    assert _count(f"{{ feed(first: 100) {{ edges {{ node {{ {polls} "
                  f"... on Poll {{ {polls} }} }} }} }} }}") == 400
    # the merged field's sub-selections are merged too: polls asked twice inside one author
    assert _count("{ feed(first: 10) { edges { node { author { polls(first: 5) { id } } "
                  "author { polls(first: 5) { question } } } } } }") == 10 + 10 * 5
    # aliases are separate fields, each returned: counted each
    assert _count(f"{{ feed(first: 100) {{ edges {{ node {{ x: {polls} y: {polls} }} }} }} }}"
                  ) == 100 + 100 * 6
    assert _count('{ a: poll(id: "p") { author { polls(first: 100) { id } } } '
                  'b: poll(id: "p") { author { polls(first: 100) { id } } } }') == 200
    # a skipped copy does not hide the one that runs
    assert _count("query($no: Boolean = true) { feed(first: 10) { edges { node { "
                  "author @skip(if: $no) { polls(first: 50) { id } } "
                  "author { polls(first: 50) { id } } } } } }") == 10 + 10 * 50


def test_apollos_colocated_fragments_get_the_page_they_ask_for(settings):  # noqa: F811
    """Apollo Client's fragment colocation: a feed item component and an author card
    each spread their own fragment, both asking the author's polls. Counted once per
    occurrence, a full page was refused for 700 nodes it could never return."""
    query = """query Feed($first: Int!) { feed(first: $first) { edges { cursor node {
        id ...FeedItem ...AuthorCard } } pageInfo { endCursor hasNextPage } } }
      fragment FeedItem on Poll { question author { id polls(first: 3) { id } } }
      fragment AuthorCard on Poll { author { id polls(first: 3) { id question } } }"""
    assert _count(query, {"first": 100}) == 400

    async def scenario(client):
        body = (await gql(client, settings, query, {"first": 100})).json()
        assert "errors" not in body, body
        edges = body["data"]["feed"]["edges"]
        assert edges and all(len(e["node"]["author"]["polls"]) <= 3 for e in edges)
        assert all(set(p) == {"id", "question"} for e in edges
                   for p in e["node"]["author"]["polls"])
        # what came back is within what was counted
        returned = len(edges) + sum(len(e["node"]["author"]["polls"]) for e in edges)
        assert returned <= 400

    serve(settings, scenario)


def test_poll_me_and_author_polls_are_rate_limited_once_per_request(settings):  # noqa: F811
    # Bursts of 10 (the floor), refilled at one a minute: no slow run refills a token.
    settings = settings.model_copy(update={"read_rate_per_minute": 1})
    poll_and_author = ('{ me { id } poll(id: "p1") { id author { polls(first: 2) { id } } } '
                       "other: poll(id: \"p2\") { id } }")
    page_with_more = "{ feed(first: 5) { edges { node { author { polls(first: 2) { id } } } } } }"

    async def scenario(client):
        # Each request counts once, however many reads it makes: 10 requests of 4 reads
        # fit a burst of 10.
        bodies = [(await gql(client, settings, poll_and_author, user="scraper")).json()
                  for _ in range(10)]
        assert all("errors" not in b for b in bodies), bodies[-1]
        for query in ('{ poll(id: "p1") { id } }', "{ me { id } }"):
            refused = (await gql(client, settings, query, user="scraper")).json()
            assert set(codes(refused)) == {"RATE_LIMITED"}, refused
            assert "too many reads" in refused["errors"][0]["message"]
        # A feed page is limited as a feed page: its authors' polls (reached only through
        # feed, poll or me) spend no read, so an exhausted reader's page is whole, not
        # one RATE_LIMITED error per edge (found by a client's probe).
        page = (await gql(client, settings, page_with_more, user="scraper")).json()
        assert "errors" not in page, page
        # one user's flood costs only that user
        assert "errors" not in (await gql(client, settings, "{ me { id } }", user="reader")).json()

    serve(settings, scenario)


# helper-60's probe (session 30): 495 nodes, within the budget, of the largest polls.
BIG_TEXT = "y" * 20_000
WIDE_POLLS = "{ " + " ".join(
    f'a{i}: poll(id: "p1") {{ author {{ polls(first: 99) '
    "{ id question options description } } }" for i in range(5)) + " }"


@pytest.fixture
def big_hoard(settings):  # noqa: F811
    """a1 wrote 100 polls of 60,000 characters of text each (as large as a body allows)."""
    return _write_hoard(settings, "big", BIG_TEXT)


def test_an_answer_of_too_much_text_is_refused_and_not_sent(big_hoard):
    """Nodes do not bound bytes: the probe's 5 aliases of author.polls(first: 99) are 495
    nodes and answered 25.8 MB (here ~29.7 million characters). It is now refused with
    RESPONSE_TOO_LARGE, without data, and the same reads asked for less pass."""
    settings = big_hoard  # noqa: F811 - the fixture, by its role here

    async def scenario(client):
        response = await gql(client, settings, WIDE_POLLS)
        body = response.json()
        assert codes(body) == ["RESPONSE_TOO_LARGE"], str(body)[:300]
        assert body["data"] is None
        assert len(response.content) < 2_000  # nothing of the text is sent
        error = body["errors"][0]
        assert error["extensions"]["maxTextChars"] == 4_000_000
        assert error["extensions"]["textChars"] > 5 * 99 * 3 * 20_000
        assert "fewer items" in error["message"]
        # One alias of 30 polls' full text (1.8 million characters) is within the limit,
        # and the 495 polls' ids alone are tiny.
        one = (await gql(client, settings, WIDE_POLLS.split(" a1:")[0]
                         .replace("99", "30") + " }")).json()
        assert "errors" not in one, str(one)[:300]
        assert len(one["data"]["a0"]["author"]["polls"]) == 30
        ids = (await gql(client, settings, WIDE_POLLS.replace(
            "question options description", ""))).json()
        assert "errors" not in ids and len(ids["data"]["a4"]["author"]["polls"]) == 99
        # a feed page of the big polls counts through the short path and the list path
        # (categories) alike: refused at a lower limit, served at the default
        page = "{ feed(first: 100) { edges { cursor node { id categories question } } } }"
        assert "errors" not in (await gql(client, settings, page)).json()

    serve(settings, scenario)


def test_the_text_limit_is_a_setting_and_counts_every_string_and_key(settings):  # noqa: F811
    """Counted over both of the executor's paths, plain attributes (question, cursor) and
    list items (categories), and every response key once per object."""
    small = settings.model_copy(update={"max_response_text_chars": 60})

    async def scenario(client):
        # values: "p1" (2) + "sports", "news" (10) + "question of p1?" (15) = 27;
        # keys: poll (4) + id (2) + categories (10) + question (8) = 24
        one = '{ poll(id: "p1") { id categories question } }'
        assert "errors" not in (await gql(client, small, one)).json()
        body = (await gql(client, small, one.replace("question", "question c: categories"))
                ).json()
        assert codes(body) == ["RESPONSE_TOO_LARGE"], body
        assert body["errors"][0]["extensions"]["textChars"] == 51 + 1 + 10

    serve(small, scenario)


def test_long_aliases_count_as_text(settings):  # noqa: F811
    """helper-63's probe: five 12,000-character aliases of __typename on a feed page and
    on its authors' polls (444 nodes) answered 26.7 MB of keys."""
    aliases = " ".join(f"{chr(97 + k) * 12_000}: __typename" for k in range(5))
    query = ("query { feed(first: 100) { edges { node { ...K author { polls(first: 3) { ...K"
             " } } } } } } fragment K on Poll { " + aliases + " }")
    big = settings.model_copy(update={"max_query_tokens": 10_000})

    async def scenario(client):
        response = await gql(client, big, query)
        body = response.json()
        assert codes(body) == ["RESPONSE_TOO_LARGE"], str(body)[:300]
        assert len(response.content) < 2_000
        assert body["errors"][0]["extensions"]["textChars"] > 4_000_000
        # the same shape with short aliases is an ordinary answer
        short = query.replace("a" * 12_000, "a").replace("b" * 12_000, "b")
        short = short.replace("c" * 12_000, "c").replace("d" * 12_000, "d")
        body = (await gql(client, big, short.replace("e" * 12_000, "e"))).json()
        assert "errors" not in body, str(body)[:300]

    serve(big, scenario)


def test_a_mutations_answer_is_bounded_too_and_says_the_write_is_done(big_hoard):
    """helper-63: an author's edit asking author.polls of author.polls of its 60,000-
    character polls (462 nodes) answered 26.5 MB. The answer is refused; the edit stays."""
    settings = big_hoard  # noqa: F811 - the fixture, by its role here
    edit = ('mutation { upsertPoll(input: {id: "big0", categories: ["news"], question: '
            '"edited"}) { ... on Poll { id author { polls(first: 21) { author { '
            "polls(first: 21) { question options description } } } } } } }")

    async def scenario(client):
        body = (await gql(client, settings, edit, user="a1")).json()
        assert codes(body) == ["RESPONSE_TOO_LARGE"], str(body)[:300]
        assert body["data"] is None
        assert "The mutation was carried out" in body["errors"][0]["message"]
        read = (await gql(client, settings, '{ poll(id: "big0") { question } }')).json()
        assert read["data"]["poll"]["question"] == "edited"

    serve(settings, scenario)


def test_an_authors_poll_fields_are_bounded_and_internal_tools_ingest_as_imports(settings):  # noqa: F811
    """So that any page the node budget allows fits the text budget, an author's text
    fields hold at most HUNCH_POLL_FIELD_CHARS (2,000) characters each, once cleaned."""
    write = ('mutation($q: String!, $id: ID!) { upsertPoll(input: {id: $id, categories: '
             '["news"], question: $q}) { __typename ... on InvalidInputError { message } '
             "... on Poll { question } } }")

    async def scenario(client):
        long = (await gql(client, settings, write, {"id": "w1", "q": "q" * 2_001},
                          user="writer")).json()["data"]["upsertPoll"]
        assert long["__typename"] == "InvalidInputError"
        assert "2,001 characters" in long["message"] and "HUNCH_POLL_FIELD_CHARS" in long["message"]
        # cleaned first: runs of spaces collapse to one
        spaced = (await gql(client, settings, write, {"id": "w2", "q": "q " + " " * 3_000 + "q"},
                            user="writer")).json()["data"]["upsertPoll"]
        assert spaced == {"__typename": "Poll", "question": "q q"}
        fits = (await gql(client, settings, write, {"id": "w3", "q": "q" * 2_000},
                          user="writer")).json()["data"]["upsertPoll"]
        assert fits["__typename"] == "Poll"
        admin = issue_token(settings, "ops", admin=True)
        ingest = (await client.post("/graphql", json={
            "query": write, "variables": {"id": "w4", "q": "q" * 20_000}},
            headers={"Authorization": f"Bearer {admin}"})).json()["data"]["upsertPoll"]
        assert ingest["__typename"] == "Poll" and len(ingest["question"]) == 20_000

    serve(settings, scenario)


def test_any_query_within_the_node_budget_over_authors_polls_fits_the_text_budget(settings):  # noqa: F811
    """helper-63: one account's legal polls (60,000 characters each) made 7 of 40 other
    users' ordinary pages fail. Polls as large as an author may write them (three served
    fields of HUNCH_POLL_FIELD_CHARS) fill the node budget (495 nodes) and still pass."""
    _write_hoard(settings, "max", "z" * settings.poll_field_chars)

    async def scenario(client):
        response = await gql(client, settings, WIDE_POLLS)
        body = response.json()
        assert "errors" not in body, str(body)[:300]
        assert sum(len(body["data"][f"a{i}"]["author"]["polls"]) for i in range(5)) == 495
        assert len(response.content) > 495 * 3 * settings.poll_field_chars

    serve(settings, scenario)


def test_json_values_count_as_text(settings):  # noqa: F811
    """A promotion's filterValues (JSON) were not counted, and the promotions list has no
    node bound: an internal tool's `promotions` answer was unbounded."""
    admin = issue_token(settings, "ops", admin=True)
    small = settings.model_copy(update={"max_response_text_chars": 2_500})

    async def scenario(client):
        async def ask(query):
            return (await client.post("/graphql", json={"query": query}, headers={
                "Authorization": f"Bearer {admin}"})).json()

        for k in range(3):  # each with one value of 1,000 characters (the most one holds)
            created = await ask(
                f'mutation {{ createPromotion(name: "p{k}", input: {{percentPromotedItems: '
                '10, filterExpression: "INCLUDE ItemID WHERE Items.CATEGORY IN ($v)", '
                f'filterValues: {{v: "\\"{"x" * 998}\\""}}}}) {{ __typename }} }}')
            assert created["data"]["createPromotion"]["__typename"] == "Promotion", created
        body = await ask("{ promotions { name } }")
        assert "errors" not in body, str(body)[:300]
        # ~3,000 characters of JSON: refused (before, JSON counted nothing and it passed)
        body = await ask("{ promotions { name filterValues } }")
        assert codes(body) == ["RESPONSE_TOO_LARGE"], str(body)[:300]
        assert body["errors"][0]["extensions"]["textChars"] > 3_000

    serve(small, scenario)
