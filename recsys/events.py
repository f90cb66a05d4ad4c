"""Events the engine learns from: interactions and impressions, and their durable store.

EVENT DATACLASSES are defined here by the lead; the EventStore below them is being
written by the event-store work (see its docstring).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


def derive_event_id(*parts: object) -> str:
    """A deterministic id for an event that came without one (bulk CSV rows)."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(repr(part).encode())
        h.update(b"\x1f")
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class Interaction:
    """A user did something with a poll (HUNCH = voted, COMMENT, ...).

    ``impression`` lists the polls that were visible when it happened (explicit
    impressions); ``recommendation_id`` names the response it came from (implicit ones).
    """

    user_id: str
    item_id: str
    event_type: str
    timestamp: int
    event_value: float | None = None
    impression: tuple[str, ...] = ()
    recommendation_id: str | None = None
    event_id: str = ""

    def __post_init__(self) -> None:
        if not self.event_id:
            object.__setattr__(
                self,
                "event_id",
                derive_event_id(
                    "i", self.user_id, self.item_id, self.event_type, self.timestamp,
                    self.event_value, self.impression, self.recommendation_id,
                ),
            )


@dataclass(frozen=True, slots=True)
class Impression:
    """Polls a user saw without acting on them (an impression-only event)."""

    user_id: str
    item_ids: tuple[str, ...]
    timestamp: int
    recommendation_id: str | None = None
    event_id: str = ""

    def __post_init__(self) -> None:
        if not self.event_id:
            object.__setattr__(
                self,
                "event_id",
                derive_event_id("m", self.user_id, self.item_ids, self.timestamp,
                                self.recommendation_id),
            )
