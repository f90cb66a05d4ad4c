"""A bound on how many nodes one operation can return (GitHub's node limit), checked once
its variables are known and before any resolver runs.

Depth, aliases, tokens and fragment expansion bound a document's shape, not its answer:
15 aliases of ``poll { author { polls(first: 100) { question options description } } }``
(1.4 KB) returned 1,500 polls of ~60 KB each, 90 MB in 0.67 s.

The count, as GitHub's: a field with a ``first`` argument (a page: ``feed``,
``Author.polls``) returns up to ``first`` nodes for each node of its parent, and what its
selection asks for is multiplied by as much. ``first`` is its literal, its variable's
value, or the field's default; a value outside ``[0, page_size]`` is counted as
``page_size`` (the resolver refuses it with PAGE_SIZE_EXCEEDED, having returned no more
than that). Other fields add nothing of their own: single objects (``poll``, ``me``,
``author``) are bounded by the alias limit, and the lists under a page (a connection's
``edges``) by the page's ``first``. ``@skip``/``@include`` are honoured.

Fields are merged as execution merges them (the spec's CollectFields): selections with
one response key (alias or name) under one parent are one field, their sub-selections
one set, and a fragment spread twice in one set counts once. Apollo Client colocates
fragments, so a page whose two fragments each ask ``author { polls(first: 3) }`` gets
(and is counted) 3 polls per author, not 6; counted per occurrence, a full page with the
default ``author.polls`` was refused for nodes it could never return. Every distinct
alias still counts.

So ``feed(first: 100) { edges { node { ... author { id } } } }`` is 100 nodes, and with
``author { polls(first: 3) }`` in each node 100 + 100 * 3 = 400.

Where it runs: graphql-core's validation rules see no variable values, and the prepared
documents' validation (gateway/schema.py) is cached by the query text, so a rule could
only guess ``first: $n``. The count runs instead in the executor's ``execute_operation``,
after graphql-core has coerced the variables (the values the resolvers will see) and
picked the operation, and before the first resolver; a document gets there only if it
passed validation, the fragment-expansion bound (gateway/document_limits.py) included.
The walk visits each merged field once: at most the document's expanded size, which
gateway/document_limits.py bounds (and :data:`MAX_VISITS` bounds here, for callers that
skip validation).

**Text.** Nodes do not bound bytes: a poll carries up to ~64 KB of text (the body limit),
so 5 aliases of ``poll { author { polls(first: 99) { question options description } } }``
(448 bytes, 495 nodes) answered 25.8 MB in 0.6 s. The text cannot be known before the
resolvers read it, so it is counted as execution completes each string
(gateway/execution.py), response keys included (five 12,000-character aliases of
``__typename`` on a page answered 26.7 MB with no poll text at all), and an operation
whose text adds up to more than ``max_text_chars`` is answered with one
RESPONSE_TOO_LARGE error and no data instead of being encoded and sent. Mutations too
(``upsertPoll { ... on Poll { author { polls { author { polls { ... } } } } } }``
answered 26.5 MB): their writes are done by then, and the error says so.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLIncludeDirective,
    GraphQLSchema,
    GraphQLSkipDirective,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    Undefined,
    VariableNode,
    get_named_type,
)
from graphql.execution import get_directive_values
from graphql.utilities import type_from_ast

from recsys.errors import HunchError

# The argument whose value is a page's size (Relay connections and plain lists alike).
PAGE_ARGUMENT = "first"


# Merged fields visited before the count gives up ("too complex"): validation's bound on
# expanded selections (5,000) keeps real documents far below it.
MAX_VISITS = 50_000


class TooComplexToCount(Exception):
    """The selections nest too deeply or merge into too many fields to count."""


class ResponseTooLarge(HunchError):
    """A query's answer holds more text than one response may (RESPONSE_TOO_LARGE)."""


