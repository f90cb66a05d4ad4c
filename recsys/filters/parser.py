"""Amazon Personalize's filter expression language: tokenizer and parser to an AST.

Filters are business rules written by internal tools ("hide polls the user already
voted on", "only this category") and stored by name. Personalize accepts them as a
small language; this module reads it exactly as Personalize documents it, so the same
expression works on the local engine and on a Personalize campaign. Anything
Personalize would refuse is refused here, at creation time, with the 1-based position
and what was expected, so a bad rule never reaches a request.

Grammar (Personalize developer guide, "Filter expression structure and elements")::

    filter      := expression ("|" expression)*
    expression  := ("INCLUDE" | "EXCLUDE") ("ItemID" | "UserID") "WHERE" or_cond
                   ["IF" user_cond ("AND" user_cond)*]
    or_cond     := and_cond ("OR" and_cond)*
    and_cond    := condition ("AND" condition)*
    condition   := Dataset "." FIELD ( ["NOT"] "IN" "(" values ")" | cmp_op operand )
    user_cond   := "CurrentUser" "." FIELD ( ["NOT"] "IN" "(" values ")" | cmp_op operand )
    values      := STRING ("," STRING)* | $PARAM
    operand     := NUMBER | $PARAM
    cmp_op      := "=" | "!=" | "<" | "<=" | ">" | ">="

Written by hand rather than with a parser generator: the grammar is tiny, and the
messages users need ("at position 23: expected IN, NOT IN or a comparison operator,
found 'INN'") are easiest to get exactly right from a recursive-descent parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from recsys.errors import HunchError

# Limits from Personalize (botocore service models and the developer guide).
MAX_EXPRESSION_LENGTH = 2500  # CreateFilter.filterExpression max length
MAX_PARAMETERS = 25  # GetRecommendations.filterValues takes at most 25 keys
MAX_PARAMETER_NAME_LENGTH = 50  # FilterAttributeName max length, pattern [A-Za-z0-9_]+
MAX_RECENT_INTERACTIONS_PER_TYPE = 100  # Interactions filters see the latest 100 per type

Action = Literal["INCLUDE", "EXCLUDE"]
Target = Literal["ItemID", "UserID"]
Dataset = Literal["Items", "Users", "Interactions", "CurrentUser"]
Operator = Literal["IN", "NOT IN", "=", "!=", "<", "<=", ">", ">="]

COMPARISON_OPERATORS: tuple[str, ...] = ("=", "!=", "<", "<=", ">", ">=")
ANY_EVENT_TYPE = "*"


class InvalidFilterExpression(HunchError):
    """A filter expression breaks Personalize's grammar or limits; says where and why."""

    def __init__(self, message: str, position: int | None = None):
        self.position = position
        super().__init__(f"at position {position}: {message}" if position else message)


@dataclass(frozen=True, slots=True)
class Parameter:
    """A ``$NAME`` placeholder whose value arrives with each request."""

    name: str


@dataclass(frozen=True, slots=True)
class Condition:
    """``<Dataset>.<FIELD> <op> <operand>``.

    ``operand`` is a tuple of strings for IN/NOT IN, a float for comparisons, or a
    :class:`Parameter`. ``position`` is the 1-based character where it starts.
    """

    dataset: Dataset
    field: str
    op: Operator
    operand: tuple[str, ...] | float | Parameter
    position: int

    @property
    def parameter(self) -> Parameter | None:
        return self.operand if isinstance(self.operand, Parameter) else None


@dataclass(frozen=True, slots=True)
class BoolOp:
    """Conditions joined by AND or OR (AND binds tighter, as in SQL)."""

    op: Literal["AND", "OR"]
    operands: tuple[Condition | BoolOp, ...]


@dataclass(frozen=True, slots=True)
class Expression:
    """One ``INCLUDE|EXCLUDE ... WHERE ... [IF ...]`` between ``|`` separators."""

    action: Action
    target: Target
    dataset: Dataset
    where: Condition | BoolOp
    if_conditions: tuple[Condition, ...]
    position: int

    def conditions(self) -> list[Condition]:
        out: list[Condition] = []

        def walk(node: Condition | BoolOp) -> None:
            if isinstance(node, Condition):
                out.append(node)
            else:
                for child in node.operands:
                    walk(child)

        walk(self.where)
        return out + list(self.if_conditions)


