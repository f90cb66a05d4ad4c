"""hunch data convert-sequences: S3-Rec/ICLRec sequence files as interactions."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from click.testing import CliRunner

from recsys.datasets import load_directory
from recsys.public_sequences import (
    REVIEW_EVENT_TYPE,
    SNAPSHOT_TIMESTAMP,
    SequencesFormatError,
    convert_sequences,
)
from recsys.public_sources import PINNED_SOURCES, SEQUENCE_DATASETS, sha256_of

# Three users; u2 reviews item 10 twice (Yelp has such repeat visits).
SEQUENCES = "u1 10 11 12\nu2 10 13 10 14\n\nu3 12\n"


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "interactions.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_each_users_items_keep_their_order_and_end_at_the_snapshot(tmp_path: Path) -> None:
    source = tmp_path / "Toy.txt"
    source.write_text(SEQUENCES)
    report = convert_sequences(source, tmp_path / "out")
    assert (report.interactions, report.users, report.items, report.repeats) == (8, 3, 5, 1)
    rows = _rows(tmp_path / "out")
    assert {r["EVENT_TYPE"] for r in rows} == {REVIEW_EVENT_TYPE}
    stamps = [int(r["TIMESTAMP"]) for r in rows]
    assert stamps == sorted(stamps)  # written in time order
    for user, line in (("u1", "10 11 12"), ("u2", "10 13 10 14"), ("u3", "12")):
        mine = [r for r in rows if r["USER_ID"] == user]
        assert [r["ITEM_ID"] for r in mine] == line.split()
        assert [int(r["TIMESTAMP"]) for r in mine] == list(
            range(SNAPSHOT_TIMESTAMP - len(mine) + 1, SNAPSHOT_TIMESTAMP + 1))


def test_the_output_loads_and_each_users_newest_event_is_their_last_item(
        tmp_path: Path) -> None:
    source = tmp_path / "Toy.txt"
    source.write_text(SEQUENCES)
    convert_sequences(source, tmp_path / "out")
    data = load_directory(tmp_path / "out").training_data()
    newest: dict[str, tuple[int, str]] = {}
    for e in data.interactions:
        newest[e.user_id] = max(newest.get(e.user_id, (0, "")), (e.timestamp, e.item_id))
    assert {u: item for u, (_, item) in newest.items()} == {"u1": "12", "u2": "14", "u3": "12"}


@pytest.mark.parametrize("text, message", [
    ("", "is empty"),
    ("u1 10\nu2\n", "u2' has no item"),
    ("u1 10\nu1 11\n", "second line"),
])
def test_a_malformed_file_is_refused_and_nothing_is_written(tmp_path: Path, text: str,
                                                           message: str) -> None:
    source = tmp_path / "bad.txt"
    source.write_text(text)
    with pytest.raises(SequencesFormatError, match=message):
        convert_sequences(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_checks_the_pin_before_reading_and_takes_another_hash_only_when_told(
        tmp_path: Path) -> None:
    from gateway.cli import cli

    source = tmp_path / "Beauty.txt"  # the right name, other bytes
    source.write_text(SEQUENCES)
    run = CliRunner().invoke(cli, ["data", "convert-sequences", str(source),
                                   str(tmp_path / "out"), "--dataset", "amazon-beauty"])
    assert run.exit_code == 2, run.output
    assert "not the pinned amazon-beauty" in run.output
    assert PINNED_SOURCES["amazon-beauty"].sha256 in run.output
    assert not (tmp_path / "out").exists()
    run = CliRunner().invoke(cli, ["data", "convert-sequences", str(source),
                                   str(tmp_path / "out"), "--dataset", "amazon-beauty",
                                   "--sha256", sha256_of(source)])
    assert run.exit_code == 0, run.output
    assert "8 REVIEW interactions from 3 users on 5 items, 1 of them repeats" in run.output


def test_the_sequence_pins_split_into_development_and_confirmation() -> None:
    roles = {name: PINNED_SOURCES[name].role for name in SEQUENCE_DATASETS}
    # Sports and Yelp confirmed once (2026-12-05) and were then analysed: development since.
    assert roles == {"amazon-toys": "development", "amazon-beauty": "confirmation",
                     "amazon-sports": "development", "yelp-sequences": "development",
                     "amazon-video-games": "confirmation", "amazon-tools": "confirmation",
                     "amazon-office": "confirmation"}


# The counts S3-Rec's paper publishes for its preparation (Zhou et al. 2020, table 1).
_REAL_COUNTS = {"amazon-beauty": (198_502, 22_363, 12_101),
                "amazon-sports": (296_337, 35_598, 18_357),
                "amazon-toys": (167_597, 19_412, 11_924),
                "yelp-sequences": (316_354, 30_431, 20_033),
                # SASRec's paper (Kang & McAuley 2018, table 2): Video Games.
                "amazon-video-games": (287_107, 31_013, 23_715),
                # The counts of GraphDA's files (no paper table; counted when pinned).
                "amazon-tools": (134_476, 16_638, 10_217),
                "amazon-office": (53_258, 4_905, 2_420)}


@pytest.mark.parametrize("name", sorted(_REAL_COUNTS))
def test_the_real_pinned_file_converts_to_the_published_counts(name: str,
                                                              tmp_path: Path) -> None:
    from gateway.cli import cli

    path = PINNED_SOURCES[name].cached_path()
    if not path.exists():
        pytest.skip(f"{name} is not cached at {path} ({PINNED_SOURCES[name].obtain})")
    run = CliRunner().invoke(cli, ["data", "convert-sequences", str(path),
                                   str(tmp_path / "out"), "--dataset", name])
    assert run.exit_code == 0, run.output
    interactions, users, items = _REAL_COUNTS[name]
    assert f"{interactions:,} REVIEW interactions from {users:,} users on {items:,} items" \
        in run.output


@pytest.mark.parametrize("content, message", [
    (b"u1 10\nu2 \xff 3\n", "not UTF-8"),
    (b"u1 " + b"1" * (64 * 100_000 + 10), "longer than"),
])
def test_bytes_that_are_not_a_sequences_file_are_refused_typed(tmp_path: Path, content: bytes,
                                                               message: str) -> None:
    source = tmp_path / "bad.txt"
    source.write_bytes(content)
    with pytest.raises(SequencesFormatError, match=message):
        convert_sequences(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_bom_and_windows_line_ends_do_not_reach_the_ids(tmp_path: Path) -> None:
    source = tmp_path / "crlf.txt"
    source.write_bytes(b"\xef\xbb\xbfu1 10 11\r\nu2 12\r\n")
    convert_sequences(source, tmp_path / "out")
    assert [(r["USER_ID"], r["ITEM_ID"]) for r in _rows(tmp_path / "out")] == [
        ("u1", "10"), ("u1", "11"), ("u2", "12")]


def test_an_out_dir_with_other_dataset_files_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "Toy.txt"
    source.write_text(SEQUENCES)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "items.csv").write_text("ITEM_ID\nstale\n")
    with pytest.raises(SequencesFormatError, match="items.csv"):
        convert_sequences(source, tmp_path / "out")
    assert not (tmp_path / "out" / "interactions.csv").exists()


def test_sha256_without_dataset_is_a_usage_error(tmp_path: Path) -> None:
    from gateway.cli import cli

    source = tmp_path / "Toy.txt"
    source.write_text(SEQUENCES)
    run = CliRunner().invoke(cli, ["data", "convert-sequences", str(source),
                                   str(tmp_path / "out"), "--sha256", "0" * 64])
    assert run.exit_code == 2 and "--dataset" in run.output, run.output
    assert not (tmp_path / "out").exists()


# SASRec's layout: one event per line, a user's lines in time order (here interleaved).
PAIRS = "u1 10\nu2 10\nu1 11\nu2 13\n\nu1 12\nu2 10\nu3 12\nu2 14\n"


def test_the_pairs_layout_reads_one_event_per_line_in_file_order(tmp_path: Path) -> None:
    source = tmp_path / "Video.txt"
    source.write_text(PAIRS)
    report = convert_sequences(source, tmp_path / "out", layout="pairs")
    lines = tmp_path / "Toy.txt"
    lines.write_text(SEQUENCES)
    same = convert_sequences(lines, tmp_path / "same")
    assert (report.interactions, report.users, report.items, report.repeats) == (8, 3, 5, 1)
    assert _rows(tmp_path / "out") == _rows(tmp_path / "same")  # the same histories
    assert same.interactions == 8


@pytest.mark.parametrize("text, layout, message", [
    ("u1 10 11\n", "pairs", "3 fields"),
    ("u1\n", "pairs", "1 fields"),
    ("u1 10\n", "rows", "layout 'rows'"),
])
def test_a_line_outside_its_layout_is_refused(tmp_path: Path, text: str, layout: str,
                                              message: str) -> None:
    source = tmp_path / "bad.txt"
    source.write_text(text)
    with pytest.raises(SequencesFormatError, match=message):
        convert_sequences(source, tmp_path / "out", layout=layout)
    assert not (tmp_path / "out").exists()


def test_cli_takes_the_pinned_datasets_layout_and_refuses_another(tmp_path: Path) -> None:
    from gateway.cli import cli

    source = tmp_path / "Video.txt"
    source.write_text(PAIRS)
    digest = sha256_of(source)
    run = CliRunner().invoke(cli, ["data", "convert-sequences", str(source),
                                   str(tmp_path / "out"), "--dataset", "amazon-video-games",
                                   "--sha256", digest])
    assert run.exit_code == 0, run.output
    assert "8 REVIEW interactions from 3 users on 5 items" in run.output
    run = CliRunner().invoke(cli, ["data", "convert-sequences", str(source),
                                   str(tmp_path / "lines"), "--dataset", "amazon-video-games",
                                   "--sha256", digest, "--layout", "lines"])
    assert run.exit_code == 2 and "pairs layout" in run.output, run.output
    assert not (tmp_path / "lines").exists()
    run = CliRunner().invoke(cli, ["data", "convert-sequences", str(source),
                                   str(tmp_path / "unpinned"), "--layout", "pairs"])
    assert run.exit_code == 0, run.output
    run = CliRunner().invoke(cli, ["data", "convert-sequences", str(source),
                                   str(tmp_path / "as-lines")])
    assert run.exit_code != 0 and "pairs layout" in run.output, run.output


def test_a_conversion_the_import_would_refuse_exits_2_naming_the_lines(tmp_path: Path) -> None:
    """An item id with an escape character converted and exited 0, and only the import
    said what was wrong: the converter now reads its output as the import will."""
    from gateway.cli import cli

    source = tmp_path / "seq.txt"
    source.write_text("u1 i1 i2 i3\nu2 i2 \x1bi3 i4\n")
    run = CliRunner().invoke(cli, ["data", "convert-sequences", str(source),
                                   str(tmp_path / "out")])
    assert run.exit_code == 2, run.output
    assert "`hunch data import` would refuse it: 1 problem(s)" in run.output
    assert "interactions.csv:5: ITEM_ID '\\x1bi3' contains the control character" in run.output
    clean = tmp_path / "clean.txt"
    clean.write_text("u1 i1 i2 i3\nu2 i2 i3 i4\n")
    run = CliRunner().invoke(cli, ["data", "convert-sequences", str(clean),
                                   str(tmp_path / "out2")])
    assert run.exit_code == 0, run.output
