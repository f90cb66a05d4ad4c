"""`hunch graph cluster --follows F` on hostile files: follows.csv is checked with the
rules and message style of `hunch data import` (file:line: what to fix), and whatever
users.csv cluster writes passes `hunch data import`."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from graph.analytics import (
    InvalidFollowsFile,
    InvalidUsersDataset,
    export_users_dataset,
    plant_follow_graph,
    read_follows_csv,
)
from graph.store import Labels

HEADER = "FOLLOWER_ID,FOLLOWEE_ID,TIMESTAMP\n"
TS = 1_704_080_658


@pytest.fixture(scope="module")
def small_graph() -> list[tuple[str, str]]:
    follows, _ = plant_follow_graph(n_users=60, n_communities=3, avg_follows=6, seed=1)
    return follows


def _follows_text(follows) -> str:
    return HEADER + "".join(f"{a},{b},{TS}\n" for a, b in follows)


def _cluster(args: list[str]):
    from gateway.cli import cli

    return CliRunner().invoke(cli, ["graph", "cluster", *args])


@pytest.mark.parametrize(("rows", "line", "reason"), [
    ("u1,u2,1\nu1,,1704080658\n", 3, "FOLLOWEE_ID is empty but required"),
    (",u2,1704080658\n", 2, "FOLLOWER_ID is empty but required"),
    (" u1 ,u2,1704080658\n", 2, "FOLLOWER_ID ' u1 ' starts or ends with whitespace"),
    ("u1,u2\n", 2, "expected 3 fields (FOLLOWER_ID,FOLLOWEE_ID,TIMESTAMP), found 2"),
    ("u1,u2,1704080658,extra\n", 2, "expected 3 fields (FOLLOWER_ID,FOLLOWEE_ID,TIMESTAMP), found 4"),
    ("u1,u2,\n", 2, "TIMESTAMP is empty but required"),
    ("u1,u2,abc\n", 2, "TIMESTAMP 'abc' is not an integer (epoch seconds)"),
    ("u1,u2,1.5\n", 2, "TIMESTAMP '1.5' is not an integer"),
    ("u1,u2,99999999999999999999\n", 2, "TIMESTAMP '99999999999999999999' is not a date (years 1 to 9999)"),
    ("u1,u1,1704080658\n", 2, "user 'u1' follows themselves; drop the row"),
    ("u1,u\x01x,1704080658\n", 2, "FOLLOWEE_ID 'u\\x01x' contains the control character U+0001"),
    ("u1,u\u202ex,1704080658\n", 2, "FOLLOWEE_ID 'u\\u202ex' contains the invisible character U+202E"),
    (f"u1,{'x' * 257},1704080658\n", 2, "FOLLOWEE_ID is 257 characters long; ids may have at most 256"),
])
def test_a_bad_row_is_refused_with_its_line_and_what_to_fix(tmp_path, rows, line, reason):
    path = tmp_path / "follows.csv"
    path.write_text(HEADER + rows, encoding="utf-8")
    with pytest.raises(InvalidFollowsFile) as caught:
        read_follows_csv(path)
    assert f"{path}:{line}: {reason}" in str(caught.value)


@pytest.mark.parametrize(("header", "reason"), [
    ("FOLLOWER_ID,FOLLOWEE_ID\n", "missing required column(s) TIMESTAMP"),
    ("FOLLOWER_ID,FOLLOWEE_ID,TIMESTAMP,NOTE\n", "unknown column(s) NOTE"),
    ("FOLLOWER_ID,FOLLOWEE_ID,TIMESTAMP,TIMESTAMP\n", "duplicated column(s) TIMESTAMP"),
    ("", "the file is empty; expected the header FOLLOWER_ID,FOLLOWEE_ID,TIMESTAMP"),
])
def test_a_bad_header_is_refused(tmp_path, header, reason):
    path = tmp_path / "follows.csv"
    path.write_text(header + ("u1,u2,1704080658\n" if header else ""), encoding="utf-8")
    with pytest.raises(InvalidFollowsFile) as caught:
        read_follows_csv(path)
    assert f"{path}:1: {reason}" in str(caught.value)


def test_a_byte_order_mark_is_read_as_the_import_reads_it(tmp_path):
    """Excel writes a BOM by default; the import reads past it, so do follows.csv and
    the users.csv that cluster merges into."""
    path = tmp_path / "follows.csv"
    path.write_text("\ufeff" + HEADER + "u1,u2,1704080658\n", encoding="utf-8")
    assert read_follows_csv(path) == [("u1", "u2", 1704080658)]


@pytest.mark.parametrize("cell", ["1_704_080_658", "\u0661\u0667\u0660\u0664\u0660\u0668"
                                  "\u0660\u0666\u0665\u0668", "9" * 5000])
def test_a_timestamp_is_ascii_digits_as_the_import_reads_it(tmp_path, cell):
    path = tmp_path / "follows.csv"
    path.write_text(HEADER + f"u1,u2,{cell}\n", encoding="utf-8")
    with pytest.raises(InvalidFollowsFile) as caught:
        read_follows_csv(path)
    assert f"{path}:2: TIMESTAMP" in str(caught.value) and "not an integer" in str(caught.value)


def test_a_file_with_bare_cr_line_ends_reads(tmp_path):
    path = tmp_path / "follows.csv"
    path.write_bytes((HEADER + "u1,u2,1704080658\nu2,u3,1704080659\n").replace(
        "\n", "\r").encode())
    assert read_follows_csv(path) == [("u1", "u2", 1704080658), ("u2", "u3", 1704080659)]


def test_every_problem_is_listed_and_good_ids_pass(tmp_path):
    path = tmp_path / "follows.csv"
    path.write_text(HEADER + "google-oauth2|1093,Zoë,1704080658\n"
                    "u1,,1\n\n u2,u3,1\n", encoding="utf-8")
    with pytest.raises(InvalidFollowsFile) as caught:
        read_follows_csv(path)
    assert caught.value.total == 2 and str(caught.value).startswith(f"2 problem(s) in {path}")
    path.write_text(HEADER + "google-oauth2|1093,Zoë,1704080658\nu1,u2,1.7e9\n\n",
                    encoding="utf-8")
    assert read_follows_csv(path) == [("google-oauth2|1093", "Zoë", TS), ("u1", "u2", 1_700_000_000)]


def test_a_latin1_byte_is_a_typed_error_naming_the_line(tmp_path):
    path = tmp_path / "follows.csv"
    rows = "".join(f"u{i},u{i + 1},{TS}\n" for i in range(400))  # past one read buffer
    path.write_bytes((HEADER + rows).encode() + "caf\xe9,u1,1704080658\n".encode("latin-1"))
    with pytest.raises(InvalidFollowsFile) as caught:
        read_follows_csv(path)
    assert f"{path}:402: not UTF-8 (byte 0xe9 at byte 4 of the line); save the file as UTF-8" \
        in str(caught.value)
    result = _cluster(["--follows", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and result.exception.__class__ is SystemExit
    assert "Traceback" not in result.output and ":402: not UTF-8" in result.output
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_follow_with_an_empty_id_and_writes_nothing(small_graph, tmp_path):
    path = tmp_path / "follows.csv"
    path.write_text(_follows_text(small_graph) + f"u1,,{TS}\n")
    out = tmp_path / "out"
    result = _cluster(["--follows", str(path), "--out", str(out)])
    assert result.exit_code == 2, result.output
    line = len(small_graph) + 2
    assert f"{path}:{line}: FOLLOWEE_ID is empty but required" in result.output
    assert not out.exists()


# -- what cluster writes, import reads --------------------------------------------------

def _import_users(out: Path, tmp_path: Path) -> dict:
    """users.csv and its schema, as `hunch data import` reads them from a data directory."""
    from recsys.datasets import load_directory

    data = tmp_path / "data"
    data.mkdir()
    (data / "interactions.csv").write_text(
        "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\nu1,p1,1704080658,HUNCH\n")
    shutil.copy(out / "users.csv", data / "users.csv")
    shutil.copy(out / "users.schema.json", data / "users.schema.json")
    return load_directory(data).users  # raises DatasetValidationError on any problem


@pytest.mark.parametrize("extra", [
    "",  # a clean file
    "google-oauth2|1093,u1,1704080658\nu1,google-oauth2|1093,1704080658\nZoë,u2,1704080658\n",
    "u0001,,1704080658\n",  # the probe's row: once a user with an empty id
    " u1 ,u2,1704080658\n",  # once a second user " u1 "
    "u1,u2\n",
    "u1,u2,1704080658,extra\n",
], ids=["clean", "bar-and-unicode-ids", "empty-id", "spaced-id", "short-row", "extra-field"])
def test_what_cluster_writes_passes_import(small_graph, tmp_path, extra):
    """Either cluster refuses the file (a typed error) or its users.csv imports, with
    one user per id of the follows."""
    path = tmp_path / "follows.csv"
    path.write_text(_follows_text(small_graph) + extra, encoding="utf-8")
    out = tmp_path / "out"
    result = _cluster(["--follows", str(path), "--out", str(out), "--k", "3"])
    if result.exit_code != 0:
        assert result.exit_code == 2 and "error: " in result.output, result.output
        assert not out.exists()
        return
    users = _import_users(out, tmp_path)
    ids = {u for pair in small_graph for u in pair}
    ids |= {u for row in csv.reader(extra.splitlines()) for u in row[:2]}
    assert set(users) == ids
    assert all(rec["CLUSTER"] and rec["COMMUNITY"] for rec in users.values())


def test_users_csv_merged_by_cluster_round_trips_through_import(small_graph, tmp_path):
    path = tmp_path / "follows.csv"
    path.write_text(_follows_text(small_graph))
    users_csv = tmp_path / "in" / "users.csv"
    users_csv.parent.mkdir()
    users_csv.write_text("USER_ID,AGE,LOCALE,CLUSTER\nu1,34,en_GB,old\nnot-in-graph,,fr_FR,\n")
    out = tmp_path / "out"
    result = _cluster(["--follows", str(path), "--users-csv", str(users_csv), "--out", str(out),
                       "--k", "3"])
    assert result.exit_code == 0, result.output
    users = _import_users(out, tmp_path)
    assert users["u1"]["AGE"] == 34 and users["u1"]["CLUSTER"].startswith("c")
    assert users["not-in-graph"]["CLUSTER"] == "none"


@pytest.mark.parametrize(("content", "reason"), [
    ("USER_ID,AGE\nu1,abc\n", "users.csv:2: AGE 'abc' is not an integer"),
    ("USER_ID,AGE\nu1,3\n,4\n", "users.csv:3: USER_ID is empty but required"),
    ("USER_ID,AGE\nu1,3\nu1,4\n", "users.csv:3: USER_ID 'u1' already appeared on line 2"),
    ("USER_ID,AGE\nu1,3,x\n", "users.csv:2: expected 2 fields, found 3"),
])
def test_cli_refuses_a_users_csv_import_would_refuse(small_graph, tmp_path, content, reason):
    path = tmp_path / "follows.csv"
    path.write_text(_follows_text(small_graph))
    users_csv = tmp_path / "in" / "users.csv"
    users_csv.parent.mkdir()
    users_csv.write_text(content)
    out = tmp_path / "out"
    result = _cluster(["--follows", str(path), "--users-csv", str(users_csv), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert reason in result.output and "nothing was clustered" in result.output
    assert not out.exists()


def test_export_refuses_a_required_field_new_users_cannot_fill(tmp_path):
    (tmp_path / "users.csv").write_text("USER_ID,AGE\nu1,30\n")
    (tmp_path / "users.schema.json").write_text(
        '{"type": "record", "name": "Users", "fields": [{"name": "USER_ID", "type": "string"},'
        ' {"name": "AGE", "type": "int"}], "version": "1.0"}')
    with pytest.raises(InvalidUsersDataset, match="declares AGE required.*'u2'"):
        export_users_dataset({"u1": Labels("c0", "m0"), "u2": Labels("c1", "m0")}, tmp_path)
    assert (tmp_path / "users.csv").read_text() == "USER_ID,AGE\nu1,30\n"  # untouched


def test_follows_ids_are_refused_as_the_api_refuses_user_ids():
    """Both apply hunchio's id rule, each in its own order and words: what one refuses,
    the other refuses too."""
    from graph import _validation
    from recsys import admission

    for value in ("u1", " u1", "u1\t", "u\x00", "u\x1b[31m", "a\u200bb", "\u202eu1",
                  "u\ud800", "google-oauth2|1093", "x" * 256, "x" * 257, ""):
        try:
            admission.check_user_id("id", value)
            refused = False
        except Exception:  # noqa: BLE001 - any refusal
            refused = True
        assert refused == (_validation.user_id_problem("id", value) is not None), value


def test_the_graph_package_imports_no_recsys():
    """graph/ stands alone (README): what it shares with recsys/ lives in hunchio/."""
    import subprocess
    import sys

    probe = ("import sys, graph.analytics, graph.gds, graph.memory_store, graph.neo4j_store\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'recsys'))\n")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], check=True)
    assert run.stdout.strip() == "[]", run.stdout


# -- messages that point the right way --------------------------------------------------

def test_too_few_connected_users_does_not_say_to_load_follows_that_were_given(tmp_path):
    path = tmp_path / "follows.csv"
    path.write_text(HEADER + f"a,b,{TS}\nb,c,{TS}\nc,a,{TS}\n")
    result = _cluster(["--follows", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "load follows first" not in result.output
    assert "no connected group of >= 5 users" in result.output


def test_a_follows_file_with_only_a_header_says_so(tmp_path):
    path = tmp_path / "follows.csv"
    path.write_text(HEADER)
    result = _cluster(["--follows", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert f"{path}: no follows after the header" in result.output


def test_a_k_too_large_for_the_graph_asks_for_a_smaller_one(tmp_path):
    path = tmp_path / "follows.csv"
    path.write_text(HEADER + "".join(f"hub,x{i},{TS}\nx{i},hub,{TS}\n" for i in range(1, 7)))
    result = _cluster(["--follows", str(path), "--k", "8", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "k=8 needs at least 9: ask for a smaller k" in result.output
    assert "load follows first" not in result.output
