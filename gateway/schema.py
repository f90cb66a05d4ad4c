"""The GraphQL schema (strawberry): the feed, events, follows, and internal-tool fields.

Expected failures are union result types (``UnknownPoll``, ``InvalidFilterExpression``,
``GraphUnavailable``...), so a client handles them as data. Every other error is raised
and carries a stable ``extensions.code`` (see :mod:`gateway.errors`).
"""

from __future__ import annotations

import asyncio
import functools
import threading
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

import strawberry
from graphql import ASTValidationRule, DocumentNode, GraphQLError, parse, validate
from strawberry.extensions import SchemaExtension
from strawberry.scalars import JSON
from strawberry.types import Info
from strawberry.types.nodes import SelectedField

from gateway.auth import Forbidden, Principal, Unauthorized
from gateway.errors import RateLimited, retry_after_seconds
from graph.errors import GraphError
from recsys.admission import (
    MAX_CREATION_TIMESTAMP,
    MAX_ECHO_CHARS,
    MIN_CREATION_TIMESTAMP,
    DeletedPolls,
    UnknownPolls,
    check_client_id,
    check_id,
    check_no_control,
    check_plain,
    check_user_id,
    echo,
)
from recsys.errors import HunchError, InvalidEvent, NotPollAuthor
from recsys.events import Interaction
from recsys.feed import check_page_size
from recsys.filters import FilterAlreadyExists, InvalidFilterExpression, UnknownFilter
from recsys.filters.compiler import InvalidFilterValues
from recsys.promotions import (
    InvalidPromotion,
    PromotionAlreadyExists,
    UnknownPromotion,
)
from recsys.promotions import (
    Promotion as PromotionRecord,
)
from recsys.schemas import DELETED_POLL_CATEGORY
from recsys.store_db import StoreUnavailable

MAX_IMPRESSIONS_PER_CALL = 100  # a screenful is ~5; a long scroll batched is < 100


# ---------------------------------------------------------------------- types


@strawberry.type(description="Someone who writes polls.")
class Author:
    id: strawberry.ID

    @strawberry.field(description="The author's newest polls ('more from this author'); "
                      "`first` is at most HUNCH_MAX_PAGE_SIZE, more is PAGE_SIZE_EXCEEDED.")
    async def polls(self, info: Info, first: int = 10) -> list["Poll"]:
        # Not rate-limited itself: it is reached through `poll`, `me` or `feed` (each
        # limited once per request) or an `upsertPoll`'s answer (the mutation limit),
        # and the node budget bounds its size. Limited here, an exhausted reader got a
        # feed page with 100 RATE_LIMITED errors.
        services = _services(info)
        bound = services.settings.max_page_size
        check_page_size(first, 0, bound)

        def read() -> list[Poll]:  # the catalog lock and the store: off the event loop
            ids = services.polls_by_author(str(self.id), first)  # newest first
            records = services.reads.get_items(ids)
            return [Poll.from_record(records[i]) for i in ids if i in records]

        return await asyncio.to_thread(read)


