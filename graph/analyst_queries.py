"""The analysts' Cypher queries: load one by name, bind its parameters, run it read-only.

Each question lives in its own ``graph/cypher/<name>.cypher`` file so that an analyst can
paste it into Neo4j Browser or cypher-shell unchanged; the file's leading ``//`` comments
say what it answers and declare its parameters::

    // @param community string -- the community label to look inside
    // @param since int = null -- count engagements at or after this epoch second

Parameters without a default are required. Types are ``string``, ``int``, ``float`` and
``list`` (of strings; ``a,b,c`` on the command line). Queries run through the official
driver in a read transaction routed to a reader, so a query file can never change the graph.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from neo4j import Driver, RoutingControl
from neo4j.exceptions import Neo4jError, ServiceUnavailable, SessionExpired

from graph.errors import GraphError, GraphUnavailable

# Where the .cypher files live, as package data (pyproject ships *.cypher).
QUERY_PACKAGE = "graph.cypher"
# Query names double as file names: this keeps a name from walking out of the package.
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_PARAM_LINE = re.compile(
    r"//\s*@param\s+(?P<name>[A-Za-z_]\w*)\s+(?P<kind>string|int|float|list)"
    r"(?:\s*=\s*(?P<default>\S+))?(?:\s+--\s*(?P<help>.*))?\s*$"
)
PARAM_KINDS = ("string", "int", "float", "list")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class AnalystQueryError(GraphError):
    """Base of the analyst-query errors."""


class UnknownAnalystQuery(AnalystQueryError):
    """No ``graph/cypher/<name>.cypher`` file."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"no analyst query named {name!r}; pick one of: {', '.join(query_names())}"
        )


class InvalidQueryParameter(AnalystQueryError):
    """A parameter is missing, unknown, or of the wrong type."""


class MalformedQueryFile(AnalystQueryError):
    """A .cypher file whose header the loader cannot read."""


class AnalystQueryFailed(AnalystQueryError):
    """Neo4j refused or failed the query (a syntax error in an edited file, a timeout)."""


@dataclass(frozen=True)
class QueryParameter:
    """One ``$name`` of a query, as declared by its ``// @param`` line."""

    name: str
    kind: str
    default: Any = None
    required: bool = True
    help: str = ""

    def convert(self, value: Any) -> Any:
        """``value`` as the query expects it; text (from the CLI) is parsed."""
        if value is None or (isinstance(value, str) and value == "null" and not self.required):
            if self.required:
                raise InvalidQueryParameter(f"parameter {self.name!r} needs a value")
            return None
        if isinstance(value, str):
            return self._parse(value)
        ok = {
            "string": isinstance(value, str),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, (int, float)) and not isinstance(value, bool),
            "list": isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value),
        }[self.kind]
        if not ok:
            raise InvalidQueryParameter(
                f"parameter {self.name!r} must be of type {self.kind}, got {value!r}")
        if self.kind == "int":
            self._check_int64(value)
        return list(value) if self.kind == "list" else value

    def _check_int64(self, value: int) -> int:
        # Cypher's integers are 64-bit: a larger one was an OverflowError traceback from
        # the driver, after the connection was made.
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidQueryParameter(
                f"parameter {self.name!r} must be an integer from {INT64_MIN} to "
                f"{INT64_MAX} (Cypher's 64-bit integers), got {value}")
        return value

    def _parse(self, text: str) -> Any:
        try:
            if self.kind == "int":
                return self._check_int64(int(text))
            if self.kind == "float":
                return float(text)
        except ValueError:
            raise InvalidQueryParameter(
                f"parameter {self.name!r} must be of type {self.kind}, got {text!r}") from None
        if self.kind == "list":
            return [part.strip() for part in text.split(",") if part.strip()]
        return text


