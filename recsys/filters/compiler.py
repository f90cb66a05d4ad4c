"""Compile a parsed filter once; bind its parameters per request; apply it as masks.

A filter is compiled when it is created (named filters) and reused for every request.
Per request, :meth:`CompiledFilter.bind` parses the request's ``filterValues`` once and
decides which conditions survive (a missing EXCLUDE parameter drops its condition, a
missing INCLUDE parameter is an error), and the bound filter turns the candidates into
a boolean mask with numpy: metadata conditions come from the catalog's memoised masks,
interaction conditions from the user's latest events, and expressions combine as
Personalize documents for ``|``: (include ∪ include) minus (exclude ∪ exclude).

Semantics chosen where Personalize's guide is silent (documented for users):

* AND binds tighter than OR.
* An item with no value for a field matches no IN and no comparison, and matches every
  NOT IN. An id the catalog does not know behaves like such an item.
* ``IF CurrentUser...`` that is false (or whose field the user lacks) switches its
  expression off for this request; a filter whose every INCLUDE is switched off keeps
  everything not excluded.
* A missing parameter in an EXCLUDE expression's IF clause drops that IF condition, so
  the exclusion applies (the cautious side for rules such as age limits).
* ``recent_events`` lists are oldest first; only the last 100 per type count.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress
from typing import Any

import numpy as np

from recsys.errors import HunchError
from recsys.filters.catalog import CATEGORICAL_SEPARATOR, Catalog
from recsys.filters.parser import (
    ANY_EVENT_TYPE,
    MAX_PARAMETERS,
    MAX_RECENT_INTERACTIONS_PER_TYPE,
    BoolOp,
    Condition,
    Expression,
    FilterExpression,
    InvalidFilterExpression,
    Parameter,
    Target,
    parse_filter,
)
from recsys.schemas import DatasetSchema

MAX_FILTER_VALUE_LENGTH = 1000  # GetRecommendations filterValues: each value's max length
_PARAMETER_NAME = re.compile(r"[A-Za-z0-9_]{1,50}")  # FilterAttributeName in botocore
_QUOTED_LIST = re.compile(r'\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')
_UNESCAPE = re.compile(r"\\(.)")
_BARE_NUMBER = re.compile(r"\s*-?\d+(?:\.\d+)?\s*")


class InvalidFilterValues(HunchError):
    """The request's filter values are malformed or do not fit the filter."""


class MissingFilterValue(InvalidFilterValues):
    """An INCLUDE expression's parameter got no value in the request."""


class FilterNotApplicable(HunchError):
    """The filter cannot run on this catalog (e.g. a comparison on a categorical field)."""


@dataclass(frozen=True, slots=True)
class FilterParameter:
    """A ``$NAME`` of a compiled filter; ``required`` when an INCLUDE expression uses it."""

    name: str
    required: bool


@dataclass
class FilterContext:
    """What an item (ItemID) filter looks at for one request.

    ``recent_events``: event type -> the user's item ids of that type, oldest first.
    """

    catalog: Catalog
    current_user: Mapping[str, Any] = field(default_factory=dict)
    recent_events: Mapping[str, Sequence[str]] = field(default_factory=dict)


@dataclass
class SegmentContext:
    """What a user-segment (UserID) filter looks at.

    ``users_by_event_type``: event type -> ids of users with an interaction of that type.
    """

    users: Catalog
    users_by_event_type: Mapping[str, Collection[str]] = field(default_factory=dict)


