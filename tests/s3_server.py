"""A real S3-compatible HTTP endpoint for tests: moto's server on 127.0.0.1.

boto3 talks to it over HTTP exactly as to AWS (signing, paging, conditional writes,
errors), so the artifact store is tested through the real client. Import the fixtures
into a test module: ``from tests.s3_server import s3, s3_server  # noqa: F401``.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import pytest

from tests.servers import free_port

# moto accepts any credentials; boto3 only needs some to sign with.
S3_TEST_ENV = {"AWS_ACCESS_KEY_ID": "hunch-test", "AWS_SECRET_ACCESS_KEY": "hunch-test",
               "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass
class S3Bucket:
    endpoint_url: str
    bucket: str

    def url(self, prefix: str = "models") -> str:
        return f"s3://{self.bucket}/{prefix}"

    def client(self):
        import boto3

        return boto3.session.Session(
            aws_access_key_id=S3_TEST_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_TEST_ENV["AWS_SECRET_ACCESS_KEY"],
            region_name=S3_TEST_ENV["AWS_DEFAULT_REGION"],
        ).client("s3", endpoint_url=self.endpoint_url)

    def env(self) -> dict[str, str]:
        """Environment for a subprocess that should use this bucket."""
        return {**os.environ, **S3_TEST_ENV, "HUNCH_S3_ENDPOINT_URL": self.endpoint_url}


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on a free 127.0.0.1 port for the whole session."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch) -> S3Bucket:
    """A fresh, empty bucket per test, and credentials in the environment."""
    for key, value in S3_TEST_ENV.items():
        monkeypatch.setenv(key, value)
    bucket = S3Bucket(s3_server, f"hunch-{uuid.uuid4().hex[:12]}")
    bucket.client().create_bucket(Bucket=bucket.bucket)
    return bucket
