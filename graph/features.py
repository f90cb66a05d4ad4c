"""Per-user features of the follower graph: role (degrees, betweenness, clustering) and place
(a spectral embedding that carries community).

Why both: K-Means on centrality features groups users by *role* (hubs, lurkers), not by
*whom* they follow; on a public friend graph those labels had a modularity of 0.06 against
0.46 for community detection (docs/evidence-methods.md). So the structural features are
computed and reported, and the embedding, which does carry community, is what K-Means
clusters by default (see ``graph.clustering``).

The heavy lifting is igraph's (C) and scipy's ARPACK; nothing here loops over edges in
Python except the one pass that maps user ids to vertex numbers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import igraph as ig
import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import eigsh
from sklearn.preprocessing import StandardScaler

# Exact betweenness costs O(users x follows); at 5k users and ~50k follows that is a few
# seconds on one core, past it we estimate from a sample of source users instead.
EXACT_BETWEENNESS_MAX_USERS = 5_000
# Sampled sources for estimated betweenness (Brandes & Pich 2007: a few hundred pivots
# rank the central users reliably); each costs one BFS over all follows.
BETWEENNESS_SAMPLE_SOURCES = 256
# Users in connected components smaller than this have no meaningful community: a pair
# who only follow each other. They share the label "none" for CLUSTER and COMMUNITY and
# are kept out of the spectral embedding, where each small component would otherwise
# take a whole eigenvector of its own.
MIN_COMPONENT_SIZE = 5
# ARPACK tolerance: cluster assignments do not change below this precision, and the
# default (machine precision) costs several times more iterations on 100k users.
EIGSH_TOLERANCE = 1e-6

STRUCTURAL_COLUMNS = ("in_degree", "out_degree", "betweenness", "clustering")


@dataclass
class FollowGraph:
    """The follow graph with users numbered 0..n-1 (``user_ids[i]`` is vertex ``i``).

    ``directed`` keeps who follows whom (degrees, betweenness); ``undirected`` collapses a
    follow and a follow-back into one tie (communities, clustering, embedding).
    """

    user_ids: list[str]
    directed: ig.Graph
    undirected: ig.Graph
    # Vertices in components of at least MIN_COMPONENT_SIZE users.
    in_core: np.ndarray = field(repr=False)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_follows(self) -> int:
        return self.directed.ecount()


def build_follow_graph(
    edges: Iterable[tuple[str, str]], min_component_size: int = MIN_COMPONENT_SIZE
) -> FollowGraph:
    """Number the users and build both graphs; self-follows and repeated follows are dropped."""
    index: dict[str, int] = {}
    sources: list[int] = []
    targets: list[int] = []
    setdefault = index.setdefault
    for follower, followee in edges:
        if follower == followee:
            continue
        sources.append(setdefault(follower, len(index)))
        targets.append(setdefault(followee, len(index)))
    user_ids = list(index)
    pairs = np.column_stack([np.asarray(sources, np.int64), np.asarray(targets, np.int64)])
    if len(pairs):
        pairs = np.unique(pairs, axis=0)
    directed = ig.Graph(n=len(user_ids), edges=pairs, directed=True)
    undirected = directed.as_undirected(mode="collapse")
    sizes = np.asarray(undirected.connected_components().sizes())
    membership = np.asarray(undirected.connected_components().membership)
    in_core = sizes[membership] >= min_component_size if len(user_ids) else np.zeros(0, bool)
    return FollowGraph(user_ids, directed, undirected, in_core)


@dataclass
class UserFeatures:
    """Features of every user of a :class:`FollowGraph`, in vertex order."""

    user_ids: list[str]
    structural: np.ndarray  # raw values, columns STRUCTURAL_COLUMNS
    structural_scaled: np.ndarray  # standardised (log of the heavy-tailed ones first)
    eigenvalues: np.ndarray  # descending
    eigenvectors: np.ndarray  # columns match eigenvalues; zero rows outside the core
    betweenness_exact: bool

    def spectral_embedding(self, dims: int | None = None) -> np.ndarray:
        """Row-normalised leading eigenvectors (Ng-Jordan-Weiss): users of one community
        point the same way whatever their degree, which is what K-Means needs."""
        vecs = self.eigenvectors if dims is None else self.eigenvectors[:, :dims]
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        return np.divide(vecs, norms, out=np.zeros_like(vecs), where=norms > 0)

    def matrix(self, kind: str = "embedding", dims: int | None = None) -> np.ndarray:
        """The matrix K-Means clusters: ``embedding`` or ``all`` (embedding + standardised
        structural features, for those who want roles mixed in)."""
        emb = self.spectral_embedding(dims)
        if kind == "embedding":
            return emb
        if kind == "all":
            return np.hstack([emb, self.structural_scaled / np.sqrt(emb.shape[1] or 1)])
        raise ValueError(f"unknown feature set {kind!r}: use 'embedding' or 'all'")


def compute_features(graph: FollowGraph, embedding_dims: int, seed: int = 0) -> UserFeatures:
    """Degrees, betweenness (exact on small graphs, sampled on large), local clustering
    coefficient and a spectral embedding with ``embedding_dims`` columns."""
    d = graph.directed
    in_degree = np.asarray(d.indegree(), dtype=float)
    out_degree = np.asarray(d.outdegree(), dtype=float)
    betweenness, exact = _betweenness(d, seed)
    clustering = np.asarray(graph.undirected.transitivity_local_undirected(mode="zero"))
    structural = np.column_stack([in_degree, out_degree, betweenness, clustering])
    # Degrees and betweenness are heavy-tailed: without the log a few hubs would own
    # the whole standardised scale.
    logged = structural.copy()
    logged[:, :3] = np.log1p(logged[:, :3])
    scaled = StandardScaler().fit_transform(logged) if graph.n_users else logged
    values, vectors = _leading_eigenvectors(graph, embedding_dims, seed)
    return UserFeatures(graph.user_ids, structural, scaled, values, vectors, exact)


def _betweenness(d: ig.Graph, seed: int) -> tuple[np.ndarray, bool]:
    n = d.vcount()
    if n <= EXACT_BETWEENNESS_MAX_USERS:
        return np.asarray(d.betweenness(directed=True), dtype=float), True
    rng = np.random.default_rng(seed)
    pivots = rng.choice(n, size=BETWEENNESS_SAMPLE_SOURCES, replace=False)
    partial = np.asarray(d.betweenness(directed=True, sources=pivots.tolist()), dtype=float)
    # Scale up so the estimate is on the exact measure's scale (unbiased estimator).
    return partial * (n / BETWEENNESS_SAMPLE_SOURCES), False


def _leading_eigenvectors(
    graph: FollowGraph, dims: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top eigenvectors of D^-1/2 A D^-1/2 over the symmetrised follows of the core users."""
    n = graph.n_users
    core = np.flatnonzero(graph.in_core)
    out = np.zeros((n, dims))
    if len(core) <= dims + 1:
        return np.zeros(dims), out
    sub = graph.undirected.induced_subgraph(core.tolist())
    edges = np.asarray(sub.get_edgelist(), dtype=np.int64)
    m = len(core)
    adj = sp.coo_matrix(
        (np.ones(2 * len(edges)), (np.r_[edges[:, 0], edges[:, 1]], np.r_[edges[:, 1], edges[:, 0]])),
        shape=(m, m),
    ).tocsr()
    inv_sqrt = 1.0 / np.sqrt(np.asarray(adj.sum(axis=1)).ravel())
    norm_adj = sp.diags(inv_sqrt) @ adj @ sp.diags(inv_sqrt)
    v0 = np.random.default_rng(seed).standard_normal(m)
    values, vectors = eigsh(norm_adj, k=dims, which="LA", tol=EIGSH_TOLERANCE, v0=v0)
    order = np.argsort(values)[::-1]
    # Eigenvectors of the normalised adjacency scaled back by D^-1/2 are the random-walk
    # ones; row normalisation later removes degree either way, so keep them as they are.
    out[core] = vectors[:, order]
    return values[order], out