def parse_filter_values(name: str, raw: str) -> tuple[str, ...]:
    """Split a request value such as ``"\\"comedy\\",\\"drama\\""`` into its values.

    A bare number (``1700000000``) is also accepted, for numeric comparisons."""
    if not isinstance(raw, str):
        raise InvalidFilterValues(f"value of ${name} must be a string, got {type(raw).__name__}")
    if len(raw) > MAX_FILTER_VALUE_LENGTH:
        raise InvalidFilterValues(
            f"value of ${name} is {len(raw)} characters; at most {MAX_FILTER_VALUE_LENGTH}"
        )
    if _BARE_NUMBER.fullmatch(raw):
        return (raw.strip(),)
    values: list[str] = []
    pos = 0
    while pos < len(raw):
        m = _QUOTED_LIST.match(raw, pos)
        if m is None:
            raise InvalidFilterValues(
                f"value of ${name} must be individually quoted values separated by "
                f'commas, like "\\"comedy\\",\\"drama\\""; got {raw[:60]!r}'
            )
        values.append(_UNESCAPE.sub(r"\1", m.group(1)))
        pos = m.end()
        if m.group(2) == "," and pos >= len(raw):
            raise InvalidFilterValues(f"value of ${name} ends with a comma: {raw[:60]!r}")
    if not values:
        raise InvalidFilterValues(f"value of ${name} is empty; give at least one quoted value")
    return tuple(values)


# ------------------------------------------------------------------------ bound form

@dataclass(frozen=True, slots=True)
class _BoundCondition:
    dataset: str
    field: str
    op: str
    values: tuple[str, ...] | None  # IN / NOT IN
    number: float | None  # comparisons
    position: int


_BoundNode = _BoundCondition | tuple  # ("AND"|"OR", children)


@dataclass(frozen=True, slots=True)
class _BoundExpression:
    action: str
    where: _BoundNode
    if_conditions: tuple[_BoundCondition, ...]


class BoundFilter:
    """A compiled filter with one request's parameter values; apply it many times."""

    def __init__(self, target: Target, expressions: list[_BoundExpression]):
        self.target = target
        self._expressions = expressions
        # Metadata-only filters give every user the same mask: keep the last one, for
        # as long as the catalog is unchanged (its version moves on every upsert).
        self._per_user = any(expr.if_conditions or _uses_interactions(expr.where)
                             for expr in expressions)
        self._last: tuple[weakref.ref, int, np.ndarray] | None = None  # catalog, version, mask

    # -- public
    def mask(self, candidates: Sequence[str] | np.ndarray, context) -> np.ndarray:
        """Boolean keep-mask over ``candidates`` (ids, or catalog row indices)."""
        catalog = self._catalog(context)
        rows = _as_rows(candidates, catalog)
        return self.catalog_mask(context)[rows]

    def apply(self, candidates: Sequence[str] | np.ndarray, context):
        """The kept candidates, in order: ids in, ids out; indices in, indices out."""
        catalog = self._catalog(context)
        rows = _as_rows(candidates, catalog)
        keep = self.catalog_mask(context)[rows]
        if isinstance(candidates, np.ndarray):
            return candidates[keep]
        return list(compress(candidates, keep.tolist()))

    def catalog_mask(self, context) -> np.ndarray:
        """Keep-mask over every catalog row plus the blank row (length ``len + 1``).
        Read-only: it may be shared with other requests."""
        catalog = self._catalog(context)
        if self._per_user:
            return self._build_mask(catalog, context)
        last = self._last
        if last is not None and last[0]() is catalog and last[1] == catalog.version:
            return last[2]
        version = catalog.version
        mask = self._build_mask(catalog, context)
        mask.flags.writeable = False
        self._last = (weakref.ref(catalog), version, mask)
        return mask

    def _build_mask(self, catalog: Catalog, context) -> np.ndarray:
        size = len(catalog) + 1
        include: np.ndarray | None = None
        exclude: np.ndarray | None = None
        events = _Events(self.target, context)
        for expr in self._expressions:
            if not all(_user_condition_holds(c, context) for c in expr.if_conditions):
                continue
            m = self._evaluate(expr.where, catalog, events, size)
            if expr.action == "INCLUDE":
                include = m if include is None else include | m
            else:
                exclude = m if exclude is None else exclude | m
        keep = np.ones(size, dtype=bool) if include is None else include
        if exclude is not None:
            keep = keep & ~exclude
        return keep

    # -- internals
    def _catalog(self, context) -> Catalog:
        if self.target == "ItemID":
            if not isinstance(context, FilterContext):
                raise FilterNotApplicable("an ItemID filter needs a FilterContext")
            return context.catalog
        if not isinstance(context, SegmentContext):
            raise FilterNotApplicable("a UserID filter needs a SegmentContext")
        return context.users

    def _evaluate(self, node: _BoundNode, catalog: Catalog, events: _Events, size: int):
        if isinstance(node, _BoundCondition):
            if node.dataset == "Interactions":
                return events.mask(node, catalog, size)
            return _metadata_mask(node, catalog)
        op, children = node
        masks = [self._evaluate(child, catalog, events, size) for child in children]
        reduce = np.logical_and.reduce if op == "AND" else np.logical_or.reduce
        return reduce(masks)


