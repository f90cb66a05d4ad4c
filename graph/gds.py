"""The clustering pipeline inside Neo4j through the Graph Data Science plugin (GDS 2.x).

Why a second path: pulling a million follows into Python costs a minute of Bolt traffic
before any analysis starts; with GDS the follows never leave the server. The steps mirror
``graph.analytics``: one in-memory projection with ``FOLLOWS`` both as followed (NATURAL,
for degrees and betweenness) and as ties (UNDIRECTED, which Leiden requires), then
``gds.degree``, ``gds.wcc`` (small components get "none"), ``gds.localClusteringCoefficient``,
``gds.betweenness`` (``samplingSize`` on big graphs), ``gds.fastRP`` (the embedding),
``gds.kmeans`` per k and ``gds.louvain`` / ``gds.leiden``. Labels then go back through the
store's ``set_labels`` (one transaction) and the Users dataset and report are written by
the same code as the Python path.

Default Louvain/Leiden settings stop early on planted graphs (27 and 9 of 50 communities,
docs/neo4j-without-docker.md). So each method runs in rounds, every round seeded with
the previous round's communities (``seedProperty``), until modularity stops rising, and
the labelling with the higher modularity wins, as in the Python path.

Silhouette is computed in Python on a sample of the streamed embedding: GDS's own
``computeSilhouette`` is exact, O(users^2), which is hours at 100k users.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from neo4j import Driver, GraphDatabase
from neo4j.exceptions import (
    AuthError,
    ClientError,
    Neo4jError,
    ServiceUnavailable,
    SessionExpired,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from graph.analytics import (
    CLUSTER_PREFIX,
    COMMUNITY_PREFIX,
    ClusterOptions,
    NO_FOLLOWS,
    ClusterOutcome,
    EmptyFollowGraph,
    GraphAnalyticsError,
    Progress,
    StepTimer,
    finish,
    kmeans_summary,
    label_name,
    named_sizes,
    round_or_none,
)
from graph.clustering import (
    KMeansClusters,
    NO_LABEL,
    SILHOUETTE_SAMPLE_SIZE,
    by_size,
    choose_k,
    chosen_fit,
    nmi,
    silhouette,
)
from graph.errors import GraphUnavailable
from graph.features import (
    BETWEENNESS_SAMPLE_SOURCES,
    EXACT_BETWEENNESS_MAX_USERS,
    MIN_COMPONENT_SIZE,
)
from graph.report import PROJECTION_SAMPLE, write_summary
from graph.store import GraphStore, Labels

log = logging.getLogger(__name__)

# FastRP dimensions: 64 is where K-Means on planted graphs of 50 communities stops
# improving, and the docs' own guidance for graphs of this size.
FASTRP_DIMENSIONS = 64
# Weights of the 0..3-hop neighbourhoods: skipping the node itself and reaching 3 hops
# makes members of one community land close together even when they share no follow.
FASTRP_ITERATION_WEIGHTS = [0.0, 1.0, 1.0, 1.0]
# Seeded rounds per community method; each round starts from the last round's labels.
COMMUNITY_MAX_ROUNDS = 6
# A round that raises modularity by less than this is the last one.
COMMUNITY_MIN_GAIN = 1e-4
# A tighter stopping threshold than the default 1e-4, which is part of what stops early
# on planted graphs; levels stay at the default 10 because GDS reserves memory per level
# (maxLevels 30 asked 1.6 GB for 10k users), and the seeded rounds do the rest.
GDS_TOLERANCE = 1e-7
GDS_MAX_LEVELS = 10
GDS_MAX_ITERATIONS = 50
KMEANS_RESTARTS = 4
# gds.modularity.stats runs single-threaded. GDS 2.13's ModularityCalculator maps each
# label through a HugeLongLongMap whose lookups share one scan cursor (a field of the
# map) across the counting threads; under load a thread's scan is redirected by
# another's, the lookup misses, and GDS indexes its per-community array with -1
# ("Index -1 out of bounds for length 50" at 100k users, k=50). One thread is a single
# pass over the ties (0.1 s at 2M relationships), cheaper than the threads on 2 cores.
MODULARITY_CONCURRENCY = 1
# Leiden and Louvain run single-threaded too. A seeded Leiden round maps seed labels to
# communities through the same kind of shared map and, under load in CI, failed with
# "Index 93 out of bounds for length 37"; one thread also makes randomSeed reproduce
# the same communities run after run (GDS promises that only at concurrency 1).
COMMUNITY_CONCURRENCY = 1
# Users whose embedding comes back to Python: silhouette and the projection plot look
# at no more than this many (SILHOUETTE_SAMPLE_SIZE, report.PROJECTION_SAMPLE), and
# streaming all 100k x 64 floats cost seconds of Bolt decoding for nothing.
EMBEDDING_SAMPLE_SIZE = max(SILHOUETTE_SAMPLE_SIZE, PROJECTION_SAMPLE)
# Seconds to wait for Bolt: a refused port fails at once, this bounds a silent host.
CONNECTION_TIMEOUT_S = 5.0

_PROPS = ("in_degree", "out_degree", "betweenness", "clustering", "component")


class GdsUnavailable(GraphAnalyticsError):
    """``--engine gds`` was asked for but the server has no GDS plugin."""


class GdsStepFailed(GraphAnalyticsError):
    """A GDS procedure refused or failed (memory estimate, bad configuration)."""


class Neo4jEnv(BaseSettings):
    """HUNCH_NEO4J_URI / _USER / _PASSWORD, for when graph.server's settings are absent."""

    model_config = SettingsConfigDict(env_prefix="HUNCH_NEO4J_", extra="ignore")

    uri: str = "bolt://127.0.0.1:7687"
    user: str = "neo4j"
    password: str = "hunch-dev-password"


