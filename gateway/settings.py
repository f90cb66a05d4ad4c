"""Settings read from the environment with the ``HUNCH_`` prefix (pydantic-settings).

Every key has a default that runs the embedded mode on one laptop; the README's
"Settings" table lists them. Nested values (dicts) are given as JSON, for example
``HUNCH_PERSONALIZE_CAMPAIGN_ARNS='{"user-personalization": "arn:..."}'``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from recsys.admission import (
    DEFAULT_EVENT_TYPES,
    DEFAULT_HISTORY_FLOOR,
    DEFAULT_MAX_AGE_SECONDS,
    DEFAULT_MAX_FUTURE_SECONDS,
    DEFAULT_ONCE_PER_POLL_TYPES,
    EventRules,
)
from recsys.refresher import REFRESH_SECONDS

DEFAULT_EXCLUSION_FILTER = 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("HUNCH", "COMMENT")'


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HUNCH_", env_file=".env", extra="ignore")

    # --- where state lives ------------------------------------------------------------
    home: Path = Path(".hunch")  # event store, artifacts, sessions, demo data
    db_path: Path | None = None  # the SQLite event store; default <home>/events.sqlite3
    artifacts_path: Path | None = None  # trained models; default <home>/artifacts
    # Several hosts: s3://bucket/prefix instead of the directory (which may also be a shared
    # mount, see recsys/artifacts.py); an S3-compatible store (MinIO, Ceph) by its endpoint.
    artifacts_url: str = ""
    s3_endpoint_url: str | None = None
    # where this host downloads S3 versions before loading; default <home>/artifacts-cache
    artifacts_cache_path: Path | None = None
    # How often each worker lists the store for a newer model version: a new version is
    # served within this (plus its load); on S3 one LIST per recipe per worker each time.
    artifacts_poll_seconds: float = Field(5.0, gt=0)
    sessions_path: Path | None = None  # feed sessions; default <home>/sessions.sqlite3
    # The event store, named filters and promotions: postgresql://... shared by several
    # hosts (run `hunch db upgrade` first), or a sqlite:///path; None keeps them in the
    # SQLite file db_path names, as before.
    store_url: str | None = None

    # --- the server --------------------------------------------------------------------
    environment: Literal["development", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    # BLAS threads per worker: a request is one small matrix-vector product, where extra
    # threads only contend with the other workers' requests (measured: 1 thread 1.2 ms,
    # 2 threads 1.7 ms for 50k polls on a busy 2-core machine).
    blas_threads: int = 1

    # --- auth (bearer JWT) ----------------------------------------------------------
    jwt_algorithm: Literal["HS256", "RS256", "ES256"] = "HS256"  # pinned: tokens with others fail
    jwt_secret: str = "dev-only-secret-change-me-in-production-0123456789"  # HS256
    jwt_public_key: str = ""  # RS256/ES256: PEM text of the issuer's one public key
    # RS256/ES256: the identity provider's JWKS document (https; keys chosen by the
    # token's kid, refetched when it names a new one, at most once a minute). Not with
    # jwt_public_key: startup refuses both (gateway/auth.py, gateway/jwks.py).
    jwt_jwks_url: str = ""
    # How often each worker fetches the JWKS document again (so a withdrawn key stops
    # being accepted); a shorter Cache-Control max-age is honoured, down to a minute.
    jwt_jwks_refresh_seconds: float = Field(3600.0, ge=60)
    jwt_audience: str = "hunch-app"
    jwt_issuer: str = "hunch-auth"

    # --- protection ---------------------------------------------------------------------
    # feed > edges > node > author > polls is 5 deep; poll.author.polls recurses, so cap it
    max_query_depth: int = 6
    max_query_tokens: int = 2000
    max_aliases: int = 15
    # Nodes one operation can return, counted as GitHub does (gateway/query_cost.py): each
    # list's `first` times what its parents return. A feed page of 100 is 100, with
    # "more from this author" (first: 3) in each 400; 15 aliases of poll.author.polls
    # (first: 100) are 1,500 (90 MB of poll text), a page of 100 each asking
    # author.polls(first: 100) 10,100. A poll's text is at most ~64 KB (the body limit),
    # so 500 also caps an answer near 32 MB of it.
    max_query_nodes: int = Field(500, ge=1)
    # Characters of text (every string and response key: poll text, ids, cursors) one
    # answer may hold, counted as it is built (gateway/query_cost.py): nodes alone let
    # 448 bytes of query fetch 25.8 MB. Sized so that any query within max_query_nodes
    # over polls their authors wrote passes (500 x 3 served fields x poll_field_chars is
    # 3M, plus ids, cursors and keys): it stops long aliases and imported long texts,
    # not pages of ordinary polls, which one author's big polls must not break.
    max_response_text_chars: int = Field(4_000_000, ge=1)
    # Each text field of a poll an author writes (question, options, description, ...),
    # once cleaned; internal tools (admins) ingest up to the import's 20,000.
    poll_field_chars: int = Field(2_000, ge=1)
    max_body_bytes: int = 64 * 1024  # a recordImpressions of 100 ids is ~5 KiB
    # Web pages allowed to call the API from another origin (browsers enforce CORS):
    # a JSON list of origins, e.g. ["https://hunch.app", "https://tools.hunch.app"], or
    # ["*"] (safe with bearer tokens, which a page of another site does not have). Empty:
    # only pages served by the gateway itself (GraphiQL in development).
    cors_origins: list[str] = []
    # Answers of at least this many bytes are gzip-compressed for clients that accept it
    # (every mobile HTTP stack and browser does): a feed page of 20 polls, 8.3 KB of JSON,
    # goes as 2.1 KB for ~0.07 ms of CPU (~2 % of the page). 0 turns it off, e.g. behind
    # a proxy that compresses.
    gzip_min_bytes: int = Field(1024, ge=0)
    # Per user, counted by each worker, or by all of them through Redis when
    # session_store is redis (gateway/rate_limit.py).
    mutation_rate_per_minute: int = Field(600, ge=1)  # a scroll sends ~1 batch of impressions a second
    # A reader asks a page every few seconds; faster is a script, and a page is the
    # costliest request (~5 ms of server CPU): 5 pages/s sustained, bursts of 30.
    feed_rate_per_minute: int = Field(300, ge=1)
    # The reads poll, me and Author.polls: one count per request that makes any of them
    # (Author.polls resolves once per poll of a page; a request's size is
    # max_query_nodes' job). Their own limit: a store read costs a fraction of a feed
    # page, and opening polls must not use up a reader's feed pages, nor the reverse.
    read_rate_per_minute: int = Field(300, ge=1)
    # Daily quotas (gateway/daily_quota.py): at most this many in any 24 hours, shared
    # by the host's workers (a SQLite file beside the sessions) or by every host (Redis).
    # upsertPoll per user a day (new polls and edits; internal tools are not counted).
    # Every new poll is explored in other users' feeds, so within the mutation limit one
    # account put 300 polls into everyone's feed in 34 s; people post a few a day.
    poll_writes_per_day: int = Field(100, ge=1)
    # follow + unfollow per user a day (internal tools are not counted): each change is a
    # row in the follow journal (memory graph) and a node or edge in the graph, and
    # within the mutation limit one account could make ~860k a day. People follow a few.
    follow_changes_per_day: int = Field(1_000, ge=1)
    # Queries a worker has not seen before, per user a minute: each is parsed and
    # validated (up to ~300 ms at max_query_tokens) before any other limit applies, and
    # an app sends the same few documents with variables (later ones are cached).
    document_rate_per_minute: int = Field(60, ge=1)
    # What each feed page showed is kept this long (events naming its recommendation id
    # count its polls as seen; training and `hunch personalize replay` read them), then
    # deleted: the table grew by every page for ever. 0 keeps them all.
    recommendation_retention_days: float = Field(30.0, ge=0)
    max_page_size: int = 100
    # With several workers, /metrics sums them all (prometheus-client's multiprocess mode,
    # set up by `hunch serve`); off, each scrape answers for the worker that took it.
    # Costs feed capacity (bench_gateway: 332-345 -> 176 req/s on 2 workers).
    metrics_across_workers: bool = False

    # --- event admission (see recsys/admission.py for the reasons) -----------------------
    event_max_age_seconds: int = DEFAULT_MAX_AGE_SECONDS  # live events: a week back at most
    event_max_future_seconds: int = DEFAULT_MAX_FUTURE_SECONDS  # clock skew: 5 min ahead
    event_types: list[str] = list(DEFAULT_EVENT_TYPES)  # JSON list; [] accepts any type
    event_history_floor: int = DEFAULT_HISTORY_FLOOR  # imports: nothing before 1995-01-01
    # types a user has at most once per poll (a vote): a repeat is stored as a no-op
    event_once_per_poll: list[str] = list(DEFAULT_ONCE_PER_POLL_TYPES)  # JSON list; [] = off

    # --- the feed -----------------------------------------------------------------------
    # Production: the bearer token that reads /metrics and /readyz's details
    # (gateway/ops.py); admins' JWTs do too. Empty: admins only.
    ops_token: str = ""
    cursor_secret: str = "dev-only-cursor-secret-change-me"
    # sqlite: shared by the workers of one host; redis: shared by several hosts
    session_store: Literal["sqlite", "redis"] = "sqlite"
    redis_url: str = "redis://127.0.0.1:6379/0"
    session_ttl_seconds: float = 30 * 60
    slot_plan: str = "user-personalization*3,trending-now,popularity-count"
    in_network: bool = False  # add polls of followees as a slot type (needs the graph)
    exclusion_filter: str = DEFAULT_EXCLUSION_FILTER  # '' to show interacted polls again
    exclude_seen_times: int = 0  # >0: hide polls the user saw this many times (0 = off)
    # how often a worker reads polls and events other workers stored (recsys/refresher.py)
    refresh_seconds: float = Field(REFRESH_SECONDS, gt=0)

    # --- the follower graph ---------------------------------------------------------------
    graph_store: Literal["memory", "neo4j"] = "memory"
    # memory store only: follows.csv loaded at startup (the demo sets it)
    follows_path: Path | None = None
    neo4j_uri: str = "bolt://127.0.0.1:7687"
    neo4j_user: str = "neo4j"
    neo4j_password: str = "hunch-dev-password"

    # --- recipes backend ------------------------------------------------------------------
    backend: Literal["local", "personalize"] = "local"
    personalize_region: str = "us-east-1"
    personalize_campaign_arns: dict[str, str] = Field(default_factory=dict)
    personalize_filter_arns: dict[str, str] = Field(default_factory=dict)
    personalize_tracking_id: str = ""
    personalize_items_dataset_arn: str = ""
    personalize_users_dataset_arn: str = ""
    personalize_endpoint_url: str | None = None
    # Amazon's Trending-Now and User-Personalization count events: one account's 600
    # comments a minute on one poll would trend it for everyone. Personalize hears a user's
    # first event of each type on each poll; repeats are stored here only. true: forward all.
    personalize_forward_repeats: bool = False
    # Impression-only events as an IMPRESSION-typed event on the first poll shown: only
    # for solutions trained on one event type (see GatewayServices._forward).
    personalize_forward_impressions: bool = False

    @property
    def events_db(self) -> Path:
        return self.db_path or self.home / "events.sqlite3"

    @property
    def event_store_url(self) -> str:
        return self.store_url or str(self.events_db)

    @property
    def artifacts_dir(self) -> Path:
        return self.artifacts_path or self.home / "artifacts"

    @property
    def artifacts_location(self) -> str:
        return self.artifacts_url or str(self.artifacts_dir)

    def artifact_store(self):
        """The configured artifact store (a directory, or S3 with a local cache)."""
        from recsys.artifacts import open_artifact_store

        return open_artifact_store(
            self.artifacts_location, s3_endpoint_url=self.s3_endpoint_url,
            cache_dir=self.artifacts_cache_path or self.home / "artifacts-cache")

    @property
    def sessions_db(self) -> Path:
        return self.sessions_path or self.home / "sessions.sqlite3"

    @property
    def development(self) -> bool:
        return self.environment == "development"

    def personalize_config(self) -> Any:
        """The Amazon Personalize settings as the backend takes them (PersonalizeConfig)."""
        from recsys.backends import PersonalizeConfig

        return PersonalizeConfig(
            region=self.personalize_region, campaign_arns=self.personalize_campaign_arns,
            filter_arns=self.personalize_filter_arns, tracking_id=self.personalize_tracking_id,
            items_dataset_arn=self.personalize_items_dataset_arn,
            users_dataset_arn=self.personalize_users_dataset_arn,
            endpoint_url=self.personalize_endpoint_url)

    @property
    def sends_items_to_amazon(self) -> bool:
        """Whether Amazon Personalize is given this deployment's polls: the backend, or
        an Items dataset to forward new polls to."""
        return self.backend == "personalize" or bool(self.personalize_items_dataset_arn)

    def event_rules(self) -> EventRules:
        """The admission rules for live and imported events."""
        return EventRules(self.event_max_age_seconds, self.event_max_future_seconds,
                          tuple(self.event_types), self.event_history_floor,
                          once_per_poll=tuple(self.event_once_per_poll))


def load_settings() -> Settings:
    return Settings()