def _uses_interactions(node: _BoundNode) -> bool:
    if isinstance(node, _BoundCondition):
        return node.dataset == "Interactions"
    return any(_uses_interactions(child) for child in node[1])


def _as_rows(candidates: Sequence[str] | np.ndarray, catalog: Catalog) -> np.ndarray:
    if isinstance(candidates, np.ndarray) and candidates.dtype.kind in "iu":
        return candidates
    return catalog.indices(candidates)


def _metadata_mask(cond: _BoundCondition, catalog: Catalog) -> np.ndarray:
    kind = catalog.kind(cond.field)
    if cond.values is not None:
        if kind == "numeric":
            try:
                [float(v) for v in cond.values]
            except ValueError:
                raise FilterNotApplicable(
                    f"{cond.dataset}.{cond.field} is numeric but the filter compares it "
                    f"with text {list(cond.values)[:5]}"
                ) from None
        m = catalog.value_mask(cond.field, cond.values)
        return ~m if cond.op == "NOT IN" else m
    if kind == "categorical":
        raise FilterNotApplicable(
            f"{cond.dataset}.{cond.field} is categorical; compare it with IN or NOT IN, "
            f"not {cond.op} (position {cond.position})"
        )
    return catalog.compare_mask(cond.field, cond.op, float(cond.number))  # type: ignore[arg-type]


class _Events:
    """Interaction masks of one request, computed at most once per event-type set."""

    def __init__(self, target: str, context) -> None:
        self.target = target
        self.context = context
        self._by_type: dict[str, list[str]] | None = None
        self._cache: dict[tuple, np.ndarray] = {}

    def _types(self) -> dict[str, list[str]]:
        if self._by_type is None:
            merged: dict[str, list[str]] = {}
            if self.target == "ItemID":
                for event_type, ids in self.context.recent_events.items():
                    recent = list(ids)[-MAX_RECENT_INTERACTIONS_PER_TYPE:]
                    merged.setdefault(event_type.lower(), []).extend(recent)
            else:
                for event_type, ids in self.context.users_by_event_type.items():
                    merged.setdefault(event_type.lower(), []).extend(ids)
            self._by_type = merged
        return self._by_type

    def mask(self, cond: _BoundCondition, catalog: Catalog, size: int) -> np.ndarray:
        key = (cond.op, cond.values)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        wanted = set(cond.values or ())
        types = self._types()
        if ANY_EVENT_TYPE in wanted:
            chosen = list(types) if cond.op == "IN" else []
        elif cond.op == "IN":
            chosen = [t for t in types if t in wanted]
        else:
            chosen = [t for t in types if t not in wanted]
        m = np.zeros(size, dtype=bool)
        for t in chosen:
            m[catalog.rows_of(types[t])] = True
        self._cache[key] = m
        return m


def _user_condition_holds(cond: _BoundCondition, context) -> bool:
    user = getattr(context, "current_user", None) or {}
    value = user.get(cond.field)
    if value is None:
        return cond.op == "NOT IN"
    if cond.values is not None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                hit = any(float(v) == float(value) for v in cond.values)
            except ValueError:
                hit = False
        else:
            parts = set(str(value).split(CATEGORICAL_SEPARATOR))
            hit = not parts.isdisjoint(cond.values)
        return hit if cond.op == "IN" else not hit
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    other = float(cond.number)  # type: ignore[arg-type]
    return {
        "=": number == other,
        "!=": number != other,
        "<": number < other,
        "<=": number <= other,
        ">": number > other,
        ">=": number >= other,
    }[cond.op]


