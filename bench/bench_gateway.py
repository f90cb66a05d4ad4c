"""Load on the real gateway: uvicorn with 2 workers, a load generator in a separate process.

Two kinds of load, each beside the same server's trivial ``/ping`` route measured in the
same run (the baseline: what HTTP, uvicorn and the client cost by themselves):

- **capacity** (closed loop): ``--concurrency`` virtual users send requests back to back
  for ``--seconds``; prints throughput and p50/p95/p99 for ``/ping``, ``feed(first: 20)``
  (each virtual user pages five times with the cursor, then starts a new session) and
  ``recordImpressions``. A closed loop's latency is concurrency / throughput once the
  server is saturated, so it measures capacity, not the latency a user sees.
- **goal** (fixed rate): ``feed`` requests arrive at ``--rate`` per second for
  ``--rate-seconds`` from ``--rate-connections`` paced users, and latency counts from
  when each request was due (so a server that falls behind pays for the queue it
  builds, instead of hiding it by slowing the client: "coordinated omission").
  Goal (issue: the GraphQL gateway): feed holds >= 200 requests/s for 60 s with
  p99 <= 50 ms and no errors.

The load generator is ``wrk`` (C, a Lua script for the GraphQL bodies, tokens and
cursors) when it is on PATH; otherwise a Python asyncio client, with a note that its own
CPU use is taken from the server on a small machine. Each row also shows the server's
CPU milliseconds per request (its processes' user+system time from /proc): unlike
req/s, it barely moves with whatever else runs on the machine.

Run: ``python bench/bench_gateway.py [--seconds 20] [--rate-seconds 60] [--home DIR]``.
Without ``--home`` it builds a demo engine (generated data, imported, three recipes
trained) in a temporary HUNCH_HOME first; with it, a home built before is reused. Only
127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FEED = ("query($after: String) { feed(first: 20, after: $after) { recommendationId "
        "pageInfo { endCursor } edges { source score node { id } } } }")
IMPRESSIONS = "mutation($ids: [ID!]!) { recordImpressions(pollIds: $ids) { __typename } }"
PAGES_PER_SESSION = 5  # a user scrolls five pages, then opens the app again
GOAL_RPS = 200.0
GOAL_P99_MS = 50.0
# The paced phase counts as holding the rate when it completes this share of it
# (requests still in flight at the end are not counted).
RATE_HELD_SHARE = 0.97

# wrk runs one connection per thread (-t N -c N), so request() and response() alternate
# for one virtual user and a response's endCursor feeds that user's next request.
_WRK_SCRIPT = r"""
local ffi = require("ffi")
ffi.cdef[[ typedef struct { long tv_sec; long tv_nsec; } hunch_timespec;
           int clock_gettime(int, hunch_timespec *); ]]
