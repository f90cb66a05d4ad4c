"""Event admission: which events the engine accepts, one rule set for the API and the store.

Two layers:

* **Shape** (always on, applied by :class:`recsys.events.EventStore` to every write):
  ids are non-empty, at most ``MAX_ID_LENGTH`` characters and valid Unicode (a lone
  surrogate such as ``"\\ud800"`` cannot be stored as UTF-8); timestamps are integers a
  calendar can show (years 1 to 9999, far inside SQLite's 64-bit integers); event values
  are finite and within ``MAX_EVENT_VALUE``.
* **Policy** (:class:`EventRules`, configured from settings): what a live event may say
  about time and type. Live events (the API) must fall within a window around the
  server clock; bulk history (``hunch data import``) may be old but not older than
  ``history_floor`` and never later than the server clock plus the same skew. Both
  accept only the configured event types.

Why a window at all: Trending-Now's clock follows the newest events, so one event from
the year 2100 once froze trending for everyone; and an event "from 1970" is a client
bug (a missing value read as 0), not history. Impressions of polls the catalog does not
hold are rejected like interactions with them (:class:`UnknownPolls`): an impression of
a poll that does not exist can only be a client bug or noise that inflates counts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

# The shape rules graph/ applies too (ids, times, echoed input) are hunchio's.
from hunchio.values import (  # noqa: F401 - MAX_ECHO_CHARS and echo are re-exported
    CONTROL,
    INVISIBLE,
    MAX_ECHO_CHARS,
    MAX_ID_LENGTH,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    echo,
    padded,
    plain,
    refused_characters,
)
from recsys.errors import HunchError, InvalidEvent

# --- shape ------------------------------------------------------------------------
# EVENT_VALUE is an Avro ``float`` (32-bit) in the Interactions schema. 2**24 is the
# largest magnitude at which a float32 still holds every integer, so counts such as a
# comment's words or seconds watched survive the export to Personalize unchanged; 1e308
# (accepted before) is not even a float32.
MAX_EVENT_VALUE = float(2**24)
MAX_EVENT_TYPE_LENGTH = 256  # PutEvents' eventType limit
# A live interaction's explicit impression list: PutEvents takes 1 to 25 ids an event
# (botocore's model). The gateway took 1,000 characters (~100 ids) and the local recipes
# counted every one as seen while Amazon was sent the first 25. Imported history keeps
# the bulk column's 1,000 characters (Amazon's bulk import takes those).
MAX_LIVE_IMPRESSION_IDS = 25

# --- policy defaults (settings: event_max_age_seconds, event_max_future_seconds, ...) ---
# A phone that was offline sends its queued events later: a week covers a weekend in
# airplane mode plus retries; older than that is a replay or a forged time.
DEFAULT_MAX_AGE_SECONDS = 7 * 24 * 3600
# Device clocks drift; NTP-synced ones are within seconds. Five minutes forgives a badly
# set clock without letting an event sit ahead of Trending-Now's interval for long.
DEFAULT_MAX_FUTURE_SECONDS = 5 * 60
DEFAULT_EVENT_TYPES = ("HUNCH", "COMMENT")  # voted, commented (see demo_data)
# A user votes once per poll: a second HUNCH by the same user on the same poll is not
# stored (it is "already counted", like a retried event id). Every valid vote counted
# let one account's 3,000 votes (five minutes of the mutation limit) lift a poll into
# the top 25 of 70 % of other users' feeds, and whatever each recipe dedupes, a backend
# that is sent the events (Personalize) counts them all. Comments may repeat.
DEFAULT_ONCE_PER_POLL_TYPES = ("HUNCH",)
# A poll's createdAt is a GraphQL Int (32-bit signed): a CREATION_TIMESTAMP outside
# 1901-12-13T20:45:52Z .. 2038-01-19T03:14:07Z made `poll { createdAt }` fail ("Int cannot
# represent non 32-bit signed integer value"). No history floor: public catalogs date
# films from 1919 (1 January of the release year).
MIN_CREATION_TIMESTAMP = -(2**31)
MAX_CREATION_TIMESTAMP = 2**31 - 1
# A user's AGE in years: older than anyone has lived is a typo or another unit.
MAX_AGE = 150
# Bulk history may be old, but not older than this: 1995-01-01, before the oldest public
# rating history the engine imports (MovieLens 100k, 1997). A missing time read as 0, or
# an epoch in days or hours, lands before it; one in milliseconds lands after "now".
DEFAULT_HISTORY_FLOOR = 788_918_400


def check_text(what: str, value: str) -> None:
    """Raise :class:`InvalidEvent` unless ``value`` can be stored as UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidEvent(
            f"{what} {echo(value)} is not valid Unicode (character {exc.start} is a lone "
            "surrogate); send UTF-8 text"
        ) from None