# ------------------------------------------------------------------------ compiled

# Bound forms kept per compiled filter; a request's values are usually a handful of
# categories, so a few hundred sets cover them, and a cleared cache costs one bind each.
BOUND_CACHE_SIZE = 256


class CompiledFilter:
    """A filter expression checked and ready; :meth:`bind` it per request."""

    def __init__(self, expression: FilterExpression):
        self.expression = expression
        self.target: Target = expression.target
        self.parameters: tuple[FilterParameter, ...] = tuple(
            FilterParameter(name, required)
            for name, required in expression.parameters().items()
        )
        # Requests repeat the same values ("\"MUSIC\""): bound forms are immutable, so
        # each set of values is parsed and bound once.
        self._bound: dict[tuple[tuple[str, str], ...], BoundFilter] = {}
        # With no parameters the bound form never changes: build it once.
        self._static: BoundFilter | None = None
        if not self.parameters:
            self._static = self.bind({})

    @property
    def text(self) -> str:
        return self.expression.text

    def bind(self, values: Mapping[str, str] | None = None) -> BoundFilter:
        """Parse the request's filter values once and fix which conditions apply."""
        if self._static is not None and not values:
            return self._static
        try:
            key: tuple | None = tuple(sorted(values.items())) if values else ()
            bound = self._bound.get(key)
        except (TypeError, AttributeError):  # not a mapping of strings: _bind reports it
            key, bound = None, None
        if bound is not None:
            return bound
        bound = self._bind(values)
        if key is not None:
            if len(self._bound) >= BOUND_CACHE_SIZE:
                self._bound.clear()  # values that churn (timestamps): start over
            self._bound[key] = bound
        return bound

    def _bind(self, values: Mapping[str, str] | None) -> BoundFilter:
        values = dict(values or {})
        if len(values) > MAX_PARAMETERS:
            raise InvalidFilterValues(
                f"{len(values)} filter values given; a request may pass at most "
                f"{MAX_PARAMETERS}"
            )
        known = {p.name for p in self.parameters}
        for name in values:
            if not isinstance(name, str) or not _PARAMETER_NAME.fullmatch(name):
                raise InvalidFilterValues(
                    f"filter value name {name!r} must be 1-50 letters, digits or _ "
                    "(without the $)"
                )
            if name not in known:
                have = ", ".join(f"${n}" for n in sorted(known)) or "none"
                raise InvalidFilterValues(
                    f"the filter has no parameter ${name}; its parameters: {have}"
                )
        parsed = {name: parse_filter_values(name, raw) for name, raw in values.items()}
        bound: list[_BoundExpression] = []
        for expr in self.expression.expressions:
            where = _bind_node(expr.where, expr, parsed)
            if where is None:
                continue  # every condition of an EXCLUDE dropped: it excludes nothing
            ifs = []
            for cond in expr.if_conditions:
                b = _bind_condition(cond, expr, parsed)
                if b is not None:
                    ifs.append(b)
            bound.append(_BoundExpression(expr.action, where, tuple(ifs)))
        return BoundFilter(self.target, bound)

    def mask(self, candidates, context, values: Mapping[str, str] | None = None) -> np.ndarray:
        """Boolean keep-mask over ``candidates``; see :meth:`BoundFilter.mask`."""
        return self.bind(values).mask(candidates, context)

    def apply(self, candidates, context, values: Mapping[str, str] | None = None):
        """Kept candidates in order; see :meth:`BoundFilter.apply`."""
        return self.bind(values).apply(candidates, context)

    def __repr__(self) -> str:
        return f"CompiledFilter({self.text!r})"


