"""Personalize-format datasets: validation with file:line reasons, all-or-nothing import,
and export that round-trips."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from recsys.datasets import (
    MissingDataset,
    clean_text,
    export_directory,
    import_directory,
    load_directory,
)
from recsys.errors import DatasetValidationError, SchemaError
from recsys.schemas import INTERACTIONS, ITEMS, USERS, write_schema

GOOD_INTERACTIONS = [
    ["u1", "p1", "1700000000", "HUNCH", "1.0", "p1|p2|p3", "rec-1"],
    ["u1", "p2", "1700000060", "COMMENT", "12", "", ""],
    ["u2", "p1", "1700000100", "HUNCH", "", "p1", ""],
]
GOOD_ITEMS = [
    ["p1", "SPORTS", "u9", "1699990000", "Who wins the <b>derby</b>?", "Home|Away", "", "", ""],
    ["p2", "PROMOTIONAL_EVENT|MUSIC", "u8", "1699990500", "Best album", "A|B", "d", "", "nice"],
    ["p3", "MUSIC", "u8", "1699991000", "", "", "", "", ""],
]
GOOD_USERS = [["u1", "34", "en_US", "", ""], ["u2", "", "fr_FR", "c1", "m2"]]


def _write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def make_dir(tmp_path: Path, interactions=None, items=None, users=None, impressions=None,
             interaction_header=None) -> Path:
    d = tmp_path / "data"
    d.mkdir(exist_ok=True)
    _write(d / "interactions.csv", interaction_header or INTERACTIONS.names,
           GOOD_INTERACTIONS if interactions is None else interactions)
    _write(d / "items.csv", ITEMS.names, GOOD_ITEMS if items is None else items)
    _write(d / "users.csv", USERS.names, GOOD_USERS if users is None else users)
    if impressions is not None:
        _write(d / "impressions.csv", ["USER_ID", "TIMESTAMP", "IMPRESSION", "RECOMMENDATION_ID"],
               impressions)
    return d


def problems_of(directory: Path) -> list[str]:
    with pytest.raises(DatasetValidationError) as info:
        load_directory(directory)
    return info.value.problems


def test_valid_directory_loads_typed_records(tmp_path):
    data = load_directory(make_dir(tmp_path, impressions=[["u1", "1700000200", "p2|p3", ""]]))
    assert len(data.interactions) == 3
    first = data.interactions[0]
    assert (first.user_id, first.item_id, first.timestamp) == ("u1", "p1", 1700000000)
    assert first.impression == ("p1", "p2", "p3")
    assert first.recommendation_id == "rec-1"
    assert data.interactions[2].event_value is None
    assert data.items["p2"]["CATEGORY"] == "PROMOTIONAL_EVENT|MUSIC"
    assert data.items["p1"]["CREATION_TIMESTAMP"] == 1699990000
    # textual fields lose their markup (Personalize strips it)
    assert data.items["p1"]["QUESTION"] == "Who wins the derby ?"
    assert data.users["u1"]["AGE"] == 34 and data.users["u1"]["CLUSTER"] is None
    assert data.impressions[0].item_ids == ("p2", "p3")
    assert len(data.fingerprint) == 32


@pytest.mark.parametrize(
    "row, reason",
    [
        (["u1", "p1", "yesterday", "HUNCH", "", "", ""], "TIMESTAMP 'yesterday' is not an integer"),
        (["u1", "p1", "1700000000", "HUNCH", "lots", "", ""], "EVENT_VALUE 'lots' is not a number"),
        (["", "p1", "1700000000", "HUNCH", "", "", ""], "USER_ID is empty but required"),
        (["u" * 257, "p1", "1700000000", "HUNCH", "", "", ""], "ids may have at most 256"),
        (["u1", "p1", "1700000000", "HUNCH", "", "|".join(["p1234567"] * 130), ""],
         "IMPRESSION is 1169 characters long"),
        (["u1", "p1", "1700000000"], "expected 7 fields, found 3"),
    ],
)
def test_each_interaction_problem_names_file_and_line(tmp_path, row, reason):
    rows = [GOOD_INTERACTIONS[0], row]
    problems = problems_of(make_dir(tmp_path, interactions=rows))
    assert len(problems) == 1
    assert problems[0].startswith("interactions.csv:3: ")
    assert reason in problems[0]


def test_overlong_categorical_and_duplicate_item(tmp_path):
    items = [GOOD_ITEMS[0], ["p9", "X" * 1001, "u1", "1", "", "", "", "", ""], GOOD_ITEMS[0]]
    problems = problems_of(make_dir(tmp_path, items=items))
    assert any(p.startswith("items.csv:3: CATEGORY is 1001 characters") for p in problems)
    assert any(p.startswith("items.csv:4: ITEM_ID 'p1' already appeared on line 2")
               for p in problems)


def test_missing_and_unknown_columns_reported_on_header_line(tmp_path):
    header = ["USER_ID", "ITEM_ID", "WHEN", "EVENT_TYPE", "EVENT_VALUE", "IMPRESSION",
              "RECOMMENDATION_ID"]
    problems = problems_of(make_dir(tmp_path, interaction_header=header))
    assert any(p.startswith("interactions.csv:1: unknown column(s) WHEN") for p in problems)
    assert any(p.startswith("interactions.csv:1: missing required column(s) TIMESTAMP")
               for p in problems)


def test_every_problem_counted_but_first_twenty_shown(tmp_path):
    rows = [["u1", "p1", "bad", "HUNCH", "", "", ""]] * 45
    with pytest.raises(DatasetValidationError) as info:
        load_directory(make_dir(tmp_path, interactions=rows))
    err = info.value
    assert err.total == 45
    text = str(err)
    assert text.startswith("45 problem(s)")
    assert "interactions.csv:21:" in text and "interactions.csv:22:" not in text
    assert "... and 25 more" in text


def test_problems_across_files_are_all_reported(tmp_path):
    problems = problems_of(make_dir(
        tmp_path,
        interactions=[["u1", "p1", "x", "HUNCH", "", "", ""]],
        users=[["u1", "old", "en", "", ""]],
    ))
    assert {p.split(":")[0] for p in problems} == {"interactions.csv", "users.csv"}


def test_missing_interactions_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingDataset, match="interactions.csv"):
        load_directory(tmp_path / "empty")


def test_custom_schema_file_is_honoured(tmp_path):
    d = make_dir(tmp_path)
    schema = json.loads(json.dumps(USERS.to_avro()))
    schema["fields"] = [f for f in schema["fields"] if f["name"] in ("USER_ID", "LOCALE")]
    (d / "users.schema.json").write_text(json.dumps(schema))
    # users.csv still has AGE, CLUSTER, COMMUNITY: now unknown columns
    problems = problems_of(d)
    assert any("users.csv:1: unknown column(s) AGE, CLUSTER, COMMUNITY" in p for p in problems)


def test_invalid_schema_file_is_a_schema_error(tmp_path):
    d = make_dir(tmp_path)
    (d / "items.schema.json").write_text('{"type": "record", "fields": [{"name": "X", "type": "string"}]}')
    with pytest.raises(SchemaError, match="must declare ITEM_ID"):
        load_directory(d)


@pytest.mark.parametrize("content, says", [
    (b"[]", "expected an Avro record"),  # an AttributeError traceback before
    (b"\xff\xfe{}", "not UTF-8"),  # a UnicodeDecodeError traceback before
    (json.dumps({"type": "record", "name": "i", "fields": [
        {"name": "USER_ID", "type": "string"}, {"name": "ITEM_ID", "type": "string"},
        {"name": "TIMESTAMP", "type": "string"}]}).encode(),
     "field TIMESTAMP must be of type long, not 'string'"),  # a TypeError deep in import
    (json.dumps({"type": "record", "name": "i", "fields": [
        {"name": "USER_ID", "type": "string"}, {"name": "ITEM_ID", "type": "long"},
        {"name": "TIMESTAMP", "type": "long"}]}).encode(),
     "field ITEM_ID must be of type string"),
])
def test_a_schema_file_the_engine_cannot_read_says_why(tmp_path, content, says):
    d = make_dir(tmp_path)
    (d / "interactions.schema.json").write_bytes(content)
    with pytest.raises(SchemaError, match=says):
        load_directory(d)


def test_what_the_system_refuses_is_one_line_not_a_traceback(tmp_path):
    """A directory where a file should be, a place the user may not write, an invalid
    HUNCH_* setting: the user's to fix, said in one line (exit 2), not a traceback."""
    from click.testing import CliRunner

    from gateway.cli import cli

    d = make_dir(tmp_path)
    (d / "items.csv").unlink()
    (d / "items.csv").mkdir()
    runner = CliRunner()
    env = {"HUNCH_HOME": str(tmp_path / "home")}
    result = runner.invoke(cli, ["data", "import", str(d)], env=env)
    assert result.exit_code == 2, result.output
    assert "Is a directory" in result.output and "items.csv" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(cli, ["data", "export", str(tmp_path / "home")],
                           env={**env, "HUNCH_EVENT_TYPES": "HUNCH"})
    assert result.exit_code == 2, result.output
    assert "invalid setting" in result.output and "event_types" in result.output
    assert "HUNCH_EVENT_TYPES='[" in result.output


