"""A friend graph with engagement (HetRec 2011 Last.fm's layout) becomes follows,
interactions, items and users that the importer and the graph analyses read."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from recsys.datasets import load_directory
from recsys.public_friends import (
    LISTEN_EVENT_TYPE,
    SNAPSHOT_TIMESTAMP,
    UNTAGGED_CATEGORY,
    FriendsFormatError,
    convert_friends,
)
from recsys.public_sources import (
    HETREC_LASTFM_FILES,
    PINNED_SOURCES,
    SourceChecksumError,
    sha256_of,
)

# A tiny archive in HetRec's layout: 4 users, friendships 2-3 and 3-5 (listed both ways,
# as the archive lists them) and 7-7 (no edge); user 9 only listens.
FRIENDS = "userID\tfriendID\n2\t3\n3\t2\n3\t5\n5\t3\n7\t7\n"
PLAYS = "userID\tartistID\tweight\n2\t51\t13883\n2\t52\t11690\n3\t51\t228\n9\t100\t5\n"
ARTISTS = "id\tname\turl\tpictureURL\n51\tDuran Duran\thttp://x\thttp://y\n52\tMorcheeba\tu\tp\n"
TAGS = "tagID\ttagValue\n1\tnew wave\n2\tchillout\n3\tpop|rock\n"
# Artist 51 is tagged "new wave" twice and "pop|rock" once; 52 once each with 2 and 3.
TAGGINGS = ("userID\tartistID\ttagID\tday\tmonth\tyear\n2\t51\t1\t1\t4\t2009\n"
            "3\t51\t1\t1\t4\t2009\n3\t51\t3\t1\t4\t2009\n2\t52\t3\t1\t4\t2009\n"
            "2\t52\t2\t1\t4\t2009\n")


def _files(**overrides: str | None) -> dict[str, str]:
    files = {"user_friends.dat": FRIENDS, "user_artists.dat": PLAYS, "artists.dat": ARTISTS,
             "tags.dat": TAGS, "user_taggedartists.dat": TAGGINGS}
    files.update(overrides)
    return {name: text for name, text in files.items() if text is not None}


def _archive(path: Path, **overrides: str | None) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, text in _files(**overrides).items():
            z.writestr(name, text)
    return path


def _extracted(path: Path, newline: str = "\n", **overrides: str | None) -> Path:
    """The same files as an unzipped copy (a directory), with ``newline`` line ends."""
    path.mkdir()
    for name, text in _files(**overrides).items():
        (path / name).write_bytes(text.replace("\n", newline).encode())
    return path


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_friendships_become_follows_both_ways_and_listens_become_interactions(
        tmp_path: Path) -> None:
    source = _archive(tmp_path / "hetrec.zip")
    report = convert_friends(source, tmp_path / "out", expected_sha256=sha256_of(source))
    out = tmp_path / "out"
    follows = {(r["FOLLOWER_ID"], r["FOLLOWEE_ID"]) for r in _csv(out / "follows.csv")}
    assert follows == {("2", "3"), ("3", "2"), ("3", "5"), ("5", "3")}
    assert (report.friendships, report.follows) == (2, 4)
    data = load_directory(out)  # Personalize's validator reads all of it
    listens = {(e.user_id, e.item_id): e.event_value for e in data.interactions}
    assert listens == {("2", "51"): 13883.0, ("2", "52"): 11690.0, ("3", "51"): 228.0,
                       ("9", "100"): 5.0}
    assert {e.event_type for e in data.interactions} == {LISTEN_EVENT_TYPE}
    assert set(data.users) == {"2", "3", "5", "9"}  # 7's only friendship was with itself


def _order(out: Path) -> dict[str, list[str]]:
    """Each user's artists, oldest listen first."""
    by_user: dict[str, list[tuple[int, str]]] = {}
    for e in load_directory(out).interactions:
        by_user.setdefault(e.user_id, []).append((e.timestamp, e.item_id))
    for user, events in by_user.items():  # distinct times: a newest-events holdout can work
        assert len({t for t, _ in events}) == len(events), user
        assert max(t for t, _ in events) == SNAPSHOT_TIMESTAMP
    return {u: [a for _, a in sorted(events)] for u, events in by_user.items()}


