"""Typed errors of the engine. Each carries a message a user can act on."""

from __future__ import annotations


class HunchError(Exception):
    """Base of every error the engine raises on purpose (never a bug)."""


class DatasetValidationError(HunchError):
    """A bulk dataset has problems; ``problems`` lists ``file:line: reason`` strings."""

    max_shown = 20

    def __init__(self, problems: list[str], total: int | None = None):
        self.problems = problems
        self.total = len(problems) if total is None else total
        shown = problems[: self.max_shown]
        more = self.total - len(shown)
        tail = f"\n... and {more} more" if more > 0 else ""
        super().__init__(
            # Said by every reader of data directories (import, train --data, evaluate):
            # "nothing was imported" misled under train --data, which imports nothing.
            f"{self.total} problem(s) in the dataset; fix them and run the command "
            "again (nothing was imported, trained or changed):\n"
            + "\n".join(shown)
            + tail
        )


class SchemaError(HunchError):
    """A dataset schema file is not a valid Personalize Avro schema."""


class AmazonQuotaExceeded(SchemaError):
    """A schema meant for Amazon Personalize passes one of its dataset quotas (five
    textual fields where its Items dataset takes one)."""


class InvalidEvent(HunchError):
    """An event or catalog record is malformed (empty id, over-long field, ...)."""


class NotPollAuthor(HunchError):
    """A user tried to create a poll for someone else or change a poll they did not write."""
