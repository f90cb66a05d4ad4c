"""The "engaged with by a followee" share, for graphs whose items nobody wrote (listeners
and artists): it counts what a followee engaged with before the user's cut-off, it
decides the verdict when there are no authors, and it finds contagion that is planted
(each user's newest listens come from what their followees listened to) and none when
the newest listens are drawn from the same community's taste instead."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.analysis import FollowImpactConfig, follow_impact
from recsys.analysis.follow_impact import (
    ENGAGED_SHARE,
    SHARE,
    FollowImpactError,
    _in_network_source,
    engaged_rule,
)
from recsys.events import Interaction

COMMUNITIES, MEMBERS, TOPIC_ITEMS = 8, 30, 200
FOLLOWS_EACH = 6
EARLY, LATE = 18, 2  # Personalize's split hides the newest 10 %: exactly the LATE ones
DAY = 86_400
WORLD_SEEDS = (0, 1, 2)
CONFIG = FollowImpactConfig(seeds=(0,), shuffles=1, holdout_fraction=0.5, in_network=False,
                            recipe_params={"use_text": False, "item_item_max_items": 0})


def _world(seed: int, contagion: bool):
    """Users in communities that share a taste (a topic of items) and follow inside the
    community. Everyone listens to EARLY items of their topic on day 1; on day 2 they
    listen to LATE more: with contagion, items their followees listened to on day 1;
    without, other items of the same topic (taste alone)."""
    rng = np.random.default_rng(seed)
    users = [f"u{c}-{m}" for c in range(COMMUNITIES) for m in range(MEMBERS)]
    community = {u: u.split("-")[0] for u in users}
    follows = []
    for u in users:
        peers = [v for v in users if community[v] == community[u] and v != u]
        follows += [(u, str(v)) for v in rng.choice(peers, FOLLOWS_EACH, replace=False)]
    topic = {c: [f"i{c}-{k}" for k in range(TOPIC_ITEMS)] for c in set(community.values())}
    early = {u: [str(i) for i in rng.choice(topic[community[u]], EARLY, replace=False)]
             for u in users}
    events = [Interaction(u, i, "LISTEN", DAY + k * 60 + j)
              for j, u in enumerate(users) for k, i in enumerate(early[u])]
    followees: dict[str, list[str]] = {}
    for a, b in follows:
        followees.setdefault(a, []).append(b)
    for j, u in enumerate(users):
        pool = ({i for f in followees[u] for i in early[f]} if contagion
                else set(topic[community[u]])) - set(early[u])
        late = rng.choice(sorted(pool), LATE, replace=False)
        events += [Interaction(u, str(i), "LISTEN", 2 * DAY + k * 60 + j)
                   for k, i in enumerate(late)]
    items = {i: {"ITEM_ID": i, "CATEGORY": i.split("-")[0], "AUTHOR_ID": "",
                 "CREATION_TIMESTAMP": 0} for t in topic.values() for i in t}
    labels = {u: {"COMMUNITY": community[u]} for u in users}
    return events, items, {u: {"USER_ID": u} for u in users}, follows, labels


def _run(seed: int, contagion: bool, config: FollowImpactConfig = CONFIG):
    events, items, users, follows, labels = _world(seed, contagion)
    return follow_impact(events, items, users, follows, labels=labels, config=config)


@pytest.fixture(scope="module")
def contagion():
    return [_run(s, True) for s in WORLD_SEEDS]


@pytest.fixture(scope="module")
def taste_only():
    return [_run(s, False) for s in WORLD_SEEDS]


def test_an_engagement_counts_only_before_the_cut_off():
    rule = engaged_rule([Interaction("f", "a", "LISTEN", 10), Interaction("f", "b", "LISTEN", 20),
                         Interaction("g", "c", "LISTEN", 5), Interaction("me", "d", "LISTEN", 1)])
    assert rule.polls({"f", "g"}, before=20) == {"a", "c"}  # b came at the cut-off: not yet
    assert rule.polls({"f"}, before=21) == {"a", "b"}


def test_without_authors_the_engaged_share_decides(contagion):
    for result in contagion:
        assert result.share_metric == ENGAGED_SHARE
        assert all(ENGAGED_SHARE in v and SHARE not in v for v in result.variants.values())
        assert result.verdict["share_metric"] == ENGAGED_SHARE
        assert {c.metric for c in result.comparisons} == {ENGAGED_SHARE, "ndcg_at_10"}
        # Every hidden listen was a followee's day-1 listen: the natural rate is all of it.
        assert result.natural_rate == pytest.approx(1.0)


def test_planted_contagion_is_found_in_engagement(contagion):
    for result in contagion:
        e = result.verdict["engagement"]
        assert e["verdict"] == "raises" and e["ci"][0] > 0, e


def test_taste_alone_is_not_taken_for_contagion(taste_only):
    verdicts = [r.verdict for r in taste_only]
    assert not any(v["follow_effect_in_engagement"] for v in verdicts), verdicts
    assert not any(v["graph_effect"] for v in verdicts)
    assert all(r.natural_rate < 0.7 for r in taste_only)  # followees cover ~40 % of a topic


def test_the_authored_share_is_still_refused_where_asked_for_alone():
    events, items, users, follows, labels = _world(0, True)
    with pytest.raises(FollowImpactError, match="no AUTHOR_ID.*engaged_share=True"):
        follow_impact(events, items, users, follows, labels=labels,
                      config=FollowImpactConfig(engaged_share=False))


def test_in_network_offers_what_followees_engaged_with_once_newest_first():
    rule = engaged_rule([Interaction("f", "a", "LISTEN", 10), Interaction("g", "a", "LISTEN", 12),
                         Interaction("g", "b", "LISTEN", 11), Interaction("f", "c", "LISTEN", 30)])
    source = _in_network_source({"me": frozenset({"f", "g"})}, {}, 20, by_author=rule.by_user)
    assert [s.item_id for s in source.candidates("me", 5)] == ["a", "b"]  # c: after now


GENRES = ("jazz", "metal", "folk", "techno", "soul", "punk", "opera", "reggae")


def _converted(tmp_path) -> str:
    """The contagion world written in HetRec's format and converted by the CLI."""
    from click.testing import CliRunner

    from gateway.cli import cli

    events, items, users, follows, _ = _world(0, True)
    uid = {u: str(n + 2) for n, u in enumerate(users)}  # the archive's ids are numbers
    iid = {i: str(n + 1) for n, i in enumerate(items)}
    src = tmp_path / "hetrec"
    src.mkdir()
    (src / "user_friends.dat").write_text("userID\tfriendID\n" + "".join(
        f"{uid[a]}\t{uid[b]}\n" for a, b in follows))
    (src / "user_artists.dat").write_text("userID\tartistID\tweight\n" + "".join(
        f"{uid[e.user_id]}\t{iid[e.item_id]}\t1\n" for e in events))
    (src / "artists.dat").write_text("id\tname\turl\tpictureURL\n" + "".join(  # names: text
        f"{iid[i]}\t{GENRES[int(i.split('-')[0].lstrip('iu')) % len(GENRES)]} band {i}\tu\tp\n"
        for i in items))
    converted = CliRunner().invoke(cli, ["data", "convert-friends", str(src),
                                         str(tmp_path / "d"), "--unpinned"])
    assert converted.exit_code == 0, converted.output
    return str(tmp_path / "d")