def test_listens_without_times_get_a_seeded_random_order_per_user(tmp_path: Path) -> None:
    many = PLAYS + "".join(f"4\t{artist}\t1\n" for artist in range(200, 230))
    source = _archive(tmp_path / "hetrec.zip", **{"user_artists.dat": many})
    pin = sha256_of(source)
    orders = [_order(convert_friends(source, tmp_path / f"s{seed}", expected_sha256=pin,
                                     shuffle_seed=seed).out_dir) for seed in (0, 0, 1)]
    assert orders[0] == orders[1]  # the same seed, the same order
    assert orders[0]["4"] != orders[2]["4"]  # another seed, another order (30 listens)
    assert sorted(orders[0]["4"]) == sorted(orders[2]["4"])
    convert_friends(source, tmp_path / "flat", expected_sha256=pin, shuffle_seed=None)
    times = {e.timestamp for e in load_directory(tmp_path / "flat").interactions}
    assert times == {SNAPSHOT_TIMESTAMP}


def test_artists_are_items_with_their_name_and_most_used_tag(tmp_path: Path) -> None:
    source = _archive(tmp_path / "hetrec.zip")
    convert_friends(source, tmp_path / "out", expected_sha256=sha256_of(source))
    items = load_directory(tmp_path / "out").items
    assert items["51"]["DESCRIPTION"] == "Duran Duran"
    assert items["51"]["CATEGORY"] == "new wave"
    # A tie (one tagging each) goes to the lower tag id; '|' would split a categorical value.
    assert items["52"]["CATEGORY"] == "chillout"
    assert items["100"]["CATEGORY"] == UNTAGGED_CATEGORY  # listened, never tagged
    assert not items["51"].get("AUTHOR_ID")  # no user wrote an artist


