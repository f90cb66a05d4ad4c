"""K-Means clusters and Louvain/Leiden communities of the follower graph, and their evaluation.

How a labelling is chosen, and why (docs/evidence-methods.md): on a public friend graph
silhouette ranked four labellings almost in reverse of how much they helped, while the
modularity of the labels predicted it. So:

- K-Means picks ``k`` by silhouette, but only among the ``k`` whose labels keep at least
  ``MODULARITY_FLOOR_SHARE`` of the best modularity seen over the range; both numbers are
  reported for every ``k``. That blocks the degenerate "one cluster of 97 % of users"
  choices silhouette alone makes. When every ``k`` tried gives labels of negative
  modularity (a clique, a star: more ties between the clusters than chance would put
  there), no ``k`` keeps the floor and the graph has no cluster structure in the range:
  the core shares one cluster (``ONE_CLUSTER``, exported "c0"), whose modularity is 0,
  better than any split, and the summary says so.
- The COMMUNITY labelling is whichever of Louvain and Leiden reaches the higher
  modularity; both are reported.

Default Louvain/Leiden settings stop early on a worse local optimum on planted graphs
(docs/neo4j-without-docker.md), so Leiden iterates until the partition stops changing
(``n_iterations=-1``) and Louvain keeps the best of several seeded runs.

Users outside the graph's core (components smaller than
``graph.features.MIN_COMPONENT_SIZE``) get label ``-1`` here, exported as the shared
label "none".
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import igraph as ig
import leidenalg
import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score, silhouette_score
from threadpoolctl import threadpool_limits

from graph.features import FollowGraph, UserFeatures

NO_LABEL = -1
# K-Means restarts: 4 is where the best inertia stops improving on planted graphs of
# 2k-100k users, and each restart costs a full fit.
KMEANS_N_INIT = 4
# Silhouette is O(n^2); on a 5,000-user sample its value moves by < 0.01 between seeds.
SILHOUETTE_SAMPLE_SIZE = 5_000
# A k is eligible only if its labels keep this share of the best modularity in the range.
# Silhouette favours small k (fewer embedding dimensions): on the demo data (15 planted
# communities) a floor of 0.9 let it pick k=6 (NMI 0.84); 0.98 picks k=12 (NMI 0.94).
MODULARITY_FLOOR_SHARE = 0.98
# Seeded Louvain runs; igraph's multilevel lands on different local optima per seed.
LOUVAIN_RUNS = 4
DEFAULT_K_RANGE = (4, 30)
# The "k" of the labelling chosen when no k in the range has labels of positive
# modularity: every user in the core in one cluster.
ONE_CLUSTER = 1
# Below this many users K-Means runs on one thread: a fit takes milliseconds, and
# OpenMP's thread start and spin-wait cost 10-30x more than that on a busy 2-core host.
KMEANS_PARALLEL_MIN_USERS = 20_000


def modularity(graph: FollowGraph, labels: np.ndarray) -> float:
    """Newman modularity of ``labels`` on the undirected follow graph (users outside the
    core counted as one group, as they are exported)."""
    if graph.undirected.ecount() == 0:
        return 0.0
    membership = np.where(labels < 0, labels.max(initial=0) + 1, labels)
    return float(graph.undirected.modularity(membership.tolist()))


@dataclass
class KMeansClusters:
    """K-Means labels (``-1`` outside the core) and the evidence behind ``k``."""

    k: int
    labels: np.ndarray
    silhouette: float
    modularity: float
    feature_set: str
    silhouette_by_k: dict[int, float] = field(default_factory=dict)
    modularity_by_k: dict[int, float] = field(default_factory=dict)
    chosen_by: str = "given"


def cluster_kmeans(
    graph: FollowGraph,
    features: UserFeatures,
    k: int | None = None,
    k_range: tuple[int, int] = DEFAULT_K_RANGE,
    feature_set: str = "embedding",
    seed: int = 0,
) -> KMeansClusters:
    """K-Means with ``k`` given, or chosen over ``k_range`` (inclusive) as the module says."""
    core = np.flatnonzero(graph.in_core)
    candidates = [k] if k is not None else list(range(k_range[0], k_range[1] + 1))
    candidates = [c for c in candidates if 2 <= c < len(core)]
    if not candidates:
        raise ValueError(f"no usable k for {len(core)} core users (asked {k or k_range})")
    fits: dict[int, tuple[np.ndarray, float, float]] = {}
    threads = None if len(core) >= KMEANS_PARALLEL_MIN_USERS else 1
    for c in candidates:
        x = features.matrix(feature_set, dims=c)[core]
        with threadpool_limits(threads):
            model = KMeans(n_clusters=c, n_init=KMEANS_N_INIT, random_state=seed).fit(x)
        labels = np.full(graph.n_users, NO_LABEL)
        labels[core] = model.labels_
        sil = _silhouette(x, model.labels_, seed)
        fits[c] = (labels, sil, modularity(graph, labels))
    sil_by_k = {c: fits[c][1] for c in fits}
    mod_by_k = {c: fits[c][2] for c in fits}
    chosen, how = (k, "given") if k is not None else choose_k(sil_by_k, mod_by_k)
    labels, sil, mod = chosen_fit(fits, chosen, graph.in_core)
    return KMeansClusters(
        chosen, by_size(labels), sil, mod, feature_set, sil_by_k, mod_by_k, how
    )


def choose_k(silhouette_by_k: dict[int, float], modularity_by_k: dict[int, float]) -> tuple[int, str]:
    """The k with the highest silhouette among those whose labels keep
    ``MODULARITY_FLOOR_SHARE`` of the best modularity; returns (k, how it was chosen).

    ``ONE_CLUSTER`` when every k's labels have negative modularity: then no k keeps the
    floor, and one cluster for the whole core (modularity 0) beats every split."""
    best = max(modularity_by_k.values())
    if best < 0:
        best_k = max(modularity_by_k, key=lambda c: modularity_by_k[c])
        return ONE_CLUSTER, (
            f"no cluster structure: every k tried ({min(modularity_by_k)}.."
            f"{max(modularity_by_k)}) gave labels of negative modularity (best {best:.4f} "
            f"at k={best_k}), worse than none, so every user in the graph's core shares "
            "one cluster"
        )
    floor = MODULARITY_FLOOR_SHARE * best
    eligible = [c for c in silhouette_by_k if modularity_by_k[c] >= floor]
    chosen = max(eligible, key=lambda c: silhouette_by_k[c])
    return chosen, (
        f"highest silhouette among k whose labels keep >= {MODULARITY_FLOOR_SHARE:.0%} "
        "of the best modularity in the range"
    )


def chosen_fit(
    fits: dict[int, tuple[np.ndarray, float, float]], chosen: int, in_core: np.ndarray
) -> tuple[np.ndarray, float, float]:
    """(labels, silhouette, modularity) of the chosen k: one of ``fits``, or for
    ``ONE_CLUSTER`` label 0 for the whole core, silhouette 0 (undefined for one cluster)
    and modularity 0 (one group over the core has none, by definition)."""
    if chosen == ONE_CLUSTER and chosen not in fits:
        return np.where(in_core, 0, NO_LABEL), 0.0, 0.0
    return fits[chosen]


def silhouette(x: np.ndarray, labels: np.ndarray, seed: int) -> float:
    """Silhouette, on a sample of SILHOUETTE_SAMPLE_SIZE users for big graphs."""
    return _silhouette(x, labels, seed)


def _silhouette(x: np.ndarray, labels: np.ndarray, seed: int) -> float:
    if len(set(labels.tolist())) < 2:
        return 0.0
    sample = SILHOUETTE_SAMPLE_SIZE if len(x) > SILHOUETTE_SAMPLE_SIZE else None
    return float(silhouette_score(x, labels, sample_size=sample, random_state=seed))


@dataclass
class Communities:
    """A community labelling (``-1`` outside the core) from one method."""

    method: str
    labels: np.ndarray
    modularity: float

    @property
    def count(self) -> int:
        return int(self.labels.max(initial=NO_LABEL) + 1)


def detect_communities(
    graph: FollowGraph, methods: tuple[str, ...] = ("leiden", "louvain"), seed: int = 0
) -> dict[str, Communities]:
    """Run each of ``methods`` ("leiden", "louvain") on the undirected core graph."""
    core = np.flatnonzero(graph.in_core)
    sub = graph.undirected.induced_subgraph(core.tolist())
    found: dict[str, Communities] = {}
    for method in methods:
        if method == "leiden":
            membership = _leiden(sub, seed)
        elif method == "louvain":
            membership = _louvain(sub, seed)
        else:
            raise ValueError(f"unknown community method {method!r}: use leiden or louvain")
        labels = np.full(graph.n_users, NO_LABEL)
        labels[core] = membership
        labels = by_size(labels)
        found[method] = Communities(method, labels, modularity(graph, labels))
    return found


def best_communities(found: dict[str, Communities]) -> Communities:
    """The labelling with the highest modularity (ties go to the first method run)."""
    return max(found.values(), key=lambda c: c.modularity)


def _leiden(g: ig.Graph, seed: int) -> np.ndarray:
    if g.vcount() == 0:
        return np.zeros(0, dtype=int)
    partition = leidenalg.find_partition(
        g, leidenalg.ModularityVertexPartition, n_iterations=-1, seed=seed
    )
    return np.asarray(partition.membership)


def _louvain(g: ig.Graph, seed: int) -> np.ndarray:
    if g.vcount() == 0:
        return np.zeros(0, dtype=int)
    best: tuple[float, list[int]] | None = None
    state = random.getstate()
    try:
        for run in range(LOUVAIN_RUNS):
            # igraph draws from Python's `random`; seeding it makes runs repeatable.
            random.seed(seed + run)
            clustering = g.community_multilevel()
            if best is None or clustering.modularity > best[0]:
                best = (clustering.modularity, clustering.membership)
    finally:
        random.setstate(state)
    return np.asarray(best[1])


def by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber labels so 0 is the largest group (stable, readable label names)."""
    out = np.full_like(labels, NO_LABEL)
    valid = labels >= 0
    if not valid.any():
        return out
    ids, counts = np.unique(labels[valid], return_counts=True)
    order = ids[np.lexsort((ids, -counts))]
    rank = np.empty(ids.max() + 1, dtype=labels.dtype)
    rank[order] = np.arange(len(order))
    out[valid] = rank[labels[valid]]
    return out


def group_sizes(labels: np.ndarray) -> dict[int, int]:
    """Users per label, ``-1`` (outside the core) included when present."""
    ids, counts = np.unique(labels, return_counts=True)
    return {int(i): int(c) for i, c in zip(ids, counts)}


def nmi(labels: np.ndarray, user_ids: list[str], truth: dict[str, str]) -> float | None:
    """NMI between ``labels`` and a planted user -> community mapping, over the users
    both know; ``None`` when they share no user."""
    idx = [i for i, u in enumerate(user_ids) if u in truth]
    if not idx:
        return None
    planted = [truth[user_ids[i]] for i in idx]
    return float(normalized_mutual_info_score(planted, labels[idx].tolist()))
