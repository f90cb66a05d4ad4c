"""Benchmark: PutEvents calls the live forwarding makes for a burst of events, one call
per event (main before batching) against a user's queued events in one call, same run.

Amazon takes 1,000 PutEvents calls a second per dataset group, each with 1 to 10 events
of one user and one session. A burst of N events from M users is submitted to a
:class:`BackgroundForwarder` (4 threads, as the gateway runs it) as fast as a gateway
could; a local endpoint speaking Personalize's protocol answers each call after
``--latency-ms`` (Amazon's round trip) and counts calls and events. Both ways send
through a real botocore client and :class:`PersonalizeEventSink`:

- ``one-per-event``: each event its own queued call (``forwarder.submit``), as the
  gateway forwarded before;
- ``batched``: ``forwarder.events`` (``EventBatcher``), as it forwards now.

Printed per burst: calls, calls per event, the largest call, the time to drain and the
events a second that makes. A trickle (one event at a time, the queue idle between
them) is printed too: both ways make one call per event, and the time from submitting an
event to the endpoint receiving it shows that nothing waits for a call to fill.

    python bench/bench_putevents.py [--events 1000] [--users 1,20,200,1000]
                                    [--latency-ms 20] [--trickle 20]

Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3  # noqa: E402 - after the path fix above

from recsys.backends.forwarder import BackgroundForwarder  # noqa: E402
from recsys.backends.personalize import (  # noqa: E402
    PersonalizeConfig,
    PersonalizeEventSink,
    make_clients,
    refused_as_input,
    refused_for_rate,
)
from recsys.events import Interaction  # noqa: E402

T0 = 1_700_000_000


class _Endpoint(BaseHTTPRequestHandler):
    """PutEvents answered after ``latency`` seconds; calls and events counted."""

    latency = 0.02
    lock = threading.Lock()
    calls: list[tuple[float, str, int]] = []  # (received at, user, events)
    arrived: dict[str, float] = {}  # eventId -> received at

    def do_POST(self):  # noqa: N802 (http.server naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        now = time.monotonic()
        with type(self).lock:
            type(self).calls.append((now, body.get("userId", ""), len(body.get("eventList", []))))
            for event in body.get("eventList", []):
                type(self).arrived[event["eventId"]] = now
        time.sleep(type(self).latency)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def _sink(url: str) -> PersonalizeEventSink:
    config = PersonalizeConfig(tracking_id="tracking-1", endpoint_url=url)
    session = boto3.session.Session(aws_access_key_id="bench", aws_secret_access_key="bench",
                                    region_name="us-east-1")
    _, events = make_clients(config, session)
    return PersonalizeEventSink(config, events)


def _burst(n: int, users: int, seed: int = 7) -> list[Interaction]:
    rng = random.Random(seed)
    return [Interaction(f"u{rng.randrange(users)}", f"p{k}", "HUNCH", T0 + k,
                        event_id=f"e{k}") for k in range(n)]


def _submitter(way: str, sink: PersonalizeEventSink, forwarder: BackgroundForwarder):
    if way == "one-per-event":
        def submit(event: Interaction) -> None:
            forwarder.submit(event.user_id, lambda: sink.put_events(
                event.user_id, event.user_id, [event]))
        return submit
    batcher = forwarder.events(
        lambda group, events: sink.put_events(group[0], group[1], events),
        throttled=refused_for_rate, refused_as_input=refused_as_input)

    def submit(event: Interaction) -> None:
        batcher.submit(event.user_id, (event.user_id, event.user_id), event)
    return submit


def run_burst(way: str, sink: PersonalizeEventSink, events: list[Interaction]) -> dict:
    _Endpoint.calls = []
    forwarder = BackgroundForwarder()
    submit = _submitter(way, sink, forwarder)
    started = time.monotonic()
    for event in events:
        submit(event)
    assert forwarder.wait_idle(600), "the burst did not drain"
    seconds = time.monotonic() - started
    forwarder.close()
    sent = sum(n for _, _, n in _Endpoint.calls)
    assert sent == len(events), (sent, len(events))
    calls = len(_Endpoint.calls)
    return {"calls": calls, "per_event": calls / len(events),
            "largest": max(n for _, _, n in _Endpoint.calls), "seconds": seconds,
            "rate": len(events) / seconds}


def run_trickle(way: str, sink: PersonalizeEventSink, n: int, gap: float) -> dict:
    _Endpoint.calls, _Endpoint.arrived = [], {}
    forwarder = BackgroundForwarder()
    submit = _submitter(way, sink, forwarder)
    submitted: dict[str, float] = {}
    from recsys.backends.personalize import amazon_event_id
    for k in range(n):
        event = Interaction("u1", f"p{k}", "HUNCH", T0 + k, event_id=f"t{k}")
        submitted[amazon_event_id("u1", event.event_id)] = time.monotonic()
        submit(event)
        time.sleep(gap)  # the call is answered before the next event: the queue is idle
    assert forwarder.wait_idle(60)
    forwarder.close()
    waits = [(_Endpoint.arrived[i] - t) * 1000 for i, t in submitted.items()]
    return {"calls": len(_Endpoint.calls), "per_event": len(_Endpoint.calls) / n,
            "median_ms": statistics.median(waits), "max_ms": max(waits)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--users", default="1,20,200,1000",
                        help="comma-separated: one burst per number of users")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--trickle", type=int, default=20)
    args = parser.parse_args()
    _Endpoint.latency = args.latency_ms / 1000
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sink = _sink(f"http://127.0.0.1:{server.server_address[1]}")
    sink.put_events("warm", "warm", [Interaction("warm", "p0", "HUNCH", T0)])  # connect once
    print(f"PutEvents answered after {args.latency_ms:g} ms; 4 forwarder threads; "
          f"a burst of {args.events:,} events submitted at once")
    print(f"{'users':>6} {'way':<14} {'calls':>6} {'calls/event':>11} {'largest':>7} "
          f"{'drain s':>8} {'events/s':>9}")
    for users in (int(u) for u in args.users.split(",")):
        events = _burst(args.events, users)
        results = {}
        for way in ("one-per-event", "batched"):
            r = results[way] = run_burst(way, sink, events)
            print(f"{users:>6} {way:<14} {r['calls']:>6} {r['per_event']:>11.3f} "
                  f"{r['largest']:>7} {r['seconds']:>8.2f} {r['rate']:>9.0f}")
        print(f"{'':>6} {'calls ratio':<14} "
              f"{results['batched']['calls'] / results['one-per-event']['calls']:>6.3f}")
    gap = 3 * args.latency_ms / 1000
    print(f"\ntrickle: {args.trickle} events of one user, one every {gap * 1000:g} ms "
          "(the queue idle when each arrives)")
    for way in ("one-per-event", "batched"):
        r = run_trickle(way, sink, args.trickle, gap)
        print(f"{way:<14} calls {r['calls']:>3} ({r['per_event']:.2f}/event); submit to "
              f"endpoint median {r['median_ms']:.1f} ms, max {r['max_ms']:.1f} ms")
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main()
