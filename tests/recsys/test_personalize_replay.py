"""``hunch personalize replay``: after an outage, Amazon is sent what the store holds in a
window, by the live forwarding's rules, against a local endpoint speaking Personalize's
protocol (real HTTP through botocore)."""

from __future__ import annotations

import time

from click.testing import CliRunner

from gateway.cli import cli
from gateway.settings import Settings
from recsys.backends.personalize import amazon_event_id
from recsys.events import EventStore, Impression, Interaction
from tests.recsys.test_personalize_backend import _FakePersonalize, endpoint  # noqa: F401


def _env(home, url: str) -> dict[str, str]:
    return {"HUNCH_HOME": str(home), "HUNCH_PERSONALIZE_TRACKING_ID": "tracking-1",
            "HUNCH_PERSONALIZE_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


def test_a_window_is_sent_again_by_the_forwarding_rules(tmp_path, endpoint):  # noqa: F811
    now = int(time.time())
    since = now - 100
    rules = Settings(home=tmp_path).event_rules()
    with EventStore(tmp_path / "events.sqlite3", rules) as store:
        store.record_recommendation("rec-1", "u1", ["p1", "p2", "p3"], now - 90)
        for event in [
            Interaction("u1", "p1", "COMMENT", since - 50, event_id="before"),  # heard then
            Interaction("u1", "p1", "COMMENT", since + 1, event_id="c1"),  # a repeat
            Interaction("u1", "p2", "COMMENT", since + 2, event_id="c2"),
            Interaction("u1", "p2", "COMMENT", since + 3, event_id="c3"),  # a repeat
            Interaction("u1", "p1", "HUNCH", since + 4, event_id="v1",
                        recommendation_id="rec-1"),
            Interaction("u2", "p1", "HUNCH", since + 5, event_id="v2"),
            Impression("u2", ("p4", "p5"), since + 6, event_id="i1"),  # never an interaction
            *[Interaction("u3", f"p{10 + k}", "HUNCH", since + 10 + k, event_id=f"w{k}")
              for k in range(11)],
            Interaction("u4", "p1", "HUNCH", now + 200, event_id="later"),  # past --until
        ]:
            assert store.append(event), event
    runner = CliRunner()
    env = _env(tmp_path, endpoint)

    dry = runner.invoke(cli, ["personalize", "replay", "--since", str(since), "--dry-run"],
                        env=env)
    assert dry.exit_code == 0, dry.output
    assert "would send 14 events of 3 users" in dry.output and "2 repeats" in dry.output
    assert _FakePersonalize.requests == []

    sent = runner.invoke(cli, ["personalize", "replay", "--since", str(since), "--until",
                               str(now + 100)], env=env)
    assert sent.exit_code == 0, sent.output
    assert "sent 14 events of 3 users" in sent.output and "0 refused" in sent.output
    calls = [(b["userId"], [(e["eventId"], e["eventType"], e["itemId"], e.get("impression"))
                            for e in b["eventList"]])
             for p, b in _FakePersonalize.requests if p == "/events"]
    assert calls[:2] == [
        ("u1", [(amazon_event_id("u1", "c2"), "COMMENT", "p2", None),
                (amazon_event_id("u1", "v1"), "HUNCH", "p1", ["p1", "p2", "p3"])]),
        ("u2", [(amazon_event_id("u2", "v2"), "HUNCH", "p1", None)])]
    # the event ids are derived from the stored ones as live forwarding derives them
    # (Amazon ignores those it has), 10 to a call
    assert [c[0] for c in calls[2:]] == ["u3", "u3"]
    assert [e[0] for c in calls[2:] for e in c[1]] == [
        amazon_event_id("u3", f"w{k}") for k in range(11)]
    assert len(calls[2][1]) == 10


def test_a_refused_call_is_reported_and_the_exit_status_says_so(tmp_path, endpoint):  # noqa: F811
    now = int(time.time())
    with EventStore(tmp_path / "events.sqlite3", Settings(home=tmp_path).event_rules()) as store:
        store.append(Interaction("u1", "p1", "HUNCH", now - 10, event_id="v1"))
    _FakePersonalize.fail_writes = True
    try:
        runner = CliRunner()
        out = runner.invoke(cli, ["personalize", "replay", "--since", "2026-01-01T00:00:00"],
                            env=_env(tmp_path, endpoint))
    finally:
        _FakePersonalize.fail_writes = False
    assert out.exit_code == 1, out.output
    assert "could not send events of 'u1'" in out.output and "1 refused" in out.output
    bad = CliRunner().invoke(cli, ["personalize", "replay", "--since", "yesterday"],
                             env=_env(tmp_path, endpoint))
    assert bad.exit_code == 2 and "neither epoch seconds nor an ISO 8601 time" in bad.output


def test_a_replay_leaves_deleted_polls_out(tmp_path, endpoint):  # noqa: F811
    """A window holding votes on a poll deleted since: the replay sent them, and Amazon
    learned the deleted poll again (the live copy of each had been refused or sent
    before the deletion); and the polls of a recommendation that showed it."""
    now = int(time.time())
    since = now - 100
    with EventStore(tmp_path / "events.sqlite3") as store:
        store.upsert_items([{"ITEM_ID": p, "AUTHOR_ID": "ann"} for p in ("gone", "kept")])
        store.record_recommendation("rec-1", "u1", ["gone", "kept"], now - 90)
        store.append(Interaction("u1", "gone", "HUNCH", since + 1, event_id="v1"))
        store.append(Interaction("u1", "kept", "HUNCH", since + 2, event_id="v2",
                                 recommendation_id="rec-1"))
        store.delete_item("gone", acting_user="ann")
    sent = CliRunner().invoke(cli, ["personalize", "replay", "--since", str(since)],
                              env=_env(tmp_path, endpoint))
    assert sent.exit_code == 0, sent.output
    events = [e for p, b in _FakePersonalize.requests if p == "/events" for e in b["eventList"]]
    assert [(e["itemId"], e.get("impression")) for e in events] == [("kept", ["kept"])]
