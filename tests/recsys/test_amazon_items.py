"""Amazon Personalize's Items dataset declares one textual field; the local engine reads
five. What Amazon is given of a poll (PutItems, `hunch personalize export-items`) holds
them joined in one, POLL_TEXT, question first and comments last, within Amazon's
limits; the schema Amazon is given passes its dataset quotas, the local one does not."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import pytest
from botocore.stub import Stubber
from click.testing import CliRunner

from gateway.cli import cli
from gateway.services import Services
from recsys.amazon_items import amazon_item, poll_text
from recsys.backends import PersonalizeEventSink, make_clients
from recsys.backends.personalize import MAX_PROPERTIES_CHARS
from recsys.errors import AmazonQuotaExceeded
from recsys.events import EventStore
from recsys.schemas import (
    AMAZON_ITEMS,
    INTERACTIONS,
    ITEMS,
    MAX_TEXTUAL_LENGTH,
    USERS,
    DatasetSchema,
    Field,
    amazon_quota_problems,
    check_amazon_quotas,
    load_schema,
    write_schema,
)
from tests.recsys.test_datasets import make_dir
from tests.recsys.test_personalize_backend import CONFIG, session

POLL = {"ITEM_ID": "p9", "CATEGORY": "SPORTS|NEWS", "AUTHOR_ID": "u1",
        "CREATION_TIMESTAMP": 1_700_000_000,
        "QUESTION": "Who <b>wins</b>  tonight?", "OPTIONS": "Home|Away",
        "DESCRIPTION": "The derby,\nat last.", "OPTION_DESCRIPTIONS": "Reds|Blues",
        "COMMENTS": "no way \"Home\" wins"}
JOINED = ('Who wins tonight? Home|Away The derby, at last. Reds|Blues '
          'no way "Home" wins')


def _sent_items(client) -> list[dict]:
    calls: list[dict] = []
    client.meta.events.register("provide-client-params.personalize-events.PutItems",
                                lambda params, **_: calls.append(params))
    return calls


def test_a_poll_written_through_the_api_reaches_amazon_with_one_textual_property():
    """The gateway forwarded the five text fields, which Amazon's Items dataset cannot
    declare: now one pollText, question first, comments last, each part cleaned."""
    _, events = make_clients(CONFIG, session())
    sink = PersonalizeEventSink(CONFIG, events)
    services = SimpleNamespace(personalize_events=sink, item_copies=None,
                               _submit=lambda key, source, send: send(),
                               events=SimpleNamespace(deleted_item_ids=lambda ids: []))
    services._send_item = lambda item_id, record: Services._send_item(services, item_id,
                                                                      record)
    services._put_item_copies = lambda records: Services._put_item_copies(services, records)
    expected = {"category": "SPORTS|NEWS", "authorId": "u1",
                "creationTimestamp": 1_700_000_000, "pollText": JOINED}
    with Stubber(events) as stub:
        stub.add_response("put_items", {}, {
            "datasetArn": CONFIG.items_dataset_arn,
            "items": [{"itemId": "p9", "properties": json.dumps(expected, separators=(",", ":"))}]})
        Services._forward_poll(services, {**POLL, "UPDATED_BY": "u1"})
        stub.assert_no_pending_responses()


def test_long_text_is_cut_least_important_first_within_amazons_limits():
    """Five parts of 6,000 characters: Amazon keeps 20,000 of a textual field, so the
    comments go first, then the end of the option descriptions. Accented letters go as
    themselves (escaped, six JSON characters each, PutItems' 32,000 cut them at ~5,300);
    quotes escape to two, and the 32,000 then cut the text further, from its end."""
    parts = {"QUESTION": "q" * 6000, "OPTIONS": "o" * 6000, "DESCRIPTION": "d" * 6000,
             "OPTION_DESCRIPTIONS": "x" * 6000, "COMMENTS": "c" * 6000}
    kept = " ".join(("q" * 6000, "o" * 6000, "d" * 6000, "x" * 1997))
    accented = {name: "\u00e9" * 6000 for name in parts} | {"QUESTION": "Who wins?"}
    quoted = {name: '"' * 6000 for name in parts} | {"QUESTION": "Who wins?"}
    _, events = make_clients(CONFIG, session())
    sent = _sent_items(events)
    with Stubber(events) as stub:
        stub.add_response("put_items", {}, None)
        PersonalizeEventSink(CONFIG, events).put_items({"p1": {**POLL, **parts},
                                                        "p2": {**POLL, **accented},
                                                        "p3": {**POLL, **quoted}})
        stub.assert_no_pending_responses()
    (call,) = sent
    plain, letters, escaped = (json.loads(i["properties"]) for i in call["items"])
    assert plain["pollText"] == kept and len(kept) == MAX_TEXTUAL_LENGTH
    assert [k for k in escaped if k.lower() in {p.lower().replace("_", "") for p in parts}] \
        == [], "no local text field is sent"
    assert letters["pollText"] == poll_text({**POLL, **accented})[:MAX_TEXTUAL_LENGTH]
    lengths = [len(i["properties"]) for i in call["items"]]
    assert lengths[2] <= MAX_PROPERTIES_CHARS and lengths[2] > MAX_PROPERTIES_CHARS - 2
    whole = poll_text({**POLL, **quoted})
    assert escaped["pollText"] == whole[:len(escaped["pollText"])]
    assert escaped["pollText"].startswith('Who wins? "')
    assert len(escaped["pollText"]) < MAX_TEXTUAL_LENGTH


def test_chinese_and_japanese_text_is_cut_at_amazons_7000_characters():
    """Amazon keeps 7,000 characters of a textual value in Chinese or Japanese, 20,000
    in other languages (developer guide: quotas, unstructured text): Chinese and
    Japanese polls were cut at 20,000 and counted as whole. The rule: at least half the
    letters are Han ideographs or kana; an English poll naming a place in kanji, and a
    Korean one, keep 20,000."""
    chinese = {"QUESTION": "谁会赢?" * 1000, "COMMENTS": "主队" * 3000}
    japanese = {"QUESTION": "どちらが勝つ?" * 1000, "COMMENTS": "東京のチーム" * 1000}
    english = {"QUESTION": "Who wins in 東京 tonight? " * 1000}
    korean = {"QUESTION": "누가 이길까요? " * 3000}
    assert len(poll_text(chinese)) == 7000 and len(poll_text(japanese)) == 7000
    assert poll_text(japanese).startswith("どちらが勝つ?")  # cut from the end
    assert len(poll_text(english)) == MAX_TEXTUAL_LENGTH
    assert len(poll_text(korean)) == MAX_TEXTUAL_LENGTH
    assert len(amazon_item({**POLL, **chinese})["POLL_TEXT"]) == 7000
    # and PutItems carries all 7,000: escaped ("\u8c01", six characters each) the
    # properties' 32,000 cut them at ~5,300
    _, events = make_clients(CONFIG, session())
    sent = _sent_items(events)
    with Stubber(events) as stub:
        stub.add_response("put_items", {}, None)
        PersonalizeEventSink(CONFIG, events).put_items({"zh": {**POLL, **chinese}})
        stub.assert_no_pending_responses()
    (call,) = sent
    assert json.loads(call["items"][0]["properties"])["pollText"] == amazon_item(
        {**POLL, **chinese})["POLL_TEXT"]


def test_export_counts_a_chinese_poll_cut_at_7000_characters(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    chinese = {**POLL, "ITEM_ID": "zh", "QUESTION": "谁会赢?", "COMMENTS": "主队" * 4000}
    with EventStore(home / "events.sqlite3") as store:
        store.upsert_items([POLL, chinese])
    out = tmp_path / "amazon"
    result = CliRunner().invoke(cli, ["personalize", "export-items", str(out)],
                                env={"HUNCH_HOME": str(home)})
    assert result.exit_code == 0, result.output
    assert "the text of 1 reached" in result.output
    with open(out / "items.csv", newline="", encoding="utf-8") as f:
        rows = {row["ITEM_ID"]: row for row in csv.DictReader(f)}
    assert len(rows["zh"]["POLL_TEXT"]) == 7000


def test_the_schema_amazon_is_given_passes_its_quotas_and_the_local_one_does_not():
    check_amazon_quotas(AMAZON_ITEMS)
    assert [f.name for f in AMAZON_ITEMS.fields if f.textual] == ["POLL_TEXT"]
    assert AMAZON_ITEMS.names == [f.name for f in ITEMS.fields if not f.textual] + ["POLL_TEXT"]
    for schema in (USERS, INTERACTIONS):
        check_amazon_quotas(schema, event_types=2)
    with pytest.raises(AmazonQuotaExceeded, match="5 textual fields .*takes 1"):
        check_amazon_quotas(ITEMS)
    # each quota named, at its edge
    many = lambda dataset, n, **kw: DatasetSchema(dataset, (  # noqa: E731
        Field("ITEM_ID" if dataset == "items" else "USER_ID", "string"),
        *(Field(f"F{i}", "string", nullable=True, categorical=True, **kw) for i in range(n))))
    assert amazon_quota_problems(many("items", 100)) == []
    assert amazon_quota_problems(many("items", 101)) == [
        "101 metadata fields; Amazon's Items dataset takes 100"]
    assert amazon_quota_problems(many("users", 25)) == []
    assert amazon_quota_problems(many("users", 26)) == [
        "26 metadata fields; Amazon's Users dataset takes 25"]
    extra = DatasetSchema("interactions", INTERACTIONS.fields + tuple(
        Field(f"M{i}", "string", nullable=True, categorical=True) for i in range(6)))
    assert amazon_quota_problems(extra, event_types=5) == [
        "5 event types and 6 metadata fields; Amazon takes 10 together",
        "6 metadata fields; Amazon's Interactions dataset takes 5"]


def test_export_items_writes_what_amazon_imports_and_reads_back(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    unauthored = {"ITEM_ID": "film", "CATEGORY": "DRAMA", "QUESTION": "Seen it?"}
    long_poll = {**POLL, "ITEM_ID": "long", "COMMENTS": "c" * MAX_TEXTUAL_LENGTH}
    with EventStore(home / "events.sqlite3") as store:
        store.upsert_items([POLL, unauthored, long_poll])
    out = tmp_path / "amazon"
    result = CliRunner().invoke(cli, ["personalize", "export-items", str(out)],
                                env={"HUNCH_HOME": str(home)})
    assert result.exit_code == 0, result.output
    assert "wrote 3 polls" in result.output and "the text of 1 reached 20,000" in result.output
    schema = load_schema(out, "items")  # the local loader reads it as Amazon would
    assert schema == AMAZON_ITEMS and amazon_quota_problems(schema) == []
    assert json.loads((out / "items.schema.json").read_text()) == AMAZON_ITEMS.to_avro()
    with open(out / "items.csv", newline="", encoding="utf-8") as f:
        rows = {row["ITEM_ID"]: row for row in csv.DictReader(f)}
    assert list(next(iter(rows.values()))) == AMAZON_ITEMS.names
    assert rows["p9"] == {"ITEM_ID": "p9", "CATEGORY": "SPORTS|NEWS", "AUTHOR_ID": "u1",
                          "CREATION_TIMESTAMP": "1700000000", "POLL_TEXT": JOINED}
    assert rows["film"]["AUTHOR_ID"] == "" and rows["film"]["POLL_TEXT"] == "Seen it?"
    assert rows["long"]["POLL_TEXT"] == amazon_item(long_poll)["POLL_TEXT"]
    assert rows["long"]["POLL_TEXT"].startswith(JOINED[:-len('no way "Home" wins')] + "ccc")
    assert len(rows["long"]["POLL_TEXT"]) == MAX_TEXTUAL_LENGTH


def test_an_import_with_several_textual_fields_says_amazon_takes_one(tmp_path):
    data = make_dir(tmp_path)
    write_schema(data, ITEMS)  # the local schema, five textual fields
    runner = CliRunner()
    env = {"HUNCH_HOME": str(tmp_path / "home")}
    for backend, warned in (("local", False), ("personalize", True)):
        result = runner.invoke(cli, ["data", "import", str(data)],
                               env={**env, "HUNCH_BACKEND": backend})
        assert result.exit_code == 0, result.output
        assert ("Amazon Personalize's Items dataset takes 1" in result.output) is warned
    assert "export-items" in result.output and "joined as POLL_TEXT" in result.output


def test_amazon_reads_the_text_the_local_encoder_reads():
    """Same semantics: POLL_TEXT is what User-Personalization's encoder reads of a poll
    (its parts in the model's TEXT_FIELDS order, cleaned as it cleans them)."""
    from recsys.datasets import clean_text
    from recsys.recipes.user_personalization import TEXT_FIELDS
    from recsys.recipes.user_personalization.metadata import item_texts

    up = SimpleNamespace(text_fields=TEXT_FIELDS)
    polls = {"p9": POLL, "bare": {"QUESTION": "Only  a\tquestion"}, "none": {}}
    local = [clean_text(t) for t in item_texts(up, polls, list(polls))]
    assert [poll_text(p) or "" for p in polls.values()] == local
    assert local[0] == JOINED
