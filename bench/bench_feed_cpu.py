"""Server CPU of one feed page, in process, on the gateway's own code path.

Issue 16's two-gateway bar is CPU-bound: at ~8 ms of server CPU per feed page two
uvicorn workers on two cores saturate near 200 req/s. This bench isolates the engine's
share of that CPU: ``Services.feed`` (the exclusion filter's mask, the mixer, the feed
session in SQLite, the recommendation log) over the demo engine ``bench_gateway.py``
builds (5,000 polls), as its virtual users page (a first page, then
``--pages-per-session - 1`` pages through the cursor, then a new session; ``--concurrency``
of them taking turns, as its connections do), with an
interaction recorded now and then between pages (untimed) so that per-user caches are
invalidated as in production. Without GraphQL/HTTP: that side is measured by
bench_gateway.

It prints this thread's CPU time (``time.thread_time``: what other processes on a shared
machine cannot add) per page, p50 and mean, first pages and cursor pages apart; per
source, the CPU of its ``candidates`` calls and how many calls a page makes; and the
same-run baseline of bench_feed: the three recipes' bare ``recommend(user, 25)`` for the
same users (what a page cannot avoid).

``--record FILE`` writes every page (poll ids, sources, ranks, scores) and a set of bare
recommendations (with ``exclude``, ``allow`` as a mask and as a predicate, ``now``,
unknown and anonymous users) to JSON; ``--compare FILE`` checks a run against such a
file: the same polls in the same order, scores within float tolerance. Run it on
main's code to record and on a branch to compare: its rankings must not move.

The home is copied (event store, artifacts, data) to a temporary directory per run, so
every run starts from the same events and gives the same pages.

Run: ``python bench/bench_feed_cpu.py --home /tmp/gwhome [--pages 3000]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

PAGES_PER_SESSION = 5  # as bench_gateway's virtual users
INTERACT_EVERY = 7  # sessions between recorded votes (untimed): caches see invalidations
CONCURRENCY = 8  # bench_gateway's closed-loop connections
USERS = 200  # bench_gateway's virtual users are the first 200 of users.csv
# float32 scores summed in another order differ in their last bits: UP's are sums of
# terms up to ~10 in size (the item-item weight is ~8), whose float32 steps are ~1e-6.
SCORE_RTOL = 1e-5
SCORE_ATOL = 1e-5


def _copy_home(home: Path) -> Path:
    """A private copy of what the engine reads, so that runs start from the same state."""
    copy = Path(tempfile.mkdtemp(prefix="hunch-bench-feed-cpu-"))
    shutil.copy2(home / "events.sqlite3", copy / "events.sqlite3")
    shutil.copytree(home / "artifacts", copy / "artifacts")
    (copy / "data").symlink_to((home / "data").resolve())
    return copy


class _TimedSource:
    """A mixer source that books the CPU and count of its ``candidates`` calls."""

    def __init__(self, source, books: dict[str, list[float]]) -> None:
        self.source = source
        self.name = source.name
        self.books = books

    def candidates(self, user_id, n, **kwargs):
        started = time.thread_time()
        try:
            return self.source.candidates(user_id, n, **kwargs)
        finally:
            self.books[self.name].append(time.thread_time() - started)


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))] * 1000


def _page_record(page) -> list[list]:
    return [[it.item_id, it.source, it.score, it.rank] for it in page.items]


def _bare(services, users: list[str], timestamp: int) -> dict[str, list]:
    """Bare recommendations of each recipe in the shapes a feed asks for them."""
    from recsys.recipes.base import PollMask

    out: dict[str, list] = {}
    catalog = services.catalog
    ids = list(catalog.ids)
    some = set(ids[::37])
    mask = PollMask([i % 3 != 0 for i in range(len(ids))], catalog.ids, catalog.index)
    for recipe in ("user-personalization", "trending-now", "popularity-count"):
        model = services.recipes.model(recipe)
        for user in users[:40] + [None, "nobody-knows-me"]:
            for label, kwargs in (("plain", {}), ("exclude", {"exclude": some}),
                                  ("mask", {"allow": mask}),
                                  ("predicate", {"allow": lambda i, m=mask: m(i)}),
                                  ("now", {"now": timestamp + 3600})):
                try:
                    items = model.recommend(user, 60, **kwargs)
                except Exception as exc:  # noqa: BLE001 - recorded: both runs must agree
                    out[f"{recipe}|{user}|{label}"] = [type(exc).__name__]
                    continue
                out[f"{recipe}|{user}|{label}"] = [[s.item_id, s.score] for s in items]
    up = services.recipes.model("user-personalization")
    for user in users[:10]:
        out[f"score_all|{user}"] = [[str(i), float(v)] for i, v in
                                    zip(range(len(up.item_ids_)), up.score_all(user))]
    return out


_LARGEST_SCORE_DIFFERENCE = [0.0]  # over every compared score, to report


def _compare(mine: dict, base: dict) -> list[str]:
    problems = []
    for key in sorted(set(base) | set(mine)):
        if key not in mine or key not in base:
            problems.append(f"{key}: only in {'base' if key in base else 'this run'}")
            continue
        a, b = mine[key], base[key]
        if len(a) != len(b):
            problems.append(f"{key}: {len(a)} entries, base {len(b)}")
            continue
        for j, (x, y) in enumerate(zip(a, b)):
            if isinstance(x, str) or isinstance(y, str):
                if x != y:
                    problems.append(f"{key}[{j}]: {x!r} != {y!r}")
                    break
                continue
            # Pages: [id, source, score, rank]; recommendations: [id, score].
            score, base_score = (x[2], y[2]) if len(x) > 2 else (x[1], y[1])
            if [v for v in x if v is not score] != [v for v in y if v is not base_score]:
                problems.append(f"{key}[{j}]: {x} != base {y}")
                break
            if math.isfinite(score) and math.isfinite(base_score):
                _LARGEST_SCORE_DIFFERENCE[0] = max(_LARGEST_SCORE_DIFFERENCE[0],
                                                   abs(score - base_score))
            if not math.isclose(score, base_score, rel_tol=SCORE_RTOL, abs_tol=SCORE_ATOL) and \
                    not (math.isinf(score) and score == base_score):
                # Reported, and the polls after it still checked: a score that moved in
                # its last digits with every poll in place is not a ranking change.
                problems.append(f"{key}[{j}]: score {score!r} != base {base_score!r}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, required=True,
                        help="an engine bench_gateway.py built (it is copied, not changed)")
    parser.add_argument("--pages", type=int, default=3_000, help="feed pages timed")
    parser.add_argument("--pages-per-session", type=int, default=PAGES_PER_SESSION)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY,
                        help="virtual users taking turns")
    parser.add_argument("--record", type=Path, help="write pages and recommendations here")
    parser.add_argument("--compare", type=Path, help="check them against a --record file")
    parser.add_argument("--profile", type=Path, help="write cProfile stats of the pages here")
    args = parser.parse_args()
    if not (args.home / "artifacts").is_dir():
        sys.exit(f"{args.home} holds no engine: build one with bench/bench_gateway.py --home")

    home = _copy_home(args.home)
    os.environ["HUNCH_HOME"] = str(home)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import csv
    import uuid

    import recsys.feed
    from gateway.services import Services
    from gateway.settings import Settings
    from recsys.events import Interaction

    # Recommendation ids seed a promotion's interleaving: counted, so runs compare.
    counter = iter(range(10**9))
    recsys.feed.uuid = type("ids", (), {"uuid4": staticmethod(
        lambda: uuid.UUID(int=next(counter)))})

    services = Services(Settings())
    services.warm_up()
    books: dict[str, list[float]] = defaultdict(list)
    for name, source in list(services.mixer.sources.items()):
        services.mixer.sources[name] = _TimedSource(source, books)
    allow = services.feed_filters.allow

    def timed_allow(*a, **k):  # the request's filter as a catalog mask
        started = time.thread_time()
        try:
            return allow(*a, **k)
        finally:
            books["(request filter mask)"].append(time.thread_time() - started)

    services.feed_filters.allow = timed_allow
    with (args.home / "data" / "users.csv").open() as fh:
        users = [r["USER_ID"] for _, r in zip(range(USERS), csv.DictReader(fh))]
    up = services.recipes.model("user-personalization")
    # Votes are recorded live, so near the server's clock; pages depend on their times,
    # so a compared run reuses the recorded run's.
    timestamp = int(time.time()) - 3600
    run = {"pages": args.pages, "concurrency": args.concurrency,
           "pages_per_session": args.pages_per_session}
    if args.compare:
        recorded = json.loads(args.compare.read_text())
        timestamp = recorded["timestamp"]
        if recorded.get("run") != run:
            sys.exit(f"{args.compare} was recorded with {recorded.get('run')}; compare "
                     f"with the same options (this run: {run})")

    pages: dict[str, list] = {}
    for user in users[:10]:  # warm-up: lazily built caches, untimed
        services.feed(user, 20, None)
    books.clear()
    first_cpu, next_cpu = [], []
    calls: dict[str, int] = defaultdict(int)
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    # Virtual users take turns, one page each, as bench_gateway's concurrent connections
    # do: a user's next page is not the request right after their last one.
    virtual = [{"user": None, "after": None, "k": args.pages_per_session, "session": -1}
               for _ in range(args.concurrency)]
    sessions = 0
    for n_page in range(args.pages):
        v = virtual[n_page % len(virtual)]
        if v["k"] == args.pages_per_session:  # a new session
            v.update(user=users[sessions % len(users)], after=None, k=0, session=sessions)
            sessions += 1
        user, after = v["user"], v["after"]
        if profiler:
            profiler.enable()
        started = time.thread_time()
        result = services.feed(user, 20, after)
        spent = time.thread_time() - started
        if profiler:
            profiler.disable()
        (first_cpu if after is None else next_cpu).append(spent)
        pages[f"{v['session']}|{v['k']}|{user}"] = _page_record(result.page)
        v["after"] = result.page.end_cursor
        if v["session"] % INTERACT_EVERY == 0 and v["k"] == 0 and result.page.items:
            services.record_interaction(Interaction(
                user, result.page.items[-1].item_id, "HUNCH", timestamp + v["session"]))
        v["k"] += 1
    for name, spent in books.items():
        calls[name] = len(spent)

    baseline = []
    for user in users:
        up._changed()  # the baseline must not reuse a page's cached scores...
        getattr(up, "_vectors_changed", lambda: None)()  # ... nor the user's vectors
        started = time.thread_time()
        for recipe in ("user-personalization", "trending-now", "popularity-count"):
            services.recipes.recommend(recipe, user, 25)
        baseline.append(time.thread_time() - started)

    n = len(first_cpu) + len(next_cpu)
    print(f"{n} feed pages of 20 ({len(first_cpu)} first pages, {len(next_cpu)} through "
          f"a cursor) at {len(up.item_ids_):,} polls, {len(users)} users; thread CPU ms")
    print(f"{'':<34}{'p50':>8}{'mean':>8}{'p99':>8}")
    for label, values in (("feed page (all)", first_cpu + next_cpu),
                          ("  first page", first_cpu), ("  cursor page", next_cpu),
                          ("baseline: 3 bare recommend(25)", baseline)):
        print(f"{label:<34}{_pct(values, 0.5):>8.3f}{statistics.mean(values) * 1000:>8.3f}"
              f"{_pct(values, 0.99):>8.3f}")
    for name, spent in sorted(books.items()):
        print(f"  {name:<32} {calls[name] / n:5.2f} calls/page, "
              f"{sum(spent) / n * 1000:6.3f} ms/page, {_pct(spent, 0.5):6.3f} ms p50 per call")
    page_mean = statistics.mean(first_cpu + next_cpu)
    print(f"ratio page / baseline (mean): {page_mean / statistics.mean(baseline):.2f}")

    failed = False
    if args.record or args.compare:
        record = {"pages": pages, "bare": _bare(services, users, timestamp),
                  "timestamp": timestamp, "run": run}
        if args.record:
            args.record.write_text(json.dumps(record))
            print(f"recorded {len(pages)} pages and {len(record['bare'])} recommendations "
                  f"to {args.record}")
        if args.compare:
            base = json.loads(args.compare.read_text())
            problems = (_compare(record["pages"], base["pages"])
                        + _compare(record["bare"], base["bare"]))
            for p in problems[:20]:
                print("DIFFERS:", p)
            moved = [p for p in problems if ": score " not in p]
            print(f"compared with {args.compare}: "
                  f"{'identical' if not problems else f'{len(problems)} differences'} "
                  f"({len(moved)} in polls or their order; largest score difference "
                  f"{_LARGEST_SCORE_DIFFERENCE[0]:.3g})")
            failed = bool(problems)
    if profiler:
        import pstats

        profiler.dump_stats(args.profile)
        pstats.Stats(str(args.profile)).sort_stats("tottime").print_stats(30)
    import asyncio

    asyncio.run(services.close())
    shutil.rmtree(home, ignore_errors=True)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