def test_a_byte_order_mark_is_not_part_of_the_header(tmp_path):
    """Excel writes a UTF-8 byte-order mark by default: the header's first column was
    read as "\ufeffUSER_ID" (unknown) and USER_ID reported missing."""
    d = make_dir(tmp_path)
    path = d / "interactions.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert len(load_directory(d).interactions) == 3


def test_a_very_wide_header_is_refused_at_once_with_a_short_message(tmp_path):
    """header.count per column made a 100k-column header take minutes to refuse, and
    the message listed every column (789 KB)."""
    import time

    d = make_dir(tmp_path)
    path = d / "interactions.csv"
    lines = path.read_text().splitlines()
    extra = [f"c{i}" for i in range(100_000)] + ["EVENT_VALUE"] * 50_000
    path.write_text(",".join([lines[0], *extra]) + "\n")
    started = time.perf_counter()
    problems = problems_of(d)
    assert time.perf_counter() - started < 10
    assert any("unknown column(s) c0, c1" in p and "and 99,980 more" in p for p in problems)
    assert any("duplicated column(s) EVENT_VALUE" in p for p in problems)
    assert sum(len(p) for p in problems) < 2_000


def test_a_dangling_link_is_refused_not_read_as_an_absent_file(tmp_path):
    """users.csv linking to nothing was read as "no users.csv": `--mode full` then wiped
    every stored user and reported success."""
    d = make_dir(tmp_path)
    (d / "users.csv").unlink()
    (d / "users.csv").symlink_to(tmp_path / "moved-away.csv")
    problems = problems_of(d)
    assert any(p.startswith("users.csv:1: a symbolic link to") and "moved-away.csv" in p
               for p in problems), problems


