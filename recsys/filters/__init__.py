"""Personalize's filter expressions: parse, compile once, apply fast; named filters."""

from recsys.filters.catalog import Catalog, InvalidCatalogRecord
from recsys.filters.compiler import (
    BoundFilter,
    CompiledFilter,
    FilterContext,
    FilterNotApplicable,
    FilterParameter,
    InvalidFilterValues,
    MissingFilterValue,
    SegmentContext,
    compile_filter,
    parse_filter_values,
)
from recsys.filters.parser import (
    MAX_EXPRESSION_LENGTH,
    MAX_PARAMETERS,
    MAX_RECENT_INTERACTIONS_PER_TYPE,
    BoolOp,
    Condition,
    Expression,
    FilterExpression,
    InvalidFilterExpression,
    Parameter,
    parse_filter,
)
from recsys.filters.store import (
    FilterAlreadyExists,
    FilterStore,
    InvalidFilterName,
    NamedFilter,
    UnknownFilter,
)

__all__ = [
    "MAX_EXPRESSION_LENGTH",
    "MAX_PARAMETERS",
    "MAX_RECENT_INTERACTIONS_PER_TYPE",
    "BoolOp",
    "BoundFilter",
    "Catalog",
    "CompiledFilter",
    "Condition",
    "Expression",
    "FilterAlreadyExists",
    "FilterContext",
    "FilterExpression",
    "FilterNotApplicable",
    "FilterParameter",
    "FilterStore",
    "InvalidCatalogRecord",
    "InvalidFilterExpression",
    "InvalidFilterName",
    "InvalidFilterValues",
    "MissingFilterValue",
    "NamedFilter",
    "Parameter",
    "SegmentContext",
    "UnknownFilter",
    "compile_filter",
    "parse_filter",
    "parse_filter_values",
]
