"""graphql-core's execution, with a short path for plain scalar fields.

A feed page is 20 edges of ``source score node { id }``: some 80 fields whose value is
an attribute of an object already in memory. graphql-core runs every field through the
same steps (a resolve-info object, argument values, awaitable checks, the non-null /
list / leaf / object dispatch of ``complete_value``), which made the page's edges about
40% of the gateway's own CPU per feed request (bench/bench_gateway.py, py-spy).

:class:`ScalarFieldsExecutionContext` takes a shorter path for a field that (a) has no
resolver of its own, permission classes or field extensions (strawberry's default
attribute read, which needs no resolve info), (b) takes no arguments, and (c) returns a
scalar or enum: it reads the attribute and coerces it for output as graphql-core would.
Anything else, and any case that would be an error (an exception, null for a non-null
field, a value the scalar refuses), goes through graphql-core's own path, so errors keep
their messages, paths and locations.

Both paths count the characters of the strings they complete and of each field's
response key (``text_chars``): the response's text, which the node budget
(gateway/query_cost.py) bounds only through the number of polls. A JSON value
(``Promotion.filterValues``) counts as its JSON text: a list of promotions has no node
bound of its own, and each may carry a map of values.
"""

from __future__ import annotations

import json
from typing import Any

from graphql import GraphQLEnumType, GraphQLNonNull, GraphQLScalarType
from graphql.pyutils import Path, Undefined
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

_LEAF_TYPES = (GraphQLScalarType, GraphQLEnumType)
_NOT_SHORT = object()  # this field takes graphql-core's path


class ScalarFieldsExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """strawberry's execution context, with the short path for plain scalar fields."""

    text_chars = 0  # characters of the keys and strings so far (one context per operation)

    def execute_field(self, parent_type: Any, source: Any, field_details_list: Any,
                      path: Path, position_context: Any) -> Any:
        # The response key is written once per object too: five 12,000-character aliases
        # of __typename made a 60 KB query answer 26.7 MB with no text in it.
        self.text_chars += len(path.key)
        value = self._plain_scalar(parent_type, source, field_details_list[0].node)
        if value is not _NOT_SHORT:
            return value
        return super().execute_field(parent_type, source, field_details_list, path,
                                     position_context)

    def _plain_scalar(self, parent_type: Any, source: Any, node: Any) -> Any:
        middleware = self.middleware_manager  # strawberry: extensions that wrap resolvers
        if node.arguments or (middleware is not None and middleware.middlewares):
            return _NOT_SHORT
        field_def = self.schema.get_field(parent_type, node.name.value)
        # strawberry marks the resolver of any field without one of its own as default,
        # also one with permission classes or field extensions, which run with the
        # resolve info: only a basic field (none of those) reads the attribute, no info.
        if field_def is None or field_def.args or not getattr(
                field_def.resolve, "_is_default", False) or not getattr(
                field_def.extensions.get("strawberry-definition"), "is_basic_field", False):
            return _NOT_SHORT
        field_type = field_def.type
        non_null = isinstance(field_type, GraphQLNonNull)
        if non_null:
            field_type = field_type.of_type
        if not isinstance(field_type, _LEAF_TYPES):
            return _NOT_SHORT
        try:
            result = field_def.resolve(source, None)
        except Exception:  # noqa: BLE001 - graphql-core's path reports it
            return _NOT_SHORT
        if result is None or result is Undefined:
            return _NOT_SHORT if non_null else None
        if isinstance(result, Exception) or self.is_awaitable(result):
            return _NOT_SHORT
        try:
            coerced = field_type.coerce_output_value(result)
        except Exception:  # noqa: BLE001 - graphql-core's path reports it
            return _NOT_SHORT
        if coerced is None or coerced is Undefined:
            return _NOT_SHORT
        self.text_chars += _text_chars(coerced)
        return coerced

    def complete_leaf_value(self, return_type: Any, result: Any) -> Any:  # type: ignore[override]
        coerced = super().complete_leaf_value(return_type, result)
        self.text_chars += _text_chars(coerced)
        return coerced


def _text_chars(value: Any) -> int:
    """The characters a completed leaf adds to the answer's text: a string's, a JSON
    scalar's map or list as its JSON text, nothing for numbers and booleans."""
    if value.__class__ is str:
        return len(value)
    if isinstance(value, (dict, list)):
        return len(json.dumps(value, ensure_ascii=False))
    return 0