def test_events_on_polls_without_a_record_are_counted_in_the_summary(tmp_path):
    """Personalize takes interactions on items it has no record of, and convert-ratings
    leaves out movies without a readable year: such events are imported (refusing them
    broke MovieLens' convert-then-import), and the summary says how many there are, as
    the feed can show such a poll by its id only."""
    d = make_dir(tmp_path)
    db = tmp_path / "events.sqlite3"
    with (d / "interactions.csv").open("a") as fh:
        fh.write("u1,GHOST,1700000300,HUNCH,,,\n")
    report = import_directory(d, db)
    assert report.without_record == 1
    assert "note: 1 interactions name polls that neither items.csv nor the store" \
        in report.describe()
    later = tmp_path / "later"
    later.mkdir()
    (later / "interactions.csv").write_text("USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\n"
                                            "u3,p1,1700000400,HUNCH\n")
    assert import_directory(later, db).without_record == 0  # p1 is in the store
    assert "note:" not in import_directory(later, db).describe()


def test_rows_repeating_an_event_are_kept_once_and_counted_in_the_summary(tmp_path):
    """A file has no EVENT_ID column: two comments stored in one second export as two
    identical rows, and the import keeps one. The summary said "read 280,007" of a file
    of 280,008 rows, with nothing about the other (helper-59)."""
    comment = ["u1", "p2", "1700000060", "COMMENT", "12", "", ""]
    shown = ["u1", "1700000200", "p2|p3", ""]
    d = make_dir(tmp_path, interactions=GOOD_INTERACTIONS + [comment],
                 impressions=[shown, shown])
    report = import_directory(d, tmp_path / "events.sqlite3")
    assert report.datasets.repeated_rows == 2
    assert len(report.datasets.interactions) == 3 and len(report.datasets.impressions) == 1
    assert "(2 more rows repeated an earlier row's event and were kept once)" \
        in report.describe()
    (tmp_path / "plain").mkdir()
    assert "repeated" not in load_directory(make_dir(tmp_path / "plain")).describe()