@dataclass(frozen=True, slots=True)
class FilterExpression:
    """A whole filter: expressions chained with ``|`` (include ∪ include, exclude ∪
    exclude, include minus exclude)."""

    text: str
    expressions: tuple[Expression, ...]

    @property
    def target(self) -> Target:
        return self.expressions[0].target

    def parameters(self) -> dict[str, bool]:
        """Parameter name -> required. A parameter is required when an INCLUDE
        expression uses it (a missing EXCLUDE parameter just drops its condition)."""
        out: dict[str, bool] = {}
        for expr in self.expressions:
            for cond in expr.conditions():
                if cond.parameter is not None:
                    name = cond.parameter.name
                    out[name] = out.get(name, False) or expr.action == "INCLUDE"
        return out


# ---------------------------------------------------------------------------- tokens

@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # WORD STRING NUMBER PARAM OP PUNCT EOF
    text: str
    value: str | float
    position: int  # 1-based


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<STRING>"(?:[^"\\]|\\.)*")
  | (?P<NUMBER>-?\d+(?:\.\d+)?(?![A-Za-z_]))
  | (?P<PARAM>\$[A-Za-z0-9_]*)
  | (?P<OP><=|>=|!=|=|<|>)
  | (?P<PUNCT>[().,|])
  | (?P<WORD>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)
_UNESCAPE_RE = re.compile(r"\\(.)")


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            if text[pos] == '"':
                raise InvalidFilterExpression("unterminated string: add the closing '\"'", pos + 1)
            raise InvalidFilterExpression(f"unexpected character {text[pos]!r}", pos + 1)
        kind = m.lastgroup or ""
        raw = m.group()
        if kind != "ws":
            value: str | float = raw
            if kind == "STRING":
                value = _UNESCAPE_RE.sub(r"\1", raw[1:-1])
            elif kind == "NUMBER":
                value = float(raw)
            tokens.append(_Token(kind, raw, value, pos + 1))
        pos = m.end()
    tokens.append(_Token("EOF", "", "", len(text) + 1))
    return tokens


# ---------------------------------------------------------------------------- parser

