"""Benchmark: what the shared artifact store costs, S3 against a local directory.

A user-personalization model trained on demo data is published, listed and loaded on a
fresh "host" (empty download cache) through the S3 store, against moto's S3 server on
127.0.0.1 (real boto3 over HTTP; a real S3 adds the network), and through the directory
store in the same run. What matters for serving: a poll (one LIST) is cheap enough to do
every few seconds per worker, and a swap (download + load) happens off the request path.

    python bench/bench_artifacts.py [--users 2000] [--polls 3000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys.artifacts import ArtifactStore, S3ArtifactStore  # noqa: E402
from recsys.datasets import load_directory  # noqa: E402
from recsys.demo_data import generate_demo_data  # noqa: E402
from recsys.training import build_recipe  # noqa: E402

RECIPE = "user-personalization"


def timed(work, repeat: int) -> float:
    """Median milliseconds of ``work`` over ``repeat`` calls."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--polls", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_DEFAULT_REGION": "us-east-1"})
    from moto.server import ThreadedMotoServer

    from tests.servers import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            generate_demo_data(root / "data", users=args.users, polls=args.polls, days=3,
                               seed=1)
            model = build_recipe(RECIPE, {}).fit(load_directory(root / "data").training_data())
            s3 = S3ArtifactStore("s3://bench/models", root / "cache-a", endpoint_url=endpoint)
            s3.client.create_bucket(Bucket="bench")
            directory = ArtifactStore(root / "dir")
            hosts = iter(range(10_000))
            for name, store in (("s3 (moto, 127.0.0.1)", s3), ("directory", directory)):
                publish = timed(lambda st=store: st.publish(RECIPE, model, {}, "fp"), args.repeat)
                listing = timed(lambda st=store: st.latest(RECIPE), args.repeat)
                newest = store.latest(RECIPE)

                def fresh_host_load(st=store):
                    if isinstance(st, S3ArtifactStore):  # an empty cache: download first
                        st = S3ArtifactStore(st.location, root / f"host-{next(hosts)}",
                                             endpoint_url=endpoint)
                    st.load(RECIPE, newest)

                load = timed(fresh_host_load, args.repeat)
                size = sum(f.stat().st_size for f in (root / "dir").rglob("*") if f.is_file())
                print(f"{name:22} publish {publish:7.1f} ms  poll (list) {listing:6.1f} ms  "
                      f"load on a fresh host {load:7.1f} ms")
            versions = len(directory.versions(RECIPE))
            print(f"model: {RECIPE}, {args.users} users x {args.polls} polls, "
                  f"{size / versions / 1e6:.1f} MB per version")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