def test_a_byte_that_is_not_utf8_is_reported_on_its_own_line(tmp_path):
    """Decoded in buffers, a Latin-1 byte on line 51 was "line 1: unreadable header" and
    one on line 182 was reported at line 170."""
    d = make_dir(tmp_path)
    path = d / "interactions.csv"
    header, *rows = path.read_text().splitlines()
    body = [header] + [f"u{k},p1,{1700000000 + k},HUNCH,,," for k in range(60)]
    body[50] = body[50].replace("HUNCH", "HUNCH,caf\xe9")  # line 51
    path.write_bytes("\n".join(body).encode("utf-8").replace("\xc3\xa9".encode("latin-1"),
                                                              b"\xe9") + b"\n")
    problems = problems_of(d)
    assert problems == ["interactions.csv:51: not UTF-8 (byte 0xe9 at position 28 of the "
                        "line); save the file as UTF-8"], problems


@pytest.mark.parametrize("ending", [b"\r", b"\r\n", b"\n"], ids=["cr", "crlf", "lf"])
def test_every_line_ending_reads(tmp_path, ending):
    """Bare CR ends lines in Excel for Mac's "CSV (Macintosh)": read per line as bytes
    (for UTF-8 errors by line), such a file came as one line."""
    d = make_dir(tmp_path)
    for name in ("interactions.csv", "items.csv"):
        path = d / name
        path.write_bytes(ending.join(path.read_bytes().splitlines()) + ending)
    data = load_directory(d)
    assert len(data.interactions) == 3 and len(data.items) == 3


def test_an_absurdly_long_number_is_refused_not_a_crash(tmp_path):
    d = make_dir(tmp_path)
    path = d / "interactions.csv"
    header, first, *rest = path.read_text().splitlines()
    path.write_text("\n".join([header, first.replace("1700000000", "9" * 5000), *rest]) + "\n")
    problems = problems_of(d)
    assert len(problems) == 1 and "interactions.csv:2: TIMESTAMP" in problems[0]
    assert "is not an integer" in problems[0] and len(problems[0]) < 200


def test_excels_leftovers_rows_of_empty_cells_and_semicolons(tmp_path):
    """Excel leaves rows of empty cells (",,,,,,") below the data, refused as "USER_ID
    is empty"; in many locales it separates with ';', which said only "unknown column"."""
    d = make_dir(tmp_path)
    path = d / "interactions.csv"
    path.write_text(path.read_text() + ",,,,,,\n , ,,,,,\n")
    assert len(load_directory(d).interactions) == 3
    lines = path.read_text().splitlines()
    path.write_text("\n".join(line.replace(",", ";") for line in lines) + "\n")
    assert any("separated by ';'? save the file with commas" in p for p in problems_of(d))


def test_an_unclosed_quote_is_pointed_at(tmp_path):
    d = make_dir(tmp_path)
    path = d / "interactions.csv"
    header, *rows = path.read_text().splitlines()
    rows[0] = rows[0].replace("HUNCH", '"HUNCH')  # opened on line 2, never closed
    path.write_text("\n".join([header, *rows]) + "\n")
    problems = problems_of(d)
    assert len(problems) == 1 and problems[0].startswith("interactions.csv:4: expected 7")
    assert "the row runs from line 2 to line 4: a quote opened and not closed?" in problems[0]


@pytest.mark.parametrize("cell", ["1_700_000_000", "\u0661\u0667\u0660\u0660\u0660"
                                  "\u0660\u0660\u0660\u0660\u0660", "1e19", "1e300",
                                  "-99999999999999"])