def _int32_or_none(value: Any) -> int | None:
    """A stored time as GraphQL's Int can carry it: a value older releases imported out
    of its range (milliseconds, the year 2100) is null, not a field error that fails
    the whole page for clients that treat any error as failure."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value) if MIN_CREATION_TIMESTAMP <= value <= MAX_CREATION_TIMESTAMP else None


@strawberry.type
class Poll:
    id: strawberry.ID
    categories: list[str]
    author_id: str | None
    created_at: int | None
    question: str | None
    options: str | None
    description: str | None

    @strawberry.field
    def author(self) -> Author | None:
        return Author(id=strawberry.ID(self.author_id)) if self.author_id else None

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Poll":
        category = record.get("CATEGORY") or ""
        return cls(
            id=strawberry.ID(record["ITEM_ID"]),
            categories=[c for c in str(category).split("|") if c],
            author_id=record.get("AUTHOR_ID"),
            created_at=_int32_or_none(record.get("CREATION_TIMESTAMP")),
            question=record.get("QUESTION"),
            options=record.get("OPTIONS"),
            description=record.get("DESCRIPTION"),
        )


@strawberry.type
class FeedEdge:
    cursor: str = strawberry.field(
        description="This poll's own cursor: `after` it, the feed resumes right after it.")
    node: Poll
    source: str = strawberry.field(description="The recipe that placed this poll.")
    score: float
    rank: int = strawberry.field(description="1-based rank within its source's list.")
    promotion_name: str | None
    recommendation_id: str = strawberry.field(description=(
        "The recommendation that placed this poll: name it in the events about this poll "
        "(`recordInteraction`, `recordImpressions`). A page can hold polls of two, and "
        "clients that merge pages (Apollo, Relay, urql) keep one page's connection fields."))


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None
    has_previous_page: bool = False  # forward paging only: true past the first page
    start_cursor: str | None = None


@strawberry.type
class FeedConnection:
    edges: list[FeedEdge]
    page_info: PageInfo
    recommendation_id: str = strawberry.field(
        description="The recommendation of the page's first poll.",
        deprecation_reason="a page can hold polls of two recommendations, and a client "
                           "that merges pages keeps one page's: use "
                           "`edges { recommendationId }`")


@strawberry.type
class Me:
    id: strawberry.ID
    cluster: str | None
    community: str | None
    locale: str | None


@strawberry.type
class Promotion:
    name: str
    percent_promoted_items: int
    filter_expression: str
    filter_name: str | None
    filter_values: JSON
    start_at: float | None
    end_at: float | None
    priority: int

    @classmethod
    def from_record(cls, p: PromotionRecord) -> "Promotion":
        return cls(name=p.name, percent_promoted_items=p.percent_promoted_items,
                   filter_expression=p.filter_expression, filter_name=p.filter_name,
                   filter_values=p.filter_values, start_at=p.start_at, end_at=p.end_at,
                   priority=p.priority)


@strawberry.type
class Filter:
    name: str
    expression: str
    parameters: list[str]
    created_at: float


@strawberry.type
class Recorded:
    stored: bool = strawberry.field(
        description=("False when the event was already counted: the caller already sent "
                     "an event with this id, or already has one of a type counted once "
                     "per poll (a HUNCH vote, by default) on this poll."))
    event_id: str = strawberry.field(description=(
        "The id of the stored event that counts: this request's, or when `stored` is "
        "false the earlier one's (the first vote's id for a second vote)."))


@strawberry.type
class Deleted:
    name: str


@strawberry.type(description="A deleted poll's tombstone: its text is gone, its id is "
                 "never used again, and it is no longer served.")
class DeletedPoll:
    id: strawberry.ID
    author_id: str | None = strawberry.field(
        description="Its author; null for a poll imported events named without a record.")
    deleted_at: int = strawberry.field(
        description="When it was deleted (epoch seconds): the first deletion's, when "
                    "deletePoll is sent again for a poll already deleted.")


@strawberry.type
class FollowChanged:
    follower: str
    followee: str
    following: bool


# Expected failures, as data.
@strawberry.type
class UnknownPollError:
    message: str
    poll_id: str


@strawberry.type
class InvalidInputError:
    message: str


@strawberry.type(description="The poll was deleted (by its author or by moderation): "
                 "it takes no events and its id is not written again.")
class DeletedPollError:
    message: str
    poll_id: str


@strawberry.type
class GraphUnavailableError:
    message: str


@strawberry.type
class InvalidFilterExpressionError:
    message: str


@strawberry.type
class NotFoundError:
    message: str


@strawberry.type(description="The object is still used by another (a filter by a promotion).")
class InUseError:
    message: str


@strawberry.type
class AlreadyExistsError:
    message: str


RecordInteractionResult = Annotated[
    Recorded | UnknownPollError | DeletedPollError | InvalidInputError,
    strawberry.union("RecordInteractionResult")]
RecordImpressionsResult = Annotated[
    Recorded | UnknownPollError | DeletedPollError | InvalidInputError,
    strawberry.union("RecordImpressionsResult")]
FollowResult = Annotated[
    FollowChanged | GraphUnavailableError | InvalidInputError, strawberry.union("FollowResult")]
UpsertPollResult = Annotated[Poll | DeletedPollError | InvalidInputError,
                             strawberry.union("UpsertPollResult")]
DeletePollResult = Annotated[DeletedPoll | NotFoundError | InvalidInputError,
                             strawberry.union("DeletePollResult")]
PromotionResult = Annotated[
    Promotion | InvalidInputError | NotFoundError | AlreadyExistsError,
    strawberry.union("PromotionResult")]
DeleteResult = Annotated[Deleted | NotFoundError, strawberry.union("DeleteResult")]
DeleteFilterResult = Annotated[Deleted | NotFoundError | InUseError,
                               strawberry.union("DeleteFilterResult")]
FilterResult = Annotated[
    Filter | InvalidFilterExpressionError | AlreadyExistsError,
    strawberry.union("FilterResult")]


@strawberry.input
class InteractionInput:
    poll_id: strawberry.ID
    event_type: str = "HUNCH"
    event_value: float | None = None
    recommendation_id: str | None = None
    impression: list[strawberry.ID] | None = strawberry.field(
        default=None, description="The polls visible when it happened, at most 25 "
        "(what Amazon Personalize takes with an event).")
    event_id: str | None = strawberry.field(
        default=None, description="Client-chosen id, unique per user: the same user's retry "
        "with the same id is ignored.")
    at: float | None = strawberry.field(default=None, description="Epoch seconds; now if absent.")


@strawberry.input
class PollInput:
    id: strawberry.ID
    categories: list[str]
    author_id: str | None = strawberry.field(
        default=None, description="The caller when left out; others need an admin token.")
    created_at: int | None = None
    question: str | None = None
    options: str | None = None
    description: str | None = None
    option_descriptions: str | None = None
    comments: str | None = None


@strawberry.input
class PromotionInput:
    percent_promoted_items: int
    filter_expression: str = ""
    filter_name: str | None = None
    filter_values: JSON | None = None
    start_at: float | None = None
    end_at: float | None = None
    priority: int = 0


# ---------------------------------------------------------------------- helpers


def _principal(info: Info) -> Principal:
    return info.context["principal"]()


def _admin(info: Info) -> Principal:
    principal = _principal(info)
    if not principal.is_admin:
        raise Forbidden("this field is for internal tools: it needs a token with role admin")
    return principal


async def _check_rate(info: Info, principal: Principal, kind: str = "mutations") -> None:
    limiter = info.context["feed_rate_limiter" if kind == "feed" else "rate_limiter"]
    if limiter is not None and not await limiter.allow(principal.user_id):
        what = "feed pages" if kind == "feed" else kind
        raise _rate_limited(info, limiter, principal, f"too many {what}")


async def _check_read_rate(info: Info, principal: Principal) -> None:
    """The reads (``poll``, ``me``, ``Author.polls``) count once per request, whichever
    and however many of them it makes: ``Author.polls`` resolves once per poll of a feed
    page, and what one request may return is bounded by ``max_query_nodes``. The
    request's first read asks the limiter; the others wait for the same answer."""
    limiter = info.context.get("read_rate_limiter")
    if limiter is None:
        return
    allowed = info.context.get("read_rate_allowed")
    if allowed is None:
        allowed = info.context["read_rate_allowed"] = asyncio.ensure_future(
            limiter.allow(principal.user_id))
    if not await allowed:
        raise _rate_limited(info, limiter, principal, "too many reads (poll, me, Author.polls)")


