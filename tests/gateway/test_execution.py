"""The short path for plain scalar fields (gateway/execution.py): fewer steps per field
of a feed page, the same answers and the same errors as graphql-core's own path."""

from __future__ import annotations

import asyncio
import enum

import pytest
import strawberry
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from gateway.execution import ScalarFieldsExecutionContext
from tests.gateway.test_app import ID_ONLY, gql, serve, settings  # noqa: F401 (fixture)


@strawberry.enum
class Mood(enum.Enum):
    HAPPY = "happy"


@strawberry.type
class Row:
    text: str
    maybe: str | None
    count: int
    ratio: float
    mood: Mood
    tags: list[str]

    @strawberry.field
    def shout(self, times: int = 1) -> str:
        return self.text.upper() * times


class Exploding:
    """A source whose attribute read fails (a bug in a resolver-less field)."""

    @property
    def text(self) -> str:
        raise RuntimeError("attribute read failed")


@strawberry.type
class Query:
    @strawberry.field
    def rows(self) -> list[Row]:
        return [
            Row(text="a", maybe=None, count=1, ratio=0.5, mood=Mood.HAPPY, tags=["x"]),
            Row(text=None, maybe="m", count=2, ratio=1.0, mood=Mood.HAPPY, tags=[]),  # type: ignore[arg-type]
            Row(text="c", maybe="m", count=2**40, ratio=2.0, mood=Mood.HAPPY, tags=[]),
            Row(text="d", maybe="m", count=3, ratio="not a number", mood="sad",  # type: ignore[arg-type]
                tags=[]),
        ]

    @strawberry.field
    def broken(self) -> list[Row]:
        return [Exploding()]  # type: ignore[list-item]


QUERIES = [
    "{ rows { text maybe count ratio mood tags shout(times: 2) __typename } }",
    "{ rows { maybe ...F } } fragment F on Row { ratio mood }",
    "{ rows { count } }",
    "{ broken { text } }",
]


def _schema(context_class, query: type = Query) -> strawberry.Schema:
    return strawberry.Schema(query=query, execution_context_class=context_class)


def _answer(context_class, query: str):
    result = _schema(context_class).execute_sync(query)
    return result.data, [(e.message, e.path, e.locations) for e in result.errors or []]


@pytest.mark.parametrize("query", QUERIES)
def test_the_short_path_answers_and_fails_exactly_as_graphql_core(query):
    """Values, nulls, and every error (null for a non-null field, an Int out of range, a
    Float or enum the scalar refuses, a failing attribute read): same data, messages,
    paths and locations."""
    ours = _answer(ScalarFieldsExecutionContext, query)
    assert ours == _answer(StrawberryGraphQLCoreExecutionContext, query)
    if query != QUERIES[0]:
        assert ours[1], "each of these queries reaches at least one error"


def test_a_feed_page_resolves_its_scalar_fields_without_resolve_info(settings, monkeypatch):  # noqa: F811
    """graphql-core builds a resolve-info object per field; a page's plain scalars
    (``source``, ``node { id }``, ``endCursor``) need none. Counted per page: fields with
    a resolver or an object value only (feed, pageInfo, edges, and each edge's node)."""
    built = []
    original = StrawberryGraphQLCoreExecutionContext.build_resolve_info

    def counting(self, field_def, field_nodes, parent_type, path):
        built.append(field_nodes[0].name.value)
        return original(self, field_def, field_nodes, parent_type, path)

    monkeypatch.setattr(StrawberryGraphQLCoreExecutionContext, "build_resolve_info", counting)

    async def scenario(client):
        body = (await gql(client, settings, ID_ONLY)).json()
        edges = body["data"]["feed"]["edges"]
        assert len(edges) == 5 and all(e["source"] and e["node"]["id"] for e in edges), body
        assert body["data"]["feed"]["pageInfo"]["endCursor"]

    serve(settings, scenario)
    assert sorted(built) == sorted(["feed", "pageInfo", "edges"] + ["node"] * 5)


checked: list[str] = []


class CountingPermission(strawberry.BasePermission):
    message = "no"

    def has_permission(self, source, info, **kwargs) -> bool:
        checked.append(type(source).__name__)  # an audit log, say
        return info.field_name == "secret"  # reads info, as a real check does


class AsyncPermission(strawberry.BasePermission):
    async def has_permission(self, source, info, **kwargs) -> bool:
        return info.field_name == "secret"


@strawberry.type
class Guarded:
    secret: str = strawberry.field(permission_classes=[CountingPermission])


@strawberry.type
class AsyncGuarded:
    secret: str = strawberry.field(permission_classes=[AsyncPermission])


@strawberry.type
class GuardedQuery:
    """Resolver-less fields behind a permission checked synchronously, or not."""

    @strawberry.field
    def guarded(self) -> list[Guarded]:
        return [Guarded(secret="s1"), Guarded(secret="s2")]

    @strawberry.field
    def async_guarded(self) -> list[AsyncGuarded]:
        return [AsyncGuarded(secret="s1")]


def test_a_field_with_a_permission_but_no_resolver_is_checked_once_with_its_info():
    """strawberry marks such a field's resolver as a default one too, but it runs the
    permission (a field extension), which needs the resolve info: graphql-core's path
    only, not a first try without info and a second with it."""
    checked.clear()
    for context_class in (ScalarFieldsExecutionContext, StrawberryGraphQLCoreExecutionContext):
        schema = _schema(context_class, GuardedQuery)
        result = schema.execute_sync("{ guarded { secret } }")
        assert result.errors is None and result.data == {
            "guarded": [{"secret": "s1"}, {"secret": "s2"}]}
    assert checked == ["Guarded"] * 4


def test_an_async_permission_is_not_started_without_its_info(recwarn):
    """Its resolver returns a coroutine: one started and dropped is a RuntimeWarning
    ('never awaited') per field."""
    import gc

    schema = _schema(ScalarFieldsExecutionContext, GuardedQuery)
    result = asyncio.run(schema.execute("{ asyncGuarded { secret } }"))
    assert result.errors is None and result.data == {"asyncGuarded": [{"secret": "s1"}]}
    gc.collect()
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