def test_a_timestamp_must_be_ascii_digits_of_a_real_date(tmp_path, cell):
    """int() takes underscores and other scripts' digits; 1e19 passed as an integer and
    overflowed in the recipes' clock under `hunch train --data`."""
    d = make_dir(tmp_path)
    path = d / "interactions.csv"
    header, first, *rest = path.read_text().splitlines()
    path.write_text("\n".join([header, first.replace("1700000000", cell), *rest]) + "\n")
    problems = problems_of(d)
    assert len(problems) == 1 and problems[0].startswith("interactions.csv:2:"), problems
    assert "not an integer" in problems[0] or "is not a date" in problems[0]


def test_numbers_as_exporters_write_them_still_read(tmp_path):
    d = make_dir(tmp_path)
    path = d / "interactions.csv"
    header, first, second, *rest = path.read_text().splitlines()
    first = first.replace("1700000000", "1700000000.0").replace(",1.0,", ",2.5e0,")
    second = second.replace("1700000060", " 1700000060 ").replace(",12,", ",-.5,")
    path.write_text("\n".join([header, first, second, *rest]) + "\n")
    events = sorted(load_directory(d).interactions, key=lambda e: e.timestamp)
    assert [e.timestamp for e in events[:2]] == [1700000000, 1700000060]
    assert [e.event_value for e in events[:2]] == [2.5, -0.5]
    path.write_text("\n".join([header, first.replace(",2.5e0,", ",1_0,"), second]) + "\n")
    assert any("EVENT_VALUE '1_0' is not a number" in p for p in problems_of(d))


def test_clean_text_strips_markup_and_cuts():
    assert clean_text("  <p>Hello</p>\n\n world  ") == "Hello world"
    assert len(clean_text("word " * 10_000)) == 20_000


def test_a_tag_never_spans_a_less_than_sign():
    """Markup is '<', no '<' or '>', then '>': the scan from each '<' stops at the next
    one. Spanning them, a text of 60,000 '<' cost 2,000 steps a character (a second
    per upsertPoll, on the gateway's event loop)."""
    assert clean_text("<a <b>c") == "<a c"
    assert clean_text("x < y > z") == "x z"  # still read as a tag, as before
    assert clean_text("<" * 60_000) == "<" * 20_000
    assert clean_text("<a" * 30_000) == ("<a" * 10_000)


def test_clean_text_folds_every_whitespace_the_regex_knows():
    """clean_text splits on str.isspace; the regex \\s+ it replaced saw the same set."""
    import re
    import sys

    spaces = "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace())
    assert re.fullmatch(r"\s+", spaces)
    assert clean_text(f"{spaces}a{spaces}\u200bb{spaces}") == "a \u200bb"


def test_failed_import_changes_nothing(tmp_path):
    from recsys.events import EventStore

    db = tmp_path / "events.sqlite3"
    import_directory(make_dir(tmp_path), db)
    with EventStore(db) as store:
        before = store.counts()
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    good_rows = [[f"u{i}", "p1", str(1700000000 + i), "HUNCH", "", "", ""] for i in range(500)]
    bad = make_dir(bad_dir, interactions=good_rows + [["u1", "p1", "never", "HUNCH", "", "", ""]])
    with pytest.raises(DatasetValidationError):
        import_directory(bad, db, mode="full")
    with EventStore(db) as store:
        assert store.counts() == before


def test_import_export_round_trip(tmp_path):
    from recsys.events import EventStore

    src = make_dir(tmp_path, impressions=[["u1", "1700000200", "p2|p3", "rec-1"]])
    db = tmp_path / "events.sqlite3"
    import_directory(src, db)
    out = tmp_path / "out"
    report = export_directory(db, out)
    assert report.counts["interactions"] == 3
    a, b = load_directory(src), load_directory(out)
    assert sorted(a.interactions, key=lambda e: e.event_id) == sorted(
        b.interactions, key=lambda e: e.event_id)
    assert a.items == b.items and a.users == b.users
    assert a.impressions == b.impressions
    # importing the same directory twice adds nothing (event ids are derived from content)
    import_directory(src, db)
    with EventStore(db) as store:
        assert store.counts()["interactions"] == 3