def operation_nodes(schema: GraphQLSchema, operation: OperationDefinitionNode,
                    fragments: dict[str, FragmentDefinitionNode], variables: Any,
                    page_size: int) -> int:
    """The nodes ``operation`` can return (see the module docstring); ``variables`` are
    graphql-core's coerced ``VariableValues``, ``page_size`` the largest ``first``.
    Raises :class:`TooComplexToCount` past :data:`MAX_VISITS` merged fields."""
    coerced = variables.coerced if variables is not None else {}
    visits = 0

    def included(node: Any) -> bool:
        if not node.directives:
            return True
        skip = get_directive_values(GraphQLSkipDirective, node, variables)
        if skip is not None and skip.get("if") is True:
            return False
        include = get_directive_values(GraphQLIncludeDirective, node, variables)
        return include is None or include.get("if") is not False

    def first(field_def: Any, node: FieldNode) -> int:
        # Only `first` is read (coercing every argument would also parse a feed's
        # filterValues literal, however deep): an int literal, a variable's coerced
        # value, else the field's default. (Variables are the operation's: graphql-core's
        # experimental fragment arguments, `...F(n: 100)`, would need theirs too; the
        # parser refuses that syntax unless asked to accept it, and nothing here asks.)
        value: Any = Undefined
        for argument in node.arguments or ():
            if argument.name.value != PAGE_ARGUMENT:
                continue
            if isinstance(argument.value, IntValueNode):
                value = int(argument.value.value)
            elif isinstance(argument.value, VariableNode):
                value = coerced.get(argument.value.name.value, Undefined)
            else:  # null, or a value validation let through: the resolver refuses it
                value = None
        if value is Undefined:
            value = field_def.args[PAGE_ARGUMENT].default_value
        if not isinstance(value, int) or not 0 <= value <= page_size:
            return page_size  # no default, or refused by the resolver (PAGE_SIZE_EXCEEDED)
        return value

    def collect(selection_sets: list[SelectionSetNode], parent_type: Any
                ) -> dict[tuple[str, int], tuple[Any, list[FieldNode]]]:
        """The fields ``selection_sets`` (merged, as one field's sub-selections are)
        resolve on an object of ``parent_type``, by response key: each with its
        definition and every node that asks for it."""
        merged: dict[tuple[str, int], tuple[Any, list[FieldNode]]] = {}
        spread: set[str] = set()  # a fragment counts once per merged set, as executed

        def visit(selection_set: SelectionSetNode, type_: Any) -> None:
            for selection in selection_set.selections:
                if not included(selection):
                    continue
                if isinstance(selection, FieldNode):
                    field_def = (getattr(type_, "fields", None) or {}).get(
                        selection.name.value)
                    if field_def is None:  # __typename (introspection is not a page)
                        continue
                    key = (selection.alias or selection.name).value
                    # Keyed by definition too: fields of exclusive types (a union's
                    # members) sharing a key are summed, an over-count never an under.
                    merged.setdefault((key, id(field_def)), (field_def, []))[1].append(
                        selection)
                elif isinstance(selection, InlineFragmentNode):
                    condition = selection.type_condition
                    inner_type = type_from_ast(schema, condition) if condition else None
                    visit(selection.selection_set, inner_type or type_)
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    fragment = fragments.get(name)
                    if name in spread or fragment is None:  # validation refuses unknowns
                        continue
                    spread.add(name)
                    visit(fragment.selection_set,
                          type_from_ast(schema, fragment.type_condition))

        for selection_set in selection_sets:
            visit(selection_set, parent_type)
        return merged

    def unit(selection_sets: list[SelectionSetNode], parent_type: Any) -> int:
        """The nodes the merged ``selection_sets`` return for one object of
        ``parent_type``."""
        nonlocal visits
        total = 0
        for field_def, nodes in collect(selection_sets, parent_type).values():
            visits += 1
            if visits > MAX_VISITS:
                raise TooComplexToCount
            inner_sets = [n.selection_set for n in nodes if n.selection_set is not None]
            inner = unit(inner_sets, get_named_type(field_def.type)) if inner_sets else 0
            if PAGE_ARGUMENT in field_def.args:
                # one response key, one page (validation makes their arguments agree)
                total += max(first(field_def, n) for n in nodes) * (1 + inner)
            else:
                total += inner
        return total

    root_type = schema.get_root_type(operation.operation)
    return unit([operation.selection_set], root_type)