def check_id(what: str, value: object) -> None:
    """A non-empty string of at most ``MAX_ID_LENGTH`` characters, valid Unicode."""
    if not isinstance(value, str) or not value:
        raise InvalidEvent(f"{what} must be a non-empty string, got {echo(value)}")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidEvent(
            f"{what} {echo(value, 40)} is too long; Personalize allows at most "
            f"{MAX_ID_LENGTH} characters"
        )
    check_text(what, value)


def check_user_id(what: str, value: object) -> None:
    """A user id a client names (follow, authorId; event and recommendation ids follow
    it too, as clients build them from user ids): :func:`check_id` and
    :func:`check_printable`. '|' is allowed: sign-in providers issue ids such as
    Auth0's "google-oauth2|1093...", and such a user must be followable."""
    check_id(what, value)
    check_printable(what, value)  # type: ignore[arg-type]  # check_id: a str


def check_client_id(what: str, value: object) -> None:
    """A new poll's id: :func:`check_user_id` and no '|', which joins ids in
    Personalize's IMPRESSION field (a poll id with it was served but could never be
    reported seen)."""
    check_user_id(what, value)
    check_no_bar(what, value)  # type: ignore[arg-type]


def check_plain(what: str, value: str) -> None:
    """A categorical value (a category): :func:`check_printable` and no '|'."""
    check_printable(what, value)
    check_no_bar(what, value)


def check_printable(what: str, value: str) -> None:
    """No surrounding whitespace ("u1 " is another user than "u1", and passed the
    follow-yourself check), no deceptive invisible character, no control character
    (NUL and escapes break logs and CSV tools)."""
    if plain(value):
        return  # nearly every id: one regex pass
    if padded(value):
        raise InvalidEvent(f"{what} {echo(value)} starts or ends with whitespace; "
                           "send it without")
    for i, char, why in refused_characters(value):
        if why == INVISIBLE:
            raise InvalidEvent(f"{what} {echo(value)} contains the invisible character "
                               f"U+{ord(char):04X} at position {i}; send visible characters")
    check_no_control(what, value)


def check_no_bar(what: str, value: str) -> None:
    if "|" in value:
        raise InvalidEvent(f"{what} {echo(value)} contains '|', which separates values in "
                           "Personalize's IMPRESSION and categorical fields; choose one "
                           "without it")


def check_no_control(what: str, value: str, *, allow_whitespace: bool = False) -> None:
    """No control character (C0, DEL, C1; NUL included). ``allow_whitespace`` lets tab,
    newline and the like through: in free text they are folded into spaces anyway."""
    for i, char, why in refused_characters(value, allow_whitespace=allow_whitespace):
        if why == CONTROL:
            raise InvalidEvent(f"{what} {echo(value)} contains the control character "
                               f"U+{ord(char):04X} at position {i}; send printable text")


def canonical_event_type(event_type: str) -> str:
    """The event type as every writer stores it: stripped and upper-case, as
    recordInteraction stores it and :class:`EventRules` compares it (" hunch " is the
    configured HUNCH). Filters, thresholds and event ids then see one spelling."""
    return event_type.strip().upper()


def _integer(value: int) -> str:
    text = str(value)
    return text if len(text) <= 40 else f"{text[:20]}... ({len(text)} digits)"


def _milliseconds_hint(value: int) -> str:
    """What to send instead of ``value``: the seconds, when it reads as milliseconds of a
    time the API can show."""
    if abs(value) >= 10**11 and MIN_CREATION_TIMESTAMP <= value // 1000 <= MAX_CREATION_TIMESTAMP:
        return f"; it looks like milliseconds: send epoch seconds ({value // 1000})"
    return "; send epoch seconds"


def check_creation_timestamp(what: str, value: int) -> None:
    """A poll's CREATION_TIMESTAMP: epoch seconds the API's createdAt (a 32-bit GraphQL
    Int) can show; a time in milliseconds is named as such."""
    if value > MAX_CREATION_TIMESTAMP:
        raise InvalidEvent(
            f"{what} {_integer(value)} is after 2038-01-19 (a poll cannot be created in "
            f"the future, and createdAt is a 32-bit Int){_milliseconds_hint(value)}")
    if value < MIN_CREATION_TIMESTAMP:
        raise InvalidEvent(
            f"{what} {_integer(value)} is before 1901-12-13, the earliest time createdAt "
            f"(a 32-bit Int) can show{_milliseconds_hint(value)}")


def check_age(what: str, value: int) -> None:
    """A user's AGE: whole years, 0 to :data:`MAX_AGE`."""
    if not 0 <= value <= MAX_AGE:
        raise InvalidEvent(f"{what} {_integer(value)} is not an age in years; send 0 to "
                           f"{MAX_AGE}, or leave it empty")


