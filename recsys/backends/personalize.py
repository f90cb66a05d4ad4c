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
import math
import logging
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from recsys.errors import HunchError
from recsys.events import Impression, Interaction, distinct_impressions
from recsys.recipes.base import ScoredItem

log = logging.getLogger(__name__)

# Limits from the service models (botocore/data/personalize-*/service-2.json).
MAX_NUM_RESULTS = 500
MAX_EVENTS_PER_PUT = 10
MAX_IMPRESSION_IDS = 25
MAX_RECORDS_PER_PUT = 10  # PutItems / PutUsers
MAX_PROPERTIES_CHARS = 32_000  # PutItems / PutUsers: a record's properties JSON
MAX_RECOMMENDATION_ID_CHARS = 40  # PutEvents (clients may send ids of up to 256)
# A poll's text fields, cut in this order (the least telling first) when a record's
# properties would pass MAX_PROPERTIES_CHARS: five fields of up to 20,000 characters each
# (schemas.MAX_TEXTUAL_LENGTH, what a bulk import takes) do not fit one PutItems record.
TEXT_CUT_ORDER = ("COMMENTS", "OPTION_DESCRIPTIONS", "DESCRIPTION", "OPTIONS", "QUESTION")
MAX_FILTER_VALUE_KEYS = 25


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
    connect_timeout: float = 1.0
    read_timeout: float = 2.0  # a feed request cannot wait longer than this for a list
    max_attempts: int = 3  # attempts in all (first try + retries with backoff and jitter)


def make_clients(config: PersonalizeConfig, session=None) -> tuple[Any, Any]:
    """``personalize-runtime`` and ``personalize-events`` clients with timeouts/retries."""
    import boto3
    from botocore.config import Config

    session = session or boto3.session.Session()
    cfg = Config(
        region_name=config.region,
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        retries={"total_max_attempts": config.max_attempts, "mode": "standard"},
    )
    runtime = session.client("personalize-runtime", config=cfg, endpoint_url=config.endpoint_url)
    events = session.client("personalize-events", config=cfg, endpoint_url=config.endpoint_url)
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

        # Personalize cannot exclude a list of ids: ask for enough to drop them locally.
        asked = min(MAX_NUM_RESULTS, n + len(exclude))
        try:
            items, rec_id = self.get_recommendations(
                user_id, asked, filter_name=filter_name, filter_values=filter_values)
        except (ClientError, BotoCoreError) as exc:
            reason = (exc.response.get("Error", {}).get("Code", "ClientError")
                      if isinstance(exc, ClientError) else type(exc).__name__)
            self.fallbacks.record(reason)
            if self.on_fallback is not None:
                self.on_fallback(self.name, reason)
            log.warning("personalize %s failed (%s); serving the local fallback list",
                        self.name, reason)
            if self.fallback is None:
                return []
            return self.fallback(user_id, n, exclude=exclude, allow=allow)
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


def _sent_at(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc)


class PersonalizeEventSink:
    """Forwards what the gateway records to Personalize's event tracker and datasets."""

    def __init__(self, config: PersonalizeConfig, events_client):
        self.config = config
        self.client = events_client

    def put_events(self, user_id: str, session_id: str,
                   events: Iterable[Interaction | Impression]) -> int:
        if not self.config.tracking_id:
            raise PersonalizeNotConfigured("no tracking id; set it in the Personalize settings")
        batch: list[dict] = []
        sent = 0
        for event in events:
            batch.append(self._event(event))
            if len(batch) == MAX_EVENTS_PER_PUT:
                sent += self._send(user_id, session_id, batch)
                batch = []
        if batch:
            sent += self._send(user_id, session_id, batch)
        return sent

    def _event(self, event: Interaction | Impression) -> dict:
        if isinstance(event, Impression):
            # Personalize has no impression-only event: send the first shown poll with
            # an event type of our own, carrying the full impression.
            out: dict[str, Any] = {
                "eventId": event.event_id, "eventType": "IMPRESSION",
                "sentAt": _sent_at(event.timestamp),
                "itemId": event.item_ids[0] if event.item_ids else "",
            }
            impression = list(event.item_ids)
        else:
            out = {"eventId": event.event_id, "eventType": event.event_type,
                   "sentAt": _sent_at(event.timestamp), "itemId": event.item_id}
            if event.event_value is not None:
                out["eventValue"] = float(event.event_value)
            impression = list(event.impression)
        if event.recommendation_id and len(event.recommendation_id) <= MAX_RECOMMENDATION_ID_CHARS:
            # A longer id failed the whole event (botocore checks the model's 40). It is
            # this app's own anyway: Amazon resolves only ids it handed out, so the
            # gateway sends the polls a recommendation showed as the explicit list.
            out["recommendationId"] = event.recommendation_id
        if impression:  # each poll once, as the store keeps it
            out["impression"] = list(distinct_impressions(impression))[:MAX_IMPRESSION_IDS]
        if not out["itemId"]:
            del out["itemId"]
        return out

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
        """New or changed polls (catalog ingest), text fields included."""
        if not self.config.items_dataset_arn:
            raise PersonalizeNotConfigured("no Items dataset ARN in the Personalize settings")
        records = [{"itemId": iid, "properties": _properties(props)}
                   for iid, props in items.items()]
        for start in range(0, len(records), MAX_RECORDS_PER_PUT):
            self.client.put_items(datasetArn=self.config.items_dataset_arn,
                                  items=records[start:start + MAX_RECORDS_PER_PUT])
        return len(records)


def _properties(props: Mapping[str, Any]) -> str:
    """Personalize's properties JSON: camelCase keys of the dataset's fields, no ids;
    past MAX_PROPERTIES_CHARS the text fields are cut (TEXT_CUT_ORDER), so that a long
    poll still reaches Amazon rather than failing the call."""
    fields = {k: v for k, v in props.items() if k not in ("ITEM_ID", "USER_ID") and v is not None}
    text = _properties_json(fields)
    for key in TEXT_CUT_ORDER:
        excess = len(text) - MAX_PROPERTIES_CHARS
        if excess <= 0:
            break
        value = fields.get(key)
        if isinstance(value, str) and value:
            # An escaped character is several in the JSON ("\u00e9" is six): cut the
            # text by the excess scaled to this field's escaping, then again by what
            # still overflows (uneven escaping), never more than it must.
            keep = len(value)
            while excess > 0 and keep > 0:
                escaped = len(json.dumps(value[:keep])) - 2
                keep = max(0, keep - math.ceil(excess * keep / max(escaped, 1)))
                fields[key] = value[:keep]
                text = _properties_json(fields)
                excess = len(text) - MAX_PROPERTIES_CHARS
    return text


def _properties_json(fields: Mapping[str, Any]) -> str:
    out = {}
    for key, value in fields.items():
        parts = key.lower().split("_")
        out[parts[0] + "".join(p.capitalize() for p in parts[1:])] = value
    return json.dumps(out, separators=(",", ":"))