def neo4j_settings() -> Neo4jEnv:
    """The Neo4j connection settings (graph.server's when that module provides them)."""
    try:
        from graph.server import Neo4jSettings  # type: ignore[attr-defined]
    except ImportError:
        return Neo4jEnv()
    return Neo4jSettings()  # type: ignore[return-value]


def open_driver(uri: str, user: str, password: str) -> Driver:
    """A verified driver, or :class:`GraphUnavailable` saying what to check."""
    try:
        driver = GraphDatabase.driver(
            uri, auth=(user, password), connection_timeout=CONNECTION_TIMEOUT_S,
            # GDS answers with deprecation and performance notices the user cannot act on.
            notifications_min_severity="OFF",
        )
        driver.verify_connectivity()
        return driver
    except AuthError as exc:
        raise GraphUnavailable(
            f"Neo4j at {uri} refused the credentials; check HUNCH_NEO4J_USER and "
            "HUNCH_NEO4J_PASSWORD"
        ) from exc
    except (ServiceUnavailable, OSError, ValueError, Neo4jError) as exc:
        raise GraphUnavailable(
            f"Neo4j at {uri} is unreachable ({type(exc).__name__}); start it with "
            "`hunch neo4j start` or set HUNCH_NEO4J_URI"
        ) from exc


def gds_version(driver: Driver) -> str | None:
    """The GDS version when the plugin answers, else ``None``."""
    try:
        records, _, _ = driver.execute_query("RETURN gds.version() AS v")
        return str(records[0]["v"])
    except ClientError:
        return None


def _q(driver: Driver, query: str, **params) -> list[dict]:
    records, _, _ = _execute(driver, query, params)
    return [r.data() for r in records]


def _execute(driver: Driver, query: str, params: dict):
    """Run one query; server failures become the graph's typed errors."""
    try:
        return driver.execute_query(query, params)
    except (ServiceUnavailable, SessionExpired) as exc:
        raise GraphUnavailable(
            f"Neo4j went away during the GDS run ({type(exc).__name__}); nothing was "
            "written: restart it (`hunch neo4j start`) and run again"
        ) from exc
    except ClientError as exc:
        if "NullPointerException" in (exc.message or ""):
            raise  # _communities knows this one; see there
        first = (exc.message or str(exc)).splitlines()[0]
        raise GdsStepFailed(
            f"a GDS procedure failed: {first}; nothing was written (raise the server's heap "
            "with HUNCH_NEO4J_HEAP if it is about memory, or use --engine python)"
        ) from exc


