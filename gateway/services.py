"""The composition root: builds the engine's parts from settings and wires them together.

Everything a GraphQL resolver needs lives on :class:`Services`: the event store, the
served recipes, filters and promotions, the feed (mixer + sessions), the follower graph.
recsys and graph never meet except here.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import gc
import logging
import threading
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any


from gateway import metrics
from gateway.settings import Settings
from graph.errors import GraphError, GraphUnavailable, InvalidGraphData
from graph.follow_journal import FollowJournal
from graph.store import Follow, GraphStore, PollAuthorship
from recsys.admission import DeletedPolls, UnknownPolls
from recsys.artifacts import ArtifactNotFound
from recsys.backends import InNetworkSource
from recsys.backends.amazon_copy import heard_before, with_shown_polls
from recsys.backends.forwarder import BackgroundForwarder, EventBatcher, RecordBatcher
from recsys.backends.personalize import deleted_item, refused_as_input, refused_for_rate
from recsys.event_head import EventHead
from recsys.event_stores import open_event_store
from recsys.events import (
    EventStoreBusy,
    Impression,
    Interaction,
    LatestInteractionsCache,
    PollDeletion,
    named_polls,
    without_polls,
)
from recsys.feed import FeedPage, FeedService
from recsys.feed_filters import FeedFilters
from recsys.feed_sessions import CursorSigner, SQLiteFeedSessionStore
from recsys.filters import Catalog, CompiledFilter, compile_filter
from recsys.filters import open_filter_store
from recsys.mixer import IN_NETWORK, Mixer, SlotPlan
from recsys.promotions import Promotion, open_promotion_store
from recsys.recipes.base import ScoredItem
from recsys.recommendation_log import RecommendationLog
from recsys.refresher import Refresher
from recsys.schemas import ITEMS
from recsys.serving import RecipeService
from recsys.event_stores import is_postgres_url
from recsys.store_db import StoreUnavailable

log = logging.getLogger(__name__)

# extensions.degraded of a feed served without the event store (from models in memory).
STORE_DEGRADED = "event-store"
# ... and of one served without the active promotion, whose filter could not apply.
PROMOTION_DEGRADED = "promotion"
# ... and of one whose session is in this host's store while Redis fails.
SESSIONS_DEGRADED = "sessions"
# Interactions filters look at a user's last 100 interactions per event type (Personalize).
RECENT_EVENTS_PER_TYPE = 100
# Threads per worker that write the event store's file (events, polls, promotions,
# filters). Such a write waits for the file's write lock: `hunch data import` holds it
# for minutes, and each write then waits up to the 30 s busy timeout, one after another
# (the store has one connection). In asyncio's default pool (cpu + 4 threads) a few
# votes took every thread, and every read (poll, me, Author.polls), follow and
# persisted-query lookup of the worker waited behind them. Writes are serialised by the
# store anyway; a few threads let one wait elsewhere (an upsert's model locks) without
# holding the others up.
STORE_WRITE_THREADS = 4
# Writes a worker lets wait for the event store at once; past it a write is refused at
# once as STORE_UNAVAILABLE (retryable): during an import each waits up to the 30 s busy
# timeout, one after another, and an unbounded queue held votes (and their connections)
# for minutes only to fail them.
STORE_WRITE_BACKLOG = 64
# Locks that order one follower's follow changes (Services._follow_lock); a few dozen
# keep unrelated followers from waiting on each other.
FOLLOW_LOCK_STRIPES = 64


class ServedRecipeSource:
    """A recipe served by :class:`RecipeService` as a mixer candidate source.

    A recipe with no trained model yet gives no candidates (the mixer backfills from
    the others) and counts as a fallback, so the feed works from the first minute.
    """

    def __init__(self, name: str, recipes: RecipeService):
        self.name = name
        self.recipes = recipes

    def candidates(self, user_id: str, n: int, *, exclude: Collection[str] = (),
                   allow: Callable[[str], bool] | None = None,
                   filter_name: str | None = None,
                   filter_values: dict[str, str] | None = None) -> list[ScoredItem]:
        started = time.perf_counter()
        try:
            return self.recipes.recommend(self.name, user_id, n, exclude=exclude,
                                          allow=allow).items
        except ArtifactNotFound:
            metrics.FALLBACKS.labels(self.name, "no-model").inc()
            return []
        finally:
            metrics.SOURCE_LATENCY.labels(self.name).observe(time.perf_counter() - started)


@dataclass
class FeedResult:
    page: FeedPage
    degraded: list[str] = field(default_factory=list)


class Services:
    """The running engine of one worker process."""

    def __init__(self, settings: Settings, graph: GraphStore | None = None):
        self.settings = settings
        from recsys.blas import limit_blas

        limit_blas(settings.blas_threads)
        settings.home.mkdir(parents=True, exist_ok=True)
        self.event_rules = settings.event_rules()
        self.events = open_event_store(settings.event_store_url, self.event_rules)  # admits live events
        # The feed's reads (recipes following new events, the filters' view of a user)
        # get a connection of their own: on the shared one they waited behind appends'
        # fsyncs and behind the catalog refresh's item count (15 ms at 50k polls, every
        # 2 s), since one connection runs one statement at a time.
        self._feed_events = open_event_store(settings.event_store_url)
        # What clients read (poll, me, Author.polls, a feed page's polls): a connection
        # that never writes. On self.events they queued behind its lock, which a write
        # holds while it waits for the file's write lock: during `hunch data import`
        # (minutes), one vote or one readiness probe held every read of the worker, and
        # its only feed thread, for the 30 s busy timeout (WAL readers never wait).
        # PostgreSQL's store is a pool, safe to share: the feed's, not one pool more.
        self.reads = (self._feed_events if is_postgres_url(settings.event_store_url)
                      else open_event_store(settings.event_store_url))
        # Read once per feed request; the two readers below query only when it moved.
        self.event_head = EventHead(self._feed_events)
        self.latest_interactions = LatestInteractionsCache(
            self._feed_events, per_type=RECENT_EVENTS_PER_TYPE, head=self.event_head)
        self.recipes = RecipeService(settings.artifact_store(), self._feed_events,
                                     check_seconds=settings.artifacts_poll_seconds,
                                     background_swap=True, head=self.event_head,
                                     on_fold_in_failure=lambda recipe, n:
                                     metrics.EVENTS_NOT_FOLDED_IN.labels(recipe).inc(n))
        # HUNCH_STORE_URL: PostgreSQL shared by several hosts, else the event store's file.
        self.filters = open_filter_store(settings.store_url or settings.events_db)
        self.promotions = open_promotion_store(settings.store_url or settings.events_db)
        self.graph = graph if graph is not None else _make_graph(settings)
        # The in-process graph is rebuilt at every start: follows made through the API
        # are kept on disk and replayed (Neo4j keeps its own).
        self.follow_journal = (FollowJournal(settings.home / "follows-journal.sqlite3")
                               if settings.graph_store == "memory" else None)
        if settings.graph_store == "memory" and (settings.session_store == "redis"
                                                 or is_postgres_url(settings.event_store_url)):
            # Shared sessions or store mean several hosts: each would keep its own graph.
            log.warning("HUNCH_GRAPH_STORE=memory with stores shared by several hosts: "
                        "follows made through this host reach no other host and are lost "
                        "with it; set HUNCH_GRAPH_STORE=neo4j (README, Several hosts)")
        # Its own connection: its commits (fsync) must not hold the lock that the feed's
        # reads of the event store take.
        self.recommendation_log = RecommendationLog(
            open_event_store(settings.event_store_url),
            retention_seconds=settings.recommendation_retention_days * 86_400 or None)
        self.graph_degraded = False
        self._store_reached = False  # readiness: the event store answered once since start
        self._catalog_lock = threading.Lock()
        self.catalog = Catalog(schema=ITEMS)
        self._catalog_events = open_event_store(settings.event_store_url)  # see _feed_events
        # Polls and events other workers store reach this one's catalog and models on
        # the refresher's thread, off the request path (started by start()).
        self._follows_seq = 0  # the newest journal change applied to this worker's graph
        self.refresher = Refresher(
            self._catalog_events, self.catalog, self._catalog_lock, self.recipes,
            interval_seconds=settings.refresh_seconds, on_health=metrics.observe_refresh,
            extra_tasks=({"follows": lambda: self.refresh_follows(on_loop_only=True)}
                         if self.follow_journal else None))
        self.refresher.load_catalog()
        self.exclusion: CompiledFilter | None = (
            compile_filter(settings.exclusion_filter) if settings.exclusion_filter else None)
        self.feed_filters = FeedFilters(self.catalog, self._catalog_lock,
                                        self.latest_interactions, self.filters,
                                        self.promotions, self.exclusion)

        plan = SlotPlan.parse(settings.slot_plan)
        if settings.in_network and IN_NETWORK not in plan.block:
            plan = SlotPlan(plan.block + (IN_NETWORK,), plan.backfill)
        sources: dict[str, Any] = {
            name: ServedRecipeSource(name, self.recipes)
            for name in ("user-personalization", "trending-now", "popularity-count")
        }
        self.personalize_events = None
        self.forwarder: BackgroundForwarder | None = None  # set with personalize_events
        self.event_copies: EventBatcher | None = None  # PutEvents, set with the forwarder
        self.item_copies: RecordBatcher | None = None  # PutItems, with an Items dataset
        if settings.backend == "personalize":
            sources.update(self._personalize_sources(sources["popularity-count"]))
        if settings.in_network:
            sources[IN_NETWORK] = InNetworkSource(self._followees_sync,
                                                  self.feed_filters.newest_polls_by)
        self.mixer = Mixer(sources, plan)
        self.session_store = _make_session_store(settings)
        self.feed_service = FeedService(
            self.mixer,
            self.session_store,
            CursorSigner(settings.cursor_secret),
            session_ttl_seconds=settings.session_ttl_seconds,
            active_promotion=self.feed_filters.active_promotion,
            promotion_filter=self.feed_filters.promotion_predicate,
            on_recommendation=self._record_recommendation,
            max_page_size=settings.max_page_size,
            withdrawn=self.feed_filters.deleted_among,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writes = ThreadPoolExecutor(STORE_WRITE_THREADS, thread_name_prefix="store-write")
        self._follow_locks = [asyncio.Lock() for _ in range(FOLLOW_LOCK_STRIPES)]
        self._writes_waiting = 0  # Services.write's calls under way

    async def write(self, work: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``work(*args, **kwargs)`` on the store writes' threads (STORE_WRITE_THREADS),
        as :func:`asyncio.to_thread` runs it on the default pool's: what may wait for the
        event store's write lock goes here, so that it waits with the other writes only."""
        if self._writes_waiting >= STORE_WRITE_BACKLOG:
            raise EventStoreBusy(f"the event store is busy: {self._writes_waiting} writes "
                                 "of this worker are waiting for it; retry in a moment")
        call = functools.partial(contextvars.copy_context().run, work, *args, **kwargs)
        self._writes_waiting += 1  # on the event loop: no lock needed
        try:
            return await asyncio.get_running_loop().run_in_executor(self._writes, call)
        finally:
            self._writes_waiting -= 1

    def _personalize_sources(self, local_popular: ServedRecipeSource) -> dict[str, Any]:
        """Recipes served by Amazon Personalize campaigns (those with an ARN in settings);
        on errors or throttling each falls back to the local popularity list."""
        from recsys.backends import PersonalizeEventSink, PersonalizeRecipeSource, make_clients

        config = self.settings.personalize_config()
        runtime, events = make_clients(config)
        if config.tracking_id:
            self.personalize_events = PersonalizeEventSink(
                config, events, on_impressions_cut=metrics.IMPRESSIONS_NOT_FORWARDED.inc)
            self.forwarder = BackgroundForwarder(
                on_dropped=lambda: metrics.EVENTS_NOT_FORWARDED.labels("queue-full").inc())
            # PutEvents: a user's events queued together go in one call, 10 at most
            # (forwarder.py); throttled calls retried, refused ones sent event by event
            self.event_copies = self.forwarder.events(
                self._put_event_copies, throttled=refused_for_rate,
                refused_as_input=refused_as_input, on_failed=_event_copy_failed)
            if config.items_dataset_arn:
                # PutItems: 10 polls a call, paced, throttled calls retried (forwarder.py)
                self.item_copies = self.forwarder.records(
                    self._put_item_copies, throttled=refused_for_rate,
                    refused_as_input=refused_as_input, on_failed=_item_copy_failed)

        def on_fallback(source: str, reason: str) -> None:
            metrics.FALLBACKS.labels(source, reason).inc()

        return {
            name: PersonalizeRecipeSource(name, config, runtime,
                                          fallback=local_popular.candidates,
                                          on_fallback=on_fallback)
            for name in config.campaign_arns
        }

    def _forward(self, user_id: str, event) -> None:
        """Send an event to Personalize's tracker too, on the forwarder's thread: the
        local store is the record, so the client's answer never waits for Amazon, and a
        failure is logged and counted, never the client's error."""
        if self.personalize_events is None:
            return
        if isinstance(event, Impression) and not self.settings.personalize_forward_impressions:
            # Personalize has no impression-only event: sent, it was an interaction of
            # type IMPRESSION with the first poll shown, which Amazon's recipes count
            # like a vote unless a solution trains on one event type. Every page a
            # client reported then "engaged" its first poll (Trending-Now's count and
            # UP's history), and one account reporting a poll 600 times a minute
            # trended it for everyone. Impressions reach Personalize as its API has
            # them: with interactions (below).
            metrics.EVENTS_NOT_FORWARDED.labels("impression-only").inc()
            return
        if self.event_copies is None:  # no forwarder: inline
            self._submit(user_id, "personalize-events",
                         lambda: self._put_event_copies((user_id, user_id), [event]))
            return
        # the user's id is the session's: one call takes one user's and session's events
        self.event_copies.submit(user_id, (user_id, user_id), event)

    def _put_event_copies(self, group: tuple[str, str], events: list) -> None:
        """PutEvents of one user's (and session's) ``events``, in their order, on the
        forwarder's thread (see recsys/backends/forwarder.py); failures are the
        caller's (``event_copies`` retries, resends or counts them)."""
        user_id, session_id = group
        shown = [with_shown_polls(event, self._shown_polls)
                 if isinstance(event, Interaction) else event for event in events]
        # A recommendation's polls include those deleted since it was served: Amazon is
        # not told a deleted poll was seen (nor anything, when it is the one).
        gone = self.feed_filters.deleted_among(named_polls(shown))
        self.personalize_events.put_events(user_id, session_id,
                                           list(without_polls(shown, gone)))

    def _submit(self, key: str, source: str, send: Callable[[], None]) -> None:
        """Run ``send`` on a forwarder thread, behind the earlier calls of ``key``
        (inline when there is no forwarder). The store has the record: a failure is
        counted as a fallback of ``source`` and logged, never the client's error."""
        def guarded() -> None:
            try:
                send()
            except Exception as exc:  # noqa: BLE001 - the store has the record
                metrics.FALLBACKS.labels(source, type(exc).__name__).inc()
                log.warning("could not send %s to Personalize: %s", source, exc)

        if self.forwarder is None:
            guarded()
        else:
            self.forwarder.submit(key, guarded)

    def _shown_polls(self, recommendation_id: str) -> Sequence[str] | None:
        """The polls a recommendation of this feed showed: Amazon cannot resolve this
        feed's ids, so they go as the explicit list (recsys/backends/amazon_copy.py),
        from the log while it is not yet written."""
        return (self.recommendation_log.pending_items(recommendation_id)
                or self.events.recommendation_items(recommendation_id))

    # ------------------------------------------------------------------ feed

    def feed(self, user_id: str, first: int, after: str | None,
             filter_name: str | None = None, filter_values: dict[str, str] | None = None,
             ) -> FeedResult:
        self.feed_filters.begin_request()
        with self.event_head.request():
            allow = self.feed_filters.allow(user_id, filter_name, filter_values)
            page = self.feed_service.page(user_id, first, after, allow=allow)
        degraded = ["in-network"] if self.settings.in_network and self.graph_degraded else []
        if self.feed_filters.store_down:
            degraded.append(STORE_DEGRADED)
        if self.feed_filters.promotion_skipped:
            degraded.append(PROMOTION_DEGRADED)
        if getattr(self.session_store, "degraded", False):
            degraded.append(SESSIONS_DEGRADED)
        return FeedResult(page, degraded)

    def feed_records(self, result: FeedResult) -> dict[str, dict[str, Any]]:
        """The stored records of a page's polls; while the event store is down, none: the
        page is served with poll ids only and marked degraded."""
        try:
            return self.reads.get_items(i.item_id for i in result.page.items)
        except StoreUnavailable:
            if STORE_DEGRADED not in result.degraded:
                result.degraded.append(STORE_DEGRADED)
            return {}

    def polls_by_author(self, author_id: str, n: int) -> list[str]:
        return self.feed_filters.polls_by_author(author_id, n)

    def promotions_changed(self) -> None:
        """This worker changed a promotion: apply it from the next request."""
        self.feed_filters.promotions_changed()

    def _active_promotion(self) -> Promotion | None:
        return self.feed_filters.active_promotion()

    def _record_recommendation(self, recommendation_id: str, user_id: str,
                               item_ids: list[str]) -> None:
        # What a response showed, so that an event carrying only its recommendation id
        # still counts as an impression (Personalize's implicit impressions).
        self.recommendation_log.record(recommendation_id, user_id, item_ids)

    # ------------------------------------------------------------------ events

    def record_impressions(self, user_id: str, poll_ids: list[str],
                           recommendation_id: str | None, at: float | None) -> str:
        """Store an impression event; :class:`UnknownPolls` when a poll does not exist,
        as for interactions (the event is checked whole before the catalog is asked)."""
        event = Impression(user_id, tuple(poll_ids), self.event_rules.event_time(at),
                           recommendation_id, event_id=uuid.uuid4().hex)
        self.check_event(event)
        if self.events.append(event):
            metrics.EVENTS_INGESTED.labels("impression").inc()
            self._forward(user_id, event)
        return event.event_id

    def check_event(self, event: Interaction | Impression) -> None:
        """Raise :class:`InvalidEvent` (or :class:`UnknownPolls`) unless the store would
        admit ``event`` now and every poll it names exists."""
        self.events.check_live(event)
        polls = ((event.item_id, *event.impression) if isinstance(event, Interaction)
                 else event.item_ids)
        unknown = self.events.unknown_item_ids(polls)
        if unknown:  # a deleted poll has no record: say so rather than "no poll"
            deleted = self.events.deleted_item_ids(unknown)
            raise DeletedPolls(deleted) if deleted else UnknownPolls(unknown)

    def record_interaction(self, event: Interaction) -> bool:
        self.check_event(event)
        # Asked before the write: two first comments racing each other are both forwarded
        # (at worst one too many), where asking after would forward neither.
        repeat = self._forwarded_before(event)
        stored = self.events.append(event)
        if stored:
            metrics.EVENTS_INGESTED.labels("interaction").inc()
            if repeat:
                metrics.EVENTS_NOT_FORWARDED.labels("repeat").inc()
            else:
                self._forward(event.user_id, event)
        return stored

    def _forwarded_before(self, event: Interaction) -> bool:
        """Whether Personalize already heard of this user's event of this type on this
        poll (see ``personalize_forward_repeats``): one indexed query per comment."""
        if self.personalize_events is None or self.settings.personalize_forward_repeats:
            return False
        return heard_before(self.events, self.event_rules, event)

    def upsert_poll(self, record: dict[str, Any], acting_user: str,
                    admin: bool = False) -> dict[str, Any]:
        """Store a new or changed poll for ``acting_user`` (ownership checked in the
        write's transaction, see :meth:`EventStore.upsert_item`) and serve it at once."""
        stored = self.events.upsert_item(record, acting_user=acting_user, admin=admin)
        self.refresher.serve_written({stored["ITEM_ID"]: stored})
        self._forward_poll(stored)
        return stored

    def delete_poll(self, poll_id: str, acting_user: str, admin: bool = False,
                    ) -> PollDeletion:
        """Delete a poll for its author or an internal tool (checked in the store's write
        transaction, see :meth:`EventStore.delete_item`); this worker stops serving it
        at once, the others within a refresh. Deleting it again answers the same."""
        # Read first for Amazon's copy only (its creation time): the store decides.
        record = self.events.get_item(poll_id) if self._sends_items() else None
        gone = self.events.delete_item(poll_id, acting_user=acting_user, admin=admin)
        self.refresher.serve_deleted([poll_id])
        if not gone.already:
            self._forward_deletion(gone, record or {})
        return gone

    def _sends_items(self) -> bool:
        return (self.personalize_events is not None
                and bool(self.personalize_events.config.items_dataset_arn))

    def _forward_deletion(self, gone: PollDeletion, record: dict[str, Any]) -> None:
        """Personalize cannot delete one item: its record is replaced (PutItems) by the
        tombstone's, without text (Amazon keeps no more of it than this store) and in
        the category DELETED_POLL_CATEGORY that a Personalize filter can exclude; this
        gateway drops the poll from Amazon's answers meanwhile (the live mask)."""
        if not self._sends_items():
            return
        self._send_item(gone.item_id, deleted_item({
            "AUTHOR_ID": gone.author_id, "CREATION_TIMESTAMP": record.get("CREATION_TIMESTAMP")}))

    def _forward_poll(self, stored: dict[str, Any]) -> None:
        """Send a new or changed poll to Personalize's Items dataset (PutItems), when one
        is configured: Amazon recommends and explores only polls it knows, and without
        this a poll made in the app stayed unknown to it until the next bulk import. As
        for events, the local store is the record and a failure is logged and counted.
        The sink sends it as Amazon's Items dataset holds it (its text fields as one)."""
        if (self.personalize_events is None
                or not self.personalize_events.config.items_dataset_arn):
            return
        self._send_item(stored["ITEM_ID"], stored)

    def _send_item(self, item_id: str, record: dict[str, Any]) -> None:
        """``record`` as the poll's latest state for Amazon's Items dataset: 10 to a
        call, paced, a throttled call's polls sent again (``item_copies``); inline
        without a forwarder."""
        if self.item_copies is not None:
            self.item_copies.submit(item_id, record)
            return
        self._submit(item_id, "personalize-items",
                     lambda: self._put_item_copies({item_id: record}))

    def _put_item_copies(self, records: dict[str, dict[str, Any]]) -> None:
        """PutItems of ``records``, those of polls deleted by now sent as tombstones: an
        edit committed before a deletion may reach the batcher's map after it (its
        request's thread, or another worker) and replaced the tombstone there, so
        Amazon kept the text. The store says what is deleted when the call goes."""
        gone = set(self.events.deleted_item_ids(records))
        self.personalize_events.put_items(
            {i: deleted_item(r) if i in gone else r for i, r in records.items()})

    # ------------------------------------------------------------------ graph

    def _follow_lock(self, follower: str) -> asyncio.Lock:
        """One of FOLLOW_LOCK_STRIPES locks, by follower: a follower's changes reach the
        graph and the journal in the same order (a follow and an unfollow of one pair
        sent at once reached them in opposite orders, and a restart, which replays the
        journal, brought back a follow the graph and the caller had dropped)."""
        return self._follow_locks[hash(follower) % FOLLOW_LOCK_STRIPES]

    async def follow(self, follower: str, followee: str) -> None:
        async with self._follow_lock(follower):
            at = int(time.time())
            await self._graph_call(self.graph.follow(follower, followee, at))
            if self.follow_journal is not None:  # on disk before the caller hears "done"
                await asyncio.to_thread(self.follow_journal.record, follower, followee,
                                        True, at)

    async def unfollow(self, follower: str, followee: str) -> bool:
        async with self._follow_lock(follower):
            removed = await self._graph_call(self.graph.unfollow(follower, followee))
            if self.follow_journal is not None:
                # Whether or not this worker's graph held the follow: another worker may
                # have made it, or a retry follows a failed write; "not following" is
                # the state the caller was told.
                await asyncio.to_thread(self.follow_journal.record, follower, followee,
                                        False, int(time.time()))
            return removed

    async def followees(self, user_id: str) -> list[str]:
        return await self._graph_call(self.graph.followees(user_id))

    async def _graph_call(self, awaitable):
        try:
            result = await awaitable
        except GraphError:
            self.graph_degraded = True
            raise
        except OSError as exc:  # connection refused and friends
            self.graph_degraded = True
            raise GraphUnavailable(f"the follower graph is unreachable: {exc}") from exc
        self.graph_degraded = False
        return result

    def _followees_sync(self, user_id: str) -> list[str]:
        return self._run_graph(self.graph.followees(user_id)) or []

    def _on_loop(self, coro, timeout: float):
        """Run ``coro`` from a thread on the worker's event loop, where the graph's other
        calls run (without a running loop, here); abandoned on timeout."""
        loop = self._loop
        if loop is None or not loop.is_running():
            return asyncio.run(coro)
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result(timeout=timeout)
        except BaseException:
            future.cancel()
            raise

    def _run_graph(self, coro):
        """Run a graph call from synchronous mixer code; on failure, degrade quietly."""
        try:
            return self._on_loop(coro, timeout=2.0)
        except Exception as exc:  # the feed must not fail because the graph did
            self.graph_degraded = True
            metrics.FALLBACKS.labels(IN_NETWORK, type(exc).__name__).inc()
            log.warning("follower graph unavailable for the in-network source: %s", exc)
            return None

    # ------------------------------------------------------------------ lifecycle

    def warm_up(self) -> None:
        """Load every trained model, then move what is loaded out of the garbage
        collector's sight: the models hold millions of long-lived objects, and full
        collections walking them showed up as the feed's slowest requests."""
        for recipe in self.recipes.available():
            self.recipes.model(recipe)
        gc.collect()
        gc.freeze()

    async def start(self) -> None:
        """Load the newest models before the first request (so it is not the one that
        pays for loading), and follows.csv into the in-process graph in embedded mode."""
        await asyncio.to_thread(self.warm_up)
        self.refresher.start()  # after warm_up: it must not load the models a second time
        if self.settings.graph_store != "memory":
            return
        path = self.settings.follows_path
        if path is not None and path.exists():
            from graph.analytics import read_follows_csv

            polls = [(r["ITEM_ID"], r["AUTHOR_ID"], int(r.get("CREATION_TIMESTAMP") or 0))
                     for r in self.events.items() if r.get("AUTHOR_ID")]
            await load_follows(self.graph, read_follows_csv(path), polls)
        await self._replay_follows()

    async def _replay_follows(self) -> None:
        """The API's follows and unfollows, over what follows.csv loaded: an unfollow
        of a listed follow stays undone."""
        if self.follow_journal is not None:
            await self._apply_follows(*await asyncio.to_thread(
                self.follow_journal.changes_since, 0))

    async def _apply_follows(self, seq: int, changes: list[tuple[str, str, bool, int]]
                             ) -> None:
        for a, b, on, at in changes:  # oldest change first: one row per pair anyway
            try:
                if on:
                    await self.graph.follow(a, b, at)
                else:
                    await self.graph.unfollow(a, b)
            except InvalidGraphData as exc:  # a row the API never writes (a self-follow)
                log.warning("follow journal: skipped %r -> %r: %s", a, b, exc)
        self._follows_seq = max(self._follows_seq, seq)

    def refresh_follows(self, *, on_loop_only: bool = False) -> None:
        """The follows and unfollows other workers journalled since this worker last
        looked, into its graph. Applied on the event loop, where the graph's other calls
        run (the in-memory graph is not thread-safe); ``on_loop_only`` (the refresher's
        thread): nothing is applied while no loop runs or the worker is stopping."""
        loop = self._loop
        running = loop is not None and loop.is_running()
        if on_loop_only and (not running or self.refresher.stopping):
            return
        seq, changes = self.follow_journal.changes_since(self._follows_seq)
        if not changes:
            return
        self._on_loop(self._apply_follows(seq, changes), timeout=10.0)

    async def readiness(self) -> dict[str, Any]:
        """What /readyz answers: whether this worker can serve (``ready``) and the state
        of what it depends on. A store every host shares (PostgreSQL, Redis, Neo4j) being
        down is listed but does not make a worker unready: the feed is then served
        degraded (extensions.degraded), and every host would be pulled at once, turning
        a degraded feed into none. What is this host's own (its SQLite event store, its
        models, its refresher) does."""
        checks: dict[str, Any] = {}
        checks["models"] = await asyncio.to_thread(self.recipes.available)  # may list S3
        # Which version each recipe serves: after a training, every host should say the
        # same (an operator had no way to confirm the swap). What is live only: asking
        # version() would load a newly published one here, on the event loop.
        checks["versions"] = self.recipes.live_versions()
        try:
            # Off the event loop: it waits for the write lock (an import holds it for
            # minutes), and every request of the worker would wait with it.
            # With the writes: in the default pool it took a thread for as long.
            await self.write(self.events.check_writable)
            checks["store"] = "writable"
            self._store_reached = True
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            checks["store"] = f"not writable: {exc}"
        # A shared store's outage does not pull the host, once the host has reached it:
        # a wrong URL or password is this host's own fault (helper-65).
        shared_store = is_postgres_url(self.settings.event_store_url) and self._store_reached
        if self.settings.graph_store == "neo4j":
            try:
                await self.graph.counts()
                checks["neo4j"] = "reachable"
            except Exception as exc:  # noqa: BLE001
                checks["neo4j"] = f"unreachable: {exc}"
        sessions = self.session_store
        if getattr(sessions, "degraded", False):
            checks["sessions"] = (f"redis unreachable ({sessions.last_error}): new feeds "
                                  "keep their sessions on this host")
        elif self.settings.session_store == "redis":
            checks["sessions"] = "redis"
        # Informational while the store fails (the store check says so); a refresher that
        # stopped by a bug leaves this worker's catalog and models behind: not ready.
        checks["refresher"] = {"crashed": self.refresher.crashed, **{
            task: asdict(health) for task, health in self.refresher.health().items()}}
        # Informational too: events a live model rejected count from its next training.
        checks["events_not_folded_in"] = dict(self.recipes.fold_in_failures)
        checks["ready"] = bool(checks["models"]) and (
            shared_store or checks["store"] == "writable") and self.refresher.crashed is None
        return checks

    async def close(self) -> None:
        # It may be mid-read on the feed's and the catalog's connections, or waiting for
        # this loop to apply follows: waited for off the loop.
        await asyncio.to_thread(self.refresher.stop)
        # the writes under way finish before the stores close (no request is in flight)
        await asyncio.to_thread(self._writes.shutdown, wait=True)
        self.recommendation_log.close()  # flush what is queued
        if self.forwarder is not None:
            await asyncio.to_thread(self.forwarder.close)  # send what is queued
        try:
            await self.graph.close()
        except Exception:  # noqa: BLE001 - shutting down anyway
            pass
        if self.follow_journal is not None:
            self.follow_journal.close()
        self.events.close()
        self._feed_events.close()
        if self.reads is not self._feed_events:
            self.reads.close()
        self.filters.close()
        self.promotions.close()
        self._catalog_events.close()
        # Its checkpoint thread (SQLite) or Redis connections: left open, each worker
        # closed (a reload, every test) kept a thread waking every 2 s for good.
        self.session_store.close()


