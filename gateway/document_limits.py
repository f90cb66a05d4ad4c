"""A bound on how far a document's fragments expand, checked before the depth limit.

strawberry's QueryDepthLimiter and MaxAliasesLimiter walk every fragment spread anew:
30 fragments that each spread the next one twice (~1 KB) make them walk 2^30
selections, pinning a worker for good. The expanded size is counted here once per
fragment (memoized, linear in the document), and those walks run only on documents
that stay under the bound.
"""

from __future__ import annotations

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
)

# Selections a document may reach once its fragments are expanded. A feed page asks
# for ~20; fifteen aliased copies of a rich query stay under 1,000.
MAX_EXPANDED_SELECTIONS = 5_000

_UNSET = object()


def expanded_selections(document: DocumentNode, cap: int) -> int | None:
    """How many selections the operations reach with fragments expanded (stops counting
    past ``cap``), or None when a spread names no fragment of the document (the
    KnownFragmentNames rule reports that)."""
    fragments = {d.name.value: d for d in document.definitions
                 if isinstance(d, FragmentDefinitionNode)}
    sizes: dict[str, int] = {}
    in_progress: set[str] = set()

    def size_of(selection_set: SelectionSetNode | None) -> int | None:
        if selection_set is None:
            return 0
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FragmentSpreadNode):
                inner = fragment_size(selection.name.value)
            else:  # a field (counts itself) or an inline fragment
                inner = size_of(getattr(selection, "selection_set", None))
            if inner is None:
                return None
            total += inner + isinstance(selection, FieldNode)
            if total > cap:
                return total
        return total

    def fragment_size(name: str) -> int | None:
        if name in sizes:
            return sizes[name]
        if name not in fragments:
            return None
        if name in in_progress:  # a cycle: NoFragmentCycles reports it
            return 0
        in_progress.add(name)
        size = size_of(fragments[name].selection_set)
        in_progress.discard(name)
        if size is None:
            return None
        sizes[name] = min(size, cap + 1)
        return sizes[name]

    total = 0
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            size = size_of(definition.selection_set)
            if size is None:
                return None
            total += size
            if total > cap:
                break
    return total


# Fields one selection set may hold, fragments expanded at its level. graphql-core's
# OverlappingFieldsCanBeMerged compares the fields of a set pairwise: 490 copies of
# `id` (a 4.9 KB document) took 0.66-0.87 s to validate (helper-66). A Poll has ten
# fields; fifteen aliases of each stay far below.
MAX_FIELDS_PER_SELECTION = 200


def widest_selection(document: DocumentNode, cap: int) -> int:
    """The most fields any selection set of the document holds, its fragments' fields
    (spread or inline) counted at the level they are spread (stops counting past
    ``cap``); linear in the document (each fragment's width is counted once)."""
    fragments = {d.name.value: d for d in document.definitions
                 if isinstance(d, FragmentDefinitionNode)}
    widths: dict[str, int] = {}
    in_progress: set[str] = set()
    widest = 0

    def width(selection_set: SelectionSetNode) -> int:
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += 1
            elif isinstance(selection, FragmentSpreadNode):
                total += fragment_width(selection.name.value)
            else:  # an inline fragment: its fields sit at this level
                total += width(selection.selection_set)
            if total > cap:
                break
        return total

    def fragment_width(name: str) -> int:
        if name in widths:
            return widths[name]
        if name not in fragments or name in in_progress:  # other rules report these
            return 0
        in_progress.add(name)
        widths[name] = min(width(fragments[name].selection_set), cap + 1)
        in_progress.discard(name)
        return widths[name]

    stack = [d.selection_set for d in document.definitions
             if isinstance(d, (OperationDefinitionNode, FragmentDefinitionNode))]
    while stack and widest <= cap:  # every set, nested ones too
        selection_set = stack.pop()
        widest = max(widest, width(selection_set))
        stack.extend(s.selection_set for s in selection_set.selections
                     if getattr(s, "selection_set", None) is not None)
    return widest


def too_wide(document: DocumentNode, cap: int = MAX_FIELDS_PER_SELECTION
             ) -> GraphQLError | None:
    """The refusal of a document with a selection set wider than ``cap`` (checked
    before validation, whose merge check is quadratic in a set's width), or None.
    Fragments that expand past MAX_EXPANDED_SELECTIONS (or unknown ones) are left to
    validation's own rules, whose messages say what to fix."""
    size = expanded_selections(document, MAX_EXPANDED_SELECTIONS)
    if size is None or size > MAX_EXPANDED_SELECTIONS:
        return None
    if widest_selection(document, cap) > cap:
        return GraphQLError(
            f"a selection set of this document holds over {cap} fields (fragments "
            "expanded): ask for each field once, or split the query")
    return None


def bounded_fragments(rule: type[ValidationRule],
                      cap: int = MAX_EXPANDED_SELECTIONS) -> type[ValidationRule]:
    """``rule`` (a rule that walks expanded fragments when it is made, as the depth and
    alias limiters do) run only on documents whose fragments expand to at most ``cap``
    selections; larger ones get a validation error instead."""

    class BoundedFragments(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            # Counted once per validation, reported once, for all the wrapped rules.
            size = getattr(context, "_expanded_selections", _UNSET)
            if size is _UNSET:
                size = expanded_selections(context.document, cap)
                context._expanded_selections = size  # type: ignore[attr-defined]
                if size is not None and size > cap:
                    context.report_error(GraphQLError(
                        f"the document expands to over {cap} fields through its "
                        "fragments; spread each fragment once"))
            if size is None or size > cap:
                return  # too large, or an unknown fragment (KnownFragmentNamesRule says)
            rule(context)  # its work is done when it is made

    BoundedFragments.__name__ = f"Bounded{rule.__name__}"
    return BoundedFragments