def check_timestamp(timestamp: object) -> None:
    if not isinstance(timestamp, int) or isinstance(timestamp, bool):
        raise InvalidEvent(
            f"timestamp must be an integer (epoch seconds), got {echo(timestamp)}")
    if not MIN_TIMESTAMP <= timestamp <= MAX_TIMESTAMP:
        raise InvalidEvent(
            f"timestamp {echo(timestamp)} is not a date (years 1 to 9999); send epoch "
            "seconds"
        )


def check_event_value(value: object) -> float | None:
    """The value as a float (None stays None), or :class:`InvalidEvent`."""
    if value is None:
        return None
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not is_number or not math.isfinite(value) or abs(value) > MAX_EVENT_VALUE:
        raise InvalidEvent(
            f"event_value must be a finite number between {-MAX_EVENT_VALUE:g} and "
            f"{MAX_EVENT_VALUE:g} (EVENT_VALUE is a 32-bit float), got {echo(value)}"
        )
    return float(value)


def check_event_type(event_type: object) -> None:
    if not isinstance(event_type, str) or len(event_type) > MAX_EVENT_TYPE_LENGTH:
        raise InvalidEvent(
            f"event_type must be a string of at most {MAX_EVENT_TYPE_LENGTH} characters, "
            f"got {echo(event_type)}"
        )
    check_text("event_type", event_type)


class UnknownPolls(InvalidEvent):
    """An event names polls the catalog does not hold (upsert them first)."""

    def __init__(self, poll_ids: Sequence[str]):
        self.poll_ids = list(poll_ids)
        more = f" and {len(self.poll_ids) - 1} more" if len(self.poll_ids) > 1 else ""
        super().__init__(f"no poll {echo(self.poll_ids[0])}{more}; upsert it first")


class DeletedPolls(InvalidEvent):
    """A write names polls that were deleted (by their author or by moderation): a
    deleted poll takes no events, and its id is never written again."""

    def __init__(self, poll_ids: Sequence[str],
                 fix: str = "nothing was stored: drop it from what the client shows"):
        self.poll_ids = list(poll_ids)
        more = f" and {len(self.poll_ids) - 1} more" if len(self.poll_ids) > 1 else ""
        super().__init__(f"poll {echo(self.poll_ids[0])}{more} was deleted; {fix}")


# --- policy -----------------------------------------------------------------------