async def _charge_follow_change(info: Info, principal: Principal) -> Any:
    """One of the caller's follow changes a day (HUNCH_FOLLOW_CHANGES_PER_DAY; internal
    tools are not counted): each is a journal row and a graph node, and within the
    mutation limit one account could add ~860k a day (helper-63). Returns the quota to
    refund when the change is not made, or None."""
    quota = None if principal.is_admin else info.context.get("follow_quota")
    if quota is not None and not await quota.allow(principal.user_id):
        raise _rate_limited(info, quota, principal,
                            "too many follows and unfollows today (HUNCH_FOLLOW_CHANGES_PER_DAY)")
    return quota


def _rate_limited(info: Info, limiter: Any, principal: Principal, what: str) -> RateLimited:
    """The refusal, with when to come back: in the error (``extensions.retryAfter``) and
    as HTTP's ``Retry-After`` header (the longest wait when several limits refused)."""
    wait = limiter.retry_after(principal.user_id)
    seconds = retry_after_seconds(wait)
    response = info.context.get("response")
    if response is not None:
        previous = response.headers.get("retry-after")
        if previous is None or int(previous) < seconds:
            response.headers["Retry-After"] = str(seconds)
    return RateLimited(f"{what}; slow down and retry in {seconds} s", retry_after=wait)


def _writes_store(resolver: Callable[..., Any]) -> Callable[..., Any]:
    """A synchronous resolver that writes the stores, run on the store writes' threads
    (Services.write): on the event loop a commit's fsync or a store lock held it up for
    every request, and in the default pool, while it waited for the write lock, it held
    a thread the reads need."""

    @functools.wraps(resolver)
    async def run(*args: Any, **kwargs: Any) -> Any:
        info = kwargs.get("info") or next(a for a in args if isinstance(a, Info))
        return await _services(info).write(resolver, *args, **kwargs)

    return run


def _invalid_ids(*named: tuple[str, object],
                 check: Callable[[str, object], None] = check_client_id,
                 ) -> "InvalidInputError | None":
    """The first of these client-sent ids (what, value; None is left out) that ``check``
    refuses, as a union error, before any store or the graph. A poll created follows
    :func:`check_client_id` (no '|': it would split IMPRESSION lists); user, event and
    recommendation ids :func:`check_user_id` ('|' allowed: "google-oauth2|1093:42").
    Ids of stored polls are left to the store, which checks them with the event and
    asks the catalog (an imported "poll 7 " must still take votes)."""
    try:
        for what, value in named:
            if value is not None:
                check(what, str(value))
    except InvalidEvent as exc:
        return InvalidInputError(message=str(exc))
    return None


def _poll_record(input: PollInput, max_field_chars: int | None = None) -> dict[str, Any]:
    """``input`` as the poll's record to store (without CREATION_TIMESTAMP), or
    :class:`InvalidEvent` saying what to fix. ``max_field_chars``: an author's limit on
    each text field, once cleaned (None: the import's, for internal tools)."""
    from recsys.datasets import clean_text, export_problems

    if not input.categories:
        raise InvalidEvent("categories needs at least one category")
    for i, category in enumerate(input.categories):
        if not category:  # "" was stored as an empty CATEGORY, which the import refuses
            raise InvalidEvent(f"categories[{i}] is empty; send a category name")
        check_plain(f"categories[{i}]", category)  # "A|B" was stored as two categories
        if category == DELETED_POLL_CATEGORY:  # what Amazon's copy of a deleted poll holds
            raise InvalidEvent(f"categories[{i}] {category!r} is reserved for deleted polls; "
                               "choose another name")
    # A category sent twice is one (["a", "a"] was stored as "a|a").
    record: dict[str, Any] = {"ITEM_ID": str(input.id),
                              "CATEGORY": "|".join(dict.fromkeys(input.categories))}
    if input.author_id is not None:  # left out: the caller, or the stored author
        record["AUTHOR_ID"] = input.author_id
    for name, column, value in (
            ("question", "QUESTION", input.question), ("options", "OPTIONS", input.options),
            ("description", "DESCRIPTION", input.description),
            ("optionDescriptions", "OPTION_DESCRIPTIONS", input.option_descriptions),
            ("comments", "COMMENTS", input.comments)):
        if value is not None:
            # Tabs and newlines pass: clean_text folds them into spaces, as Personalize does.
            check_no_control(name, value, allow_whitespace=True)
            record[column] = clean_text(value)
            if max_field_chars is not None and len(record[column]) > max_field_chars:
                raise InvalidEvent(
                    f"{name} holds {len(record[column]):,} characters; a poll's text fields "
                    f"hold at most {max_field_chars:,} each (HUNCH_POLL_FIELD_CHARS)")
    # What upsertPoll stores must pass `hunch data import` once exported (CATEGORY at
    # most 1,000 characters, ...): the import's own checks, not a copy of its numbers.
    if problems := export_problems(record):
        raise InvalidEvent("; ".join(problems) + " (CATEGORY is the categories joined "
                           "with '|': send fewer or shorter ones)")
    return record


def _services(info: Info):
    return info.context["services"]