def test_a_file_other_than_the_pinned_archive_is_refused_before_writing(tmp_path: Path) -> None:
    source = _archive(tmp_path / "hetrec2011-lastfm-2k.zip")
    with pytest.raises(SourceChecksumError, match=PINNED_SOURCES["hetrec-lastfm-2k"].sha256):
        convert_friends(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_and_malformed_files_are_named(tmp_path: Path) -> None:
    source = _archive(tmp_path / "no-friends.zip", **{"user_friends.dat": None})
    with pytest.raises(FriendsFormatError, match="no user_friends.dat"):
        convert_friends(source, tmp_path / "out", expected_sha256=sha256_of(source))
    source = _archive(tmp_path / "bad.zip", **{"user_artists.dat": PLAYS + "2\tx51\t3\n"})
    with pytest.raises(FriendsFormatError, match=r"user_artists\.dat:6: expected numeric ids"):
        convert_friends(source, tmp_path / "out", expected_sha256=sha256_of(source))


def test_cli_checks_the_pin_and_says_what_it_wrote(tmp_path: Path) -> None:
    from gateway.cli import cli

    source = _archive(tmp_path / "hetrec.zip")
    refused = CliRunner().invoke(cli, ["data", "convert-friends", str(source), str(tmp_path / "o")])
    assert refused.exit_code == 2 and "not the pinned hetrec-lastfm-2k" in refused.output
    run = CliRunner().invoke(cli, ["data", "convert-friends", str(source), str(tmp_path / "o"),
                                   "--sha256", sha256_of(source)])
    assert run.exit_code == 0, run.output
    assert "4 users, 2 friendships as 4 follows, 4 LISTEN interactions on 3 artists" in run.output


def _outputs(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_extracted_files_convert_like_the_archive_whatever_their_line_ends(
        tmp_path: Path) -> None:
    source = _archive(tmp_path / "hetrec.zip")
    convert_friends(source, tmp_path / "from-zip", expected_sha256=sha256_of(source))
    for newline in ("\n", "\r\n"):
        extracted = _extracted(tmp_path / f"files{len(newline)}", newline)
        report = convert_friends(extracted, tmp_path / f"out{len(newline)}",
                                 pinned_files=False)
        assert (report.users, report.friendships, report.interactions) == (4, 2, 4)
        assert _outputs(tmp_path / f"out{len(newline)}") == _outputs(tmp_path / "from-zip")


def test_extracted_files_other_than_the_pinned_ones_are_refused_by_name(
        tmp_path: Path) -> None:
    extracted = _extracted(tmp_path / "files")
    pin = HETREC_LASTFM_FILES.files["user_friends.dat"][1]
    with pytest.raises(SourceChecksumError, match=f"user_friends.dat.*{pin}"):
        convert_friends(extracted, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(FriendsFormatError, match="--unpinned"):  # --sha256 pins an archive
        convert_friends(extracted, tmp_path / "out", expected_sha256=pin)
    missing = _extracted(tmp_path / "no-plays", **{"user_artists.dat": None})
    with pytest.raises(FriendsFormatError, match="no user_artists.dat"):
        convert_friends(missing, tmp_path / "out", pinned_files=False)


def test_cli_converts_a_directory_of_extracted_files(tmp_path: Path) -> None:
    from gateway.cli import cli

    extracted = _extracted(tmp_path / "files")
    refused = CliRunner().invoke(cli, ["data", "convert-friends", str(extracted),
                                       str(tmp_path / "o")])
    assert refused.exit_code == 2 and "not the pinned hetrec-lastfm-2k user_friends" in (
        refused.output)
    run = CliRunner().invoke(cli, ["data", "convert-friends", str(extracted),
                                   str(tmp_path / "o"), "--unpinned"])
    assert run.exit_code == 0, run.output
    assert "4 users, 2 friendships as 4 follows, 4 LISTEN interactions" in run.output


REAL = PINNED_SOURCES["hetrec-lastfm-2k"].cached_path()
REAL_FILES = HETREC_LASTFM_FILES.cached_path()


@pytest.mark.skipif(not REAL.exists(), reason=f"the pinned archive is not at {REAL}")
def test_the_real_archive_has_the_published_counts(tmp_path: Path) -> None:
    report = convert_friends(REAL, tmp_path / "out")
    # The archive's readme: 1,892 users, 12,717 friendships, 92,834 user-artist pairs.
    assert (report.friendships, report.interactions) == (12_717, 92_834)
    assert report.users == 1_892


@pytest.mark.skipif(not (REAL_FILES / "user_friends.dat").exists(),
                    reason=f"the pinned extracted files are not in {REAL_FILES}")
def test_the_real_extracted_files_have_the_published_counts(tmp_path: Path) -> None:
    report = convert_friends(REAL_FILES, tmp_path / "out")  # every file checked by its pin
    assert (report.friendships, report.interactions, report.users) == (12_717, 92_834, 1_892)
    assert report.items == 17_632


def test_a_directory_holding_another_datasets_impressions_is_refused(tmp_path: Path) -> None:
    """impressions.csv left in the output directory was imported with Last.fm (86
    impression events of another dataset)."""
    from recsys.public_friends import FriendsFormatError

    source = _archive(tmp_path / "hetrec.zip")
    out = tmp_path / "out"
    out.mkdir()
    (out / "impressions.csv").write_text("USER_ID,TIMESTAMP,IMPRESSION\nu1,1,p1\n")
    with pytest.raises(FriendsFormatError, match="already holds impressions.csv"):
        convert_friends(source, out, expected_sha256=sha256_of(source))
    assert sorted(p.name for p in out.iterdir()) == ["impressions.csv"]
