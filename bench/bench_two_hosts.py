"""Feed p99 at a fixed rate over HTTP: two gateway hosts sharing PostgreSQL and Redis,
against one host on the embedded SQLite store, measured in the same run.

- **one host** (the baseline): one ``hunch serve`` with ``--workers`` workers on the
  default embedded settings (SQLite events, SQLite feed sessions, local rate limits).
- **two hosts**: two ``hunch serve`` processes with ``--workers / 2`` workers each (the
  same number of workers in all), separate home directories, sharing the event store
  (``HUNCH_STORE_URL``: a throwaway PostgreSQL started here unless ``--store-url`` names
  one; ``--shared-store sqlite`` shares one SQLite file instead), the trained models
  (one artifacts directory), and Redis for feed sessions and rate limits.

Both serve the same imported data and the same models. ``feed(first: 20)`` requests
arrive at ``--rate`` per second in total for ``--seconds`` (after ``--warmup`` seconds
at the same rate, not counted) from paced users who page five times with the cursor and
then start over; on two hosts each host gets half the users and half the rate (a load
balancer's round robin). Latency counts from when each request was due (no coordinated
omission; see bench_gateway.py, whose wrk script this reuses), and the two hosts'
latencies are merged before taking percentiles. Prints p50/p95/p99 per setup, the
two-host/one-host p99 (and p50) ratio, the load average before and after and the
1-minute load at the end of each measured phase (the machine is shared: compare ratios
from one run, not figures across runs).

Goal (issue 16: several hosts): two hosts sharing PostgreSQL keep the feed's p99 at
200 req/s within 1.5x of the one-host SQLite figure measured in the same run.
Run: ``python bench/bench_two_hosts.py [--rate 200] [--seconds 20] [--home DIR]``
(needs ``wrk``: apt-get install wrk; PostgreSQL and redis-server binaries, which
scripts/test.sh installs). Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import bench_gateway as gw  # noqa: E402 - the wrk script, engine build, ports, CPU

GOAL_RPS = 200.0
GOAL_RATIO = 1.5  # two hosts' p99 / one host's p99
PERCENTILES = (0.50, 0.95, 0.99)
# The rate counts as held when this share of it completed (requests in flight at the
# end are not counted), as in bench_gateway.py.
RATE_HELD_SHARE = gw.RATE_HELD_SHARE
# Unlimited for the load users: the bench measures the feed, not the limiter's refusals.
NO_RATE_LIMIT = "1000000"


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("HUNCH_")}


class Gateway:
    """One ``hunch serve`` process (one "host")."""

    def __init__(self, home: Path, workers: int, settings: dict[str, str]):
        self.port = gw._free_port()
        home.mkdir(parents=True, exist_ok=True)
        self.env = {**_clean_env(), "HUNCH_HOME": str(home), "HUNCH_PORT": str(self.port),
                    "HUNCH_FEED_RATE_PER_MINUTE": NO_RATE_LIMIT,
                    "HUNCH_MUTATION_RATE_PER_MINUTE": NO_RATE_LIMIT,
                    "HUNCH_POLL_WRITES_PER_DAY": NO_RATE_LIMIT,
                    "HUNCH_FOLLOW_CHANGES_PER_DAY": NO_RATE_LIMIT,
                    "HUNCH_DOCUMENT_RATE_PER_MINUTE": NO_RATE_LIMIT, **settings}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--workers", str(workers)],
            env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        import httpx

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"a gateway exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        sys.exit(f"the gateway on {self.url} did not become ready in 120 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def _paced(gateways: list[Gateway], rate: float, seconds: float, users: int,
           workdir: Path) -> dict:
    """Feed pages at ``rate``/s in total, split evenly over ``gateways``, one wrk each,
    at once; the merged latencies' percentiles."""
    procs, dumps = [], []
    for i, gateway in enumerate(gateways):
        dump = workdir / f"latencies-{i}-{uuid.uuid4().hex[:6]}.txt"
        share = max(1, users // len(gateways))
        env = {**os.environ, "HUNCH_BENCH_KIND": "feed", "HUNCH_BENCH_DIR": str(workdir),
               "HUNCH_BENCH_RATE": str(rate / len(gateways)),
               "HUNCH_BENCH_PAGES": str(gw.PAGES_PER_SESSION),
               "HUNCH_BENCH_FEED": gw.FEED.replace('"', '\\"'),
               "HUNCH_BENCH_IMPRESSIONS": gw.IMPRESSIONS.replace('"', '\\"'),
               "HUNCH_BENCH_LATENCIES": str(dump)}
        procs.append(subprocess.Popen(
            ["wrk", "-t", str(share), "-c", str(share), "-d", f"{seconds:.0f}s",
             "--timeout", "10s", "-s", str(workdir / "load.lua"), gateway.url, "--",
             str(share)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        dumps.append(dump)
    latencies: list[float] = []
    requests = errors = 0
    elapsed = 0.0
    for proc, dump in zip(procs, dumps):
        out, err = proc.communicate()
        if proc.returncode != 0:
            sys.exit(f"wrk failed: {err[-2000:]}")
        line = next(x for x in out.splitlines() if x.startswith("HUNCH_RESULT "))
        result = json.loads(line.removeprefix("HUNCH_RESULT "))
        requests += result["requests"]
        errors += result["errors"]
        elapsed = max(elapsed, result["seconds"])
        latencies += [float(x) for x in dump.read_text().split()]
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else 0.0

    return {"requests": requests, "errors": errors, "rps": requests / elapsed,
            **{f"p{round(p * 100)}_ms": pct(p) for p in PERCENTILES}}


def _measure(name: str, gateways: list[Gateway], args, workdir: Path,
             servers: tuple[int, ...] = ()) -> dict:
    """``servers``: process ids of the shared servers (PostgreSQL, Redis) whose CPU
    counts per request too: the SQLite baseline does that work inside the gateway."""
    for gateway in gateways:
        gateway.wait_ready()
    print(f"  {name}: warm-up {args.warmup:.0f} s, then {args.seconds:.0f} s at "
          f"{args.rate:.0f}/s ...", flush=True)
    if args.warmup > 0:
        _paced(gateways, args.rate, args.warmup, args.connections, workdir)
    cpu_before = [gw._cpu_seconds(g.proc.pid) for g in gateways]
    servers_before = [gw._cpu_seconds(pid) for pid in servers]
    result = _paced(gateways, args.rate, args.seconds, args.connections, workdir)
    cpu_after = [gw._cpu_seconds(g.proc.pid) for g in gateways]
    servers_after = [gw._cpu_seconds(pid) for pid in servers]
    if servers and None not in servers_before + servers_after:
        spent = sum(after - before for before, after in zip(servers_before, servers_after))
        result["servers_cpu_ms"] = spent * 1000 / max(1, result["requests"])
    result["loadavg_1m_at_end"] = os.getloadavg()[0]  # other work on the machine shows here
    if None not in cpu_before + cpu_after:
        spent = sum(after - before for before, after in zip(cpu_before, cpu_after))
        result["server_cpu_ms"] = spent * 1000 / max(1, result["requests"])
    result["setup"] = name
    return result


def _settle(url: str) -> None:
    """What a deployment does after a bulk import, before taking traffic: statistics
    for the planner and dirty pages written out. Otherwise autovacuum's analyze of the
    freshly imported tables and the checkpointer run during the measured phase, on the
    same two cores (the SQLite baseline has no such background work)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
        conn.execute("CHECKPOINT")


def _start_postgres():
    from tests.servers import PostgresServer, postgres_bin_dir

    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        sys.exit("PostgreSQL is not installed (scripts/test.sh installs it with apt), "
                 "or pass --store-url postgresql://...")
    return PostgresServer(bin_dir).init()


def _start_redis(workdir: Path):
    from tests.servers import RedisServer

    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (apt-get install redis-server), "
                 "or pass --redis-url redis://...")
    return RedisServer(binary, workdir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=GOAL_RPS, help="feed requests/s in total")
    parser.add_argument("--seconds", type=float, default=20.0, help="each measured phase")
    parser.add_argument("--warmup", type=float, default=5.0, help="uncounted, before each")
    parser.add_argument("--connections", type=int, default=32,
                        help="paced users sharing --rate (split over the hosts)")
    parser.add_argument("--workers", type=int, default=2,
                        help="uvicorn workers in all (two hosts: half each)")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--polls", type=int, default=5000)
    parser.add_argument("--home", type=Path, default=None,
                        help="demo engine to use (built there if missing); default: a temp dir")
    parser.add_argument("--shared-store", choices=("postgresql", "sqlite"), default="postgresql",
                        help="what the two hosts share: PostgreSQL, or one SQLite file")
    parser.add_argument("--store-url", default=None,
                        help="an empty PostgreSQL database; default: a throwaway server here")
    parser.add_argument("--redis-url", default=None, help="default: a throwaway redis-server")
    args = parser.parse_args()
    if args.workers < 2 or args.workers % 2:
        sys.exit("--workers must be even: the two hosts get half each")
    if not shutil.which("wrk"):
        sys.exit("wrk is not on PATH: apt-get install wrk (Debian/Ubuntu), brew install wrk")
    from gateway.auth import issue_token
    from gateway.settings import Settings

    if args.shared_store == "postgresql" and "store_url" not in Settings.model_fields:
        sys.exit("this checkout has no HUNCH_STORE_URL setting (the PostgreSQL event store); "
                 "run with --shared-store sqlite")

    home = args.home or Path(tempfile.mkdtemp(prefix="hunch-bench-"))
    workdir = Path(tempfile.mkdtemp(prefix="hunch-bench-two-hosts-"))
    gw._build_engine(home, {**_clean_env(), "HUNCH_HOME": str(home)}, args.users, args.polls)
    with (home / "data" / "users.csv").open() as fh:
        users = [row["USER_ID"] for _, row in zip(range(200), csv.DictReader(fh))]
    (workdir / "tokens.txt").write_text("\n".join(issue_token(Settings(), u) for u in users) + "\n")
    (workdir / "polls.txt").write_text("unused\n")  # the wrk script reads it for impressions
    (workdir / "load.lua").write_text(gw._WRK_SCRIPT)

    postgres = redis = None
    gateways: list[Gateway] = []
    results = []
    load_before = os.getloadavg()
    try:
        # The baseline: the built home as it is, one host, everything embedded.
        gateways = [Gateway(home, args.workers, {})]
        results.append(_measure("one host, SQLite", gateways, args, workdir))
        gateways.pop().stop()

        shared = {"HUNCH_ARTIFACTS_PATH": str(home / "artifacts"),
                  "HUNCH_SESSION_STORE": "redis"}
        if args.redis_url is None:
            redis = _start_redis(workdir)
        shared["HUNCH_REDIS_URL"] = args.redis_url or redis.url
        if args.shared_store == "postgresql":
            if args.store_url is None:
                postgres = _start_postgres()
            shared["HUNCH_STORE_URL"] = args.store_url or postgres.url
            print("  importing the engine's data into PostgreSQL ...", flush=True)
            deploy = {**_clean_env(), "HUNCH_HOME": str(workdir / "importer"), **shared}
            for step in (["db", "upgrade"], ["data", "import", str(home / "data")]):
                subprocess.run([sys.executable, "-m", "gateway", *step], cwd=ROOT,
                               check=True, capture_output=True, env=deploy)
            _settle(shared["HUNCH_STORE_URL"])
        else:
            shared["HUNCH_DB_PATH"] = str(home / "events.sqlite3")
        gateways = [Gateway(workdir / f"host-{name}", args.workers // 2, shared)
                    for name in "ab"]
        servers = tuple(s.proc.pid for s in (postgres, redis)
                        if s is not None and s.proc is not None)
        results.append(_measure(f"two hosts, shared {args.shared_store}", gateways, args,
                                workdir, servers))
    finally:
        for gateway in gateways:
            gateway.stop()
        if postgres is not None:
            postgres.destroy()
        if redis is not None:
            redis.destroy()
        shutil.rmtree(workdir, ignore_errors=True)
    load_after = os.getloadavg()

    one, two = results
    print(f"\nfeed(first: 20) at {args.rate:.0f}/s for {args.seconds:.0f} s, "
          f"{args.connections} paced users, {args.workers} uvicorn workers in all, "
          f"{args.polls} polls; load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after ({os.cpu_count()} CPUs)")
    print(f"{'setup':<28}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}"
          f"{'srv cpu ms/req':>16}{'+pg/redis':>10}{'load 1m':>9}")
    for r in results:
        cpu = f"{r['server_cpu_ms']:.2f}" if "server_cpu_ms" in r else "n/a"
        shared_cpu = f"{r['servers_cpu_ms']:.2f}" if "servers_cpu_ms" in r else "-"
        print(f"{r['setup']:<28}{r['rps']:>8.1f}{r['p50_ms']:>9.2f}{r['p95_ms']:>9.2f}"
              f"{r['p99_ms']:>9.2f}{r['errors']:>8}{cpu:>16}{shared_cpu:>10}"
              f"{r['loadavg_1m_at_end']:>9.2f}")
    ratio = two["p99_ms"] / one["p99_ms"] if one["p99_ms"] else float("inf")
    p50_ratio = two["p50_ms"] / one["p50_ms"] if one["p50_ms"] else float("inf")
    print(f"p50 two hosts / one host: {p50_ratio:.2f}")
    held = all(r["rps"] >= args.rate * RATE_HELD_SHARE for r in results)
    verdict = "met" if (args.shared_store == "postgresql" and args.rate >= GOAL_RPS and held
                        and ratio <= GOAL_RATIO and not two["errors"]) else "MISSED"
    print(f"p99 two hosts / one host: {ratio:.2f} (goal <= {GOAL_RATIO} with PostgreSQL at "
          f">= {GOAL_RPS:.0f}/s, rate held, no errors: {verdict})")
    print(json.dumps({"results": results, "ratio": ratio, "p50_ratio": p50_ratio,
                      "loadavg_before": load_before,
                      "loadavg_after": load_after}))


if __name__ == "__main__":
    main()