local ts = ffi.new("hunch_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local kind = os.getenv("HUNCH_BENCH_KIND")
local dir = os.getenv("HUNCH_BENCH_DIR")
local rate = tonumber(os.getenv("HUNCH_BENCH_RATE") or "0")  -- requests/s in total, 0: closed loop
local pages_per_session = tonumber(os.getenv("HUNCH_BENCH_PAGES"))
local FEED = os.getenv("HUNCH_BENCH_FEED")
local IMPRESSIONS = os.getenv("HUNCH_BENCH_IMPRESSIONS")
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  threads[#threads + 1] = thread
end

local function lines(path)
  local out = {}
  for line in io.lines(path) do out[#out + 1] = line end
  return out
end

function init(args)
  tokens = lines(dir .. "/tokens.txt")
  polls = lines(dir .. "/polls.txt")
  me = tonumber(id)
  users = tonumber(args[1])
  token = tokens[(me % #tokens) + 1]
  after = nil
  pages, sent, bad = 0, 0, 0
  lat = {}
  if rate > 0 then
    interval = users / rate * 1000
    next_at = now_ms() + interval * (me / users)  -- users start spread over one interval
    first = true
  end
end

if rate > 0 then  -- wrk paces a connection only when the script defines delay()
  function delay()
    return math.max(0, next_at - now_ms())
  end
end

function request()
  sent = sent + 1
  if rate > 0 then
    due = first and now_ms() or next_at  -- wrk sends each connection's first at once
    first = false
    next_at = math.max(next_at, due) + interval
  end
  if kind == "ping" then return wrk.format("GET", "/ping") end
  local body
  if kind == "feed" then
    local variables = after and ('{"after":"' .. after .. '"}') or '{"after":null}'
    body = '{"query":"' .. FEED .. '","variables":' .. variables .. '}'
  else
    local ids = {}
    for k = 0, 4 do ids[#ids + 1] = '"' .. polls[((me * 7 + sent + k) % #polls) + 1] .. '"' end
    body = '{"query":"' .. IMPRESSIONS .. '","variables":{"ids":[' .. table.concat(ids, ",") .. ']}}'
  end
  return wrk.format("POST", "/graphql", {["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token}, body)
end

function response(status, headers, body)
  if rate > 0 then lat[#lat + 1] = now_ms() - due end
  local ok = status == 200 and (kind == "ping" or not string.find(body, '"errors"', 1, true))
  if not ok then bad = bad + 1 end
  if kind == "feed" then
    pages = pages + 1
    if pages % pages_per_session == 0 or not ok then
      after = nil
    else
      after = string.match(body, '"endCursor"%s*:%s*"([^"]*)"')
    end
  end
end

function done(summary, latency, requests)
  local errors = 0
  local all = {}
  for _, t in ipairs(threads) do
    errors = errors + (t:get("bad") or 0)
    for _, v in ipairs(t:get("lat") or {}) do all[#all + 1] = v end
  end
  local e = summary.errors
  errors = errors + e.connect + e.read + e.write + e.timeout
  local p50, p95, p99
  if rate > 0 then
    table.sort(all)
    local function pct(p) return #all > 0 and all[math.min(#all, math.floor(p * #all) + 1)] or 0 end
    p50, p95, p99 = pct(0.50), pct(0.95), pct(0.99)
  else
    p50, p95, p99 = latency:percentile(50) / 1000, latency:percentile(95) / 1000,
                    latency:percentile(99) / 1000
  end
  local dump = os.getenv("HUNCH_BENCH_LATENCIES")  -- paced runs merged by another bench
  if dump and rate > 0 then
    local fh = io.open(dump, "w")
    for _, v in ipairs(all) do fh:write(string.format("%.3f\n", v)) end
    fh:close()
  end
  io.write(string.format('HUNCH_RESULT {"requests": %d, "seconds": %.3f, "errors": %d, ' ..
    '"p50_ms": %.3f, "p95_ms": %.3f, "p99_ms": %.3f}\n', summary.requests,
    summary.duration / 1e6, errors, p50, p95, p99))
end
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hunch(env: dict, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "gateway", *args], env=env, check=True,
                   capture_output=True, text=True)


def _build_engine(home: Path, env: dict, users: int, polls: int) -> None:
    data = home / "data"
    if (home / "artifacts").is_dir() and (data / "users.csv").exists():
        print(f"reusing the demo engine in {home}", flush=True)
        return
    print(f"building a demo engine in {home} ...", flush=True)
    _hunch(env, "data", "generate", "--users", str(users), "--polls", str(polls),
           "--days", "7", "--seed", "1", str(data))
    _hunch(env, "data", "import", str(data))
    for recipe in ("popularity-count", "trending-now", "user-personalization"):
        _hunch(env, "train", "--recipe", recipe, "--data", str(data))


# ---------------------------------------------------------------- server CPU


def _cpu_seconds(root: int) -> float | None:
    """User+system CPU of ``root`` and its descendants (Linux /proc), or None elsewhere."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        stats: dict[int, tuple[int, float]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    text = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue  # ended while we looked
                fields = text[text.rindex(")") + 2:].split()
                stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    except (OSError, ValueError):
        return None
    tree, total, frontier = {root}, 0.0, [root]
    while frontier:
        parent = frontier.pop()
        total += stats.get(parent, (0, 0.0))[1]
        for pid, (ppid, _) in stats.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    return total


# ---------------------------------------------------------------- load generators


def _wrk(url: str, kind: str, seconds: float, users: int, rate: float, workdir: Path) -> dict:
    env = {**os.environ, "HUNCH_BENCH_KIND": kind, "HUNCH_BENCH_DIR": str(workdir),
           "HUNCH_BENCH_RATE": str(rate), "HUNCH_BENCH_PAGES": str(PAGES_PER_SESSION),
           "HUNCH_BENCH_FEED": FEED.replace('"', '\\"'),
           "HUNCH_BENCH_IMPRESSIONS": IMPRESSIONS.replace('"', '\\"')}
    out = subprocess.run(
        ["wrk", "-t", str(users), "-c", str(users), "-d", f"{seconds:.0f}s", "--timeout", "10s",
         "-s", str(workdir / "load.lua"), url, "--", str(users)],
        env=env, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("HUNCH_RESULT "))
    r = json.loads(line.removeprefix("HUNCH_RESULT "))
    return {"requests": r["requests"], "errors": r["errors"],
            "rps": r["requests"] / r["seconds"], "p50_ms": r["p50_ms"], "p95_ms": r["p95_ms"],
            "p99_ms": r["p99_ms"]}


async def _python_load(url: str, kind: str, seconds: float, users: int, rate: float,
                       tokens: list[str], polls: list[str]) -> dict:
    import httpx

    latencies: list[float] = []
    errors = 0
    interval = users / rate if rate else 0.0
    clients = [httpx.AsyncClient(timeout=10) for _ in range(users)]  # before the clock starts
    started = time.perf_counter()
    deadline = started + seconds

    async def user(i: int) -> None:
        nonlocal errors
        # uncompressed answers, as wrk asks for them (the gateway gzips answers of 1 KiB
        # or more for clients that accept it: ~0.07 ms of a feed page's CPU)
        headers = {"Authorization": f"Bearer {tokens[i % len(tokens)]}",
                   "Accept-Encoding": "identity"}
        after = None
        pages = 0
        due = started + interval * i / users
        async with clients[i] as client:
            while True:
                if rate:
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                else:
                    due = time.perf_counter()
                if time.perf_counter() >= deadline:
                    return
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
                        after = None if pages % PAGES_PER_SESSION == 0 or not ok else \
                            body["data"]["feed"]["pageInfo"]["endCursor"]
                    else:
                        ids = [polls[(i * 7 + len(latencies) + k) % len(polls)] for k in range(5)]
                        r = await client.post(f"{url}/graphql", headers=headers, json={
                            "query": IMPRESSIONS, "variables": {"ids": ids}})
                        ok = r.status_code == 200 and "errors" not in r.json()
                except Exception:  # noqa: BLE001 - counted as an error
                    ok = False
                latencies.append(time.perf_counter() - due)  # from when it was due
                if not ok:
                    errors += 1
                due += interval

    await asyncio.gather(*(user(i) for i in range(users)))
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0.0

    return {"requests": len(latencies), "errors": errors, "rps": len(latencies) / elapsed,
            "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99)}


def _python_client_process(queue, *args) -> None:
    queue.put(asyncio.run(_python_load(*args)))


def _run_phase(client: str, url: str, kind: str, seconds: float, users: int, rate: float,
               tokens: list[str], polls: list[str], workdir: Path, server_pid: int) -> dict:
    cpu_before = _cpu_seconds(server_pid)
    if client == "wrk":
        result = _wrk(url, kind, seconds, users, rate, workdir)
    else:
        queue: mp.Queue = mp.Queue()
        proc = mp.Process(target=_python_client_process, args=(
            queue, url, kind, seconds, users, rate, tokens, polls))
        proc.start()
        result = queue.get()
        proc.join()
    cpu_after = _cpu_seconds(server_pid)
    result["server_cpu_ms"] = (
        (cpu_after - cpu_before) * 1000 / max(1, result["requests"])
        if cpu_before is not None and cpu_after is not None else None)
    result["kind"] = kind
    result["mode"] = f"{rate:.0f}/s" if rate else f"{users} users"
    return result


def _pick_client(choice: str) -> str:
    if choice in ("auto", "wrk") and shutil.which("wrk"):
        return "wrk"
    if choice == "wrk":
        sys.exit("wrk is not on PATH: install it (Debian/Ubuntu: apt-get install wrk; "
                 "macOS: brew install wrk) or run with --client python")
    if choice == "auto":
        print("note: wrk is not on PATH (Debian/Ubuntu: apt-get install wrk; macOS: brew "
              "install wrk); using the Python client, whose own CPU use is taken from the "
              "server on a small machine: expect lower numbers than with wrk, and a goal "
              "phase that the client itself may fail to drive at full rate", flush=True)
    return "python"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="each capacity phase")
    parser.add_argument("--concurrency", type=int, default=16, help="capacity phase users")
    parser.add_argument("--rate", type=float, default=GOAL_RPS, help="goal phase feed req/s")
    parser.add_argument("--rate-seconds", type=float, default=60.0, help="goal phase length")
    parser.add_argument("--rate-connections", type=int, default=32,
                        help="paced users sharing --rate in the goal phase")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--polls", type=int, default=5000)
    parser.add_argument("--home", type=Path, default=None,
                        help="demo engine to use (built there if missing); default: a temp dir")
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    args = parser.parse_args()

    client = _pick_client(args.client)
    home = args.home or Path(tempfile.mkdtemp(prefix="hunch-bench-"))
    workdir = Path(tempfile.mkdtemp(prefix="hunch-bench-load-"))
    port = _free_port()
    env = {**os.environ, "HUNCH_HOME": str(home), "HUNCH_PORT": str(port),
           "HUNCH_MUTATION_RATE_PER_MINUTE": "1000000", "HUNCH_FEED_RATE_PER_MINUTE": "1000000",
           "HUNCH_POLL_WRITES_PER_DAY": "1000000",
           "HUNCH_FOLLOW_CHANGES_PER_DAY": "1000000",
           "HUNCH_DOCUMENT_RATE_PER_MINUTE": "1000000"}
    _build_engine(home, env, args.users, args.polls)
    with (home / "data" / "users.csv").open() as fh:
        users = [row["USER_ID"] for _, row in zip(range(200), csv.DictReader(fh))]
    with (home / "data" / "items.csv").open() as fh:
        polls = [row["ITEM_ID"] for _, row in zip(range(2000), csv.DictReader(fh))]
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from gateway.auth import issue_token
    from gateway.settings import Settings

    tokens = [issue_token(Settings(), u) for u in users]
    (workdir / "tokens.txt").write_text("\n".join(tokens) + "\n")
    (workdir / "polls.txt").write_text("\n".join(polls) + "\n")
    (workdir / "load.lua").write_text(_WRK_SCRIPT)
    server = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--workers",
                               str(args.workers)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        for _ in range(300):
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            sys.exit("the server did not become ready in 60 s")
        phases = [("ping", args.seconds, args.concurrency, 0.0),
                  ("feed", args.seconds, args.concurrency, 0.0),
                  ("impressions", args.seconds, args.concurrency, 0.0),
                  ("feed", args.rate_seconds, args.rate_connections, args.rate)]
        results = []
        for kind, seconds, n, rate in phases:
            print(f"  {kind} ({f'{rate:.0f}/s' if rate else f'{n} users'}, {seconds:.0f} s) ...",
                  flush=True)
            results.append(_run_phase(client, url, kind, seconds, n, rate, tokens, polls,
                                      workdir, server.pid))
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)

    baseline = results[0]
    print(f"\nclient={client}, uvicorn workers={args.workers}, {args.polls} polls; capacity "
          f"phases {args.seconds:.0f} s each, goal phase {args.rate_seconds:.0f} s")
    print(f"{'route':<12}{'load':>10}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
          f"{'errors':>8}{'rps/ping':>10}{'srv cpu ms/req':>16}")
    for r in results:
        cpu = f"{r['server_cpu_ms']:.2f}" if r["server_cpu_ms"] is not None else "n/a"
        print(f"{r['kind']:<12}{r['mode']:>10}{r['rps']:>9.1f}{r['p50_ms']:>9.2f}"
              f"{r['p95_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['errors']:>8}"
              f"{r['rps'] / baseline['rps']:>10.3f}{cpu:>16}")
    goal = results[-1]
    held = goal["rps"] >= args.rate * RATE_HELD_SHARE
    verdict = "met" if (args.rate >= GOAL_RPS and held and goal["p99_ms"] <= GOAL_P99_MS
                        and not goal["errors"]) else "MISSED"
    print(f"goal feed >= {GOAL_RPS:.0f} req/s for 60 s, p99 <= {GOAL_P99_MS:.0f} ms, no errors: "
          f"{verdict} (held {goal['rps']:.1f}/s of {args.rate:.0f}/s, p99 {goal['p99_ms']:.1f} ms, "
          f"{goal['errors']} errors)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