@dataclass(frozen=True)
class EventRules:
    """What an event may say about its time and type (see the module docstring).

    ``event_types`` are compared case-insensitively (the store does too); an empty
    tuple accepts any type. ``clock`` is the server's clock (epoch seconds).
    """

    max_age_seconds: int = DEFAULT_MAX_AGE_SECONDS
    max_future_seconds: int = DEFAULT_MAX_FUTURE_SECONDS
    event_types: tuple[str, ...] = DEFAULT_EVENT_TYPES
    history_floor: int = DEFAULT_HISTORY_FLOOR
    clock: Callable[[], float] = field(default=time.time, compare=False)
    once_per_poll: tuple[str, ...] = DEFAULT_ONCE_PER_POLL_TYPES

    def __post_init__(self) -> None:
        if self.max_age_seconds < 0 or self.max_future_seconds < 0:
            raise HunchError("HUNCH_EVENT_MAX_AGE_SECONDS and HUNCH_EVENT_MAX_FUTURE_SECONDS "
                             "must be 0 or more seconds")
        object.__setattr__(self, "event_types",
                           tuple(t.strip().upper() for t in self.event_types if t.strip()))
        object.__setattr__(self, "once_per_poll", tuple(
            canonical_event_type(t) for t in self.once_per_poll if t.strip()))

    def counts_once(self, event: object) -> bool:
        """Whether ``event`` is of a type a user has at most once per poll (an
        interaction of a type in ``once_per_poll``): stores keep the first such event
        of a (user, poll, type) and skip later ones as already counted."""
        return self.once_per_poll_type(event) is not None

    def once_per_poll_type(self, event: object) -> str | None:
        """The canonical type of ``event`` when it counts once (see :meth:`counts_once`),
        else None: what the stores' once_per_poll column holds."""
        event_type = getattr(event, "event_type", None)
        if event_type is None:
            return None
        canonical = canonical_event_type(event_type)
        return canonical if canonical in self.once_per_poll else None

    def event_time(self, at: float | None) -> int:
        """The API's optional ``at`` (epoch seconds, float) as a stored timestamp: now
        when absent; a clear error for values no clock can show (NaN, 1e19)."""
        if at is None:
            return int(self.clock())
        if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
            raise InvalidEvent(f"at must be epoch seconds, got {echo(at)}")
        if not MIN_TIMESTAMP <= at <= MAX_TIMESTAMP:
            raise InvalidEvent(f"at {at!r} is not a date (years 1 to 9999); send epoch seconds")
        return int(at)

    def check_type(self, event_type: str) -> None:
        if self.event_types and event_type.strip().upper() not in self.event_types:
            raise InvalidEvent(
                f"unknown event type {echo(event_type)}; this server accepts "
                f"{', '.join(self.event_types)} (setting HUNCH_EVENT_TYPES)"
            )

    def check_live(self, event: object) -> None:
        """A live event (the API): its time within the window around now, a known type."""
        now = self.clock()
        timestamp = getattr(event, "timestamp")
        if timestamp < now - self.max_age_seconds:
            raise InvalidEvent(
                f"at {timestamp} is more than {self.max_age_seconds} s before the server's "
                f"clock ({int(now)}); events older than that are not accepted live "
                "(import history with `hunch data import`)"
            )
        self._check_not_future(timestamp, now)
        if hasattr(event, "event_type"):
            self.check_type(getattr(event, "event_type"))
        shown = getattr(event, "impression", ())
        if len(shown) > MAX_LIVE_IMPRESSION_IDS and len(set(shown)) > MAX_LIVE_IMPRESSION_IDS:
            raise InvalidEvent(
                f"the impression list names {len(set(shown))} polls; an interaction carries "
                f"at most {MAX_LIVE_IMPRESSION_IDS} (what Amazon Personalize takes with an "
                "event): send the polls that were visible when it happened")

    def poll_created_at(self, created_at: int, *, internal_tool: bool) -> int:
        """A client's ``createdAt`` for a poll. A poll's age drives its rank (UP's age
        steps, the in-network source's newest-first order), so an author may only date a
        poll within the live window (a post-dated poll would stay "newest" for ever);
        internal tools importing history follow the history rule instead."""
        check_timestamp(created_at)
        now = self.clock()
        if internal_tool:
            if created_at < self.history_floor:
                raise InvalidEvent(f"createdAt {created_at} is before the history floor "
                                   f"{self.history_floor}")
        elif created_at < now - self.max_age_seconds:
            raise InvalidEvent(
                f"createdAt {created_at} is more than {self.max_age_seconds} s before the "
                f"server's clock ({int(now)}); leave it out to date the poll now")
        self._check_not_future(created_at, now, "createdAt")
        return created_at

    def check_creation_history(self, created_at: int, what: str = "CREATION_TIMESTAMP",
                               ) -> None:
        """An imported poll's creation time: not after now plus skew, as imported events
        (no history floor: public catalogs date films back to 1919)."""
        check_creation_timestamp(what, created_at)
        self._check_not_future(created_at, self.clock(), what)

    def check_deletion_history(self, deleted_at: int, what: str = "DELETED_AT") -> None:
        """An imported tombstone's time: a deletion some store stamped with its clock
        (deletePoll), so never before the history floor (a missing time read as 0, an
        epoch in days) nor after now plus skew. Outside them the earliest deletion kept
        is a wrong one, and a time past 2038 broke deletePoll's answer (a GraphQL Int)."""
        if deleted_at < self.history_floor:
            raise InvalidEvent(
                f"{what} {deleted_at} is before {self.history_floor} (the history floor); "
                "write when the poll was deleted in epoch seconds (a missing time read as "
                "0 lands here)")
        now = self.clock()
        if deleted_at > now + self.max_future_seconds:
            raise InvalidEvent(
                f"{what} {deleted_at} is more than {self.max_future_seconds} s after the "
                f"server's clock ({int(now)}): a poll cannot have been deleted later than "
                "now; check the clock of the store it came from (epoch seconds)")

    def check_history(self, event: object) -> None:
        """An imported event: not before ``history_floor``, not after now plus skew."""
        timestamp = getattr(event, "timestamp")
        if timestamp < self.history_floor:
            raise InvalidEvent(
                f"timestamp {timestamp} is before {self.history_floor} (the history floor); "
                "timestamps are epoch seconds (a missing time read as 0 lands here)"
            )
        self._check_not_future(timestamp, self.clock())
        if hasattr(event, "event_type"):
            self.check_type(getattr(event, "event_type"))

    def _check_not_future(self, timestamp: int, now: float, what: str = "at") -> None:
        if timestamp > now + self.max_future_seconds:
            raise InvalidEvent(
                f"{what} {timestamp} is more than {self.max_future_seconds} s after the "
                f"server's clock ({int(now)}); check the client's clock (epoch seconds, "
                "not milliseconds)"
            )
