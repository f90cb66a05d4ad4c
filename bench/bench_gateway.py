"""Load on the real gateway: uvicorn with 2 workers, a load generator in a separate process.

Prints throughput and p50/p95/p99 latency for ``feed(first: 20)`` (each virtual user
pages five times, then starts a new session) and for ``recordImpressions``, beside the
same server's trivial ``/ping`` route measured in the same run (the baseline: what HTTP,
uvicorn and the client cost by themselves).

Goal (issue: the GraphQL gateway): feed holds >= 200 requests/s for 60 s with p99 <= 50 ms
and no errors. Run: ``python bench/bench_gateway.py [--seconds 60] [--concurrency 16]``.
It builds a demo engine (generated data, imported, three recipes trained) in a temporary
HUNCH_HOME first. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FEED = ("query($after: String) { feed(first: 20, after: $after) { recommendationId "
        "pageInfo { endCursor } edges { source score node { id } } } }")
IMPRESSIONS = "mutation($ids: [ID!]!) { recordImpressions(pollIds: $ids) { __typename } }"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hunch(env: dict, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "gateway", *args], env=env, check=True,
                   capture_output=True, text=True)


async def _run_load(url: str, kind: str, seconds: float, concurrency: int,
                    tokens: list[str], polls: list[str]) -> dict:
    import httpx

    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(i: int) -> None:
        nonlocal errors
        token = tokens[i % len(tokens)]
        headers = {"Authorization": f"Bearer {token}"}
        after = None
        pages = 0
        async with httpx.AsyncClient(timeout=10) as client:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    if kind == "ping":
                        r = await client.get(f"{url}/ping")
                        ok = r.status_code == 200
                    elif kind == "feed":
                        r = await client.post(f"{url}/graphql", headers=headers, json={
                            "query": FEED, "variables": {"after": after}})
                        body = r.json()
                        ok = r.status_code == 200 and "errors" not in body
                        pages += 1
                        after = None if pages % 5 == 0 or not ok else \
                            body["data"]["feed"]["pageInfo"]["endCursor"]
                    else:
                        ids = [polls[(i * 7 + len(latencies) + k) % len(polls)] for k in range(5)]
                        r = await client.post(f"{url}/graphql", headers=headers, json={
                            "query": IMPRESSIONS, "variables": {"ids": ids}})
                        ok = r.status_code == 200 and "errors" not in r.json()
                except Exception:  # noqa: BLE001 - counted as an error
                    ok = False
                latencies.append(time.perf_counter() - started)
                if not ok:
                    errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0.0

    return {"kind": kind, "requests": len(latencies), "errors": errors,
            "rps": len(latencies) / elapsed, "p50_ms": pct(0.50), "p95_ms": pct(0.95),
            "p99_ms": pct(0.99)}


def _client_process(url, kind, seconds, concurrency, tokens, polls, queue) -> None:
    queue.put(asyncio.run(_run_load(url, kind, seconds, concurrency, tokens, polls)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--polls", type=int, default=5000)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="hunch-bench-"))
    port = _free_port()
    env = {**os.environ, "HUNCH_HOME": str(home), "HUNCH_PORT": str(port),
           "HUNCH_MUTATION_RATE_PER_MINUTE": "1000000"}
    data = home / "data"
    print(f"building a demo engine in {home} ...", flush=True)
    _hunch(env, "data", "generate", "--users", str(args.users), "--polls", str(args.polls),
           "--days", "7", "--seed", "1", str(data))
    _hunch(env, "data", "import", str(data))
    for recipe in ("popularity-count", "trending-now", "user-personalization"):
        _hunch(env, "train", "--recipe", recipe, "--data", str(data))
    with (data / "users.csv").open() as fh:
        users = [row["USER_ID"] for _, row in zip(range(200), csv.DictReader(fh))]
    with (data / "items.csv").open() as fh:
        polls = [row["ITEM_ID"] for _, row in zip(range(2000), csv.DictReader(fh))]
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from gateway.auth import issue_token
    from gateway.settings import Settings

    tokens = [issue_token(Settings(), u) for u in users]
    server = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--workers",
                               str(args.workers)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        for _ in range(200):
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        results = []
        for kind in ("ping", "feed", "impressions"):
            queue: mp.Queue = mp.Queue()
            proc = mp.Process(target=_client_process, args=(
                url, kind, args.seconds, args.concurrency, tokens, polls, queue))
            proc.start()
            results.append(queue.get())
            proc.join()
    finally:
        server.terminate()
        server.wait(timeout=30)

    baseline = results[0]
    print(f"\nuvicorn workers={args.workers}, client concurrency={args.concurrency}, "
          f"{args.seconds:.0f} s each, {args.polls} polls")
    print(f"{'route':<12}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}"
          f"{'rps vs ping':>13}")
    for r in results:
        print(f"{r['kind']:<12}{r['rps']:>9.1f}{r['p50_ms']:>9.2f}{r['p95_ms']:>9.2f}"
              f"{r['p99_ms']:>9.2f}{r['errors']:>8}{r['rps'] / baseline['rps']:>13.2f}")
    feed = results[1]
    verdict = "met" if feed["rps"] >= 200 and feed["p99_ms"] <= 50 and not feed["errors"] else "MISSED"
    print(f"goal feed >= 200 req/s, p99 <= 50 ms, no errors: {verdict}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
