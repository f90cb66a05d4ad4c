"""The feed: one page of ``first`` polls after a cursor, for one user.

This is the pipeline a ``feed(first, after)`` request runs, top to bottom:

1. verify the cursor and read the session once (expiry and every poll it placed);
   without a cursor there is no session yet;
2. if the session already holds the asked-for positions, return them (same cursor, same
   page);
3. otherwise mix new polls: everything this session placed, everything the user already
   voted on or commented (``interactions_exclusion``), and polls seen too often are
   excluded; the request's filter applies to regular slots;
4. apply the active promotion to the new page (its own filter, its share of slots);
5. store the page: a new session is created holding it, in one write; an existing one is
   extended (first writer wins across workers). Report the response to
   ``on_recommendation`` (implicit impressions) and sign the next cursor.

Every poll of a page has its own cursor too (its position + 1, signed only when a client
asks): ``after`` it, step 2 replays what the session placed past that poll and step 3
mixes the rest, so Relay clients that splice pages by edge cursor keep the whole feed.

The session store is the only I/O here: one read for a page after a cursor, one write
for a page that places new polls, and nothing else.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from recsys.errors import HunchError
from recsys.feed_sessions import (
    DEFAULT_SESSION_TTL_SECONDS,
    Cursor,
    CursorSigner,
    ExpiredCursor,
    FeedSessionStore,
    InvalidCursor,
)
from recsys.mixer import USER_PERSONALIZATION, FeedItem, Mixer, MixRequest
from recsys.promotions import Promotion, interleave_promoted

MAX_PAGE_SIZE = 100  # a phone shows ~5 polls at once; 100 is many screens of prefetch
# Two workers racing to extend one session: the loser re-reads and, since the winner's
# page now covers its positions, returns it. After this many lost races a client is
# hammering one cursor; answering with what the session holds beats looping.
_EXTEND_ATTEMPTS = 3

ItemPredicate = Callable[[str], bool]


class InvalidPageSize(HunchError):
    """``first`` is out of range: below the smallest page (a plain input mistake)."""


class PageSizeExceeded(InvalidPageSize):
    """``first`` asks for more than the largest page."""


def check_page_size(first: int, smallest: int, largest: int, *, paged: bool = False) -> None:
    """Refuse a ``first`` outside ``[smallest, largest]``, saying which bound it broke
    (and, for a paged list, how to get the rest)."""
    if first > largest:
        rest = ": ask for the rest with the page's endCursor as `after`" if paged else ""
        raise PageSizeExceeded(f"first must be at most {largest}, got {first}{rest}")
    if first < smallest:
        raise InvalidPageSize(f"first must be at least {smallest}, got {first}")


@dataclass
class FeedPage:
    items: list[FeedItem]
    end_cursor: str
    has_next_page: bool
    recommendation_id: str
    session_id: str
    position: int = 0  # polls of the session before this page's first
    # Signs cursors of this page's session at given positions. Edge cursors are signed
    # only when asked for: a signature per edge would be most of a page's cursor cost.
    sign_positions: Callable[[Sequence[int]], list[str]] | None = field(default=None,
                                                                         repr=False)
    # Each item's position in its session, when a deleted poll left a gap in the page
    # (None: the items sit at position, position + 1, ...).
    positions: list[int] | None = None

    def edge_cursors(self) -> list[str]:
        """Each poll's own cursor: ``after`` it, the feed resumes right after that poll
        (Relay clients such as Apollo's ``relayStylePagination`` splice pages by it).
        The last one is ``end_cursor`` unless a deleted poll was left out there."""
        if self.sign_positions is None:
            raise ValueError("this page was built without a cursor signer")
        if self.positions is not None:
            return self.sign_positions([p + 1 for p in self.positions])
        return self.sign_positions(range(self.position + 1,
                                         self.position + len(self.items) + 1))


@dataclass
class FeedService:
    mixer: Mixer
    sessions: FeedSessionStore
    signer: CursorSigner
    session_ttl_seconds: float = DEFAULT_SESSION_TTL_SECONDS
    # Polls to leave out for a user: what they voted on or commented, seen N+ times...
    interactions_exclusion: Callable[[str], set[str]] | None = None
    # The promotion in force and a resolver from its filter to a predicate for a user.
    active_promotion: Callable[[], Promotion | None] | None = None
    promotion_filter: Callable[[Promotion, str], ItemPredicate | None] | None = None
    promoted_source: str = USER_PERSONALIZATION  # Personalize ranks promoted items by the campaign
    on_recommendation: Callable[[str, str, list[str]], None] | None = None
    max_page_size: int = MAX_PAGE_SIZE
    # The deleted polls among some ids: left out of every page served from now on,
    # those a session placed before the deletion included.
    withdrawn: Callable[[list[str]], set[str]] | None = None

    def page(self, user_id: str, first: int = 20, after: str | None = None, *,
             allow: ItemPredicate | None = None, now: float | None = None) -> FeedPage:
        check_page_size(first, 1, self.max_page_size, paged=True)
        now = time.time() if now is None else now
        if not after:
            return self._first_page(user_id, first, allow)
        cursor = self.signer.decode(after, user_id, now=now)
        session_id, position = cursor.session_id, cursor.position
        end = position + first
        for attempt in range(_EXTEND_ATTEMPTS):  # another worker may extend it meanwhile
            snapshot = self.sessions.snapshot(session_id)
            if snapshot is None or snapshot.expires_at < now:
                raise ExpiredCursor("the feed session expired; ask for the feed without a cursor")
            if snapshot.user_id is not None and snapshot.user_id != user_id:
                raise InvalidCursor("the cursor belongs to another user's feed")
            placed = snapshot.items
            # A cursor can only point where this server handed one out: at or before
            # the session's end (sessions only grow). A forged one past it made the mix
            # fill the gap: p=10**9 built a 10**9-slot plan (8 GB), p=150 appended 150
            # polls at once; a negative one sliced from the end or never moved on.
            if not 0 <= position <= len(placed):
                raise InvalidCursor("the cursor points outside its feed session; "
                                    "ask for the feed again without `after`")
            if len(placed) >= end or attempt == _EXTEND_ATTEMPTS - 1:
                # Held already (the same cursor again, or a racing worker's page); after
                # the last lost race, what the session holds is the truthful answer.
                return self._page(placed, position, first, False, session_id, user_id,
                                  snapshot.expires_at)
            new_items = self._mix(user_id, end - len(placed), placed, allow)
            if self.sessions.extend(session_id, len(placed), new_items):
                self._report(new_items, user_id)
                exhausted = len(placed) + len(new_items) < end
                return self._page(placed + new_items, position, first, exhausted,
                                  session_id, user_id, snapshot.expires_at)
        raise AssertionError("unreachable: the last attempt returns")

    def _first_page(self, user_id: str, first: int, allow: ItemPredicate | None) -> FeedPage:
        """A new session, created holding its first page: nobody else can know its id
        yet, so there is no race and one write stores both."""
        items = self._mix(user_id, first, [], allow)
        session_id, expires = self.sessions.create(user_id, self.session_ttl_seconds, items)
        self._report(items, user_id)
        return self._page(items, 0, first, len(items) < first, session_id, user_id, expires)

    def _page(self, placed: list[FeedItem], position: int, first: int, exhausted: bool,
              session_id: str, user_id: str, expires: float) -> FeedPage:
        items = placed[position:position + first]
        end = position + len(items)
        has_next = not exhausted or len(placed) > end
        cursor = self.signer.encode(Cursor(session_id, user_id, end, expires))
        recommendation_id = items[0].recommendation_id if items else ""
        items, positions = self._without_deleted(items, position)
        return FeedPage(items, cursor, has_next, recommendation_id, session_id, position,
                        partial(self.signer.encode_run, session_id, user_id,
                                expires_at=expires), positions)

    def _without_deleted(self, items: list[FeedItem], position: int,
                         ) -> tuple[list[FeedItem], list[int] | None]:
        """The page without polls deleted since the session placed them. The session
        keeps them (pages are not rewritten), so every other poll keeps its position and
        its cursor, and ``after`` any cursor still resumes where it did."""
        gone = self.withdrawn([it.item_id for it in items]) if self.withdrawn and items else ()
        if not gone:
            return items, None
        kept = [(position + k, it) for k, it in enumerate(items) if it.item_id not in gone]
        return [it for _, it in kept], [p for p, _ in kept]

    def _mix(self, user_id: str, need: int, placed: list[FeedItem],
             allow: ItemPredicate | None) -> list[FeedItem]:
        """``need`` new polls for a session that already placed ``placed``."""
        exclude = {it.item_id for it in placed}
        if self.interactions_exclusion is not None:
            exclude |= self.interactions_exclusion(user_id)
        request = MixRequest(user_id, need, start=len(placed), exclude=exclude,
                             allow=allow, recommendation_id=uuid.uuid4().hex)
        return self._with_promotion(request)

    def _report(self, new_items: list[FeedItem], user_id: str) -> None:
        if self.on_recommendation is not None and new_items:
            self.on_recommendation(new_items[0].recommendation_id, user_id,
                                   [it.item_id for it in new_items])

    def _with_promotion(self, request: MixRequest) -> list[FeedItem]:
        promotion = self.active_promotion() if self.active_promotion else None
        if promotion is None or self.promotion_filter is None:
            return self.mixer.mix(request)
        k = promotion.promoted_count(request.first)
        predicate = self.promotion_filter(promotion, request.user_id)
        if predicate is None:  # its filter cannot apply (deleted meanwhile): none promoted
            return self.mixer.mix(request)
        source = self.mixer.sources.get(self.promoted_source)
        promoted: list[FeedItem] = []
        if source is not None:
            ranked = source.candidates(request.user_id, k, exclude=request.exclude,
                                       allow=predicate, filter_name=promotion.filter_name,
                                       filter_values=promotion.filter_values)
            promoted = [
                FeedItem(c.item_id, source.name, float(c.score), rank,
                         request.recommendation_id, promotion.name)
                for rank, c in enumerate(ranked[:k], start=1)
            ]
        # The request's filter applies only to the regular items (Personalize).
        regular_request = MixRequest(
            request.user_id, request.first, request.start,
            request.exclude | {p.item_id for p in promoted}, request.allow,
            request.recommendation_id, request.filter_name, request.filter_values)
        regular = self.mixer.mix(regular_request)
        rng = random.Random(request.recommendation_id)
        page, _ = interleave_promoted(regular, promoted, request.first, k, rng)
        return page
