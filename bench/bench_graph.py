"""Benchmark of `hunch graph cluster`: the GDS path against the Python path, side by side.

Measures, on one planted follow graph (communities of varied size, heavy-tailed
in-degree, 80 % of follows inside the community):

- loading the follows into the store (goal: 1M follows in <= 60 s), and
- clustering end to end: features, K-Means, Louvain/Leiden, evaluation, labels written
  back, users.csv and report (goal: 100k users / 1M follows in <= 180 s),

then prints both paths' numbers, the goals, NMI against the planted communities, and the
ratio GDS / Python measured in the same run (the baseline), and the CPU seconds the
load cost the Neo4j server and this process (steadier than wall time on a shared
machine). The GDS column needs a Neo4j with GDS at HUNCH_NEO4J_URI; without one it says
so and prints the Python column alone.
The benchmark's users carry a unique id prefix and are deleted from Neo4j afterwards.

    python bench/bench_graph.py            # full size: 100k users, 1M follows (minutes)
    python bench/bench_graph.py --quick    # 10k users, 100k follows
    python bench/bench_graph.py --users 20000 --skip-python   # 200k follows, GDS only
    python bench/bench_graph.py --users 20000 --skip-python --load-only   # the load alone
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from neo4j.exceptions import DriverError, Neo4jError  # noqa: E402

from graph.analytics import ClusterOptions, cluster_store, plant_follow_graph  # noqa: E402
from graph.errors import GraphError  # noqa: E402
from graph.store import Follow  # noqa: E402

LOAD_GOAL_S = 60.0  # 1M follows
CLUSTER_GOAL_S = 180.0  # 100k users, 1M follows, end to end
FULL = {"users": 100_000, "communities": 50, "follows_per_user": 10.0}
QUICK = {"users": 10_000, "communities": 10, "follows_per_user": 10.0}
# --users N plants communities of this size on average, as the full run does.
USERS_PER_COMMUNITY = 2_000


def _follows(pairs):
    return [Follow(a, b, 1_700_000_000) for a, b in pairs]


async def _python_path(pairs, truth, options, out: Path) -> dict:
    from graph.memory_store import InMemoryGraphStore

    store = InMemoryGraphStore()
    started = time.perf_counter()
    await store.upsert_follows(_follows(pairs))
    loaded = time.perf_counter()
    outcome = await cluster_store(store, out, options, ground_truth=truth)
    done = time.perf_counter()
    return {"load": loaded - started, "cluster": done - loaded, "summary": outcome.summary}


async def _gds_path(pairs, truth, options, out: Path, load_only: bool = False) -> dict | str:
    from graph.errors import GraphUnavailable
    from graph.gds import cluster_in_gds, gds_version, neo4j_settings, open_driver
    from graph.neo4j_store import Neo4jGraphStore
    from graph.server import cpu_seconds

    settings = neo4j_settings()
    try:
        driver = open_driver(settings.uri, settings.user, settings.password)
    except GraphUnavailable as exc:
        return f"skipped: {exc}"
    if gds_version(driver) is None:
        driver.close()
        return f"skipped: Neo4j at {settings.uri} has no GDS plugin"
    prefix = f"bench-{uuid.uuid4().hex[:6]}-"
    pairs = [(prefix + a, prefix + b) for a, b in pairs]
    truth = {prefix + u: c for u, c in truth.items()}
    store = Neo4jGraphStore(settings.uri, settings.user, settings.password)
    try:
        await store.ensure_schema()
        server_before, client_before = cpu_seconds(), time.process_time()
        started = time.perf_counter()
        await store.upsert_follows(_follows(pairs))
        loaded = time.perf_counter()
        load_cpu = _load_cpu(server_before, cpu_seconds(), client_before, time.process_time())
        if load_only:
            return {"load": loaded - started, "load_cpu": load_cpu}
        outcome = await cluster_in_gds(store, driver, out, options, ground_truth=truth)
        done = time.perf_counter()
        return {"load": loaded - started, "cluster": done - loaded, "summary": outcome.summary,
                "load_cpu": load_cpu}
    finally:
        await store.close()
        with driver.session() as session:
            session.run(
                "MATCH (u:User) WHERE u.id STARTS WITH $p "
                "CALL (u) { DETACH DELETE u } IN TRANSACTIONS OF 10000 ROWS",
                p=prefix,
            ).consume()
        driver.close()


def _load_cpu(server_before: float | None, server_after: float | None, client_before: float,
              client_after: float) -> str:
    # CPU seconds do not grow when other processes take the cores, unlike wall time: the
    # number to compare between runs on a shared machine.
    server = ("server CPU unknown (not the server of HUNCH_NEO4J_HOME)"
              if server_after is None or server_before is None
              else f"server CPU {server_after - server_before:.1f} s")
    return f"{server}, client CPU {client_after - client_before:.1f} s"


def _print_path(name: str, result: dict | str) -> None:
    if isinstance(result, dict) and "summary" not in result:
        print(f"{name}: load {result['load']:.1f} s (clustering skipped)", flush=True)
        print(f"{name} load: {result['load_cpu']}", flush=True)
    elif isinstance(result, dict):
        s = result["summary"]
        print(f"{name}: load {result['load']:.1f} s, cluster {result['cluster']:.1f} s; "
              f"NMI {s['nmi']}; communities "
              f"{ {m: c['count'] for m, c in s['communities'].items()} }; "
              f"steps {s['timings_s']}", flush=True)
        if "load_cpu" in result:
            print(f"{name} load: {result['load_cpu']}", flush=True)
    else:
        print(f"{name}: {result}", flush=True)


def _cell(result, key: str) -> str:
    return f"{result[key]:.1f} s" if isinstance(result, dict) and key in result else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k users / 100k follows")
    parser.add_argument("--skip-gds", action="store_true")
    parser.add_argument("--skip-python", action="store_true")
    parser.add_argument("--users", type=int,
                        help="planted users (10 follows each, communities of ~2,000): "
                             "e.g. 20000 for 200k follows while iterating")
    parser.add_argument("--load-only", action="store_true",
                        help="GDS path: load the follows and stop (iterating on the load)")
    parser.add_argument("--k", type=int, help="K-Means k (default: the planted count)")
    args = parser.parse_args()
    size = QUICK if args.quick else FULL
    if args.users:
        size = {**FULL, "users": args.users,
                "communities": max(2, args.users // USERS_PER_COMMUNITY)}
    pairs, truth = plant_follow_graph(
        size["users"], size["communities"], size["follows_per_user"], seed=7
    )
    # Goals are for the full size; a smaller run scales them by its share of 1M follows.
    smaller = args.quick or (args.users or FULL["users"]) < FULL["users"]
    scale = len(pairs) / 1_000_000 if smaller else 1.0
    options = ClusterOptions(k=args.k or size["communities"])
    print(f"planted graph: {size['users']} users, {len(pairs)} follows, "
          f"{size['communities']} communities; K-Means k={options.k}")
    with tempfile.TemporaryDirectory() as tmp:
        py = "skipped" if args.skip_python else asyncio.run(
            _python_path(pairs, truth, options, Path(tmp) / "python"))
        _print_path("Python", py)
        try:
            gds = "skipped" if args.skip_gds else asyncio.run(
                _gds_path(pairs, truth, options, Path(tmp) / "gds", args.load_only))
        except (GraphError, Neo4jError, DriverError) as exc:
            # Print what the Python path measured even when the server fails mid-run.
            gds = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        _print_path("GDS", gds)
    print(f"\n{'step':<34}{'GDS':>12}{'Python':>12}{'goal':>14}")
    print(f"{'load follows':<34}{_cell(gds, 'load'):>12}{_cell(py, 'load'):>12}"
          f"{f'{LOAD_GOAL_S * scale:.0f} s':>14}")
    print(f"{'cluster end to end':<34}{_cell(gds, 'cluster'):>12}{_cell(py, 'cluster'):>12}"
          f"{f'{CLUSTER_GOAL_S * scale:.0f} s':>14}")
    if isinstance(gds, dict) and isinstance(py, dict) and "cluster" in gds:
        print(f"ratio GDS / Python: load {gds['load'] / py['load']:.2f}x, "
              f"cluster {gds['cluster'] / py['cluster']:.2f}x (below 1 means GDS is faster)")
    if smaller:
        print(f"(goals scaled linearly to {scale:.2f}M follows; run at full size for the real goals)")


if __name__ == "__main__":
    main()
