"""The feed: one page of ``first`` polls after a cursor, for one user.

This is the pipeline a ``feed(first, after)`` request runs, top to bottom:

1. open the feed session (no cursor) or verify the cursor and find the session;
2. if the session already holds the asked-for positions, return them (same cursor, same
   page);
3. otherwise mix new polls: everything this session placed, everything the user already
   voted on or commented (``interactions_exclusion``), and polls seen too often are
   excluded; the request's filter applies to regular slots;
4. apply the active promotion to the new page (its own filter, its share of slots);
5. append the page to the session (first writer wins across workers), report the
   response to ``on_recommendation`` (implicit impressions), sign the next cursor.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from recsys.errors import HunchError
from recsys.feed_sessions import (
    DEFAULT_SESSION_TTL_SECONDS,
    Cursor,
    CursorSigner,
    ExpiredCursor,
    FeedSessionStore,
)
from recsys.mixer import USER_PERSONALIZATION, FeedItem, Mixer, MixRequest
from recsys.promotions import Promotion, interleave_promoted

MAX_PAGE_SIZE = 100  # a phone shows ~5 polls at once; 100 is many screens of prefetch

ItemPredicate = Callable[[str], bool]


class InvalidPageSize(HunchError):
    """``first`` is out of range."""


@dataclass
class FeedPage:
    items: list[FeedItem]
    end_cursor: str
    has_next_page: bool
    recommendation_id: str
    session_id: str


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
    promotion_filter: Callable[[Promotion, str], ItemPredicate] | None = None
    promoted_source: str = USER_PERSONALIZATION  # Personalize ranks promoted items by the campaign
    on_recommendation: Callable[[str, str, list[str]], None] | None = None
    max_page_size: int = MAX_PAGE_SIZE

    def page(self, user_id: str, first: int = 20, after: str | None = None, *,
             allow: ItemPredicate | None = None, now: float | None = None) -> FeedPage:
        if not 1 <= first <= self.max_page_size:
            raise InvalidPageSize(f"first must be between 1 and {self.max_page_size}, got {first}")
        now = time.time() if now is None else now
        if after:
            cursor = self.signer.decode(after, user_id, now=now)
            expires = self.sessions.expires_at(cursor.session_id)
            if expires is None or expires < now:
                raise ExpiredCursor("the feed session expired; ask for the feed without a cursor")
            session_id, position = cursor.session_id, cursor.position
        else:
            session_id, expires = self.sessions.create(user_id, self.session_ttl_seconds)
            position = 0

        # A new session holds nothing yet: no need to read it back.
        items = self.sessions.items(session_id, position, first) if after else []
        exhausted = False
        if len(items) < first:
            exhausted = self._extend(user_id, session_id, position + first, allow)
            items = self.sessions.items(session_id, position, first)
        end = position + len(items)
        has_next = not exhausted or len(self.sessions.items(session_id, end, 1)) > 0
        cursor = self.signer.encode(Cursor(session_id, user_id, end, expires))
        recommendation_id = items[0].recommendation_id if items else ""
        return FeedPage(items, cursor, has_next, recommendation_id, session_id)

    def _extend(self, user_id: str, session_id: str, until: int,
                allow: ItemPredicate | None) -> bool:
        """Mix polls until the session holds ``until`` of them; True if sources ran dry."""
        for _ in range(3):  # another worker may extend the same session concurrently
            placed = self.sessions.items(session_id)
            need = until - len(placed)
            if need <= 0:
                return False
            exclude = {it.item_id for it in placed}
            if self.interactions_exclusion is not None:
                exclude |= self.interactions_exclusion(user_id)
            recommendation_id = uuid.uuid4().hex
            request = MixRequest(user_id, need, start=len(placed), exclude=exclude,
                                 allow=allow, recommendation_id=recommendation_id)
            new_items = self._with_promotion(request)
            if self.sessions.extend(session_id, len(placed), new_items):
                if self.on_recommendation is not None and new_items:
                    self.on_recommendation(recommendation_id, user_id,
                                           [it.item_id for it in new_items])
                return len(new_items) < need
        return False

    def _with_promotion(self, request: MixRequest) -> list[FeedItem]:
        promotion = self.active_promotion() if self.active_promotion else None
        if promotion is None or self.promotion_filter is None:
            return self.mixer.mix(request)
        k = promotion.promoted_count(request.first)
        predicate = self.promotion_filter(promotion, request.user_id)
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