def analyze_in_gds(
    driver: Driver,
    options: ClusterOptions | None = None,
    ground_truth: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> ClusterOutcome:
    """Run the analytics inside GDS and bring back labels, numbers and an embedding sample."""
    options = options or ClusterOptions()
    say = progress or (lambda _step: None)
    timer = StepTimer()
    timings, lap = timer.timings, timer.lap

    name = f"hunch-cluster-{uuid.uuid4().hex[:12]}"
    say("projecting the follow graph in GDS")
    projected = _q(
        driver,
        """
        CALL gds.graph.project($name, 'User', {
          FOLLOWS: {type: 'FOLLOWS', orientation: 'NATURAL'},
          TIES: {type: 'FOLLOWS', orientation: 'UNDIRECTED', aggregation: 'SINGLE'}
        }) YIELD nodeCount, relationshipCount
        RETURN nodeCount, relationshipCount
        """,
        name=name,
    )[0]
    lap("project")
    try:
        return _analyze_projection(driver, name, projected, options, ground_truth, say, lap, timings)
    finally:
        _q(driver, "CALL gds.graph.drop($name, false) YIELD graphName RETURN graphName", name=name)


def _analyze_projection(
    driver: Driver,
    name: str,
    projected: dict,
    options: ClusterOptions,
    ground_truth: Mapping[str, str] | None,
    say: Progress,
    lap: Callable[[str], None],
    timings: dict[str, float],
) -> ClusterOutcome:
    n_nodes = int(projected["nodeCount"])
    if int(projected["relationshipCount"]) == 0:
        # As the Python path says it; GDS's own words were "a GDS procedure failed: ...
        # Expecting at least one node projection to contain property key".
        raise EmptyFollowGraph(NO_FOLLOWS)
    seed = options.seed
    say("features in GDS: degree, components, clustering coefficient, betweenness")
    _q(driver, "CALL gds.degree.mutate($g, {relationshipTypes: ['FOLLOWS'], orientation: 'REVERSE', "
       "mutateProperty: 'in_degree'}) YIELD nodePropertiesWritten RETURN 1", g=name)
    _q(driver, "CALL gds.degree.mutate($g, {relationshipTypes: ['FOLLOWS'], orientation: 'NATURAL', "
       "mutateProperty: 'out_degree'}) YIELD nodePropertiesWritten RETURN 1", g=name)
    _q(driver, "CALL gds.wcc.mutate($g, {relationshipTypes: ['TIES'], mutateProperty: 'component'}) "
       "YIELD componentCount RETURN 1", g=name)
    _q(driver, "CALL gds.localClusteringCoefficient.mutate($g, {relationshipTypes: ['TIES'], "
       "mutateProperty: 'clustering'}) YIELD nodePropertiesWritten RETURN 1", g=name)
    exact = n_nodes <= EXACT_BETWEENNESS_MAX_USERS
    sampling = "" if exact else ", samplingSize: $size, samplingSeed: $seed"
    _q(driver, "CALL gds.betweenness.mutate($g, {relationshipTypes: ['FOLLOWS'], "
       f"mutateProperty: 'betweenness'{sampling}}}) YIELD nodePropertiesWritten RETURN 1",
       g=name, size=min(BETWEENNESS_SAMPLE_SOURCES, n_nodes), seed=seed)
    say("FastRP embedding in GDS")
    _q(driver, "CALL gds.fastRP.mutate($g, {relationshipTypes: ['TIES'], embeddingDimension: $dims, "
       "iterationWeights: $weights, randomSeed: $seed, mutateProperty: 'embedding'}) "
       "YIELD nodePropertiesWritten RETURN 1",
       g=name, dims=FASTRP_DIMENSIONS, weights=FASTRP_ITERATION_WEIGHTS, seed=seed)
    lap("features")

    node_ids, user_ids = _user_ids(driver, name)
    position = {nid: i for i, nid in enumerate(node_ids)}
    props = _stream_props(driver, name, list(_PROPS), position, len(node_ids))
    component = props["component"].astype(np.int64)
    _, inverse, sizes = np.unique(component, return_inverse=True, return_counts=True)
    in_core = sizes[inverse] >= MIN_COMPONENT_SIZE
    core_idx = np.flatnonzero(in_core)
    # K-Means runs on the whole embedding inside GDS; Python needs it only for silhouette
    # and the projection plot, which both look at a sample anyway.
    if len(core_idx) > EMBEDDING_SAMPLE_SIZE:
        rng = np.random.default_rng(seed)
        core_idx = np.sort(rng.choice(core_idx, EMBEDDING_SAMPLE_SIZE, replace=False))
    embedding = _stream_embedding(driver, name, [node_ids[i] for i in core_idx.tolist()])
    lap("stream_features")

    candidates = [options.k] if options.k else list(range(options.k_range[0], options.k_range[1] + 1))
    candidates = [c for c in candidates if 2 <= c < int(in_core.sum())]
    if not candidates:
        # The Python path's words: "load follows first" sent a user who had just loaded
        # a single follow or scattered pairs to load them again.
        core_users = int(in_core.sum())
        if core_users < MIN_COMPONENT_SIZE:
            raise EmptyFollowGraph(
                f"no connected group of >= {MIN_COMPONENT_SIZE} users among the {n_nodes} "
                "users of the graph, so there is nothing to cluster (smaller groups share "
                "the label 'none'): add follows that connect them")
        raise EmptyFollowGraph(
            f"only {core_users} users sit in connected groups of >= {MIN_COMPONENT_SIZE} "
            f"and k={options.k or options.k_range[0]} needs more: ask for a "
            f"smaller k (--k or --k-range LOW:HIGH with LOW at most {core_users - 1})")
    say("K-Means in GDS" + (f" with k={options.k}" if options.k else f" over k in {options.k_range}"))
    fits: dict[int, tuple[np.ndarray, float, float]] = {}
    for k in candidates:
        prop = f"kmeans_{k}"
        _q(driver, "CALL gds.kmeans.mutate($g, {nodeProperty: 'embedding', k: $k, randomSeed: $seed, "
           "numberOfRestarts: $restarts, mutateProperty: $prop}) YIELD nodePropertiesWritten RETURN 1",
           g=name, k=k, seed=seed, restarts=KMEANS_RESTARTS, prop=prop)
        labels = _stream_props(driver, name, [prop], position, len(node_ids))[prop].astype(np.int64)
        labels[~in_core] = NO_LABEL
        sil = silhouette(embedding, labels[core_idx], seed)
        fits[k] = (labels, sil, _modularity(driver, name, prop))
    sil_by_k = {k: f[1] for k, f in fits.items()}
    mod_by_k = {k: f[2] for k, f in fits.items()}
    chosen_k, how = (options.k, "given") if options.k else choose_k(sil_by_k, mod_by_k)
    labels, sil, mod = chosen_fit(fits, chosen_k, in_core)
    kmeans = KMeansClusters(chosen_k, by_size(labels), sil, mod, "fastrp", sil_by_k, mod_by_k, how)
    lap("kmeans")

    found: dict[str, tuple[np.ndarray, float, int]] = {}
    for method in options.methods:
        say(f"{method} in GDS, seeded rounds until modularity stops rising")
        prop, modularity, rounds = _communities(driver, name, method, seed)
        comm = _stream_props(driver, name, [prop], position, len(node_ids))[prop].astype(np.int64)
        comm[~in_core] = NO_LABEL
        found[method] = (by_size(comm), modularity, rounds)
    best_method = max(found, key=lambda m: found[m][1])
    community = found[best_method][0]
    lap("communities")

    labels_by_user = {
        uid: Labels(label_name(CLUSTER_PREFIX, c), label_name(COMMUNITY_PREFIX, m))
        for uid, c, m in zip(user_ids, kmeans.labels.tolist(), community.tolist())
    }
    summary = {
        "engine": "gds",
        "users": len(user_ids),
        # The projection counts FOLLOWS twice (directed and as ties); out-degrees do not.
        "follows": int(props["out_degree"].sum()),
        "users_labelled_none": int((~in_core).sum()),
        "none_label": (
            f"users in connected groups of fewer than {MIN_COMPONENT_SIZE} users share "
            "CLUSTER and COMMUNITY 'none'"
        ),
        "features": {
            "kmeans_input": f"gds.fastRP ({FASTRP_DIMENSIONS} dims)",
            "betweenness": "exact" if exact else f"gds.betweenness samplingSize {BETWEENNESS_SAMPLE_SOURCES}",
        },
        "kmeans": kmeans_summary(kmeans),
        "communities": {
            m: {"count": int(v[0].max(initial=-1) + 1), "modularity": round(v[1], 4), "rounds": v[2]}
            for m, v in found.items()
        },
        "community_method": best_method,
        "community_method_chosen_by": "highest modularity",
        "community_sizes": named_sizes(COMMUNITY_PREFIX, community),
        "nmi": None,
        "timings_s": timings,
    }
    if ground_truth:
        truth = dict(ground_truth)
        summary["nmi"] = {
            "cluster": round_or_none(nmi(kmeans.labels, user_ids, truth)),
            **{m: round_or_none(nmi(v[0], user_ids, truth)) for m, v in found.items()},
            "community": round_or_none(nmi(community, user_ids, truth)),
        }
    return ClusterOutcome(labels_by_user, summary, embedding, community[core_idx])


def _user_ids(driver: Driver, name: str) -> tuple[list[int], list[str]]:
    # Asked of the projection itself: a user created after it was taken has no features,
    # and one deleted since (asNode gives null) has nobody to label.
    row = _q(
        driver,
        "CALL gds.graph.nodeProperty.stream($g, 'component') YIELD nodeId "
        "WITH nodeId, gds.util.asNode(nodeId).id AS uid WHERE uid IS NOT NULL "
        "RETURN collect(nodeId) AS nids, collect(uid) AS uids",
        g=name,
    )[0]
    return row["nids"], row["uids"]


def _stream_props(
    driver: Driver, name: str, props: list[str], position: dict[int, int], n: int
) -> dict[str, np.ndarray]:
    # One record per property holding two lists: the driver decodes a list in one go,
    # where a record per node and property cost ~50 us each (100k users: ~600k records
    # and 31.5 s of "stream_features" before, 9.2 s after on a 3x busier machine).
    out = {p: np.zeros(n) for p in props}
    records, _, _ = _execute(
        driver,
        "CALL gds.graph.nodeProperties.stream($g, $props) "
        "YIELD nodeId, nodeProperty, propertyValue "
        "RETURN nodeProperty, collect(nodeId) AS nids, collect(propertyValue) AS values",
        {"g": name, "props": props},
    )
    for prop, nids, values in records:
        rows = [(position[nid], value) for nid, value in zip(nids, values) if nid in position]
        if rows:
            at, vals = zip(*rows)
            out[prop][list(at)] = vals
    return out


def _stream_embedding(driver: Driver, name: str, node_ids: list[int]) -> np.ndarray:
    """The FastRP vectors of ``node_ids``, in that order (one record, as above)."""
    out = np.zeros((len(node_ids), FASTRP_DIMENSIONS))
    if not node_ids:
        return out
    position = {nid: i for i, nid in enumerate(node_ids)}
    record = _q(
        driver,
        "CALL gds.graph.nodeProperty.stream($g, 'embedding') YIELD nodeId, propertyValue "
        "WITH nodeId, propertyValue WHERE nodeId IN $ids "
        "RETURN collect(nodeId) AS nids, collect(propertyValue) AS values",
        g=name, ids=node_ids,
    )[0]
    for node_id, value in zip(record["nids"], record["values"]):
        out[position[node_id]] = value
    return out


def _modularity(driver: Driver, name: str, prop: str) -> float:
    """Modularity of a labelling on the undirected ties, by GDS's modularity metric
    (single-threaded: see MODULARITY_CONCURRENCY)."""
    return float(_q(
        driver,
        "CALL gds.modularity.stats($g, {relationshipTypes: ['TIES'], communityProperty: $p, "
        "concurrency: $threads}) YIELD modularity RETURN modularity",
        g=name, p=prop, threads=MODULARITY_CONCURRENCY,
    )[0]["modularity"])


def _communities(driver: Driver, name: str, method: str, seed: int) -> tuple[str, float, int]:
    """Seeded rounds of ``method`` until modularity gains less than COMMUNITY_MIN_GAIN;
    returns (property holding the best round, its modularity, rounds run)."""
    if method not in ("leiden", "louvain"):
        raise GraphAnalyticsError(f"unknown community method {method!r}: use leiden or louvain")
    extra = (
        "gamma: 1.0, randomSeed: $seed" if method == "leiden"
        else "maxIterations: $iters"
    )
    best_prop, best_q, rounds = "", -1.0, 0
    for round_ in range(COMMUNITY_MAX_ROUNDS):
        prop = f"{method}_{round_}"
        # Unseeded rounds ask for small ids: GDS sizes a seeded run's memory by the
        # largest seed value (node ids as seeds asked 1.6 GB for 10k users), and it
        # refuses consecutiveIds together with a seed.
        # Seeded Leiden estimates 1.6 GB for 10k users where the same run unseeded needs
        # 7 MB, and GDS refuses to start; sudo skips only that estimate.
        seeding = (
            f", seedProperty: '{best_prop}', sudo: true" if best_prop else ", consecutiveIds: true"
        )
        try:
            row = _q(
                driver,
                f"CALL gds.{method}.mutate($g, {{relationshipTypes: ['TIES'], mutateProperty: $prop, "
                f"maxLevels: $levels, tolerance: $tol, includeIntermediateCommunities: false, "
                f"concurrency: $threads, {extra}{seeding}}}) YIELD modularity RETURN modularity",
                g=name, prop=prop, levels=GDS_MAX_LEVELS, tol=GDS_TOLERANCE,
                iters=GDS_MAX_ITERATIONS, seed=seed, threads=COMMUNITY_CONCURRENCY,
            )[0]
        except ClientError as exc:
            # GDS 2.13 Leiden fails with a NullPointerException when the seed partition
            # admits no move at all (no level runs): that seed is already converged.
            if best_prop and "NullPointerException" in (exc.message or ""):
                break
            raise
        except GdsStepFailed as exc:
            # A seeded round only refines a labelling we already hold: if GDS fails on
            # it for another reason, keep the best round rather than lose the whole run.
            if not best_prop:
                raise
            log.warning("GDS %s round %d failed; keeping %s: %s", method, round_, best_prop, exc)
            break
        rounds += 1
        q = float(row["modularity"])
        if q < best_q + COMMUNITY_MIN_GAIN:
            break
        best_prop, best_q = prop, q
    return best_prop, best_q, rounds


async def cluster_in_gds(
    store: GraphStore,
    driver: Driver,
    out_dir: Path,
    options: ClusterOptions | None = None,
    users_csv: Path | None = None,
    ground_truth: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> ClusterOutcome:
    """The GDS path end to end: analyse in Neo4j, then the same write-back (one
    ``set_labels`` transaction), users.csv export and report as the Python path."""
    started = time.perf_counter()
    outcome = await asyncio.to_thread(analyze_in_gds, driver, options, ground_truth, progress)
    await finish(store, outcome, out_dir, users_csv, progress)
    outcome.summary["timings_s"]["total"] = round(time.perf_counter() - started, 3)
    write_summary(out_dir, outcome.summary)
    return outcome


__all__ = [
    "GdsStepFailed",
    "GdsUnavailable",
    "Neo4jEnv",
    "analyze_in_gds",
    "cluster_in_gds",
    "gds_version",
    "neo4j_settings",
    "open_driver",
]
