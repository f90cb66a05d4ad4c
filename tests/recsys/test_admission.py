"""Event admission (issue 13, items 2 and 6): the store refuses malformed events with
InvalidEvent (never a SQLite or Unicode error), the live rules keep event times within
a window around the server clock and event types to the configured ones, the history
rule keeps imports sane, and a refused batch leaves the store as it was."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from recsys.admission import (
    DEFAULT_HISTORY_FLOOR,
    MAX_EVENT_VALUE,
    EventRules,
    UnknownPolls,
    check_id,
)
from recsys.datasets import import_directory
from recsys.errors import DatasetValidationError, InvalidEvent
from recsys.events import EventStore, Impression, Interaction
from recsys.schemas import INTERACTIONS, MAX_ID_LENGTH

NOW = 1_764_000_000  # the server clock in these tests
DAY = 24 * 3600
YEAR_2100 = 4_102_444_800
SURROGATE = "\ud800"  # a lone surrogate: valid in a Python str, not in UTF-8


@pytest.fixture
def store(tmp_path: Path) -> EventStore:
    with EventStore(tmp_path / "events.sqlite3") as s:
        yield s


@pytest.fixture
def rules() -> EventRules:
    return EventRules(clock=lambda: NOW)


@pytest.fixture
def live_store(tmp_path: Path, rules: EventRules) -> EventStore:
    with EventStore(tmp_path / "live.sqlite3", rules) as s:
        s.upsert_items([{"ITEM_ID": "p1"}, {"ITEM_ID": "p2"}])
        yield s


def vote(at: int = NOW, **kw) -> Interaction:
    return Interaction(kw.pop("user_id", "u1"), kw.pop("item_id", "p1"),
                       kw.pop("event_type", "HUNCH"), at, **kw)


# ---------------------------------------------------------------- shape (always on)


@pytest.mark.parametrize("event, field", [
    (vote(10**19), "timestamp"),  # overflowed SQLite's INTEGER: a server error before
    (vote(-10**18), "timestamp"),
    (vote(event_value=1e308), "event_value"),
    (vote(event_value=-1e308), "event_value"),
    (vote(event_value=MAX_EVENT_VALUE * 2), "event_value"),
    (vote(event_value=float("nan")), "event_value"),
    (vote(event_value=float("inf")), "event_value"),
    (vote(event_type="HUNCH" + SURROGATE), "event_type"),
    (vote(recommendation_id="rec" + SURROGATE), "recommendation_id"),
    (vote(user_id=SURROGATE), "user_id"),
    (vote(item_id="p" + SURROGATE), "item_id"),
    (vote(impression=("p1", SURROGATE)), "impression"),
    (Impression("u1", ("p1",), NOW, "rec" + SURROGATE), "recommendation_id"),
    (Impression("u1", (SURROGATE,), NOW), "impression"),
    (Impression("u1", ("p1",), 10**19), "timestamp"),
])
def test_the_store_refuses_malformed_events_with_a_clear_error(store, event, field):
    with pytest.raises(InvalidEvent, match=field):
        store.append(event)
    with pytest.raises(InvalidEvent, match=field):
        store.import_bulk([event] if isinstance(event, Interaction) else [],
                          [event] if isinstance(event, Impression) else [])
    assert store.counts() == {"interactions": 0, "impressions": 0, "items": 0, "users": 0}


def test_bounded_values_still_go_in(store):
    assert store.append(vote(event_value=MAX_EVENT_VALUE))
    assert store.append(vote(event_value=-3.5))


def test_a_catalog_record_with_a_lone_surrogate_is_refused(store):
    with pytest.raises(InvalidEvent, match="Unicode"):
        store.upsert_items([{"ITEM_ID": "p1", "QUESTION": "why" + SURROGATE}])
    assert store.count_items() == 0


def test_errors_never_echo_a_huge_id():
    huge = "x" * 60_000
    with pytest.raises(InvalidEvent) as info:
        check_id("poll id", huge)
    assert len(str(info.value)) < 300 and "60000 characters" in str(info.value)
    assert len(str(UnknownPolls([huge]))) < 300


def test_a_refused_batch_leaves_nothing_half_written(store):
    store.append(vote(NOW - 10, user_id="kept"))
    before = store.counts()
    with pytest.raises(InvalidEvent):
        store.append_many([vote(NOW, user_id="a"), vote(NOW, user_id="b"), vote(10**19)])
    assert store.counts() == before
    assert [e.user_id for e in store.interactions()] == ["kept"]


# ---------------------------------------------------------------- live rules


@pytest.mark.parametrize("at, reason", [
    (YEAR_2100, "after the server's clock"),
    (NOW + 301, "after the server's clock"),
    (0, "before the server's clock"),
    (NOW - 8 * DAY, "before the server's clock"),
    (-10**18, "not a date"),
])
def test_live_events_must_be_near_the_server_clock(live_store, at, reason):
    with pytest.raises(InvalidEvent, match=reason):
        live_store.append(vote(at))
    assert live_store.counts()["interactions"] == 0


@pytest.mark.parametrize("at", [NOW, NOW + 299, NOW - 7 * DAY + 1])
def test_live_events_within_the_window_are_stored(live_store, at):
    assert live_store.append(vote(at))
    assert live_store.append(Impression("u1", ("p1",), at))


def test_api_times_that_no_clock_can_show_are_refused(rules):
    for at in (1e19, -1e18, float("nan"), float("inf")):
        with pytest.raises(InvalidEvent, match="at"):
            rules.event_time(at)
    assert rules.event_time(None) == NOW and rules.event_time(NOW + 0.7) == NOW


def test_only_configured_event_types_are_live(live_store, tmp_path):
    with pytest.raises(InvalidEvent, match="unknown event type 'DEFACE'"):
        live_store.append(vote(event_type="DEFACE"))
    assert live_store.append(vote(event_type="comment"))  # case-insensitive, as stored
    anything = EventStore(tmp_path / "any.sqlite3", EventRules(event_types=(), clock=lambda: NOW))
    assert anything.append(vote(event_type="SHARE"))
    anything.close()


def test_a_batch_with_one_late_event_is_refused_whole(live_store):
    with pytest.raises(InvalidEvent):
        live_store.append_many([vote(NOW, user_id="a"), vote(YEAR_2100, user_id="b")])
    assert live_store.counts()["interactions"] == 0


def test_unknown_polls_are_named(live_store):
    assert live_store.unknown_item_ids(["p1", "nope", "p2", "gone", "nope"]) == ["nope", "gone"]


# ---------------------------------------------------------------- history rule


def write_interactions(directory: Path, rows: list[list[str]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "interactions.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(INTERACTIONS.names)
        writer.writerows(rows)
    return directory


def row(user: str, at: int, event_type: str = "HUNCH") -> list[str]:
    return [user, "p1", str(at), event_type, "", "", ""]


@pytest.mark.parametrize("bad, reason", [
    (row("future", YEAR_2100), "after the server's clock"),
    (row("epoch", 0), "history floor"),
    (row("typo", NOW - DAY, "HUNHC"), "unknown event type"),
])
def test_import_refuses_history_outside_its_rule_and_changes_nothing(tmp_path, rules, bad,
                                                                     reason):
    db = tmp_path / "events.sqlite3"
    import_directory(write_interactions(tmp_path / "old", [row("u0", NOW - 400 * DAY)]), db,
                     rules=rules)
    good = [row(f"u{k}", NOW - 30 * DAY + k) for k in range(50)]
    directory = write_interactions(tmp_path / "new", good + [bad])
    with pytest.raises(DatasetValidationError, match=reason) as info:
        import_directory(directory, db, mode="full", rules=rules)
    assert info.value.total == 1
    with EventStore(db) as store:
        assert [e.user_id for e in store.interactions()] == ["u0"]


def test_old_history_after_the_floor_imports(tmp_path, rules):
    db = tmp_path / "events.sqlite3"
    directory = write_interactions(tmp_path / "d", [row("1997", 875_000_000),
                                                    row("soon", NOW + 60)])
    import_directory(directory, db, rules=rules)
    with EventStore(db) as store:
        assert store.counts()["interactions"] == 2
    assert DEFAULT_HISTORY_FLOOR < 875_000_000  # MovieLens 100k (1997) is importable


def test_the_store_applies_the_history_rule_to_bulk_imports_too(tmp_path, rules):
    with EventStore(tmp_path / "events.sqlite3", rules) as store:
        store.import_bulk([vote(NOW - 30 * DAY)])
        with pytest.raises(InvalidEvent, match="history floor"):
            store.import_bulk([vote(NOW - DAY, user_id="x"), vote(5)], mode="full")
        assert store.counts()["interactions"] == 1


def test_ids_at_the_schema_limit_are_fine_and_one_more_is_not(store):
    assert store.append(vote(user_id="u" * MAX_ID_LENGTH))
    with pytest.raises(InvalidEvent, match="too long"):
        store.append(vote(user_id="u" * (MAX_ID_LENGTH + 1)))


def test_hunch_data_import_applies_the_configured_history_rule(tmp_path):
    """The CLI builds its rules from settings: a row from 2100 is named and refused, a
    type added with HUNCH_EVENT_TYPES is accepted."""
    import time

    from click.testing import CliRunner

    from gateway.cli import cli

    now = int(time.time())
    env = {"HUNCH_HOME": str(tmp_path / "home")}
    runner = CliRunner()
    future = write_interactions(tmp_path / "future", [row("u1", now - DAY),
                                                      row("liar", YEAR_2100)])
    refused = runner.invoke(cli, ["data", "import", str(future)], env=env)
    assert refused.exit_code == 2, refused.output
    assert "interactions.csv:3: " in refused.output  # the line of liar's vote
    assert "after the server's clock" in refused.output
    ratings = write_interactions(tmp_path / "ratings", [row("u1", now - DAY, "RATING")])
    assert runner.invoke(cli, ["data", "import", str(ratings)], env=env).exit_code == 2
    allowed = runner.invoke(cli, ["data", "import", str(ratings)],
                            env={**env, "HUNCH_EVENT_TYPES": '["HUNCH", "RATING"]'})
    assert allowed.exit_code == 0, allowed.output
    with EventStore(tmp_path / "home" / "events.sqlite3") as store:
        assert [e.user_id for e in store.interactions()] == ["u1"]


def test_a_post_dated_poll_is_refused_naming_created_at_not_at() -> None:
    """The message names the field the client sent (a probe read "at ... is more than
    300 s after the server's clock" for upsertPoll's createdAt)."""
    rules = EventRules(clock=lambda: NOW)
    with pytest.raises(InvalidEvent, match=r"^createdAt \d+ is more than 300 s after"):
        rules.poll_created_at(NOW + 3600, internal_tool=False)


def test_the_import_refuses_a_poll_id_with_a_bar_as_upsert_poll_does(tmp_path) -> None:
    """A probe imported ITEM_ID "probe|pipe": served, but never reportable as seen,
    since IMPRESSION lists join ids with '|'."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "items.csv").write_text("ITEM_ID,CATEGORY,AUTHOR_ID,CREATION_TIMESTAMP\n"
                                    f"probe|pipe,X,u2,{NOW - 60}\nfine,X,u2,{NOW - 60}\n")
    (data / "interactions.csv").write_text(
        "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\n"
        f"u1,fine,{NOW - 30},HUNCH\nu1,a|b,{NOW - 20},HUNCH\n")
    with pytest.raises(DatasetValidationError) as refused:
        import_directory(data, tmp_path / "events.sqlite3")
    assert "items.csv:2: ITEM_ID 'probe|pipe' contains '|'" in str(refused.value)
    assert "interactions.csv:3: ITEM_ID 'a|b' contains '|'" in str(refused.value)


