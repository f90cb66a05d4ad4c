"""Follow impact on what was actually served: logged feed responses (issue 7, part 1).

Why a separate path: offline the follow-impact analysis retrains User-Personalization
with and without labels; on production traffic nothing is retrained, the feed that was
served is the evidence. So this module reads a log of served polls and asks: do people
see more polls from those they follow than homophily alone gives them? The control is
the same as offline (recsys.analysis.follow_control): per user, the share of other
community members' served polls that the user's followees wrote; the unit is the user
(paired t deciding, Wilcoxon beside it, bootstrap interval over users).

The served-feed log format (``served.csv``, one row per placed poll; UTF-8 CSV with a
header, any column order, extra columns ignored)::

    USER_ID            who was served (string)
    RECOMMENDATION_ID  the response the poll came in (string; one feed page/session)
    ITEM_ID            the poll (string)
    POSITION           0-based position in that response's feed (int)
    SOURCE             what placed it: user-personalization, trending-now, popularity-count,
                       in-network, promotion... (string)
    TIMESTAMP          when the response was made (epoch seconds, int)

``export_served`` writes it from the gateway's feed sessions (SQLite tables
``feed_sessions`` and ``feed_session_pages`` of ``<HUNCH_HOME>/sessions.sqlite3``); sessions
expire and are swept as new ones open (30 minutes by default), so run the export
periodically and append. A Personalize GetRecommendations log converts to the same
columns (recommendationId, itemList order, SOURCE = the campaign).
"""

from __future__ import annotations

import csv
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recsys.analysis.follow_control import (
    CONTROL_NAME,
    Reader,
    ShareRule,
    share_counted,
    swapped_control,
)
from recsys.analysis.stats import PairedComparison, paired_comparison
from recsys.feed_sessions import decode_session_items
from recsys.errors import HunchError

SERVED_COLUMNS: tuple[str, ...] = ("USER_ID", "RECOMMENDATION_ID", "ITEM_ID", "POSITION",
                                   "SOURCE", "TIMESTAMP")
# Users served fewer polls than this say little about their feed's make-up.
MIN_SERVED_PER_USER = 5
MIN_USERS = 10
SHARE = "served_followee_share"


class ServedLogError(HunchError):
    """The served-feed log is missing, malformed, or too small to analyse."""


@dataclass(frozen=True)
class ServedPoll:
    """One poll placed in one feed response."""

    user_id: str
    recommendation_id: str
    item_id: str
    position: int
    source: str
    timestamp: int


def export_served(sessions_db: Path | str, out: Path | str) -> int:
    """Write every placed poll of the gateway's feed sessions to ``out``; returns rows.

    Opened read-only, so a running gateway is not disturbed.
    """
    sessions_db = Path(sessions_db)
    if not sessions_db.exists():
        raise ServedLogError(
            f"{sessions_db} not found: run the gateway (hunch serve) so it records feed "
            "sessions, or point HUNCH_HOME / --sessions at its sessions.sqlite3")
    conn = sqlite3.connect(f"file:{sessions_db}?mode=ro", uri=True)
    try:
        pages = conn.execute(
            "SELECT s.user_id, CAST(s.created_at AS INTEGER), p.position, p.items "
            "FROM feed_session_pages p JOIN feed_sessions s ON s.session_id = p.session_id "
            "ORDER BY s.created_at, p.session_id, p.position").fetchall()
    except sqlite3.OperationalError as exc:
        raise ServedLogError(f"{sessions_db} is not a feed-sessions database of this "
                             f"version: open it with the gateway first ({exc})") from exc
    finally:
        conn.close()
    # A page row holds the items one write placed, from its position on.
    served = [ServedPoll(user_id, item.recommendation_id, item.item_id, at + i, item.source,
                         created_at)
              for user_id, created_at, at, raw in pages
              for i, item in enumerate(decode_session_items([raw]))]
    write_served(served, out)
    return len(served)


def write_served(polls: Iterable[ServedPoll], out: Path | str) -> None:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(SERVED_COLUMNS)
        w.writerows((p.user_id, p.recommendation_id, p.item_id, p.position, p.source,
                     p.timestamp) for p in polls)


