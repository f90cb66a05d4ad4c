"""What Amazon Personalize hears of what the event store holds: the gateway's live
forwarding and ``hunch personalize replay`` apply the same rules.

- Amazon's Trending-Now counts interactions and UP learns from each, while the local
  recipes count users: Amazon hears a user's *first* event of each type on each poll
  (votes are stored once anyway; a repeated comment is stored here only).
- Personalize has no impression-only event (sent, one became an interaction with the
  first poll shown): impressions go with interactions, and an interaction that names
  only this feed's recommendation id (which Amazon cannot resolve) carries the polls
  that recommendation showed as its explicit list.
- Amazon ignores an event id it has already seen, so sending an event twice (a replay
  over a window that partly arrived) changes nothing there.
- A call Amazon refuses for what it holds is sent again one event at a time, so that
  one event it cannot take does not cost the nine beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from recsys.admission import EventRules, canonical_event_type
from recsys.backends.personalize import MAX_EVENTS_PER_PUT, refused_as_input
from recsys.events import Interaction, deleted_poll_ids, without_polls


def heard_before(store: Any, rules: EventRules | None, event: Interaction,
                 before: int | None = None) -> bool:
    """Whether the store holds an earlier event of this user's type on this poll, so
    Amazon heard of it already. ``before``: only events dated before that time count
    (a replay, whose own events are stored); by default every stored event (asked
    before the write). Types a user has once per poll are never stored twice: False."""
    if rules is not None and rules.counts_once(event):
        return False
    kind = canonical_event_type(event.event_type)
    count = store.count_events(user_id=event.user_id, item_id=event.item_id, event_type=kind)
    if before is not None and count:
        count -= store.count_events(user_id=event.user_id, item_id=event.item_id,
                                    event_type=kind, since=before)
    return count > 0


def with_shown_polls(event: Interaction,
                     shown: Callable[[str], Sequence[str] | None]) -> Interaction:
    """``event`` with the polls its recommendation showed (``shown(id)``) as its explicit
    impression list, when it has no list of its own. Naming someone else's
    recommendation tells no more than an explicit list of the same polls would, which
    any client may send."""
    if event.impression or not event.recommendation_id:
        return event
    polls = shown(event.recommendation_id)
    return replace(event, impression=tuple(polls)) if polls else event


@dataclass
class ReplayCounts:
    sent: int = 0
    repeats: int = 0  # not sent: the user's type on that poll was heard before
    failed: int = 0  # in calls Amazon (or botocore) refused
    users: int = 0


def replay(store: Any, sink: Any, rules: EventRules | None, since: int, until: int, *,
           forward_repeats: bool = False, dry_run: bool = False,
           on_failure: Callable[[str, Exception], None] | None = None) -> ReplayCounts:
    """Send Amazon the interactions stored with ``since <= timestamp < until`` as the
    gateway would have (after an outage that dropped or failed copies): repeats left
    out, recommendation ids turned into explicit lists, each user's events in time
    order, 10 to a call. Events Amazon already has are ignored there by their id.
    The window's events are held in memory (grouped by user)."""
    counts = ReplayCounts()
    heard: set[tuple[str, str, str]] = set()
    by_user: dict[str, list[Interaction]] = {}
    # As training reads the store: Amazon is not taught a deleted poll again, nor
    # shown it in the polls a recommendation showed.
    deleted = deleted_poll_ids(store)
    for event in without_polls(store.events_between(since, until), deleted):
        if not forward_repeats and not (rules is not None and rules.counts_once(event)):
            key = (event.user_id, event.item_id, canonical_event_type(event.event_type))
            if key in heard or heard_before(store, rules, event, before=since):
                heard.add(key)
                counts.repeats += 1
                continue
            heard.add(key)
        by_user.setdefault(event.user_id, []).extend(
            without_polls([with_shown_polls(event, store.recommendation_items)], deleted))
    counts.users = len(by_user)
    for user_id, events in by_user.items():
        for start in range(0, len(events), MAX_EVENTS_PER_PUT):
            batch = events[start:start + MAX_EVENTS_PER_PUT]
            if dry_run:
                counts.sent += len(batch)
                continue
            try:
                counts.sent += sink.put_events(user_id, user_id, batch)
            except Exception as exc:  # noqa: BLE001 - counted and reported; the rest go on
                if len(batch) > 1 and refused_as_input(exc):
                    # One event Amazon refuses fails its whole call: the other nine
                    # were lost with it, at every replay. Sent one by one, only it is.
                    for event in batch:
                        try:
                            counts.sent += sink.put_events(user_id, user_id, [event])
                        except Exception as one_exc:  # noqa: BLE001 - as above
                            counts.failed += 1
                            if on_failure is not None:
                                on_failure(user_id, one_exc)
                    continue
                counts.failed += len(batch)
                if on_failure is not None:
                    on_failure(user_id, exc)
    return counts