def test_cli_converts_a_friend_graph_and_reports_the_engaged_share(tmp_path):
    """The path a user takes: HetRec-format files -> convert-friends -> follow-impact."""
    from click.testing import CliRunner

    from gateway.cli import cli

    r = CliRunner().invoke(cli, ["analyze", "follow-impact", "--data", _converted(tmp_path),
                                 "--seeds", "1"])
    assert r.exit_code == 0, r.output
    assert "deciding share: engaged-by-followee share" in r.output
    rows = [ln for ln in r.output.splitlines() if "NDCG@10" in ln]
    assert rows and all("engaged-by-followee share" in ln and "authored" not in ln
                        for ln in rows)


def test_report_on_listens_without_times_says_what_it_could_not_run(tmp_path):
    """Converted listens span seconds, not days: the trend backtest cannot run on them,
    and the report says so beside the analyses that can, instead of failing."""
    import json

    from click.testing import CliRunner

    from gateway.cli import cli

    r = CliRunner().invoke(cli, ["report", "--data", _converted(tmp_path), "--seeds", "1",
                                 "--out", str(tmp_path / "report")])
    assert r.exit_code == 0, r.output
    numbers = json.loads((tmp_path / "report" / "report.json").read_text())
    assert "spans 0.0 days" in numbers["not_run"]["trend discovery frequency"]
    # Listens one second apart are an order, not a clock: no exploration replay either.
    assert "order, not a clock" in numbers["not_run"]["exploration"]
    assert "exploration" not in numbers
    assert numbers["follow_impact"]["share_metric"] == ENGAGED_SHARE
    assert "<h2>Not run</h2>" in (tmp_path / "report" / "report.html").read_text()


@pytest.mark.parametrize("processes", [1, 2])
def test_model_seeds_fit_with_one_blas_thread_whatever_the_machine(processes) -> None:
    """A fit's rounding follows BLAS's thread count: with the machine's default threads
    Last.fm's cluster row read +4.83 pp, at one thread +5.45 pp. Every seed's work runs
    at one BLAS thread, in this process or in the forked workers."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from recsys.analysis.follow_impact import _map_seeds

    def blas_threads(seed, say):
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    with threadpool_limits(2, "blas"):  # as on a machine with two cores or more
        seen = _map_seeds(blas_threads, [0, 1], processes, lambda _m: None)
    assert seen and all(threads == [1] * len(threads) and threads for threads in seen), seen


def test_users_who_follow_nobody_stay_out_of_the_engagement_comparison():
    """One who follows nobody reads 0 against 0: no evidence about follows, and counted
    in, they shrank the effect toward 0. A third of the world stops following."""
    events, items, users, follows, labels = _world(0, True)
    quiet = {u for u in users if u.endswith(("-0", "-1", "-2", "-3", "-4", "-5", "-6",
                                             "-7", "-8", "-9"))}
    kept = [(a, b) for a, b in follows if a not in quiet]
    result = follow_impact(events, items, users, kept, labels=labels, config=CONFIG)
    whole = _run(0, True)
    assert whole.engagement.users == whole.users  # everyone follows someone there
    # About a third of the held-out users follow nobody now: they are left out.
    assert 0.5 * result.users < result.engagement.users < 0.8 * result.users
    # The effect per following user is what the whole world shows, not a third less.
    assert result.engagement.difference == pytest.approx(whole.engagement.difference, rel=0.25)