def _bind_node(node: Condition | BoolOp, expr: Expression, values) -> _BoundNode | None:
    if isinstance(node, Condition):
        return _bind_condition(node, expr, values)
    children = [c for c in (_bind_node(ch, expr, values) for ch in node.operands) if c is not None]
    if not children:
        return None
    return children[0] if len(children) == 1 else (node.op, tuple(children))


def _bind_condition(
    cond: Condition, expr: Expression, values: Mapping[str, tuple[str, ...]]
) -> _BoundCondition | None:
    operand = cond.operand
    if isinstance(operand, Parameter):
        given = values.get(operand.name)
        if given is None:
            if expr.action == "INCLUDE":
                raise MissingFilterValue(
                    f"the filter needs a value for ${operand.name} (used by an INCLUDE "
                    f"expression at position {cond.position}); pass it in filter values"
                )
            return None
        if cond.op in ("IN", "NOT IN"):
            if cond.dataset == "Interactions":
                given = tuple(v.lower() for v in given)
            return _BoundCondition(cond.dataset, cond.field, cond.op, given, None, cond.position)
        if len(given) != 1:
            raise InvalidFilterValues(
                f"${operand.name} is compared with {cond.op}, so it takes one number; "
                f"got {len(given)} values"
            )
        try:
            number = float(given[0])
        except ValueError:
            raise InvalidFilterValues(
                f"${operand.name} is compared with {cond.op}, so it must be a number; "
                f"got {given[0][:40]!r}"
            ) from None
        return _BoundCondition(cond.dataset, cond.field, cond.op, None, number, cond.position)
    if isinstance(operand, tuple):
        return _BoundCondition(cond.dataset, cond.field, cond.op, operand, None, cond.position)
    return _BoundCondition(cond.dataset, cond.field, cond.op, None, float(operand), cond.position)


def _check_schema(
    parsed: FilterExpression, schemas: Mapping[str, DatasetSchema | None]
) -> None:
    for expr in parsed.expressions:
        for cond in expr.conditions():
            dataset = "users" if cond.dataset in ("Users", "CurrentUser") else cond.dataset.lower()
            schema = schemas.get(dataset)
            if schema is None or cond.dataset == "Interactions":
                continue
            try:
                f = schema.field(cond.field)
            except KeyError:
                known = ", ".join(
                    x.name for x in schema.fields
                    if (x.numeric or x.categorical) and x.name not in ("ITEM_ID", "USER_ID")
                )
                raise InvalidFilterExpression(
                    f"{cond.dataset}.{cond.field} is not a field of the {dataset} dataset; "
                    f"filterable fields: {known}",
                    cond.position,
                ) from None
            if f.textual:
                raise InvalidFilterExpression(
                    f"{cond.dataset}.{cond.field} is textual; filters cannot use free text",
                    cond.position,
                )
            if f.type == "boolean":
                raise InvalidFilterExpression(
                    f"{cond.dataset}.{cond.field} is boolean, which filters cannot use; "
                    'store it as a categorical string "True"/"False"',
                    cond.position,
                )
            if cond.op in ("IN", "NOT IN") and not (f.categorical or f.numeric):
                raise InvalidFilterExpression(
                    f"{cond.dataset}.{cond.field} is a string that is not categorical; "
                    "declare it categorical in the schema to filter on it",
                    cond.position,
                )
            if cond.op not in ("IN", "NOT IN") and not f.numeric:
                raise InvalidFilterExpression(
                    f"{cond.dataset}.{cond.field} is not numeric; compare it with IN or "
                    f"NOT IN, not {cond.op}",
                    cond.position,
                )


def compile_filter(
    expression: str | FilterExpression,
    *,
    items_schema: DatasetSchema | None = None,
    users_schema: DatasetSchema | None = None,
) -> CompiledFilter:
    """Parse (if needed), check against the schemas when given, and compile a filter."""
    parsed = parse_filter(expression) if isinstance(expression, str) else expression
    _check_schema(parsed, {"items": items_schema, "users": users_schema})
    return CompiledFilter(parsed)
