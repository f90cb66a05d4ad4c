"""The demo-data generator writes valid Personalize datasets whose planted truth shows."""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from recsys import schemas
from recsys.demo_data import (
    COMMENT,
    DAY,
    FOLLOW_COLUMNS,
    FOLLOWS_FILE,
    GROUND_TRUTH_FILE,
    HOUR,
    HUNCH,
    IMPRESSION_COLUMNS,
    IMPRESSIONS_FILE,
    LOCALES,
    DemoDataError,
    category_of,
    generate_demo_data,
)

SMALL = dict(users=300, polls=600, days=7)


@dataclass
class Dataset:
    out: Path
    interactions: list[dict]
    items: list[dict]
    users: list[dict]
    follows: list[dict]
    impressions: list[dict]
    truth: dict
    headers: dict[str, list[str]]


def _read(path: Path) -> tuple[list[str], list[dict]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = []
        for line in reader:
            assert len(line) == len(header), f"{path.name}: row {line!r} has wrong width"
            rows.append(dict(zip(header, line)))
    return header, rows


def _load(out: Path) -> Dataset:
    headers, data = {}, {}
    for name, file in [("interactions", "interactions.csv"), ("items", "items.csv"),
                       ("users", "users.csv"), ("follows", FOLLOWS_FILE),
                       ("impressions", IMPRESSIONS_FILE)]:
        headers[name], data[name] = _read(out / file)
    truth = json.loads((out / GROUND_TRUTH_FILE).read_text())
    return Dataset(out=out, truth=truth, headers=headers, **data)


def _digest(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Dataset:
    out = tmp_path_factory.mktemp("seed1")
    summary = generate_demo_data(out, seed=1, **SMALL)
    data = _load(out)
    data.summary = summary  # type: ignore[attr-defined]
    return data


@pytest.fixture(scope="module")
def no_follow_effect(tmp_path_factory) -> Dataset:
    out = tmp_path_factory.mktemp("seed1_nofollow")
    generate_demo_data(out, seed=1, follow_effect=False, **SMALL)
    return _load(out)


def _followee_share(d: Dataset) -> float:
    author = {r["ITEM_ID"]: r["AUTHOR_ID"] for r in d.items}
    follows = {(f["FOLLOWER_ID"], f["FOLLOWEE_ID"]) for f in d.follows}
    return sum((r["USER_ID"], author[r["ITEM_ID"]]) in follows
               for r in d.interactions) / len(d.interactions)


# --- determinism -------------------------------------------------------------------


def test_same_seed_gives_same_bytes_and_another_seed_different_data(base, tmp_path):
    again = tmp_path / "again"
    other = tmp_path / "other"
    generate_demo_data(again, seed=1, **SMALL)
    generate_demo_data(other, seed=2, **SMALL)
    assert _digest(again) == _digest(base.out)
    differing = {k for k, v in _digest(other).items() if _digest(base.out)[k] != v}
    assert {"interactions.csv", "items.csv", "follows.csv", "impressions.csv",
            GROUND_TRUTH_FILE} <= differing


# --- format --------------------------------------------------------------------------


def test_columns_and_schema_files_match_personalize_schemas(base):
    assert base.headers["interactions"] == schemas.INTERACTIONS.names
    assert base.headers["items"] == schemas.ITEMS.names
    assert base.headers["users"] == schemas.USERS.names
    assert base.headers["impressions"] == list(IMPRESSION_COLUMNS)
    assert base.headers["follows"] == list(FOLLOW_COLUMNS)
    for dataset in schemas.DATASETS:
        assert schemas.load_schema(base.out, dataset) == schemas.DEFAULT_SCHEMAS[dataset]
        assert schemas.schema_path(base.out, dataset).exists()


def test_values_respect_personalize_limits(base):
    for r in base.interactions:
        assert len(r["USER_ID"]) <= schemas.MAX_ID_LENGTH
        assert len(r["ITEM_ID"]) <= schemas.MAX_ID_LENGTH
        assert 0 < len(r["IMPRESSION"]) <= schemas.MAX_IMPRESSION_LENGTH
        assert int(r["TIMESTAMP"]) > 0
        value = float(r["EVENT_VALUE"])
        assert value == 1.0 if r["EVENT_TYPE"] == HUNCH else value >= 1.0
    for r in base.impressions:
        assert 0 < len(r["IMPRESSION"]) <= schemas.MAX_IMPRESSION_LENGTH
    for r in base.items:
        for name in ("CATEGORY", "AUTHOR_ID"):
            assert 0 < len(r[name]) <= schemas.MAX_CATEGORICAL_LENGTH
        for name in ("QUESTION", "OPTIONS", "DESCRIPTION", "OPTION_DESCRIPTIONS", "COMMENTS"):
            assert len(r[name]) <= schemas.MAX_TEXTUAL_LENGTH
        assert r["QUESTION"]
        int(r["CREATION_TIMESTAMP"])


def test_text_with_commas_quotes_and_newlines_round_trips(base):
    descriptions = [r["DESCRIPTION"] for r in base.items]
    assert any("\n" in d and '"' in d and "," in d for d in descriptions)
    assert any(r["DESCRIPTION"] == "" for r in base.items), "optional text is sometimes empty"
    # The reader above already checked each row's width, so embedded commas and line
    # breaks did not split or merge rows.
    assert len(base.items) == SMALL["polls"]


def test_users_have_age_and_locale_but_no_community_leak(base):
    assert len(base.users) == SMALL["users"]
    for r in base.users:
        assert 13 <= int(r["AGE"]) <= 80
        assert r["LOCALE"] in LOCALES
        assert r["CLUSTER"] == "" and r["COMMUNITY"] == ""


def test_age_and_locale_lean_on_the_community(base):
    community = base.truth["user_community"]
    by_community: dict[int, list[dict]] = {}
    for r in base.users:
        by_community.setdefault(community[r["USER_ID"]], []).append(r)
    same_locale = sum(r["LOCALE"] == base.truth["communities"][c]["locale"]
                      for c, rows in by_community.items() for r in rows)
    assert 0.5 < same_locale / len(base.users) < 0.95
    big = [c for c, rows in by_community.items() if len(rows) >= 20]
    for c in big:
        ages = [int(r["AGE"]) for r in by_community[c]]
        assert abs(sum(ages) / len(ages) - base.truth["communities"][c]["mean_age"]) < 6


def test_every_reference_points_at_a_known_user_or_poll(base):
    user_ids = {r["USER_ID"] for r in base.users}
    item_ids = {r["ITEM_ID"] for r in base.items}
    assert len(user_ids) == len(base.users) and len(item_ids) == len(base.items)
    assert {r["USER_ID"] for r in base.interactions} <= user_ids
    assert {r["ITEM_ID"] for r in base.interactions} <= item_ids
    assert {r["AUTHOR_ID"] for r in base.items} <= user_ids
    assert {r["USER_ID"] for r in base.impressions} <= user_ids
    shown = {i for r in base.interactions + base.impressions for i in r["IMPRESSION"].split("|")}
    assert shown <= item_ids
    assert {f["FOLLOWER_ID"] for f in base.follows} | {f["FOLLOWEE_ID"] for f in base.follows} \
        <= user_ids


def test_one_vote_and_one_comment_per_user_and_poll_at_most(base):
    keys = Counter((r["USER_ID"], r["ITEM_ID"], r["EVENT_TYPE"]) for r in base.interactions)
    assert max(keys.values()) == 1
    types = Counter(r["EVENT_TYPE"] for r in base.interactions)
    assert set(types) == {HUNCH, COMMENT}
    assert types[HUNCH] > 3 * types[COMMENT] > 0


def test_timestamps_inside_window_and_after_poll_creation(base):
    params = base.truth["parameters"]
    start, end = params["start"], params["end"]
    created = {r["ITEM_ID"]: int(r["CREATION_TIMESTAMP"]) for r in base.items}
    assert all(start <= t < end for t in created.values())
    for r in base.interactions:
        t = int(r["TIMESTAMP"])
        assert start <= t < end
        assert t >= created[r["ITEM_ID"]]
        shown = r["IMPRESSION"].split("|")
        assert r["ITEM_ID"] in shown and len(set(shown)) == len(shown)
        assert all(created[i] <= t for i in shown), "a poll was shown before it existed"
    for r in base.impressions:
        t = int(r["TIMESTAMP"])
        assert start <= t < end
        assert all(created[i] <= t for i in r["IMPRESSION"].split("|"))
    assert all(int(f["TIMESTAMP"]) < start for f in base.follows)


def test_summary_counts_match_files(base):
    s = base.summary
    assert (s.users, s.polls, s.follows, s.interactions, s.impressions) == (
        len(base.users), len(base.items), len(base.follows), len(base.interactions),
        len(base.impressions))
    assert s.bursts == len(base.truth["bursts"]) >= 3
    assert base.truth["counts"]["interactions"] == s.interactions
    text = s.describe()
    assert f"{s.interactions:,} interactions" in text and str(base.out) in text


def test_interaction_count_is_settable(tmp_path):
    summary = generate_demo_data(tmp_path, users=60, polls=120, days=3, seed=3,
                                 interactions=2000)
    _, rows = _read(tmp_path / "interactions.csv")
    assert summary.interactions == len(rows) == 2000


# --- planted structure -------------------------------------------------------------


def test_communities_cover_users_and_most_follows_stay_inside(base):
    community = base.truth["user_community"]
    assert set(community) == {r["USER_ID"] for r in base.users}
    sizes = [c["size"] for c in base.truth["communities"]]
    assert sum(sizes) == len(base.users) and max(sizes) >= 2 * min(sizes)
    inside = sum(community[f["FOLLOWER_ID"]] == community[f["FOLLOWEE_ID"]]
                 for f in base.follows) / len(base.follows)
    assert 0.7 <= inside <= 0.9


def test_follows_can_be_planted_across_tastes(base, tmp_path):
    generate_demo_data(tmp_path, seed=1, follow_within_community=0.1, **SMALL)
    crossing = _load(tmp_path)
    assert crossing.truth["parameters"]["follow_within_community"] == 0.1
    assert "follow_within_community" not in base.truth["parameters"]
    community = crossing.truth["user_community"]
    pairs = [(community[f["FOLLOWER_ID"]], community[f["FOLLOWEE_ID"]])
             for f in crossing.follows]
    assert 0.05 <= np.mean([a == b for a, b in pairs]) <= 0.15
    # Follows that leave go to unlike tastes: their communities' topic mixes are further
    # apart than those of a followee's community drawn by size from the others.
    mix = np.array([c["topic_preference"] for c in crossing.truth["communities"]])
    mix /= np.linalg.norm(mix, axis=1, keepdims=True)
    alike = mix @ mix.T
    size = np.array([c["size"] for c in crossing.truth["communities"]], float)
    by_size = [(alike[a] @ size - size[a]) / (size.sum() - size[a]) for a in range(len(size))]
    leaving = [(alike[a, b], by_size[a]) for a, b in pairs if a != b]
    crossed, at_random = np.mean(leaving, axis=0)
    assert crossed < 0.85 * at_random, (crossed, at_random)


def test_follower_counts_are_heavy_tailed(base):
    in_degree = sorted(Counter(f["FOLLOWEE_ID"] for f in base.follows).values())
    out_degree = Counter(f["FOLLOWER_ID"] for f in base.follows)
    assert in_degree[-1] >= 8 * in_degree[len(in_degree) // 2]
    assert sum(1 for u in base.users if out_degree[u["USER_ID"]] <= 3) >= 0.05 * len(base.users)


def test_poll_topics_match_categories_and_authors(base):
    polls = base.truth["polls"]
    promotional = 0
    for r in base.items:
        truth = polls[r["ITEM_ID"]]
        assert truth["author"] == r["AUTHOR_ID"]
        if truth["promotional"]:
            promotional += 1
            assert r["CATEGORY"] == schemas.PROMOTIONAL_EVENT
        else:
            assert r["CATEGORY"] == category_of(truth["topic"])
        assert truth["category"] == r["CATEGORY"]
    assert 0 < promotional < 0.1 * len(base.items)


def test_categories_are_coarser_than_topics_so_only_text_tells_the_topic(base):
    # Real apps file a tennis poll under SPORTS: several topics share each category, so
    # a model that reads CATEGORY alone cannot tell a user's topics apart; text can.
    topics_of: dict[str, set[str]] = {}
    for t in base.truth["topics"]:
        topics_of.setdefault(t["category"], set()).add(t["name"])
    assert 3 <= len(topics_of) <= len(base.truth["topics"]) // 2
    assert all(len(topics) >= 2 for topics in topics_of.values())
    seen: dict[str, set[str]] = {}
    for r in base.items:
        poll = base.truth["polls"][r["ITEM_ID"]]
        if not poll["promotional"]:
            seen.setdefault(r["CATEGORY"], set()).add(poll["topic"])
    assert all(len(topics) >= 2 for topics in seen.values())


def test_question_text_carries_the_topic(base):
    vocab = {t["name"]: set(t["vocabulary"]) for t in base.truth["topics"]}
    own = other = 0
    for r in base.items:
        words = set(r["QUESTION"].lower().rstrip("?").split())
        topic = base.truth["polls"][r["ITEM_ID"]]["topic"]
        own += len(words & vocab[topic])
        other += sum(len(words & v) for t, v in vocab.items() if t != topic) / (len(vocab) - 1)
    assert own / len(base.items) >= 1.0
    assert own > 10 * other


def test_bursts_clearly_exceed_the_interval_before(base):
    by_poll: dict[str, list[int]] = {}
    for r in base.interactions:
        by_poll.setdefault(r["ITEM_ID"], []).append(int(r["TIMESTAMP"]))
    assert base.truth["parameters"]["burst_timescale"] == 3 * HOUR
    for burst in base.truth["bursts"]:
        times = by_poll[burst["item_id"]]
        onset, length = burst["onset"], burst["duration"]
        during = sum(onset <= t < onset + length for t in times)
        before = sum(onset - length <= t < onset for t in times)
        assert during >= 0.9 * burst["size"]
        assert during > 5 * before + 10


def test_burst_timescale_is_settable(tmp_path):
    generate_demo_data(tmp_path, users=120, polls=200, days=6, seed=4,
                       burst_timescale=DAY, progress=False)
    truth = json.loads((tmp_path / GROUND_TRUTH_FILE).read_text())
    _, rows = _read(tmp_path / "interactions.csv")
    assert truth["parameters"]["burst_timescale"] == DAY
    for burst in truth["bursts"]:
        times = [int(r["TIMESTAMP"]) for r in rows if r["ITEM_ID"] == burst["item_id"]]
        first_hour = sum(burst["onset"] <= t < burst["onset"] + HOUR for t in times)
        # The wave decays with a one-day time constant and stops after "duration".
        assert burst["timescale"] == DAY and burst["duration"] >= DAY
        whole = sum(burst["onset"] <= t < burst["onset"] + burst["duration"] for t in times)
        # Spread over the day, not packed into the first hour.
        assert whole >= burst["size"] and first_hour < 0.25 * whole


def test_follow_effect_raises_engagement_with_followees_polls(base, no_follow_effect):
    assert base.truth["parameters"]["follow_effect"] is True
    assert no_follow_effect.truth["parameters"]["follow_effect"] is False
    on, off = _followee_share(base), _followee_share(no_follow_effect)
    assert on > 1.4 * off


def test_engagement_comes_mostly_soon_after_posting_and_in_the_evening(base):
    created = {r["ITEM_ID"]: int(r["CREATION_TIMESTAMP"]) for r in base.items}
    delays = sorted(int(r["TIMESTAMP"]) - created[r["ITEM_ID"]] for r in base.interactions)
    assert delays[len(delays) // 2] < DAY
    hours = Counter((int(r["TIMESTAMP"]) // HOUR) % 24 for r in base.interactions)
    assert sum(hours[h] for h in range(18, 23)) > 3 * sum(hours[h] for h in range(1, 6))


def test_popular_polls_get_far_more_than_the_median(base):
    counts = sorted(Counter(r["ITEM_ID"] for r in base.interactions).values())
    assert counts[-1] > 5 * counts[len(counts) // 2]


# --- errors and CLI ----------------------------------------------------------------


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(interactions=100, events_per_user=3.0), "not both"),
    (dict(days=2, burst_timescale=DAY), "burst_timescale"),
    (dict(interactions=10**7), "user-poll pairs"),
    (dict(follow_boost=0.5), "follow_boost"),
    (dict(follow_within_community=1.5), "follow_within_community"),
])
def test_impossible_parameters_raise_a_typed_error(tmp_path, kwargs, fragment):
    args = dict(users=50, polls=80, days=5, seed=1) | kwargs
    with pytest.raises(DemoDataError, match=fragment):
        generate_demo_data(tmp_path / "x", **args)
    assert not (tmp_path / "x").exists(), "nothing is written for bad parameters"


def test_cli_generates_and_prints_the_summary(tmp_path):
    from gateway.cli import cli

    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["data", "generate", "--users", "40", "--polls", "60",
                                      "--days", "3", "--seed", "7", str(out)])
    assert result.exit_code == 0, result.output
    assert "40 users, 60 polls" in result.output
    assert (out / "interactions.csv").exists() and (out / GROUND_TRUTH_FILE).exists()


def test_comments_file_holds_every_comment_and_items_preview_the_first_ones(base):
    from recsys.datasets import clean_text
    from recsys.demo_data import comments_field, read_comments

    texts = read_comments(base.out)
    comments = [r for r in base.interactions if r["EVENT_TYPE"] == "COMMENT"]
    assert comments and len(texts) == len(comments)
    first: dict[str, list[str]] = {}
    for r in comments:  # interactions.csv is in time order
        first.setdefault(r["ITEM_ID"], []).append(
            texts[r["USER_ID"], r["ITEM_ID"], int(r["TIMESTAMP"])])
    for item in base.items:
        assert clean_text(item["COMMENTS"]) == clean_text(
            comments_field(first.get(item["ITEM_ID"], [])))


def test_text_fields_carry_topic_words_in_the_planted_order(base):
    # Measured from the written items: per field, the share of words that belong to the
    # poll's topic vocabulary (question openers and stock options dilute the first two)
    # and the topic words per poll. Both fall strictly along ground_truth.json's
    # text_field_order (topic words per poll for the authored fields only: COMMENTS grows
    # with a poll's comments, and cold polls, where text matters, have hardly any).
    import re

    order = base.truth["text_field_order"]
    assert sorted(order) == sorted(("QUESTION", "OPTIONS", "DESCRIPTION",
                                    "OPTION_DESCRIPTIONS", "COMMENTS"))
    vocab = {t["name"]: set(t["vocabulary"]) for t in base.truth["topics"]}
    share, per_poll = {}, {}
    for field in order:
        hits = total = 0
        for r in base.items:
            words = re.findall(r"[a-z]+", r[field].lower())
            if field == "COMMENTS":  # each comment ends with one generic trailing word
                words = [w for c in r[field].split("\n") if c
                         for w in re.findall(r"[a-z]+", c.rsplit(",", 1)[0].lower())]
            topic = vocab[base.truth["polls"][r["ITEM_ID"]]["topic"]]
            hits += sum(w in topic for w in words)
            total += len(words)
        share[field] = hits / total
        per_poll[field] = hits / len(base.items)
    authored = [f for f in order if f != "COMMENTS"]
    for measured, fields in ((share, order), (per_poll, authored)):
        values = [measured[f] for f in fields]
        assert all(a > b for a, b in zip(values, values[1:])), measured
    planted = base.truth["text_field_topic_share"]
    assert all(abs(share[f] - planted[f]) < 0.1 for f in order
               if f not in ("QUESTION", "OPTIONS")), (share, planted)