def too_many_nodes(nodes: int, budget: int, operation: OperationDefinitionNode,
                   ) -> GraphQLError:
    # Not "exceeds the maximum": gateway/errors.py reads that as a parse failure.
    return GraphQLError(
        f"this query can return up to {nodes:,} nodes, over the budget of {budget:,}: "
        "ask for fewer items per list (a smaller `first`, above all on lists nested in "
        "lists), or split it into several queries",
        operation, extensions={"nodes": nodes, "maxNodes": budget})


def too_much_text(chars: int, budget: int, operation: OperationDefinitionNode
                  ) -> GraphQLError:
    done = (" The mutation was carried out: ask its answer for less (its id) and read "
            "the rest with queries." if operation.operation == OperationType.MUTATION else "")
    error = ResponseTooLarge(
        f"this {operation.operation.value}'s answer holds {chars:,} characters of text "
        f"(keys included), over the limit of {budget:,} for one response: ask for fewer "
        "items (a smaller `first`), fewer text fields per item or shorter aliases, or "
        "split it into several queries." + done)
    return GraphQLError(str(error), operation, original_error=error,
                        extensions={"textChars": chars, "maxTextChars": budget})


def node_budget(executor_class: type, max_nodes: int, page_size: int,
                max_text_chars: int | None = None) -> type:
    """``executor_class`` (gateway/execution.py's, which counts the text it completes)
    that refuses an operation of more than ``max_nodes`` nodes with a validation error
    before it runs any resolver, and answers one whose keys and strings add up to more
    than ``max_text_chars`` characters with RESPONSE_TOO_LARGE and no data."""

    class NodeBudgetExecutor(executor_class):  # type: ignore[valid-type, misc]
        def execute_operation(self, serially: bool | None = None) -> Any:
            try:
                nodes: int | None = operation_nodes(
                    self.schema, self.operation, self.fragment_definitions,
                    self.variable_values, page_size)
            except (RecursionError, TooComplexToCount):  # nested hundreds deep
                nodes = None
            # Out of the except block: the error would keep the recursion's frames alive.
            if nodes is None:
                error = GraphQLError("the query's selections nest too deeply, or expand into "
                                     "too many fields, to count its nodes: nest fewer "
                                     "fragments and aliases", self.operation)
            elif nodes > max_nodes:
                error = too_many_nodes(nodes, max_nodes, self.operation)
            else:
                result = super().execute_operation(serially)
                if max_text_chars is None:
                    return result
                if self.is_awaitable(result):
                    return self._within_text_budget_later(result)
                return self._within_text_budget(result)
            self.collected_errors.add(error, None)
            return self.finish(self.build_response(None))

        async def _within_text_budget_later(self, result: Any) -> Any:
            return self._within_text_budget(await result)

        def _within_text_budget(self, result: Any) -> Any:
            if self.text_chars <= max_text_chars:
                return result
            # The data is dropped before it is encoded: most of such an answer's cost.
            return ExecutionResult(None, [too_much_text(self.text_chars, max_text_chars,
                                                        self.operation)])

    NodeBudgetExecutor.__name__ = f"NodeBudget{executor_class.__name__}"
    NodeBudgetExecutor.max_nodes = max_nodes  # type: ignore[attr-defined]
    NodeBudgetExecutor.max_text_chars = max_text_chars  # type: ignore[attr-defined]
    return NodeBudgetExecutor
