"""The clustering pipeline in Python: follows from a GraphStore -> features -> K-Means and
communities -> evaluation -> labels written back -> Users dataset -> report.

This is the path that runs without GDS (the embedded store, or Neo4j without the plugin);
``graph.gds`` runs the same steps inside Neo4j and shares the write-back, export and
report from here, so both paths produce the same files.

The graph package may not import ``recsys`` (dependencies point gateway -> graph), so the
Users dataset is written here directly in Personalize's bulk CSV format: USER_ID, CLUSTER,
COMMUNITY (categorical strings such as "c3" and "m12"), merged into an existing users.csv
when there is one. Users outside the graph's core (isolated users, components smaller
than ``MIN_COMPONENT_SIZE``) share the label "none" for both fields.
"""

from __future__ import annotations

import csv
import json
import os
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from graph._validation import timestamp_problem, user_id_problem
from graph.clustering import (
    DEFAULT_K_RANGE,
    ONE_CLUSTER,
    KMeansClusters,
    best_communities,
    cluster_kmeans,
    detect_communities,
    group_sizes,
    nmi,
)
from graph.errors import GraphError
from graph.features import MIN_COMPONENT_SIZE, build_follow_graph, compute_features
from graph.report import write_report, write_summary
from graph.store import GraphStore, Labels
from hunchio.lines import NotUtf8, utf8_lines

NONE_LABEL = "none"
CLUSTER_PREFIX = "c"
COMMUNITY_PREFIX = "m"
USERS_CSV = "users.csv"
USERS_SCHEMA = "users.schema.json"
AVRO_NAMESPACE = "com.amazonaws.personalize.schema"
# Personalize accepts 1 to 5 metadata fields in the Users dataset.
MAX_USER_METADATA_FIELDS = 5
# Columns the Hunch Users dataset already knows (mirrors recsys.schemas.USERS, which this
# package may not import; tests/graph/test_analytics.py checks that they agree).
KNOWN_USER_FIELDS: dict[str, dict] = {
    "AGE": {"name": "AGE", "type": ["null", "int"]},
    "LOCALE": {"name": "LOCALE", "type": ["null", "string"], "categorical": True},
}
LABEL_FIELDS = ("CLUSTER", "COMMUNITY")

Progress = Callable[[str], None]


class GraphAnalyticsError(GraphError):
    """Base of the graph analytics' typed errors; the gateway maps them to one line."""


class EmptyFollowGraph(GraphAnalyticsError):
    """There are too few follows to cluster."""


NO_FOLLOWS = ("the graph store holds no follows: load some first (hunch graph cluster "
              "--follows follows.csv; with --store neo4j add --load)")


class InvalidUsersDataset(GraphAnalyticsError):
    """An existing users.csv / users.schema.json cannot be merged with the labels."""


class InvalidGroundTruth(GraphAnalyticsError):
    """The ground-truth file has no user -> community mapping."""


@dataclass
class ClusterOptions:
    """What to run: ``k`` fixed, or chosen over ``k_range`` (inclusive)."""

    k: int | None = None
    k_range: tuple[int, int] = DEFAULT_K_RANGE
    methods: tuple[str, ...] = ("leiden", "louvain")
    feature_set: str = "embedding"
    seed: int = 0


@dataclass
class ClusterOutcome:
    """Everything a run produced: labels per user, the summary for report.json, and the
    embedding sample for the projection plot."""

    labels: dict[str, Labels]
    summary: dict
    embedding: np.ndarray | None = field(default=None, repr=False)
    community_ids: np.ndarray | None = field(default=None, repr=False)


