"""Amazon Personalize as a backend, through boto3: the same semantics as the local engine.

- :class:`PersonalizeRecipeSource` is a mixer candidate source backed by one campaign
  (``personalize-runtime`` GetRecommendations, with filterArn/filterValues and
  promotions). Timeouts and retries with backoff come from botocore's ``Config``; when
  Personalize still fails or throttles, the source falls back to a local list (the
  local popularity ranking) so the feed never fails, and logs and counts the fallback.
- :class:`PersonalizeEventSink` forwards interactions with their impressions (PutEvents,
  with the recommendation id; impression-only events only when the gateway is told to,
  see ``GatewayServices._forward``), cluster labels (PutUsers) and new polls (PutItems),
  in the batch sizes the service model allows.

ARNs and the tracking id come from :class:`PersonalizeConfig` (the gateway fills it
from settings).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from recsys.amazon_items import amazon_item, cut_text
from recsys.errors import HunchError
from recsys.events import Impression, Interaction, derive_event_id, distinct_impressions
from recsys.recipes.base import ScoredItem
from recsys.schemas import DELETED_POLL_CATEGORY, POLL_TEXT

log = logging.getLogger(__name__)

# Limits from the service models (botocore/data/personalize-*/service-2.json) and
# Amazon's documentation; botocore checks only the minimums client-side, Amazon the rest
# (the README's "Amazon Personalize's limits" table says what the engine does with each).
MAX_NUM_RESULTS = 500  # documented; the model says only "at least 0"
MAX_EVENTS_PER_PUT = 10
MAX_IMPRESSION_IDS = 25  # PutEvents: ids of one event's impression list
MAX_RECORDS_PER_PUT = 10  # PutItems / PutUsers
MAX_PROPERTIES_CHARS = 32_000  # PutItems: a record's properties JSON
MAX_RECOMMENDATION_ID_CHARS = 40  # PutEvents (clients may send ids of up to 256)
MAX_FILTER_VALUE_KEYS = 25
# After a ThrottlingException a campaign is left alone this long: the source serves its
# fallback at once. Each throttled feed page made 3 calls (botocore's attempts) and
# waited 0.8-2.2 s of backoff before falling back (measured against a local endpoint),
# so a campaign over its requests a second got three times the load from every worker.
# One second is the window Amazon's per-second quota is counted over.
THROTTLE_COOL_OFF_SECONDS = 1.0
THROTTLED = "ThrottlingException"
# After a campaign timed out, could not be reached or answered 5xx, it is left alone this
# long (the fallback serves at once), then one request tries it again. Against a hung
# endpoint every feed request waited 7.4-8.5 s (3 attempts of 1 + 2 s timeouts) before
# its fallback, so a handful of requests held every feed thread of a worker.
OUTAGE_COOL_OFF_SECONDS = 5.0


class PersonalizeNotConfigured(HunchError):
    """A campaign, filter or dataset ARN needed for this call is missing from settings."""


@dataclass
class PersonalizeConfig:
    region: str = "us-east-1"
    campaign_arns: dict[str, str] = field(default_factory=dict)  # recipe name -> ARN
    filter_arns: dict[str, str] = field(default_factory=dict)  # filter name -> ARN
    tracking_id: str = ""
    items_dataset_arn: str = ""
    users_dataset_arn: str = ""
    endpoint_url: str | None = None  # a local endpoint speaking the same protocol (tests)
    # The event tracker and datasets (off the request path: the forwarder's threads)
    connect_timeout: float = 1.0
    read_timeout: float = 2.0
    max_attempts: int = 3  # attempts in all (first try + retries with backoff and jitter)
    # GetRecommendations, on the feed's request path: one attempt, short timeouts, then
    # the local fallback (and OUTAGE_COOL_OFF_SECONDS): a feed page waits at most ~1.5 s.
    runtime_connect_timeout: float = 0.5
    runtime_read_timeout: float = 1.0
    runtime_max_attempts: int = 1


def make_clients(config: PersonalizeConfig, session=None) -> tuple[Any, Any]:
    """``personalize-runtime`` and ``personalize-events`` clients with timeouts/retries."""
    import boto3
    from botocore.config import Config

    session = session or boto3.session.Session()

    def config_of(connect: float, read: float, attempts: int) -> Config:
        return Config(region_name=config.region, connect_timeout=connect, read_timeout=read,
                      retries={"total_max_attempts": attempts, "mode": "standard"})

    runtime = session.client("personalize-runtime", endpoint_url=config.endpoint_url,
                             config=config_of(config.runtime_connect_timeout,
                                              config.runtime_read_timeout,
                                              config.runtime_max_attempts))
    events = session.client("personalize-events", endpoint_url=config.endpoint_url,
                            config=config_of(config.connect_timeout, config.read_timeout,
                                             config.max_attempts))
    return runtime, events


def encode_filter_values(values: Mapping[str, str | Sequence[str]]) -> dict[str, str]:
    """Personalize wants each parameter as a string of individually quoted values."""
    if len(values) > MAX_FILTER_VALUE_KEYS:
        raise HunchError(f"at most {MAX_FILTER_VALUE_KEYS} filter parameters, got {len(values)}")
    out = {}
    for key, value in values.items():
        if isinstance(value, str):
            out[key] = value if value.startswith('"') else json.dumps(value)
        else:
            out[key] = ",".join(json.dumps(v) for v in value)
    return out


@dataclass
class FallbackCounter:
    """How often Personalize failed and the local list stood in (exported as a metric)."""

    count: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, reason: str) -> None:
        with self._lock:
            self.count += 1
            self.by_reason[reason] = self.by_reason.get(reason, 0) + 1


class PersonalizeRecipeSource:
    """One Personalize campaign as a mixer candidate source."""

    def __init__(self, name: str, config: PersonalizeConfig, runtime_client,
                 fallback: Callable[..., list[ScoredItem]] | None = None,
                 fallbacks: FallbackCounter | None = None,
                 on_fallback: Callable[[str, str], None] | None = None):
        if name not in config.campaign_arns:
            raise PersonalizeNotConfigured(
                f"no campaign ARN for {name!r}; set it in the Personalize settings")
        self.name = name
        self.config = config
        self.client = runtime_client
        self.fallback = fallback
        self.fallbacks = fallbacks or FallbackCounter()
        self.on_fallback = on_fallback
        self.last_recommendation_id: str | None = None
        self.clock: Callable[[], float] = time.monotonic
        # Until then the fallback serves without calling Amazon (reason, clock time):
        # THROTTLE_COOL_OFF_SECONDS after a throttle, OUTAGE_COOL_OFF_SECONDS after an
        # outage.
        self._cool_off: tuple[str, float] = ("", 0.0)

    def get_recommendations(
        self, user_id: str, n: int, *, filter_name: str | None = None,
        filter_values: Mapping[str, Any] | None = None, promotion=None,
    ) -> tuple[list[dict], str]:
        """Raw GetRecommendations: (itemList, recommendationId). Raises botocore errors."""
        request: dict[str, Any] = {
            "campaignArn": self.config.campaign_arns[self.name],
            "userId": user_id,
            "numResults": max(1, min(n, MAX_NUM_RESULTS)),
        }
        if filter_name:
            request["filterArn"] = self._filter_arn(filter_name)
            if filter_values:
                request["filterValues"] = encode_filter_values(filter_values)
        if promotion is not None:
            promo: dict[str, Any] = {
                "name": promotion.name,
                "percentPromotedItems": promotion.percent_promoted_items,
                "filterArn": self._filter_arn(promotion.filter_name or ""),
            }
            if promotion.filter_values:
                promo["filterValues"] = encode_filter_values(promotion.filter_values)
            request["promotions"] = [promo]
        response = self.client.get_recommendations(**request)
        return response.get("itemList", []), response.get("recommendationId", "")

    def _filter_arn(self, name: str) -> str:
        try:
            return self.config.filter_arns[name]
        except KeyError:
            raise PersonalizeNotConfigured(
                f"no filter ARN for {name!r}; create the filter in Personalize and add its "
                "ARN to the settings") from None

    def candidates(self, user_id: str, n: int, *, exclude: Collection[str] = (),
                   allow: Callable[[str], bool] | None = None,
                   filter_name: str | None = None,
                   filter_values: dict[str, str] | None = None) -> list[ScoredItem]:
        from botocore.exceptions import BotoCoreError, ClientError

        reason, until = self._cool_off
        if self.clock() < until:
            return self._fall_back(f"{reason}-cool-off", user_id, n, exclude, allow,
                                   quiet=True)
        # Personalize cannot exclude a list of ids: ask for enough to drop them locally.
        asked = min(MAX_NUM_RESULTS, n + len(exclude))
        try:
            items, rec_id = self.get_recommendations(
                user_id, asked, filter_name=filter_name, filter_values=filter_values)
        except PersonalizeNotConfigured:
            # A filter made with createFilter (or a promotion's) that has no ARN in the
            # settings: the feed failed for everyone asking for it. The fallback applies
            # it locally (``allow``), so the page is still filtered.
            return self._fall_back("no-filter-arn", user_id, n, exclude, allow)
        except (ClientError, BotoCoreError) as exc:
            reason = (exc.response.get("Error", {}).get("Code", "ClientError")
                      if isinstance(exc, ClientError) else type(exc).__name__)
            if reason == THROTTLED:
                self._cool_off = (reason, self.clock() + THROTTLE_COOL_OFF_SECONDS)
            elif outage(exc):
                self._cool_off = (reason, self.clock() + OUTAGE_COOL_OFF_SECONDS)
            return self._fall_back(reason, user_id, n, exclude, allow)
        self.last_recommendation_id = rec_id
        out = []
        for item in items:
            item_id = item["itemId"]
            if item_id in exclude or (allow is not None and not allow(item_id)):
                continue
            out.append(ScoredItem(item_id, float(item.get("score", 0.0))))
            if len(out) == n:
                break
        return out

    def _fall_back(self, reason: str, user_id: str, n: int, exclude: Collection[str],
                   allow: Callable[[str], bool] | None, quiet: bool = False,
                   ) -> list[ScoredItem]:
        """The local list in place of the campaign's, counted by ``reason`` (and logged,
        unless ``quiet``: a cool-off would log every request)."""
        self.fallbacks.record(reason)
        if self.on_fallback is not None:
            self.on_fallback(self.name, reason)
        if not quiet:
            log.warning("personalize %s failed (%s); serving the local fallback list",
                        self.name, reason)
        if self.fallback is None:
            return []
        return self.fallback(user_id, n, exclude=exclude, allow=allow)


# --- what a failed call says (a rate, this request, or the service) -----------------

# Refusals of the request rate, not of what a request holds: sending its events one by
# one would only make more requests.
_RATE_ERRORS = frozenset({"ThrottlingException", "TooManyRequestsException",
                          "LimitExceededException"})


def refused_for_rate(exc: BaseException) -> bool:
    """Whether Amazon refused a request for the request rate (throttled): the same
    request may pass later."""
    try:
        from botocore.exceptions import ClientError
    except ImportError:  # boto3 is only needed by the Personalize backend
        return False
    return (isinstance(exc, ClientError)
            and exc.response.get("Error", {}).get("Code", "") in _RATE_ERRORS)


def refused_as_input(exc: BaseException) -> bool:
    """Whether Amazon (or botocore, checking the model's minimums) refused what the
    request holds (a 4xx answer other than a rate limit), so that another request
    without the offending event would pass."""
    try:
        from botocore.exceptions import ClientError, ParamValidationError
    except ImportError:  # boto3 is only needed by the Personalize backend
        return False
    if isinstance(exc, ParamValidationError):
        return True
    if not isinstance(exc, ClientError):
        return False
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    code = exc.response.get("Error", {}).get("Code", "")
    return 400 <= status < 500 and code not in _RATE_ERRORS


def outage(exc: BaseException) -> bool:
    """Whether a failed call says the campaign is unreachable or failing (a timeout, a
    connection error, a 5xx answer) rather than refusing this one request."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500
    return isinstance(exc, BotoCoreError)


def _sent_at(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc)


class PersonalizeEventSink:
    """Forwards what the gateway records to Personalize's event tracker and datasets."""

    def __init__(self, config: PersonalizeConfig, events_client,
                 on_impressions_cut: Callable[[int], None] | None = None):
        self.config = config
        self.client = events_client
        # Called with how many ids of an impression list Amazon was not sent (see
        # _impression_window); the gateway counts them in a metric.
        self.on_impressions_cut = on_impressions_cut

    def put_events(self, user_id: str, session_id: str,
                   events: Iterable[Interaction | Impression]) -> int:
        """Send ``events``, 10 to a call; the number of PutEvents events sent (an
        impression-only event of more than 25 polls is several)."""
        if not self.config.tracking_id:
            raise PersonalizeNotConfigured("no tracking id; set it in the Personalize settings")
        batch: list[dict] = []
        sent = 0
        for event in events:
            for out in self._events(event):
                batch.append(out)
                if len(batch) == MAX_EVENTS_PER_PUT:
                    sent += self._send(user_id, session_id, batch)
                    batch = []
        if batch:
            sent += self._send(user_id, session_id, batch)
        return sent

    def _events(self, event: Interaction | Impression) -> list[dict]:
        if isinstance(event, Impression):
            # Personalize has no impression-only event: each IMPRESSION event carries
            # 25 of the polls shown, on the first of them (forwarded only for solutions
            # trained on one event type, see GatewayServices._forward). Past 25 the
            # list is split rather than cut; later parts get ids derived from the
            # event's, so that sending it again is ignored by Amazon as the first is.
            shown = distinct_impressions(event.item_ids)
            parts = [shown[i:i + MAX_IMPRESSION_IDS]
                     for i in range(0, len(shown), MAX_IMPRESSION_IDS)] or [()]
            out = []
            for k, part in enumerate(parts):
                first = amazon_event_id(event.user_id, event.event_id)
                one: dict[str, Any] = {
                    "eventId": first if k == 0 else derive_event_id("m", first, k),
                    "eventType": "IMPRESSION", "sentAt": _sent_at(event.timestamp)}
                if part:
                    one["itemId"] = part[0]
                    one["impression"] = list(part)
                self._recommendation_id(one, event.recommendation_id)
                out.append(one)
            return out
        one = {"eventId": amazon_event_id(event.user_id, event.event_id),
               "eventType": event.event_type,
               "sentAt": _sent_at(event.timestamp), "itemId": event.item_id}
        if event.event_value is not None:
            one["eventValue"] = float(event.event_value)
        self._recommendation_id(one, event.recommendation_id)
        if event.impression:  # each poll once, as the store keeps it
            shown = distinct_impressions(event.impression)
            window = _impression_window(shown, event.item_id)
            if len(window) < len(shown) and self.on_impressions_cut is not None:
                self.on_impressions_cut(len(shown) - len(window))
            one["impression"] = list(window)
        return [one]

    @staticmethod
    def _recommendation_id(out: dict, recommendation_id: str | None) -> None:
        if recommendation_id and len(recommendation_id) <= MAX_RECOMMENDATION_ID_CHARS:
            # A longer id failed the whole event (botocore checks the model's 40). It is
            # this app's own anyway: Amazon resolves only ids it handed out, so the
            # gateway sends the polls a recommendation showed as the explicit list.
            out["recommendationId"] = recommendation_id

    def _send(self, user_id: str, session_id: str, batch: list[dict]) -> int:
        self.client.put_events(trackingId=self.config.tracking_id, userId=user_id,
                               sessionId=session_id, eventList=batch)
        return len(batch)

    def put_users(self, users: Mapping[str, Mapping[str, Any]]) -> int:
        """User metadata such as the follower graph's CLUSTER and COMMUNITY labels."""
        if not self.config.users_dataset_arn:
            raise PersonalizeNotConfigured("no Users dataset ARN in the Personalize settings")
        records = [{"userId": uid, "properties": _properties(props)}
                   for uid, props in users.items()]
        for start in range(0, len(records), MAX_RECORDS_PER_PUT):
            self.client.put_users(datasetArn=self.config.users_dataset_arn,
                                  users=records[start:start + MAX_RECORDS_PER_PUT])
        return len(records)

    def put_items(self, items: Mapping[str, Mapping[str, Any]]) -> int:
        """New or changed polls (catalog ingest), as the store holds them: each is sent as
        Amazon's Items dataset takes it (``amazon_item``: one textual field, POLL_TEXT)."""
        if not self.config.items_dataset_arn:
            raise PersonalizeNotConfigured("no Items dataset ARN in the Personalize settings")
        records = [{"itemId": iid, "properties": _properties(amazon_item(props))}
                   for iid, props in items.items()]
        for start in range(0, len(records), MAX_RECORDS_PER_PUT):
            self.client.put_items(datasetArn=self.config.items_dataset_arn,
                                  items=records[start:start + MAX_RECORDS_PER_PUT])
        return len(records)


def deleted_item(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The record a deleted poll's Amazon copy is replaced by: its author and creation
    time (of ``fields``), no text, the category :data:`DELETED_POLL_CATEGORY`."""
    return {**{k: v for k, v in fields.items() if k in ("AUTHOR_ID", "CREATION_TIMESTAMP")},
            "CATEGORY": DELETED_POLL_CATEGORY}


def amazon_event_id(user_id: str, event_id: str) -> str:
    """The eventId Amazon is sent for ``user_id``'s event ``event_id``. Event ids are
    unique per user here (a client may number its events 1, 2, 3, ...), while Amazon
    trains on the first event of each id only, whoever sent it: two users' "1" would
    have left one of the two events out of training. Deterministic, so a resend (a
    replay) is still ignored by Amazon as the first."""
    return derive_event_id("amazon-event", user_id, event_id)


def _impression_window(shown: Sequence[str], item_id: str) -> Sequence[str]:
    """The 25 polls of ``shown`` (a list of distinct ids) Amazon is sent with an
    interaction on ``item_id``: the 25 up to and including that poll, the ones the user
    had scrolled past (the first 25 when it is among them or not in the list). A list
    this long comes from this feed's own recommendation (a page of up to 100 polls) or
    from imported history; the first 25 of a page left out the poll a user voted on at
    position 60 and the polls seen before it."""
    if len(shown) <= MAX_IMPRESSION_IDS:
        return shown
    try:
        position = list(shown).index(item_id)
    except ValueError:
        position = 0
    end = max(position + 1, MAX_IMPRESSION_IDS)
    return shown[end - MAX_IMPRESSION_IDS:end]


def _properties(props: Mapping[str, Any]) -> str:
    """Personalize's properties JSON: camelCase keys of the dataset's fields, no ids;
    past MAX_PROPERTIES_CHARS the poll's text is cut from its end (its least telling
    parts, see recsys/amazon_items.py), so that a long poll still reaches Amazon rather
    than failing the call."""
    fields = {k: v for k, v in props.items() if k not in ("ITEM_ID", "USER_ID") and v is not None}
    text = _properties_json(fields)
    poll_text = fields.get(POLL_TEXT)
    if len(text) <= MAX_PROPERTIES_CHARS or not isinstance(poll_text, str):
        return text
    # An escaped character (a quote, a control character) is several in the JSON: the
    # longest cut that fits is searched for, not computed from the excess.
    keep, too_long = 0, len(poll_text)
    while too_long - keep > 1:
        middle = (keep + too_long) // 2
        fits = len(_properties_json({**fields, POLL_TEXT: cut_text(poll_text, middle)}))
        keep, too_long = (middle, too_long) if fits <= MAX_PROPERTIES_CHARS else (keep, middle)
    return _properties_json({**fields, POLL_TEXT: cut_text(poll_text, keep)})


def _properties_json(fields: Mapping[str, Any]) -> str:
    out = {}
    for key, value in fields.items():
        parts = key.lower().split("_")
        out[parts[0] + "".join(p.capitalize() for p in parts[1:])] = value
    # Letters as themselves, not escaped: the 32,000 are characters, and "\u4e2d" is six
    # of them, so Chinese or Japanese text lost its end at ~5,300 of Amazon's 7,000 and
    # accented Latin text long before 20,000 (ids and text are checked to be valid
    # Unicode where they are written, so every character encodes as UTF-8).
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False)