def _filter_from(record) -> Filter:
    return Filter(name=record.name, expression=record.expression,
                  parameters=[p.name for p in record.compiled.parameters],
                  created_at=record.created_at)


# ---------------------------------------------------------------------- query


@strawberry.type
class Query:
    @strawberry.field(description="The user's feed, a page of `first` polls after `after`.")
    async def feed(self, info: Info, first: int = 20, after: str | None = None,
                   user_id: strawberry.ID | None = None, filter: str | None = None,
                   filter_values: JSON | None = None) -> FeedConnection:
        principal = _principal(info)
        await _check_rate(info, principal, "feed")
        if user_id is not None:
            # Checked like every user id a client sends: a 300-character id served a feed,
            # then failed the background write of its recommendations with the others'.
            check_user_id("userId", str(user_id))
        target = str(user_id) if user_id is not None else principal.user_id
        if target != principal.user_id and not principal.is_admin:
            raise Forbidden("a user can read only their own feed")
        services = _services(info)
        values = _string_dict(filter_values, "filterValues") if filter_values else None
        with_records = _selects_poll_metadata(info)

        def compute() -> tuple[Any, dict[str, dict[str, Any]]]:
            # The page and its polls' records in one trip off the event loop: reading
            # the records there blocked every other request on the store's lock.
            result = services.feed(target, first, after, filter, values)
            records = services.feed_records(result) if with_records else {}
            return result, records

        executor = info.context.get("feed_executor")
        result, records = await asyncio.get_running_loop().run_in_executor(executor, compute)
        info.context["degraded"].extend(result.degraded)
        page = result.page
        # Each edge's own cursor, signed only when the query reads one.
        cursors = (page.edge_cursors() if _selects_edge_cursors(info)
                   else [""] * len(page.items))
        edges = [
            FeedEdge(
                cursor=cursor,
                node=Poll.from_record(records.get(i.item_id) or {"ITEM_ID": i.item_id}),
                source=i.source, score=i.score, rank=i.rank, promotion_name=i.promotion_name,
                recommendation_id=i.recommendation_id,
            )
            for i, cursor in zip(page.items, cursors)
        ]
        return FeedConnection(edges=edges,
                              page_info=PageInfo(has_next_page=page.has_next_page,
                                                 end_cursor=page.end_cursor,
                                                 has_previous_page=page.position > 0,
                                                 start_cursor=cursors[0] if cursors else None),
                              recommendation_id=page.recommendation_id)

    @strawberry.field
    async def poll(self, info: Info, id: strawberry.ID) -> Poll | None:
        await _check_read_rate(info, _principal(info))
        # Off the event loop (disk I/O), on the connection that never writes: on the
        # writes' one it waited behind any write waiting for the file (Services.reads).
        record = await asyncio.to_thread(_services(info).reads.get_item, str(id))
        return Poll.from_record(record) if record else None

    @strawberry.field
    async def me(self, info: Info) -> Me:
        principal = _principal(info)
        await _check_read_rate(info, principal)
        record = await asyncio.to_thread(_services(info).reads.get_user,
                                         principal.user_id) or {}
        return Me(id=strawberry.ID(principal.user_id), cluster=record.get("CLUSTER"),
                  community=record.get("COMMUNITY"), locale=record.get("LOCALE"))

    @strawberry.field(description="Internal tools: every stored promotion.")
    async def promotions(self, info: Info) -> list[Promotion]:
        _admin(info)
        stored = await asyncio.to_thread(_services(info).promotions.list)
        return [Promotion.from_record(p) for p in stored]

    @strawberry.field(description="Internal tools: every stored filter.")
    async def filters(self, info: Info) -> list[Filter]:
        _admin(info)
        return [_filter_from(f) for f in await asyncio.to_thread(_services(info).filters.list)]


def _selects_poll_metadata(info: Info) -> bool:
    """Whether the feed query asks for any Poll field beyond its id.

    Clients that render from their own poll cache ask for ``node { id }`` only; for
    them the page needs no read of the polls' records at all.
    """
    nodes = _children(_children(info.selected_fields, "edges"), "node")
    return any(f.name not in _ID_ONLY for node in nodes for f in _flatten(node.selections))


_ID_ONLY = frozenset({"id", "__typename"})


def _selects_edge_cursors(info: Info) -> bool:
    """Whether the feed query reads ``edges { cursor }`` or ``pageInfo { startCursor }``."""
    return bool(_children(_children(info.selected_fields, "edges"), "cursor")
                or _children(_children(info.selected_fields, "pageInfo"), "startCursor"))


def _flatten(selections: list[Any]) -> list[SelectedField]:
    """Fields of a selection set, with fragments (spread or inline) opened."""
    out: list[SelectedField] = []
    for s in selections:
        if isinstance(s, SelectedField):
            out.append(s)
        else:
            out.extend(_flatten(s.selections))
    return out


def _children(parents: list[SelectedField], name: str) -> list[SelectedField]:
    return [f for parent in parents for f in _flatten(parent.selections) if f.name == name]


def _unknown_poll(error: UnknownPolls) -> UnknownPollError:
    # The id is echoed cut short (ids are at most MAX_ID_LENGTH once admitted).
    return UnknownPollError(message=str(error), poll_id=error.poll_ids[0][:MAX_ECHO_CHARS])


def _deleted_poll(error: DeletedPolls) -> DeletedPollError:
    return DeletedPollError(message=str(error), poll_id=error.poll_ids[0][:MAX_ECHO_CHARS])