class StepTimer:
    """Seconds spent in each named step of a clustering pipeline, for the report."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._clock = time.perf_counter()

    def lap(self, step: str) -> None:
        now = time.perf_counter()
        self.timings[step] = round(now - self._clock, 3)
        self._clock = now


def analyze_edges(
    edges: Iterable[tuple[str, str]],
    options: ClusterOptions | None = None,
    ground_truth: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> ClusterOutcome:
    """Features, K-Means, communities and evaluation on follows pulled into Python."""
    options = options or ClusterOptions()
    say = progress or (lambda _step: None)
    timer = StepTimer()
    timings, lap = timer.timings, timer.lap

    say("building the follow graph")
    graph = build_follow_graph(edges)
    lap("build_graph")
    core_users = int(graph.in_core.sum())
    needed = (options.k or options.k_range[0]) + 1
    if graph.n_follows == 0:
        raise EmptyFollowGraph(NO_FOLLOWS)
    if core_users < MIN_COMPONENT_SIZE:
        raise EmptyFollowGraph(
            f"no connected group of >= {MIN_COMPONENT_SIZE} users among the "
            f"{graph.n_users} users of {graph.n_follows} follows, so there is nothing to "
            "cluster (smaller groups share the label 'none'): add follows that connect them"
        )
    if core_users < needed:
        raise EmptyFollowGraph(
            f"only {core_users} users sit in connected groups of >= {MIN_COMPONENT_SIZE} "
            f"and k={needed - 1} needs at least {needed}: ask for a smaller k "
            f"(--k or --k-range LOW:HIGH with LOW at most {core_users - 1})"
        )
    dims = options.k or options.k_range[1]
    say("computing features (degrees, betweenness, clustering, spectral embedding)")
    features = compute_features(graph, embedding_dims=min(dims, core_users - 2), seed=options.seed)
    lap("features")
    say("K-Means" + (f" with k={options.k}" if options.k else f" over k in {options.k_range}"))
    kmeans = cluster_kmeans(
        graph, features, k=options.k, k_range=options.k_range,
        feature_set=options.feature_set, seed=options.seed,
    )
    lap("kmeans")
    say("community detection: " + ", ".join(options.methods))
    found = detect_communities(graph, options.methods, seed=options.seed)
    chosen = best_communities(found)
    lap("communities")

    labels = {
        uid: Labels(cluster=label_name(CLUSTER_PREFIX, c), community=label_name(COMMUNITY_PREFIX, m))
        for uid, c, m in zip(graph.user_ids, kmeans.labels.tolist(), chosen.labels.tolist())
    }
    summary = {
        "engine": "python",
        "users": graph.n_users,
        "follows": graph.n_follows,
        "users_labelled_none": int(graph.n_users - core_users),
        "none_label": (
            f"users in connected groups of fewer than {MIN_COMPONENT_SIZE} users share "
            f"CLUSTER and COMMUNITY '{NONE_LABEL}'"
        ),
        "features": {
            "kmeans_input": options.feature_set,
            "embedding": "row-normalised leading eigenvectors of the normalised symmetric adjacency",
            "betweenness": "exact" if features.betweenness_exact else "estimated from sampled sources",
        },
        "kmeans": kmeans_summary(kmeans),
        "communities": {
            m: {"count": c.count, "modularity": round(c.modularity, 4)} for m, c in found.items()
        },
        "community_method": chosen.method,
        "community_method_chosen_by": "highest modularity",
        "community_sizes": named_sizes(COMMUNITY_PREFIX, chosen.labels),
        "nmi": None,
        "timings_s": timings,
    }
    if ground_truth:
        summary["nmi"] = {
            "cluster": round_or_none(nmi(kmeans.labels, graph.user_ids, dict(ground_truth))),
            **{m: round_or_none(nmi(c.labels, graph.user_ids, dict(ground_truth))) for m, c in found.items()},
            "community": round_or_none(nmi(chosen.labels, graph.user_ids, dict(ground_truth))),
        }
    return ClusterOutcome(labels, summary, features.spectral_embedding(), chosen.labels)


def kmeans_summary(kmeans: KMeansClusters) -> dict:
    note = {}
    if kmeans.k == ONE_CLUSTER:
        note["note"] = (
            f"the graph has no cluster structure at any k tried: every user in its core "
            f"shares CLUSTER '{CLUSTER_PREFIX}0', so CLUSTER tells no one apart here"
        )
    return {
        "k": kmeans.k,
        "chosen_by": kmeans.chosen_by,
        "feature_set": kmeans.feature_set,
        "silhouette": round(kmeans.silhouette, 4),
        "modularity": round(kmeans.modularity, 4),
        "silhouette_by_k": {str(k): round(v, 4) for k, v in kmeans.silhouette_by_k.items()},
        "modularity_by_k": {str(k): round(v, 4) for k, v in kmeans.modularity_by_k.items()},
        "sizes": named_sizes(CLUSTER_PREFIX, kmeans.labels),
        **note,
    }


def label_name(prefix: str, label: int) -> str:
    return NONE_LABEL if label < 0 else f"{prefix}{label}"


def named_sizes(prefix: str, labels: np.ndarray) -> dict[str, int]:
    return {label_name(prefix, k): v for k, v in group_sizes(labels).items()}


def round_or_none(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


async def cluster_store(
    store: GraphStore,
    out_dir: Path,
    options: ClusterOptions | None = None,
    users_csv: Path | None = None,
    ground_truth: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> ClusterOutcome:
    """The whole Python path against a store: pull follows, analyse, write labels in one
    ``set_labels`` call, export users.csv and write the report into ``out_dir``."""
    say = progress or (lambda _step: None)
    started = time.perf_counter()
    say("pulling follows from the graph store")
    edges = await store.edges()
    pulled = time.perf_counter() - started
    outcome = analyze_edges(edges, options, ground_truth, progress)
    outcome.summary["timings_s"] = {"pull_edges": round(pulled, 3), **outcome.summary["timings_s"]}
    await finish(store, outcome, out_dir, users_csv, progress)
    outcome.summary["timings_s"]["total"] = round(time.perf_counter() - started, 3)
    write_summary(out_dir, outcome.summary)
    return outcome


async def finish(
    store: GraphStore,
    outcome: ClusterOutcome,
    out_dir: Path,
    users_csv: Path | None,
    progress: Progress | None = None,
) -> None:
    """Shared tail of both engines: users the store knows but the follows do not get
    "none"; labels are written in one transaction; then users.csv and the report."""
    say = progress or (lambda _step: None)
    known = await store.labels()
    # Names kept from the last run: K-Means and the community algorithms number their
    # groups anew each run, so 562 of 2,003 users' CLUSTER changed on an unchanged graph
    # and "c9" meant another group in every users.csv (helper-64).
    previous = _previous_labels(known, users_csv or (out_dir / USERS_CSV))
    outcome.labels = align_labels(outcome.labels, previous)
    followless = [uid for uid in known if uid not in outcome.labels]
    for uid in followless:
        outcome.labels[uid] = Labels(NONE_LABEL, NONE_LABEL)
    summary = outcome.summary
    summary["users_labelled"] = len(outcome.labels)
    summary["users_labelled_none"] += len(followless)
    # Sizes over every labelled user, "none" included, as they land in users.csv.
    summary["kmeans"]["sizes"] = dict(Counter(lab.cluster for lab in outcome.labels.values()))
    summary["community_sizes"] = dict(Counter(lab.community for lab in outcome.labels.values()))
    say(f"writing labels of {len(outcome.labels)} users to the graph store")
    t = time.perf_counter()
    await store.set_labels(outcome.labels)
    outcome.summary["timings_s"]["write_labels"] = round(time.perf_counter() - t, 3)
    say("exporting the Users dataset and the report")
    path = export_users_dataset(outcome.labels, out_dir, users_csv)
    outcome.summary["users_csv"] = str(path)
    write_report(
        out_dir, outcome.summary, outcome.embedding, outcome.community_ids,
    )


def _previous_labels(known: Mapping[str, Labels], users_csv: Path) -> dict[str, Labels]:
    """The labels of the last run: the graph store's, else the users.csv being merged."""
    previous = {uid: lab for uid, lab in known.items() if lab.cluster or lab.community}
    if users_csv.exists():
        try:
            _, rows = _read_users(users_csv)
        except InvalidUsersDataset:
            rows = []  # refused later, with its reason, when users.csv is written
        for row in rows:
            if row.get("USER_ID") not in previous and (row.get("CLUSTER") or row.get("COMMUNITY")):
                previous[row["USER_ID"]] = Labels(row.get("CLUSTER") or None,
                                                  row.get("COMMUNITY") or None)
    return previous