@dataclass(frozen=True)
class AnalystQuery:
    """A parameterised Cypher query and what it answers."""

    name: str
    question: str
    description: str
    parameters: tuple[QueryParameter, ...]
    cypher: str

    def bind(self, values: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every declared parameter with its value: given, or the default."""
        values = dict(values or {})
        declared = {p.name: p for p in self.parameters}
        unknown = sorted(set(values) - set(declared))
        if unknown:
            raise InvalidQueryParameter(
                f"query {self.name!r} has no parameter(s) {unknown}; "
                f"it takes: {', '.join(declared) or 'none'}")
        bound = {}
        for param in self.parameters:
            if param.name in values:
                bound[param.name] = param.convert(values[param.name])
            elif param.required:
                raise InvalidQueryParameter(
                    f"query {self.name!r} needs --param {param.name}=<{param.kind}> "
                    f"({param.help or 'no description'})")
            else:
                bound[param.name] = param.default
        return bound


@dataclass(frozen=True)
class QueryResult:
    """Rows of a query, each a dict keyed by ``columns`` in the query's RETURN order."""

    columns: list[str]
    rows: list[dict[str, Any]]


def query_names() -> list[str]:
    """Names of every shipped query, sorted."""
    folder = resources.files(QUERY_PACKAGE)
    return sorted(entry.name[: -len(".cypher")] for entry in folder.iterdir()
                  if entry.name.endswith(".cypher"))


def load_query(name: str) -> AnalystQuery:
    """The query in ``graph/cypher/<name>.cypher``."""
    if not _NAME.fullmatch(name):
        raise UnknownAnalystQuery(name)
    entry = resources.files(QUERY_PACKAGE).joinpath(f"{name}.cypher")
    if not entry.is_file():
        raise UnknownAnalystQuery(name)
    return parse_query(name, entry.read_text(encoding="utf-8"))


def parse_query(name: str, text: str) -> AnalystQuery:
    """Split a .cypher file into its question, description, parameters and Cypher."""
    header: list[str] = []
    for line in text.splitlines():
        if not line.startswith("//"):
            break
        header.append(line)
    parameters: list[QueryParameter] = []
    prose: list[str] = []
    for line in header:
        if "@param" in line:
            match = _PARAM_LINE.match(line)
            if match is None:
                raise MalformedQueryFile(
                    f"{name}.cypher: cannot read {line!r}; write "
                    f"'// @param NAME {'|'.join(PARAM_KINDS)} [= DEFAULT] -- what it is'")
            parameters.append(_parameter(name, match))
        else:
            prose.append(line[2:].strip())
    if not prose:
        raise MalformedQueryFile(f"{name}.cypher: start it with a '// <question>' line")
    cypher = text[sum(len(line) + 1 for line in header):].strip()
    for param in parameters:
        if f"${param.name}" not in cypher:
            raise MalformedQueryFile(
                f"{name}.cypher declares @param {param.name} but never uses ${param.name}")
    return AnalystQuery(name=name, question=prose[0], description=" ".join(prose[1:]),
                        parameters=tuple(parameters), cypher=cypher)


def _parameter(query: str, match: re.Match[str]) -> QueryParameter:
    kind, default_text = match["kind"], match["default"]
    param = QueryParameter(match["name"], kind, help=(match["help"] or "").strip())
    if default_text is None:
        return param
    if default_text == "null":
        return QueryParameter(param.name, kind, None, False, param.help)
    try:
        default = QueryParameter(param.name, kind)._parse(default_text)
    except InvalidQueryParameter as exc:
        raise MalformedQueryFile(f"{query}.cypher: default of {exc}") from None
    return QueryParameter(param.name, kind, default, False, param.help)


def run_query(driver: Driver, name: str, values: Mapping[str, Any] | None = None, *,
              database: str = "neo4j") -> QueryResult:
    """Run the named query with ``values`` (defaults fill the rest) in a read transaction."""
    query = load_query(name)
    params = query.bind(values)
    try:
        records, _summary, keys = driver.execute_query(
            query.cypher, params, database_=database, routing_=RoutingControl.READ)
    except (ServiceUnavailable, SessionExpired) as exc:
        raise GraphUnavailable(
            f"Neo4j is unreachable while running {name!r} ({type(exc).__name__}); start it "
            "with `hunch neo4j start` or set HUNCH_NEO4J_URI") from exc
    except Neo4jError as exc:
        message = " ".join(str(exc.message or exc).split())
        if exc.code == "Neo.ClientError.Statement.ArgumentError":
            # A value the query cannot take (`-p limit=-1`): the analyst's to fix, not the
            # query file's, which the message below sent them to.
            raise InvalidQueryParameter(
                f"Neo4j refused a parameter value of {name!r} ({message}); change the "
                f"--param value") from exc
        raise AnalystQueryFailed(
            f"Neo4j refused query {name!r} ({exc.code}: {message}); "
            f"check graph/cypher/{name}.cypher") from exc
    return QueryResult(columns=list(keys), rows=[record.data() for record in records])