def _string_dict(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidEvent(f"{what} must be an object of string values")
    return value


# ---------------------------------------------------------------------- mutation


@strawberry.type
class Mutation:
    @strawberry.mutation(description=(
        "Polls the user saw (impression-only event); a poll repeated in one call counts once."))
    async def record_impressions(self, info: Info, poll_ids: list[strawberry.ID],
                                 recommendation_id: str | None = None,
                                 at: float | None = None) -> RecordImpressionsResult:
        principal = _principal(info)
        await _check_rate(info, principal)
        if not poll_ids or len(poll_ids) > MAX_IMPRESSIONS_PER_CALL:
            return InvalidInputError(
                message=f"pollIds needs 1 to {MAX_IMPRESSIONS_PER_CALL} ids")
        # The poll ids are the store's to judge (check_id, then the catalog).
        if (problem := _invalid_ids(("recommendationId", recommendation_id),
                                    check=check_user_id)) is not None:
            return problem
        services = _services(info)
        try:
            # A durable write (commit) waits on the disk and for the write lock: off the
            # event loop, with the other writes (Services.write).
            event_id = await services.write(
                services.record_impressions, principal.user_id,
                [str(p) for p in poll_ids], recommendation_id, at)
        except UnknownPolls as exc:
            return _unknown_poll(exc)
        except DeletedPolls as exc:
            return _deleted_poll(exc)
        except InvalidEvent as exc:
            return InvalidInputError(message=str(exc))
        return Recorded(stored=True, event_id=event_id)

    @strawberry.mutation(description="The user voted, commented, ... on a poll.")
    async def record_interaction(self, info: Info, input: InteractionInput,
                                 ) -> RecordInteractionResult:
        principal = _principal(info)
        await _check_rate(info, principal)
        services = _services(info)
        poll_id = str(input.poll_id)
        event_id = input.event_id or None  # "" is no id: one is generated, as before
        # The poll ids are the store's to judge (check_id, then the catalog).
        if (problem := _invalid_ids(
                ("eventId", event_id), ("recommendationId", input.recommendation_id),
                check=check_user_id)) is not None:
            return problem

        def record() -> RecordInteractionResult:
            # The poll lookup and the durable write, off the event loop (see above).
            if not input.event_type.strip():
                return InvalidInputError(message="eventType must not be empty")
            try:
                event = Interaction(
                    principal.user_id, poll_id, input.event_type.strip().upper(),
                    services.event_rules.event_time(input.at), input.event_value,
                    tuple(str(i) for i in (input.impression or ())), input.recommendation_id,
                    event_id=event_id or uuid.uuid4().hex,
                )
                stored = services.record_interaction(event)  # checks the event, then stores
                # A repeat answers with the id of the event that counts (a second vote's
                # freshly generated id was never stored anywhere).
                counted = event.event_id if stored else (
                    services.events.counted_event_id(event) or event.event_id)
            except UnknownPolls as exc:
                return _unknown_poll(exc)
            except DeletedPolls as exc:
                return _deleted_poll(exc)
            except InvalidEvent as exc:
                return InvalidInputError(message=str(exc))
            return Recorded(stored=stored, event_id=counted)

        return await services.write(record)

    @strawberry.mutation
    async def follow(self, info: Info, user_id: strawberry.ID) -> FollowResult:
        principal = _principal(info)
        await _check_rate(info, principal)
        if (problem := _invalid_ids(("userId", user_id), check=check_user_id)) is not None:
            return problem
        if str(user_id) == principal.user_id:
            return InvalidInputError(message="a user cannot follow themselves")
        quota = await _charge_follow_change(info, principal)
        try:
            await _services(info).follow(principal.user_id, str(user_id))
        except GraphError as exc:
            if quota is not None:
                await quota.refund(principal.user_id)
            return GraphUnavailableError(message=str(exc))
        return FollowChanged(follower=principal.user_id, followee=str(user_id), following=True)

    @strawberry.mutation
    async def unfollow(self, info: Info, user_id: strawberry.ID) -> FollowResult:
        principal = _principal(info)
        await _check_rate(info, principal)
        if (problem := _invalid_ids(("userId", user_id), check=check_user_id)) is not None:
            return problem
        quota = await _charge_follow_change(info, principal)
        try:
            await _services(info).unfollow(principal.user_id, str(user_id))
        except GraphError as exc:
            if quota is not None:
                await quota.refund(principal.user_id)
            return GraphUnavailableError(message=str(exc))
        return FollowChanged(follower=principal.user_id, followee=str(user_id), following=False)

    @strawberry.mutation(description="Catalog ingest: a new or changed poll, text included. "
                         "Only a poll's author (or an internal tool) may change it.")
    async def upsert_poll(self, info: Info, input: PollInput) -> UpsertPollResult:
        principal = _principal(info)
        await _check_rate(info, principal)
        if (problem := _invalid_ids(("id", input.id)) or _invalid_ids(
                ("authorId", input.author_id), check=check_user_id)) is not None:
            return problem
        services = _services(info)

        def record() -> dict[str, Any]:
            # Authors' polls are sized so that any page the node budget allows fits the
            # response text budget (settings.py); internal tools ingest as the import does.
            fields = _poll_record(input, None if principal.is_admin
                                  else services.settings.poll_field_chars)
            if input.created_at is not None:  # left out: now for a new poll, kept on an edit
                fields["CREATION_TIMESTAMP"] = services.event_rules.poll_created_at(
                    input.created_at, internal_tool=principal.is_admin)
            return fields

        try:
            # Off the event loop, like recordInteraction: cleaning up to 60,000 characters
            # of text; then an fsync and every model's lock (the poll joins the live models).
            fields = await asyncio.to_thread(record)
        except InvalidEvent as exc:
            return InvalidInputError(message=str(exc))
        # Authors have a daily quota of writes (internal tools, catalog ingest, do not):
        # charged for a valid write, given back when the store refuses it (not the
        # author's poll), so a client's retries of a refused write cost nothing.
        quota = None if principal.is_admin else info.context.get("poll_write_quota")
        if quota is not None and not await quota.allow(principal.user_id):
            raise _rate_limited(info, quota, principal,
                                "too many poll writes today (HUNCH_POLL_WRITES_PER_DAY)")
        try:
            stored = await services.write(services.upsert_poll, fields, principal.user_id,
                                          principal.is_admin)
        except (InvalidEvent, NotPollAuthor, StoreUnavailable) as exc:
            # nothing was stored (a store that was down or busy included: the client
            # retries, and each retry was charged again)
            if quota is not None:
                await quota.refund(principal.user_id)
            if isinstance(exc, (NotPollAuthor, StoreUnavailable)):
                raise
            if isinstance(exc, DeletedPolls):
                return _deleted_poll(exc)
            return InvalidInputError(message=str(exc))
        return Poll.from_record(stored)

    @strawberry.mutation(description=(
        "Delete a poll: its author's or, for internal tools, any. Its text is erased, "
        "it is served no more (feeds opened before included) and takes no events; its id "
        "is never used again. Sent again, it answers the same DeletedPoll."))
    async def delete_poll(self, info: Info, poll_id: strawberry.ID) -> DeletePollResult:
        principal = _principal(info)
        # The mutation limit only: a deletion adds nothing to anyone's feed, so it does
        # not spend HUNCH_POLL_WRITES_PER_DAY (an author out of writes may still delete).
        await _check_rate(info, principal)
        services = _services(info)
        try:
            check_id("pollId", str(poll_id))  # a stored poll's id: looked up as it is
            gone = await services.write(services.delete_poll, str(poll_id),
                                        principal.user_id, principal.is_admin)
        except UnknownPolls:
            return NotFoundError(message=f"no poll {echo(str(poll_id))}; nothing was deleted")
        except InvalidEvent as exc:
            return InvalidInputError(message=str(exc))
        return DeletedPoll(id=strawberry.ID(gone.item_id), author_id=gone.author_id,
                           deleted_at=gone.deleted_at)

    @strawberry.mutation
    @_writes_store
    def create_promotion(self, info: Info, name: str, input: PromotionInput) -> PromotionResult:
        _admin(info)
        services = _services(info)
        try:
            promotion = PromotionRecord(
                name=name, percent_promoted_items=input.percent_promoted_items,
                filter_expression=input.filter_expression, filter_name=input.filter_name,
                filter_values=_string_dict(input.filter_values or {}, "filterValues"),
                start_at=input.start_at, end_at=input.end_at, priority=input.priority)
            services.feed_filters.check_promotion(promotion)
            services.promotions.create(promotion)
            services.promotions_changed()
        except (InvalidPromotion, InvalidFilterExpression, InvalidFilterValues,
                InvalidEvent) as exc:
            return InvalidInputError(message=str(exc))
        except UnknownFilter as exc:
            return NotFoundError(message=str(exc))
        except PromotionAlreadyExists as exc:
            return AlreadyExistsError(message=str(exc))
        return Promotion.from_record(promotion)

    @strawberry.mutation
    @_writes_store
    def update_promotion(self, info: Info, name: str, input: PromotionInput) -> PromotionResult:
        _admin(info)
        services = _services(info)
        try:
            updated = services.promotions.update(
                name, check=services.feed_filters.check_promotion,
                percent_promoted_items=input.percent_promoted_items,
                filter_expression=input.filter_expression, filter_name=input.filter_name,
                filter_values=_string_dict(input.filter_values or {}, "filterValues"),
                start_at=input.start_at, end_at=input.end_at, priority=input.priority)
            services.promotions_changed()
        except (InvalidPromotion, InvalidFilterExpression, InvalidFilterValues,
                InvalidEvent) as exc:
            return InvalidInputError(message=str(exc))
        except (UnknownPromotion, UnknownFilter) as exc:
            return NotFoundError(message=str(exc))
        return Promotion.from_record(updated)

    @strawberry.mutation
    @_writes_store
    def delete_promotion(self, info: Info, name: str) -> DeleteResult:
        _admin(info)
        try:
            _services(info).promotions.delete(name)
            _services(info).promotions_changed()
        except UnknownPromotion as exc:
            return NotFoundError(message=str(exc))
        return Deleted(name=name)

    @strawberry.mutation(description="Filters are immutable: delete and create to change one.")
    @_writes_store
    def create_filter(self, info: Info, name: str, expression: str) -> FilterResult:
        _admin(info)
        try:
            record = _services(info).filters.create(name, expression)
        except InvalidFilterExpression as exc:
            return InvalidFilterExpressionError(message=str(exc))
        except FilterAlreadyExists as exc:
            return AlreadyExistsError(message=str(exc))
        except HunchError as exc:
            return InvalidFilterExpressionError(message=str(exc))
        return _filter_from(record)

    @strawberry.mutation
    @_writes_store
    def delete_filter(self, info: Info, name: str) -> DeleteFilterResult:
        _admin(info)
        services = _services(info)
        # A promotion naming a deleted filter failed every user's feed while it was
        # active (its filter is checked when the promotion is written: 57d73c5).
        users = sorted(p.name for p in services.promotions.list() if p.filter_name == name)
        if users:
            return InUseError(message=f"filter {name!r:.80} is used by promotion(s) "
                                      f"{', '.join(users)[:200]}: delete those promotions "
                                      "or give them another filter first")
        try:
            services.filters.delete(name)
        except UnknownFilter as exc:
            return NotFoundError(message=str(exc))
        return Deleted(name=name)


# Distinct documents kept parsed and validated: mobile clients send a handful, internal
# tools a few more; beyond that the least recently used is dropped (an LRU, so a flood
# of unique queries cannot grow memory). 64 of at most ~1.5 MB of syntax tree each (the
# token limit bounds a document): ~100 MB at worst.
PREPARED_DOCUMENTS_CACHED = 64
# Documents longer than this are prepared every time, not kept: padding (a 55 KB
# comment) let six requests push everyone's documents out of the cache (helper-66).
PREPARED_DOCUMENT_MAX_CACHED_CHARS = 16_384
# ... and at most this many characters of query text in all: a 2,000-token document kept
# ~1.5 MB of syntax tree and errors, so 256 of them took a worker from 329 to 729 MB (and
# at 1,000,000 characters, documents of short names still 146 MB). The app's documents
# are a few KB each.
PREPARED_DOCUMENTS_MAX_CHARS = 1_000_000


class PreparedDocuments:
    """Prepares each distinct document once: parsed (at most ``max_tokens`` tokens) and
    validated (the schema's rules plus ``rules``), keyed by its text.

    Parsing was ~10% of a feed request and validation more; strawberry's ParserCache
    and ValidationCache key the second step by the parsed document, whose structural
    hash walks the whole tree on every request. Keying both by the query text (with
    the parse options and validation rules, which a schema fixes) costs one string
    hash. A document that does not parse is left to strawberry's own parse step, so
    its syntax error reaches :class:`ErrorCodes` with GRAPHQL_PARSE_FAILED; it is not
    cached. Validation errors are cached like successes: the same text fails the same
    way (depth, aliases, unknown fields).

    A document seen for the first time is parsed and validated on a worker thread: up
    to 2,000 tokens took ~300 ms of pure Python, which on the event loop held up every
    other request of the worker (a `me` query waited 1.8 s behind two such clients).
    """

    def __init__(self, max_tokens: int, rules: Iterable[type[ASTValidationRule]] = (),
                 maxsize: int = PREPARED_DOCUMENTS_CACHED,
                 max_chars: int = PREPARED_DOCUMENTS_MAX_CHARS):
        self.max_tokens = max_tokens
        self.rules = tuple(rules)
        self.maxsize = maxsize
        self.max_chars = max_chars
        self._documents: OrderedDict[tuple, DocumentNode] = OrderedDict()
        self._errors: OrderedDict[tuple, list[GraphQLError]] = OrderedDict()
        self._chars = {id(self._documents): 0, id(self._errors): 0}
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    def extension(self) -> SchemaExtension:
        """A per-request extension that uses this cache (pass the bound method)."""
        return _PreparedDocumentsExtension(self)

    async def prepare(self, work: Callable[..., Any], *args: Any) -> Any:
        """``work(*args)`` on this cache's own thread: first-seen documents queue behind
        each other there, not in the default executor that mutations and reads use
        (a flood of them held a `me` query up 0.2-0.4 s)."""
        if self._executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(1, thread_name_prefix="prepare")
        return await asyncio.get_running_loop().run_in_executor(self._executor, work, *args)

    def cached_document(self, query: str, options: dict[str, Any]) -> DocumentNode | None:
        return self._cached(self._documents, (query, tuple(sorted(options.items()))))

    def document(self, query: str, options: dict[str, Any]) -> DocumentNode:
        found = self.cached_document(query, options)
        if found is not None:
            return found
        document = parse(query, **options)  # raises GraphQLError: not cached
        self._store(self._documents, (query, tuple(sorted(options.items()))), document)
        return document

    def cached_errors(self, query: str, rules: tuple) -> list[GraphQLError] | None:
        return self._cached(self._errors, (query, rules))

    def errors(self, query: str, rules: tuple, run: Callable[[], list[GraphQLError]],
               ) -> list[GraphQLError]:
        """The validation errors of ``query`` under ``rules`` (``run`` validates it)."""
        found = self.cached_errors(query, rules)
        if found is not None:
            return found
        errors = run()
        self._store(self._errors, (query, rules), errors)
        return errors

    def _cached(self, entries: OrderedDict, key: tuple) -> Any:
        with self._lock:
            found = entries.get(key)
            if found is not None:
                entries.move_to_end(key)
            return found

    def _store(self, entries: OrderedDict, key: tuple, value: Any) -> None:
        if len(key[0]) > PREPARED_DOCUMENT_MAX_CACHED_CHARS:
            return
        with self._lock:
            if key in entries:
                return
            entries[key] = value
            chars = self._chars[id(entries)] + len(key[0])
            while entries and (len(entries) > self.maxsize or chars > self.max_chars):
                dropped, _ = entries.popitem(last=False)
                chars -= len(dropped[0])
            self._chars[id(entries)] = chars


def _validated(schema: Any, document: DocumentNode, rules: tuple) -> list[GraphQLError]:
    """Validation's errors; a too wide selection set is refused before graphql-core's
    merge check, which is quadratic in a set's width."""
    from gateway.document_limits import too_wide

    wide = too_wide(document)
    return [wide] if wide else validate(schema, document, list(rules))


# What a refused document is replaced by until validation reports why (strawberry would
# parse a failed document again, on the event loop, to find its error).
_REFUSED = parse("{ __typename }")


class _PreparedDocumentsExtension(SchemaExtension):
    def __init__(self, cache: PreparedDocuments):
        self.cache = cache
        self.from_cache = False
        self.refused: GraphQLError | None = None

    def on_operation(self) -> Iterator[None]:
        # What MaxTokensLimiter and AddValidationRules do, in one extension: each
        # extension costs every request a hook lookup per phase.
        context = self.execution_context
        context.parse_options["max_tokens"] = self.cache.max_tokens
        context.validation_rules = context.validation_rules + self.cache.rules
        yield

    async def on_parse(self) -> AsyncIterator[None]:
        context = self.execution_context
        if context.query and context.graphql_document is None:
            document = self.cache.cached_document(context.query, context.parse_options)
            if document is None:  # first seen: off the event loop, if the caller may
                self.refused = await self._over_document_rate()
                if self.refused is None:
                    try:
                        document = await self.cache.prepare(
                            self.cache.document, context.query, dict(context.parse_options))
                    except GraphQLError as error:  # a syntax error: reported as validation's
                        self.refused = error
            context.graphql_document = _REFUSED if self.refused is not None else document
            self.from_cache = True
        yield

    async def _over_document_rate(self) -> GraphQLError | None:
        """Documents this worker has not prepared cost ~100x a cached one (2,000 tokens:
        ~300 ms), and fail validation before any resolver's rate limit: each user may
        bring HUNCH_DOCUMENT_RATE_PER_MINUTE of them (an app sends a handful, once)."""
        context = self.execution_context.context
        limiter = context.get("document_rate_limiter") if isinstance(context, dict) else None
        if limiter is None:
            return None
        try:
            user_id = context["principal"]().user_id
        except Unauthorized as exc:  # checked before parsing; a caller that skipped that
            return GraphQLError(str(exc), original_error=exc)
        if await limiter.allow(user_id):
            return None
        wait = limiter.retry_after(user_id)
        refusal = RateLimited(
            "too many different queries (HUNCH_DOCUMENT_RATE_PER_MINUTE): send the same "
            f"documents with variables; retry in {retry_after_seconds(wait)} s",
            retry_after=wait)
        return GraphQLError(str(refusal), original_error=refusal)

    async def on_validate(self) -> AsyncIterator[None]:
        context = self.execution_context
        if self.refused is not None:
            context.pre_execution_errors = [self.refused]
        elif self.from_cache and context.query:
            document = context.graphql_document
            assert document is not None
            rules = tuple(context.validation_rules)
            errors = self.cache.cached_errors(context.query, rules)
            if errors is None:  # first seen: off the event loop
                errors = await self.cache.prepare(
                    self.cache.errors, context.query, rules,
                    lambda: _validated(context.schema._schema, document, rules))
            context.pre_execution_errors = errors
            if not errors:
                await _store_persisted(self.execution_context.context, context.query)
        yield


async def _store_persisted(context: Any, query: str) -> None:
    """Keeps a document sent with its persisted-query hash (checked by the HTTP view,
    gateway/persisted_queries.py) once it has parsed and validated: the hash then
    stands for a document that can run."""
    if not isinstance(context, dict):
        return
    digest = context.get("persisted_query_hash")
    store = context.get("persisted_queries")
    if digest is not None and store is not None:
        await store.register(digest, query)


def build_schema(development: bool, max_depth: int, max_tokens: int, max_aliases: int,
                 max_nodes: int = 500, max_page_size: int = 100,
                 max_text_chars: int | None = None):
    from strawberry.extensions import (
        DisableIntrospection,
        MaxAliasesLimiter,
        QueryDepthLimiter,
    )

    from gateway.document_limits import bounded_fragments
    from gateway.errors import ErrorCodes, ProductionErrorCodes, ResponseExtensions
    from gateway.metrics import OperationLatency

    # The limits' rule classes are made once: the validation cache is keyed by them,
    # and a limiter built per request would bring new classes (and miss) every time.
    # The depth and alias walks re-expand fragments at every spread: bounded first.
    walks = [QueryDepthLimiter(max_depth=max_depth), MaxAliasesLimiter(max_aliases)]
    limits = [*walks, *([] if development else [DisableIntrospection()])]
    documents = PreparedDocuments(max_tokens, [
        bounded_fragments(rule) if limit in walks else rule
        for limit in limits for rule in limit.validation_rules])
    # Classes and factories, not shared instances: strawberry builds them per request,
    # and an extension that reads self.execution_context after an await must see its
    # own request's (a shared instance saw whichever request came last).
    error_codes = ErrorCodes if development else ProductionErrorCodes
    extensions: list[Any] = [OperationLatency, documents.extension, error_codes,
                             ResponseExtensions]
    from gateway.execution import ScalarFieldsExecutionContext
    from gateway.query_cost import node_budget

    # The node budget needs the variables' values, which validation rules do not see:
    # it is counted by the executor, before the first resolver (gateway/query_cost.py);
    # the answer's text as the executor builds it.
    executor = node_budget(ScalarFieldsExecutionContext, max_nodes, max_page_size,
                           max_text_chars)
    return _Schema(query=Query, mutation=Mutation, extensions=extensions,
                   execution_context_class=executor)


class _Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError],
                       execution_context: Any = None) -> None:
        from gateway.errors import log_errors

        log_errors(errors)  # instead of strawberry's: every error at ERROR with a traceback


# The schema as the code defines it; schema.graphql at the repository root must match.
schema = strawberry.Schema(query=Query, mutation=Mutation)
