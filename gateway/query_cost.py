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
``edges``) by the page's ``first``. Every alias, repeated field and fragment spread is
counted (graphql-core may merge identical fields: the count can only be over, never
under), and ``@skip``/``@include`` are honoured.

So ``feed(first: 100) { edges { node { ... author { id } } } }`` is 100 nodes, and with
``author { polls(first: 3) }`` in each node 100 + 100 * 3 = 400.

Where it runs: graphql-core's validation rules see no variable values, and the prepared
documents' validation (gateway/schema.py) is cached by the query text, so a rule could
only guess ``first: $n``. The count runs instead in the executor's ``execute_operation``,
after graphql-core has coerced the variables (the values the resolvers will see) and
picked the operation, and before the first resolver; a document gets there only if it
passed validation, the fragment-expansion bound (gateway/document_limits.py) included.
A selection's count is linear in its multiplier, so each fragment is counted once per
request and reused at every spread: the walk is linear in the document's text, whatever
its fragments expand to.
"""

from __future__ import annotations

from typing import Any

from graphql import (
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
    SelectionSetNode,
    Undefined,
    VariableNode,
    get_named_type,
)
from graphql.execution import get_directive_values
from graphql.utilities import type_from_ast

# The argument whose value is a page's size (Relay connections and plain lists alike).
PAGE_ARGUMENT = "first"


def operation_nodes(schema: GraphQLSchema, operation: OperationDefinitionNode,
                    fragments: dict[str, FragmentDefinitionNode], variables: Any,
                    page_size: int) -> int:
    """The nodes ``operation`` can return (see the module docstring); ``variables`` are
    graphql-core's coerced ``VariableValues``, ``page_size`` the largest ``first``."""
    coerced = variables.coerced if variables is not None else {}
    fragment_units: dict[str, int] = {}
    in_progress: set[str] = set()

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
        # value, else the field's default.
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

    def unit(selection_set: SelectionSetNode | None, parent_type: Any) -> int:
        """The nodes ``selection_set`` returns for one object of ``parent_type``."""
        if selection_set is None:
            return 0
        total = 0
        for selection in selection_set.selections:
            if not included(selection):
                continue
            if isinstance(selection, FieldNode):
                fields = getattr(parent_type, "fields", None) or {}
                field_def = fields.get(selection.name.value)
                if field_def is None:  # __typename (introspection is not a page)
                    continue
                inner = unit(selection.selection_set, get_named_type(field_def.type))
                if PAGE_ARGUMENT in field_def.args:
                    total += first(field_def, selection) * (1 + inner)
                else:
                    total += inner
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner_type = (type_from_ast(schema, condition) if condition else None)
                total += unit(selection.selection_set, inner_type or parent_type)
            elif isinstance(selection, FragmentSpreadNode):
                total += fragment_unit(selection.name.value)
        return total

    def fragment_unit(name: str) -> int:
        if name in fragment_units:
            return fragment_units[name]
        fragment = fragments.get(name)
        if fragment is None or name in in_progress:  # validation refuses both
            return 0
        in_progress.add(name)
        fragment_units[name] = unit(fragment.selection_set,
                                    type_from_ast(schema, fragment.type_condition))
        in_progress.discard(name)
        return fragment_units[name]

    root_type = schema.get_root_type(operation.operation)
    return unit(operation.selection_set, root_type)


def too_many_nodes(nodes: int, budget: int, operation: OperationDefinitionNode,
                   ) -> GraphQLError:
    # Not "exceeds the maximum": gateway/errors.py reads that as a parse failure.
    return GraphQLError(
        f"this query can return up to {nodes:,} nodes, over the budget of {budget:,}: "
        "ask for fewer items per list (a smaller `first`, above all on lists nested in "
        "lists), or split it into several queries",
        operation, extensions={"nodes": nodes, "maxNodes": budget})


def node_budget(executor_class: type, max_nodes: int, page_size: int) -> type:
    """``executor_class`` (a graphql-core Executor) that refuses an operation of more than
    ``max_nodes`` nodes with a validation error before it runs any resolver."""

    class NodeBudgetExecutor(executor_class):  # type: ignore[valid-type, misc]
        def execute_operation(self, serially: bool | None = None) -> Any:
            try:
                nodes: int | None = operation_nodes(
                    self.schema, self.operation, self.fragment_definitions,
                    self.variable_values, page_size)
            except RecursionError:  # inline fragments nested hundreds deep
                nodes = None
            # Out of the except block: the error would keep the recursion's frames alive.
            if nodes is None:
                error = GraphQLError("the query's selections nest too deeply to count "
                                     "its nodes; nest fewer inline fragments", self.operation)
            elif nodes > max_nodes:
                error = too_many_nodes(nodes, max_nodes, self.operation)
            else:
                return super().execute_operation(serially)
            self.collected_errors.add(error, None)
            return self.finish(self.build_response(None))

    NodeBudgetExecutor.__name__ = f"NodeBudget{executor_class.__name__}"
    NodeBudgetExecutor.max_nodes = max_nodes  # type: ignore[attr-defined]
    return NodeBudgetExecutor