def test_every_control_surrogate_and_invisible_character_is_still_found() -> None:
    """refused_characters skips its loop when one regex finds no suspect character: the
    regex must cover every code point the loop refuses (all of Unicode checked)."""
    import unicodedata

    from hunchio.values import DECEPTIVE_CHARACTERS, refused_characters

    refused = [c for c in map(chr, range(0x110000))
               if unicodedata.category(c) in ("Cc", "Cs") or c in DECEPTIVE_CHARACTERS]
    assert len(refused) == 65 + 2048 + len(DECEPTIVE_CHARACTERS)
    missed = [c for c in refused if not list(refused_characters(f"ab{c}cd"))]
    assert missed == []
    assert [i for i, _, _ in refused_characters("ok\u202eok\x00")] == [2, 5]


def test_plain_says_yes_only_for_values_every_slow_check_passes() -> None:
    """check_printable passes a `plain` value without its slower checks: plain must never
    say yes to a value they refuse (every code point alone, between letters, at the ends,
    and random mixes of the awkward ones)."""
    import random

    from hunchio.values import padded, plain, refused_characters

    def slow_ok(value: str) -> bool:
        return not padded(value) and not list(refused_characters(value))

    samples = []
    for code in range(0x110000):
        c = chr(code)
        samples += [c, f"a{c}b", f"{c}ab", f"ab{c}"]
    awkward = [" ", "\t", "\u00a0", "\u3000", "\x00", "\x85", "\u202e", "\u200d", "\ud800",
               "a", "\u00e9", "|", "\U0001f600"]
    rng = random.Random(0)
    samples += ["".join(rng.choices(awkward, k=rng.randint(0, 6))) for _ in range(20_000)]
    wrong = [s for s in samples if plain(s) and not slow_ok(s)]
    assert wrong == []
    assert plain("google-oauth2|1093") and plain("\u0645\u200c\u0646") and not plain(" u1")