def align_labels(labels: Mapping[str, Labels], previous: Mapping[str, Labels]
                 ) -> dict[str, Labels]:
    """``labels`` renamed so that each group keeps the name of the previous run's group
    it shares most users with (a maximum-overlap matching, Hungarian, per field); a group
    without a match gets the smallest free name. "none" stays "none"."""
    out = dict(labels)
    for kind, prefix in (("cluster", CLUSTER_PREFIX), ("community", COMMUNITY_PREFIX)):
        new = {uid: getattr(lab, kind) for uid, lab in labels.items()}
        old = {uid: getattr(lab, kind) for uid, lab in previous.items()}
        names = _matched_names(new, old, prefix)
        for uid, lab in out.items():
            value = getattr(lab, kind)
            if value in names:
                out[uid] = replace(lab, **{kind: names[value]})
    return out


def _matched_names(new: Mapping[str, str | None], old: Mapping[str, str | None],
                   prefix: str) -> dict[str, str]:
    from scipy.optimize import linear_sum_assignment

    groups = sorted({v for v in new.values() if v and v != NONE_LABEL})
    # Only names this code gives ("c4"): a users.csv may hold another system's labels.
    ours = re.compile(rf"{re.escape(prefix)}\d+")
    before = sorted({v for v in old.values() if v and ours.fullmatch(v)})
    names: dict[str, str] = {}
    if groups and before:
        row = {g: i for i, g in enumerate(groups)}
        col = {g: j for j, g in enumerate(before)}
        overlap = np.zeros((len(groups), len(before)), np.int64)
        for uid, g in new.items():
            b = old.get(uid)
            if g in row and b in col:
                overlap[row[g], col[b]] += 1
        for i, j in zip(*linear_sum_assignment(-overlap)):
            if overlap[i, j] > 0:
                names[groups[i]] = before[j]
    taken = set(before) | set(names.values())
    k = 0
    for g in groups:
        if g not in names:
            while f"{prefix}{k}" in taken:
                k += 1
            names[g] = f"{prefix}{k}"
            taken.add(names[g])
    return names


