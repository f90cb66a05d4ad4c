"""Typed errors of the follower graph.

``graph`` imports neither ``recsys`` nor ``gateway`` (see architecture.md), so these do
not subclass ``recsys.errors.HunchError``; the gateway's CLI and API map them. Every
message is one line that says what to fix.
"""

from __future__ import annotations


class GraphError(Exception):
    """Base of every error the graph package raises on purpose."""


class GraphUnavailable(GraphError):
    """The graph server cannot be reached, or it refused our credentials."""


class UnknownUser(GraphError):
    """An operation named users the graph does not hold."""

    def __init__(self, user_ids: list[str]) -> None:
        self.user_ids = user_ids
        shown = ", ".join(repr(u) for u in user_ids[:5])
        more = f" and {len(user_ids) - 5} more" if len(user_ids) > 5 else ""
        super().__init__(
            f"unknown user(s) {shown}{more}: upsert the users before labelling them; "
            "nothing was written"
        )


class InvalidGraphData(GraphError):
    """Input the graph refuses before writing anything (a self-follow, a bad label)."""


class Neo4jServerError(GraphError):
    """The local Neo4j server tooling could not build, start or stop the server."""