def test_a_failed_export_leaves_the_directory_as_it_was(tmp_path):
    """Exported into a directory where users.csv is a folder, the export replaced
    interactions.csv and items.csv and then failed: a mix of two exports."""
    from recsys.datasets import ExportFailed

    db = tmp_path / "events.sqlite3"
    import_directory(make_dir(tmp_path), db)
    out = tmp_path / "out"
    out.mkdir()
    (out / "interactions.csv").write_text("old export\n")
    (out / "users.csv").mkdir()
    with pytest.raises(ExportFailed, match="users.csv"):
        export_directory(db, out)
    assert sorted(p.name for p in out.iterdir()) == ["interactions.csv", "users.csv"]
    assert (out / "interactions.csv").read_text() == "old export\n"
    (out / "users.csv").rmdir()
    export_directory(db, out)  # and once the way is clear, all of it
    assert len(load_directory(out).interactions) == 3
    assert not [p for p in out.iterdir() if p.name.startswith(".export-")]


def test_an_export_from_no_store_writes_nothing(tmp_path):
    """A mistyped HUNCH_HOME: the export created an empty store and replaced every file
    of the backup directory with a header, exit 0."""
    from recsys.datasets import ExportFailed

    backup = tmp_path / "backup"
    export_directory(_imported(tmp_path), backup)
    before = {p.name: p.read_bytes() for p in backup.iterdir()}
    with pytest.raises(ExportFailed, match="no event store at"):
        export_directory(tmp_path / "typo" / "events.sqlite3", backup)
    assert {p.name: p.read_bytes() for p in backup.iterdir()} == before
    assert not (tmp_path / "typo" / "events.sqlite3").exists()


def _imported(tmp_path):
    db = tmp_path / "events.sqlite3"
    import_directory(make_dir(tmp_path), db)
    return db


def test_a_custom_items_schema_round_trips_through_export(tmp_path):
    """The README allows a custom items schema: one without AUTHOR_ID and with a float
    PRICE imported fine, and its export was refused on re-import (AUTHOR_ID "required")
    with PRICE turned into a categorical string (2 became "2.0")."""
    from recsys.events import EventStore

    src = tmp_path / "custom"
    src.mkdir()
    (src / "items.schema.json").write_text(json.dumps({
        "type": "record", "name": "Items", "fields": [
            {"name": "ITEM_ID", "type": "string"},
            {"name": "CATEGORY", "type": "string", "categorical": True},
            {"name": "PRICE", "type": "float"}, {"name": "STOCK", "type": "long"},
            {"name": "EXTRA", "type": ["null", "string"]}]}))
    (src / "items.csv").write_text("ITEM_ID,CATEGORY,PRICE,STOCK,EXTRA\n"
                                   "pX1,SPORTS,1.5,3,x\npX2,SPORTS,2,4,\n")
    (src / "interactions.csv").write_text("USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\n"
                                          "u1,pX1,1700000000,HUNCH\n")
    first, second = tmp_path / "a.sqlite3", tmp_path / "b.sqlite3"
    import_directory(src, first)
    export_directory(first, tmp_path / "out")
    import_directory(tmp_path / "out", second)  # refused before
    with EventStore(first) as a, EventStore(second) as b:
        assert {r["ITEM_ID"]: r for r in a.items()} == {r["ITEM_ID"]: r for r in b.items()}
        price = {r["ITEM_ID"]: r["PRICE"] for r in b.items()}
    assert price == {"pX1": 1.5, "pX2": 2.0}  # numbers, not "2.0"
    fields = {f["name"]: f for f in json.loads(
        (tmp_path / "out" / "items.schema.json").read_text())["fields"]}
    assert fields["PRICE"]["type"] == ["null", "float"] and "categorical" not in fields["PRICE"]
    assert fields["STOCK"]["type"] == ["null", "long"]
    assert fields["AUTHOR_ID"]["type"] == ["null", "string"]  # no record has one
    assert fields["ITEM_ID"]["type"] == "string"


def test_schema_files_written_are_valid_avro_records(tmp_path):
    path = write_schema(tmp_path, ITEMS)
    avro = json.loads(path.read_text())
    assert avro["namespace"] == "com.amazonaws.personalize.schema"
    textual = {f["name"] for f in avro["fields"] if f.get("textual")}
    assert textual == {"QUESTION", "OPTIONS", "DESCRIPTION", "OPTION_DESCRIPTIONS", "COMMENTS"}
    categorical = {f["name"] for f in avro["fields"] if f.get("categorical")}
    assert {"CATEGORY", "AUTHOR_ID"} <= categorical