def _event_copy_failed(exc: BaseException, events: int) -> None:
    """A PutEvents call that failed: ``events`` given up (counted one each, as when each
    event was its own call), or 0 when a throttled call goes again whole."""
    if events == 0:
        metrics.FALLBACKS.labels("personalize-events", "throttled-retried").inc()
        return
    metrics.FALLBACKS.labels("personalize-events", type(exc).__name__).inc(events)
    log.warning("could not send %d event(s) to Personalize: %s", events, exc)


def _item_copy_failed(exc: BaseException | None, polls: int) -> None:
    """A PutItems copy Amazon refused (``polls`` given up; 0 when a throttled call's
    polls wait to go again) or that the full queue could not take (``exc`` None)."""
    reason = "queue-full" if exc is None else (
        "throttled-retried" if polls == 0 else type(exc).__name__)
    metrics.FALLBACKS.labels("personalize-items", reason).inc()
    if exc is not None and polls:
        log.warning("could not send %d poll(s) to Personalize: %s", polls, exc)


def _make_session_store(settings: Settings):
    if settings.session_store == "redis":
        from redis.exceptions import RedisError

        from recsys.feed_sessions import FallbackFeedSessionStore, RedisFeedSessionStore

        warned: list[bool] = []

        def failed(exc: BaseException) -> None:
            metrics.FALLBACKS.labels(SESSIONS_DEGRADED, type(exc).__name__).inc()
            if not warned:  # once per worker and outage would need state; once is enough
                warned.append(True)
                log.warning("feed sessions fall back to this host's own while Redis fails: "
                            "%s", exc)

        # Redis down: new feeds open their sessions in this host's SQLite file instead
        # of failing (recsys/feed_sessions.py, FallbackFeedSessionStore).
        return FallbackFeedSessionStore(RedisFeedSessionStore(settings.redis_url),
                                        SQLiteFeedSessionStore(settings.sessions_db),
                                        (RedisError, OSError), on_failure=failed)
    return SQLiteFeedSessionStore(settings.sessions_db)


def _make_graph(settings: Settings) -> GraphStore:
    if settings.graph_store == "neo4j":
        from graph.neo4j_store import Neo4jGraphStore

        return Neo4jGraphStore(settings.neo4j_uri, settings.neo4j_user, settings.neo4j_password)
    from graph.memory_store import InMemoryGraphStore

    return InMemoryGraphStore()


async def load_follows(graph: GraphStore, rows: list[tuple[str, str, int]],
                       polls: list[tuple[str, str, int]]) -> None:
    """Bulk-load follows and poll authorship (the demo and tests)."""
    await graph.ensure_schema()
    await graph.upsert_follows(Follow(a, b, ts) for a, b, ts in rows)
    await graph.upsert_polls(PollAuthorship(p, a, ts) for p, a, ts in polls)