_DATASETS_BY_TARGET: dict[str, tuple[str, ...]] = {
    # Item filters look at Items metadata or the user's interactions; Users metadata
    # only enters through IF CurrentUser. User filters (segments) look at Users or
    # Interactions.
    "ItemID": ("Items", "Interactions"),
    "UserID": ("Users", "Interactions"),
}


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    # -- helpers
    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def _advance(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def _fail(self, expected: str, tok: _Token | None = None) -> InvalidFilterExpression:
        tok = tok or self.tok
        found = "the end of the expression" if tok.kind == "EOF" else repr(tok.text)
        return InvalidFilterExpression(f"expected {expected}, found {found}", tok.position)

    def _is_word(self, *words: str) -> bool:
        return self.tok.kind == "WORD" and self.tok.text in words

    def _expect_word(self, *words: str, expected: str | None = None) -> _Token:
        if not self._is_word(*words):
            raise self._fail(expected or " or ".join(words))
        return self._advance()

    def _expect_punct(self, char: str, expected: str | None = None) -> _Token:
        if self.tok.kind != "PUNCT" or self.tok.text != char:
            raise self._fail(expected or f"'{char}'")
        return self._advance()

    # -- grammar
    def parse(self) -> FilterExpression:
        expressions = [self._expression()]
        while self.tok.kind == "PUNCT" and self.tok.text == "|":
            self._advance()
            expressions.append(self._expression())
        if self.tok.kind != "EOF":
            raise self._fail("'|' followed by another expression, or the end")
        targets = {e.target for e in expressions}
        if len(targets) > 1:
            second = next(e for e in expressions if e.target != expressions[0].target)
            raise InvalidFilterExpression(
                "all expressions of one filter must filter the same thing: "
                f"{expressions[0].target} and {second.target} cannot be chained",
                second.position,
            )
        return FilterExpression(self.text, tuple(expressions))

    def _expression(self) -> Expression:
        start = self._expect_word("INCLUDE", "EXCLUDE", expected="INCLUDE or EXCLUDE")
        target_tok = self.tok
        if self._is_word("ActionID"):
            raise InvalidFilterExpression(
                "ActionID filters need an Actions dataset, which this engine does not "
                "have; use ItemID (polls) or UserID (user segments)",
                target_tok.position,
            )
        self._expect_word("ItemID", "UserID", expected="ItemID or UserID")
        target: Target = target_tok.text  # type: ignore[assignment]
        self._expect_word("WHERE")
        where, dataset = self._or_condition(target)
        if_conditions: list[Condition] = []
        if self._is_word("IF"):
            if_tok = self._advance()
            if target == "UserID":
                raise InvalidFilterExpression(
                    "IF CurrentUser applies to item filters only; a user-segment filter "
                    "has no current user",
                    if_tok.position,
                )
            if_conditions.append(self._condition(allowed=("CurrentUser",), target=target))
            while self._is_word("AND"):
                self._advance()
                if_conditions.append(self._condition(allowed=("CurrentUser",), target=target))
            if self._is_word("OR"):
                raise InvalidFilterExpression(
                    "IF conditions can only be joined with AND", self.tok.position
                )
        return Expression(
            start.text,  # type: ignore[arg-type]
            target,
            dataset,  # type: ignore[arg-type]
            where,
            tuple(if_conditions),
            start.position,
        )

    def _or_condition(self, target: Target) -> tuple[Condition | BoolOp, str]:
        first, dataset = self._and_condition(target, None)
        parts = [first]
        while self._is_word("OR"):
            self._advance()
            part, _ = self._and_condition(target, dataset)
            parts.append(part)
        return (parts[0] if len(parts) == 1 else BoolOp("OR", tuple(parts))), dataset

    def _and_condition(
        self, target: Target, dataset: str | None
    ) -> tuple[Condition | BoolOp, str]:
        allowed = _DATASETS_BY_TARGET[target] if dataset is None else (dataset,)
        first = self._condition(allowed=allowed, target=target)
        parts: list[Condition | BoolOp] = [first]
        while self._is_word("AND"):
            self._advance()
            parts.append(self._condition(allowed=(first.dataset,), target=target))
        node = parts[0] if len(parts) == 1 else BoolOp("AND", tuple(parts))
        return node, first.dataset

    def _condition(self, allowed: tuple[str, ...], target: Target) -> Condition:
        ds_tok = self.tok
        names = ", ".join(allowed[:-1]) + (" or " if len(allowed) > 1 else "") + allowed[-1]
        if ds_tok.kind != "WORD":
            raise self._fail(f"a dataset field such as {allowed[0]}.FIELD")
        if ds_tok.text not in allowed:
            known = {"Items", "Users", "Interactions", "CurrentUser", "CurrentItem"}
            if ds_tok.text == "CurrentItem":
                reason = (
                    "CurrentItem is only for related-items recipes, which this engine "
                    "does not have"
                )
            elif ds_tok.text == "CurrentUser":
                reason = "CurrentUser may only appear in the IF clause at the end"
            elif ds_tok.text in known and len(allowed) == 1 and allowed[0] != "CurrentUser":
                reason = (
                    f"conditions joined with AND/OR must stay on the first condition's "
                    f"dataset ({allowed[0]}); chain an expression on {ds_tok.text} "
                    "with '|' instead"
                )
            elif ds_tok.text in known:
                reason = f"{target} filters cannot use the {ds_tok.text} dataset here"
            else:
                reason = None
            if reason:
                raise InvalidFilterExpression(
                    f"expected {names}, found {ds_tok.text!r}: {reason}", ds_tok.position
                )
            raise self._fail(names)
        self._advance()
        self._expect_punct(".", expected=f"'.' after {ds_tok.text}")
        field_tok = self.tok
        if field_tok.kind != "WORD":
            raise self._fail(f"a field name after {ds_tok.text}.")
        self._advance()
        dataset = ds_tok.text
        if dataset == "Interactions" and field_tok.text != "EVENT_TYPE":
            raise InvalidFilterExpression(
                f"Interactions can only be filtered by EVENT_TYPE, not {field_tok.text}",
                field_tok.position,
            )
        op_tok = self.tok
        if self._is_word("NOT"):
            self._advance()
            self._expect_word("IN", expected="IN after NOT")
            op: Operator = "NOT IN"
        elif self._is_word("IN"):
            self._advance()
            op = "IN"
        elif op_tok.kind == "OP":
            self._advance()
            op = op_tok.text  # type: ignore[assignment]
        else:
            raise self._fail("IN, NOT IN or a comparison operator")
        if op in ("IN", "NOT IN"):
            operand = self._value_list(op, op_tok)
            if dataset == "Interactions" and isinstance(operand, tuple):
                operand = tuple(v.lower() for v in operand)
        else:
            if dataset == "Interactions":
                raise InvalidFilterExpression(
                    "Interactions.EVENT_TYPE takes IN or NOT IN, not a comparison",
                    op_tok.position,
                )
            operand = self._number_or_parameter(op)
        return Condition(dataset, field_tok.text, op, operand, ds_tok.position)  # type: ignore[arg-type]

    def _parameter(self) -> Parameter:
        tok = self._advance()
        name = tok.text[1:]
        if not name:
            raise InvalidFilterExpression(
                "a parameter needs a name after '$' (letters, digits, _)", tok.position
            )
        if len(name) > MAX_PARAMETER_NAME_LENGTH:
            raise InvalidFilterExpression(
                f"parameter names are at most {MAX_PARAMETER_NAME_LENGTH} characters",
                tok.position,
            )
        return Parameter(name)

    def _value_list(self, op: str, op_tok: _Token) -> tuple[str, ...] | Parameter:
        self._reject_current_item()
        self._expect_punct("(", expected=f"'(' after {op}")
        if self.tok.kind == "PARAM":
            if op == "NOT IN":
                raise InvalidFilterExpression(
                    "NOT IN takes quoted values, not a parameter (Personalize rule); "
                    "use EXCLUDE ... IN ($PARAM) instead",
                    self.tok.position,
                )
            param = self._parameter()
            self._expect_punct(")", expected="')' after the parameter")
            return param
        values: list[str] = []
        while True:
            if self.tok.kind != "STRING":
                hint = (
                    "a quoted value or a $PARAMETER"
                    if not values and op == "IN"
                    else "a quoted value"
                )
                raise self._fail(hint)
            values.append(str(self._advance().value))
            if self.tok.kind == "PUNCT" and self.tok.text == ",":
                self._advance()
                continue
            self._expect_punct(")", expected="',' or ')'")
            return tuple(values)

    def _reject_current_item(self) -> None:
        if self._is_word("CurrentItem"):
            raise InvalidFilterExpression(
                "CurrentItem is only for related-items recipes, which this engine does "
                "not have; use a literal or a $PARAMETER",
                self.tok.position,
            )

    def _number_or_parameter(self, op: str) -> float | Parameter:
        self._reject_current_item()
        if self.tok.kind == "PARAM":
            return self._parameter()
        if self.tok.kind == "NUMBER":
            return float(self._advance().value)
        raise self._fail(f"a number or a $PARAMETER after {op} (comparisons are numeric)")


def parse_filter(expression: str) -> FilterExpression:
    """Parse a Personalize filter expression; raises :class:`InvalidFilterExpression`."""
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidFilterExpression("the filter expression is empty")
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise InvalidFilterExpression(
            f"the filter expression is {len(expression)} characters; Personalize allows "
            f"at most {MAX_EXPRESSION_LENGTH}. Split it into several named filters"
        )
    parsed = _Parser(expression).parse()
    if len(parsed.parameters()) > MAX_PARAMETERS:
        raise InvalidFilterExpression(
            f"the filter uses {len(parsed.parameters())} parameters; a request can pass "
            f"at most {MAX_PARAMETERS} filter values"
        )
    return parsed