def test_demo_data_round_trips_through_the_store(tmp_path):
    from recsys.demo_data import generate_demo_data

    src = tmp_path / "demo"
    generate_demo_data(src, users=120, polls=240, days=3, seed=5)
    db = tmp_path / "events.sqlite3"
    report = import_directory(src, db)
    assert report.datasets.interactions
    out = tmp_path / "exported"
    export_directory(db, out)
    a, b = load_directory(src), load_directory(out)
    assert sorted(a.interactions, key=lambda e: e.event_id) == sorted(
        b.interactions, key=lambda e: e.event_id)
    assert sorted(a.impressions, key=lambda e: e.event_id) == sorted(
        b.impressions, key=lambda e: e.event_id)
    assert a.items == b.items and a.users == b.users


def test_a_directory_read_keeps_each_impression_list_once_per_poll_as_the_stores_do(tmp_path):
    """`hunch train --data DIR` reads the files directly: a poll repeated in one
    IMPRESSION list must count once there too, as the stores keep it (review)."""
    from recsys.datasets import load_directory

    (tmp_path / "interactions.csv").write_text(
        "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,IMPRESSION\n"
        "u1,p1,1700000000,HUNCH,p1|p2|p1|p1|p3\n")
    (tmp_path / "items.csv").write_text(
        "ITEM_ID,CATEGORY,AUTHOR_ID,CREATION_TIMESTAMP\n"
        "p1,X,a,1699999000\np2,X,a,1699999000\np3,X,a,1699999000\n")
    (tmp_path / "impressions.csv").write_text(
        "USER_ID,TIMESTAMP,IMPRESSION\nu1,1700000001,p2|p2|p3\n")
    data = load_directory(tmp_path)
    training = data.training_data()
    assert training.interactions[0].impression == ("p1", "p2", "p3")
    assert [i.item_ids for i in training.impressions] == [("p2", "p3")]
    # Each event keeps the id derived from the list as written: importing the same
    # file again adds nothing, also into a store an older release filled (review).
    assert [e.event_id for e in training.interactions] == [
        e.event_id for e in data.interactions]
    assert data.interactions[0].impression == ("p1", "p2", "p1", "p1", "p3")
    from recsys.datasets import import_directory
    from recsys.events import EventStore

    store_path = tmp_path / "events.sqlite3"
    import_directory(tmp_path, store_path)
    import_directory(tmp_path, store_path)
    with EventStore(store_path) as store:
        assert store.counts()["interactions"] == 1 and store.counts()["impressions"] == 1
        assert list(store.interactions())[0].event_id == data.interactions[0].event_id


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path) -> None:
    """`hunch ... | head` closes the pipe early: the command stops without "error:
    Broken pipe" (what it printed before) and without a traceback."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-c", "from gateway.cli import main; main()", "export-schema"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).resolve().parents[2])
    proc.stdout.close()  # the reader is gone before the first line is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1
    assert err == "", err


def test_an_incremental_import_takes_users_csv_alone(tmp_path):
    """helper-64: the users.csv `hunch graph cluster` writes (the cluster labels) could not
    be imported without an interactions.csv beside it. Incremental imports take it alone;
    a full import, which replaces every event, still needs interactions."""
    from recsys.events import EventStore

    db = tmp_path / "events.sqlite3"
    import_directory(make_dir(tmp_path), db)
    labels = tmp_path / "labels"
    labels.mkdir()
    _write(labels / "users.csv", USERS.names, [["u1", "34", "en_US", "c7", "m1"]])
    report = import_directory(labels, db)
    assert "1 users" in report.describe()
    with EventStore(db) as store:
        assert store.get_user("u1")["CLUSTER"] == "c7"
        assert store.counts()["interactions"] == 3  # the events stay
    with pytest.raises(MissingDataset, match="interactions.csv"):
        import_directory(labels, db, mode="full")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(MissingDataset, match="items.csv, users.csv, impressions.csv or deleted_polls.csv alone"):
        import_directory(tmp_path / "nothing", db)