def read_served(path: Path | str) -> list[ServedPoll]:
    """Read a served-feed log; errors name the file, line and what to fix."""
    path = Path(path)
    if not path.exists():
        raise ServedLogError(f"{path} not found: export it with `hunch analyze export-served`")
    out = []
    with path.open(newline="", encoding="utf-8-sig") as fh:  # a BOM is no column
        reader = csv.DictReader(fh)
        missing = set(SERVED_COLUMNS) - set(reader.fieldnames or [])
        if missing:
            raise ServedLogError(f"{path}: missing column(s) {sorted(missing)}; expected "
                                 + ",".join(SERVED_COLUMNS))
        for line, r in enumerate(reader, start=2):
            try:
                out.append(ServedPoll(r["USER_ID"], r["RECOMMENDATION_ID"], r["ITEM_ID"],
                                      int(r["POSITION"]), r["SOURCE"], int(float(r["TIMESTAMP"]))))
            except (TypeError, ValueError) as exc:
                raise ServedLogError(f"{path}:{line}: POSITION and TIMESTAMP must be "
                                     f"integers ({exc})") from exc
    return out


@dataclass
class ServedImpactResult:
    users: int
    served: int
    by_source: dict[str, dict[str, float]]
    comparison: PairedComparison

    @property
    def follow_effect(self) -> bool:
        return self.comparison.significant and self.comparison.difference > 0

    def to_json(self) -> dict[str, Any]:
        return {"users": self.users, "served": self.served, "by_source": self.by_source,
                "comparison": self.comparison.to_json(), "follow_effect": self.follow_effect,
                "rule": "served polls over-represent followees when each user's followee "
                        "share beats the share of their followees in the served polls of "
                        "other members of their community (paired t p < 0.05 and bootstrap "
                        "interval above 0)"}


def served_follow_impact(served: Sequence[ServedPoll], follows: Iterable[tuple[str, str]],
                         items: Mapping[str, Mapping[str, Any]],
                         labels: Mapping[str, Mapping[str, str]] | None = None, *,
                         label_field: str = "COMMUNITY", seed: int = 0) -> ServedImpactResult:
    """Followee share of the served feed per user against the same followees' share of
    other community members' feeds."""
    author = {pid: str(m.get("AUTHOR_ID") or "") for pid, m in items.items()}
    followees: dict[str, set[str]] = {}
    for a, b in follows:
        followees.setdefault(a, set()).add(b)
    if not followees:
        raise ServedLogError("no follows: the analysis needs follows.csv rows")
    by_user: dict[str, list[str]] = {}
    for p in served:
        by_user.setdefault(p.user_id, []).append(p.item_id)
    users = sorted(u for u, polls in by_user.items()
                   if len(polls) >= MIN_SERVED_PER_USER and followees.get(u))
    if len(users) < MIN_USERS:
        raise ServedLogError(
            f"only {len(users)} users with follows were served at least "
            f"{MIN_SERVED_PER_USER} polls; need {MIN_USERS} (log more traffic)")
    group = {u: lab.get(label_field, "") for u, lab in (labels or {}).items()}
    authored = ShareRule.authored(SHARE, author).counted
    readers = [Reader(u, by_user[u]) for u in users]
    own = np.array([share_counted(r.polls, authored(followees[r.user_id]), r.cutoff)
                    for r in readers])
    control = swapped_control(readers, followees, group, authored, seed=seed)
    by_source: dict[str, dict[str, float]] = {}
    for p in served:
        s = by_source.setdefault(p.source, {"served": 0, "from_followees": 0})
        s["served"] += 1
        s["from_followees"] += author.get(p.item_id) in followees.get(p.user_id, ())
    for s in by_source.values():
        s["followee_share"] = s["from_followees"] / s["served"]
    comparison = paired_comparison(SHARE, "own followees", CONTROL_NAME, own,
                                   control, seed=seed)
    return ServedImpactResult(len(users), len(served), by_source, comparison)
