"""EVENT_VALUE in training: Personalize's per-type threshold, and the value as confidence.

Personalize's solution config (``eventsConfig.eventParametersList``: ``eventType``,
``eventValueThreshold``, ``weight``) trains only on events whose value is at least their
type's threshold. Beside it, a dataset whose values measure strength (a 1..5 rating, a
play count) can lend that strength to the collaborative part as confidence, in the way
implicit ALS reads counts (Hu, Koren & Volinsky 2008): ``value`` uses the value itself,
``log`` uses ``1 + log(value)`` (play counts span orders of magnitude). Both are off by
default: every interaction is one positive signal, as Personalize trains without them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from recsys.errors import HunchError
from recsys.events import Interaction

CONFIDENCE_MODES: tuple[str, ...] = ("none", "value", "log")
# Personalize accepts at most 10 event parameters per solution.
MAX_EVENT_TYPES = 10


class InvalidEventValues(HunchError):
    """An event-value setting is malformed (say which one and how to write it)."""


@dataclass(frozen=True)
class EventValues:
    """Which events train (``thresholds``) and how much each counts (``confidence``).

    ``thresholds`` maps an EVENT_TYPE (case-insensitive) to the least EVENT_VALUE an
    event of that type needs to be trained on; an event of such a type without a value
    cannot meet it and is left out. Types without a threshold always train.
    """

    thresholds: Mapping[str, float] = field(default_factory=dict)
    confidence: str = "none"

    def __post_init__(self) -> None:
        if self.confidence not in CONFIDENCE_MODES:
            raise InvalidEventValues(
                f"event-value confidence must be one of {', '.join(CONFIDENCE_MODES)}, "
                f"not {self.confidence!r}")
        if len(self.thresholds) > MAX_EVENT_TYPES:
            raise InvalidEventValues(
                f"at most {MAX_EVENT_TYPES} event-type thresholds (as Personalize), "
                f"got {len(self.thresholds)}")
        clean = {}
        for event_type, value in self.thresholds.items():
            if not str(event_type).strip():
                raise InvalidEventValues("an event-value threshold needs an event type")
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise InvalidEventValues(
                    f"threshold of {event_type!r} must be a number, got {value!r}") from None
            if not math.isfinite(number):
                raise InvalidEventValues(f"threshold of {event_type!r} must be finite")
            clean[str(event_type).strip().upper()] = number
        object.__setattr__(self, "thresholds", clean)

    @classmethod
    def parse(cls, thresholds: str = "", confidence: str = "none") -> EventValues:
        """From ``"RATING=4,CLICK=1"`` (as a command line gives it)."""
        pairs = {}
        for part in (p.strip() for p in thresholds.split(",")):
            if not part:
                continue
            event_type, sep, value = part.partition("=")
            if not sep:
                raise InvalidEventValues(
                    f"event-value threshold {part!r} must read EVENT_TYPE=VALUE, e.g. RATING=4")
            pairs[event_type] = value.strip()
        return cls(pairs, confidence)

    @classmethod
    def coerce(cls, value: EventValues | Mapping[str, Any] | None) -> EventValues | None:
        """Itself, or from :meth:`to_json`'s shape (a saved model's params)."""
        if value is None or isinstance(value, EventValues):
            return value
        return cls(dict(value.get("thresholds", {})), value.get("confidence", "none"))

    @property
    def active(self) -> bool:
        return bool(self.thresholds) or self.confidence != "none"

    def keeps(self, event: Interaction) -> bool:
        """Whether ``event`` meets its type's threshold (always, without one)."""
        threshold = self.thresholds.get(event.event_type.upper())
        if threshold is None:
            return True
        return event.event_value is not None and event.event_value >= threshold

    def training_events(self, events: Iterable[Interaction]) -> list[Interaction]:
        return [e for e in events if self.keeps(e)]

    def weight(self, event: Interaction) -> float:
        """The event's confidence multiplier; 1 without a (positive) value."""
        value = event.event_value
        if self.confidence == "none" or value is None or not value > 0:
            return 1.0
        return float(value) if self.confidence == "value" else 1.0 + math.log(value)

    def to_json(self) -> dict[str, Any]:
        return {"thresholds": dict(self.thresholds), "confidence": self.confidence}

    def describe(self) -> str:
        parts = [f"{t} >= {v:g}" for t, v in self.thresholds.items()]
        if self.confidence != "none":
            parts.append(f"confidence = {'EVENT_VALUE' if self.confidence == 'value' else '1 + log(EVENT_VALUE)'}")
        return ", ".join(parts) or "every event, weight 1"