def load_ground_truth(path: Path) -> dict[str, str]:
    """A planted user -> community mapping from a ground-truth JSON file.

    Accepts the mapping itself or an object holding it under one of
    ``communities``, ``user_community``, ``user_communities``, ``community_of``.
    """
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidGroundTruth(f"{path}: cannot read ground truth ({exc})") from exc
    candidates = [raw] if isinstance(raw, dict) else []
    if isinstance(raw, dict):
        candidates += [raw.get(k) for k in ("communities", "user_community", "user_communities", "community_of")]
    for mapping in candidates:
        if isinstance(mapping, dict) and mapping and all(
            isinstance(v, (str, int)) for v in mapping.values()
        ):
            return {str(k): str(v) for k, v in mapping.items()}
    raise InvalidGroundTruth(
        f"{path}: expected a JSON object mapping user ids to community ids "
        "(at the top level or under 'communities')"
    )


def export_users_dataset(
    labels: Mapping[str, Labels], out_dir: Path, users_csv: Path | None = None
) -> Path:
    """Write ``out_dir/users.csv`` and ``users.schema.json`` with CLUSTER and COMMUNITY.

    The rows and other columns of ``users_csv`` (or of an existing ``out_dir/users.csv``)
    are kept; users it lacks are added, users without labels get "none". Both files are
    replaced atomically (temp file + rename), so a reader never sees half a dataset.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    source = users_csv or (out_dir / USERS_CSV)
    header, rows = _read_users(source) if source.exists() else (["USER_ID"], [])
    for name in LABEL_FIELDS:
        if name not in header:
            header.append(name)
    schema = _users_schema(header, source.parent / USERS_SCHEMA)
    seen = set()
    for row in rows:
        lab = labels.get(row["USER_ID"], Labels(NONE_LABEL, NONE_LABEL))
        row["CLUSTER"], row["COMMUNITY"] = lab.cluster or NONE_LABEL, lab.community or NONE_LABEL
        seen.add(row["USER_ID"])
    required = [f["name"] for f in schema["fields"]
                if f["name"] != "USER_ID" and not _nullable(f["type"])]
    new_users = [uid for uid in labels if uid not in seen]
    if required and new_users:
        raise InvalidUsersDataset(
            f"{source.parent / USERS_SCHEMA} declares {', '.join(required)} required, but "
            f"{len(new_users)} labelled user(s) such as {new_users[0]!r} have no row in "
            f"{source} to take a value from: make those fields nullable "
            '(["null", ...]) or add rows for every user'
        )
    for uid, lab in labels.items():
        if uid not in seen:
            rows.append({
                "USER_ID": uid,
                "CLUSTER": lab.cluster or NONE_LABEL,
                "COMMUNITY": lab.community or NONE_LABEL,
            })
    target = out_dir / USERS_CSV
    _atomic_write(target, lambda fh: _write_rows(fh, header, rows))
    _atomic_write(out_dir / USERS_SCHEMA, lambda fh: json.dump(schema, fh, indent=2))
    return target


def _nullable(avro_type) -> bool:
    return isinstance(avro_type, list) and "null" in avro_type


def _read_users(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:  # a BOM is no part of it
        reader = csv.DictReader(fh)
        header = list(reader.fieldnames or [])
        if "USER_ID" not in header:
            raise InvalidUsersDataset(
                f"{path}: no USER_ID column in the header {header}; a Users dataset needs one"
            )
        return header, [dict(r) for r in reader]


def _users_schema(header: list[str], existing_schema: Path) -> dict:
    declared: dict[str, dict] = {}
    if existing_schema.exists():
        try:
            declared = {f["name"]: f for f in json.loads(existing_schema.read_text())["fields"]}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InvalidUsersDataset(f"{existing_schema}: not an Avro record schema ({exc})") from exc
    fields = []
    for name in header:
        if name == "USER_ID":
            fields.append({"name": "USER_ID", "type": "string"})
        elif name in LABEL_FIELDS:
            fields.append({"name": name, "type": ["null", "string"], "categorical": True})
        else:
            # Unknown extra columns are kept as nullable categorical strings: the only
            # string kind Personalize counts in a Users dataset.
            fields.append(declared.get(name) or KNOWN_USER_FIELDS.get(name) or {
                "name": name, "type": ["null", "string"], "categorical": True,
            })
    # Personalize: "Schema fields must have unique alphanumeric names" (GENRES_FIELD_1 and
    # GENRESFIELD1 may not both be). A users.csv with a `cluster` or `Cluster_` column
    # got CLUSTER beside it: a schema Amazon refuses, and two labels per user locally.
    seen: dict[str, str] = {}
    for f in fields:
        key = re.sub(r"[^0-9a-z]", "", f["name"].lower())
        if key in seen:
            raise InvalidUsersDataset(
                f"users.csv would have the columns {seen[key]!r} and {f['name']!r}, one "
                "field to Amazon Personalize (field names must be unique once only their "
                "letters and digits are compared, case aside): rename or drop "
                f"{f['name'] if seen[key] in LABEL_FIELDS else seen[key]!r} "
                f"(CLUSTER and COMMUNITY are the labels `hunch graph cluster` writes)")
        seen[key] = f["name"]
    metadata = len(fields) - 1
    if metadata > MAX_USER_METADATA_FIELDS:
        raise InvalidUsersDataset(
            f"users.csv would have {metadata} metadata columns ({', '.join(header[1:])}); "
            f"Personalize allows at most {MAX_USER_METADATA_FIELDS}: drop some columns first"
        )
    return {
        "type": "record",
        "name": "Users",
        "namespace": AVRO_NAMESPACE,
        "fields": fields,
        "version": "1.0",
    }


def _write_rows(fh, header: list[str], rows: list[dict[str, str]]) -> None:
    writer = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def _atomic_write(path: Path, write: Callable) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


FOLLOW_COLUMNS = ("FOLLOWER_ID", "FOLLOWEE_ID", "TIMESTAMP")
# Problems listed in the error, as `hunch data import` lists them; the rest are counted.
MAX_SHOWN_PROBLEMS = 20


class InvalidFollowsFile(GraphAnalyticsError):
    """A follows.csv with problems; ``problems`` lists ``file:line: reason`` strings."""

    def __init__(self, path: Path, problems: list[str], total: int) -> None:
        self.problems = problems
        self.total = total
        shown = problems[:MAX_SHOWN_PROBLEMS]
        more = f"\n... and {total - len(shown)} more" if total > len(shown) else ""
        super().__init__(f"{total} problem(s) in {path}, nothing was loaded:\n"
                         + "\n".join(shown) + more)


def read_follows_csv(path: Path) -> list[tuple[str, str, int]]:
    """(follower, followee, timestamp) rows of a follows.csv (FOLLOWER_ID, FOLLOWEE_ID,
    TIMESTAMP), as the demo generator writes it.

    Checked as `hunch data import` checks its files: the whole file is read and every
    problem reported as ``file:line: what to fix`` (:class:`InvalidFollowsFile`) before
    anything is loaded. The header names each column once and no other; every row has
    one field per column; ids follow the API's user-id rules (non-empty, at most 256
    characters, no surrounding whitespace, no control or invisible characters; '|' is
    allowed); TIMESTAMP is integer epoch seconds of a real date; no one follows
    themselves. So every user a follows.csv creates can be imported as a user."""
    problems: list[str] = []
    total = 0

    def problem(line: int, reason: str) -> None:
        nonlocal total
        total += 1
        if len(problems) < 1000:
            problems.append(f"{path}:{line}: {reason}")

    decode_problems: list[str] = []

    def not_utf8(at: NotUtf8) -> None:
        decode_problems.append(f"{path}:{at.line}: not UTF-8 (byte 0x{at.byte:02x} at byte "
                               f"{at.position} of the line); save the file as UTF-8")

    out: list[tuple[str, str, int]] = []
    try:
        with path.open("rb") as fh:
            # Lines as the import reads them: a bare CR ends one, a BOM is no part of it.
            reader = csv.reader(utf8_lines(fh, not_utf8))
            line = 1
            try:
                header = next(reader, None)
                if header is None:
                    if not decode_problems:
                        problem(1, "the file is empty; expected the header "
                                   + ",".join(FOLLOW_COLUMNS))
                else:
                    header = [h.strip() for h in header]
                    _check_follows_header(header, lambda reason: problem(1, reason))
                    if total == 0:
                        at = [header.index(c) for c in FOLLOW_COLUMNS]
                        for row in reader:
                            line = reader.line_num
                            if not row or (len(row) == 1 and not row[0].strip()):
                                continue  # blank line
                            if len(row) != len(header):
                                problem(line, f"expected {len(header)} fields "
                                              f"({','.join(header)}), found {len(row)}")
                                continue
                            follower, followee, raw_ts = (row[i] for i in at)
                            reasons = [r for r in (
                                user_id_problem("FOLLOWER_ID", follower),
                                user_id_problem("FOLLOWEE_ID", followee),
                            ) if r]
                            ts, ts_reason = timestamp_problem("TIMESTAMP", raw_ts)
                            if ts_reason:
                                reasons.append(ts_reason)
                            if not reasons and follower == followee:
                                reasons.append(f"user {follower!r} follows themselves; drop "
                                               "the row")
                            for reason in reasons:
                                problem(line, reason)
                            if not reasons:
                                out.append((follower, followee, ts))
            except csv.Error as exc:
                problem(line + 1, f"unreadable CSV ({exc}); check the quoting")
            for message in decode_problems:
                total += 1
                problems.append(message)
    except OSError as exc:
        raise GraphAnalyticsError(f"{path}: cannot read follows ({exc})") from exc
    if total:
        raise InvalidFollowsFile(path, problems, total)
    return out


def _check_follows_header(header: list[str], problem: Callable[[str], None]) -> None:
    unknown = [h for h in header if h not in FOLLOW_COLUMNS]
    missing = [c for c in FOLLOW_COLUMNS if c not in header]
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if unknown:
        problem(f"unknown column(s) {', '.join(unknown)}; a follows file has "
                f"{', '.join(FOLLOW_COLUMNS)}")
    if missing:
        problem(f"missing required column(s) {', '.join(missing)}")
    if duplicated:
        problem(f"duplicated column(s) {', '.join(duplicated)}")


def plant_follow_graph(
    n_users: int = 2_000,
    n_communities: int = 8,
    avg_follows: float = 10.0,
    inside_share: float = 0.8,
    seed: int = 0,
) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """A planted-partition follow graph for tests and benchmarks: community sizes drawn
    from a Dirichlet, heavy-tailed (Pareto) popularity so in-degree is heavy-tailed, and
    ``inside_share`` of each user's follows inside their own community.

    Returns (follows, user -> planted community). The demo generator
    (recsys.demo_data) writes the realistic data set; this one is for measuring recovery.
    """
    rng = np.random.default_rng(seed)
    # Concentration 3: sizes vary by a factor of ~4 between smallest and largest.
    shares = rng.dirichlet(np.full(n_communities, 3.0))
    community = np.sort(rng.choice(n_communities, size=n_users, p=shares))
    popularity = rng.pareto(1.5, n_users) + 1.0
    out_degree = np.maximum(1, rng.poisson(avg_follows, n_users))
    src = np.repeat(np.arange(n_users), out_degree)
    inside = rng.random(len(src)) < inside_share
    dst = np.empty(len(src), dtype=np.int64)
    dst[~inside] = rng.choice(n_users, size=int((~inside).sum()), p=popularity / popularity.sum())
    for c in range(n_communities):
        members = np.flatnonzero(community == c)
        pick = inside & (community[src] == c)
        weights = popularity[members] / popularity[members].sum()
        dst[pick] = members[rng.choice(len(members), size=int(pick.sum()), p=weights)]
    # A user cannot follow themselves, nor follow someone twice.
    pairs = np.unique(np.column_stack([src, dst])[src != dst], axis=0)
    ids = np.array([f"u{i}" for i in range(n_users)])
    follows = list(zip(ids[pairs[:, 0]].tolist(), ids[pairs[:, 1]].tolist()))
    truth = {ids[i]: f"p{community[i]}" for i in range(n_users)}
    return follows, truth
