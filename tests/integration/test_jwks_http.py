"""A real gateway (uvicorn in a subprocess) verifying tokens of an identity provider
whose keys rotate: the JWKS document is served on 127.0.0.1 by the test, which holds
its answer while a token under a new key waits, and checks the worker answers others."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.jwks_server import JwksServer, SigningKey
from tests.integration.conftest import Server

ME = "{ me { id } }"


def claims(sub: str = "u1") -> dict:
    now = int(time.time())
    return {"sub": sub, "aud": "hunch-app", "iss": "hunch-auth", "iat": now,
            "exp": now + 3600}


def test_rotating_provider_keys_over_http(home):
    key_a, key_b = SigningKey("provider-a"), SigningKey("provider-b")
    jwks = JwksServer()
    jwks.publish(key_a.jwk)
    srv = Server(home, HUNCH_JWT_ALGORITHM="RS256", HUNCH_JWT_JWKS_URL=jwks.url)
    try:
        srv.start()
        assert srv.gql(ME, token=key_a.token(claims("u-a"))).json() == {
            "data": {"me": {"id": "u-a"}}}
        assert jwks.requests == 1  # at startup, not per request
        ready = httpx.get(f"{srv.url}/readyz", timeout=30)
        assert ready.status_code == 200 and ready.json()["jwks"]["keys"] == 1

        # The provider starts signing with B: the first token under it waits for one
        # refetch, whose answer the test holds; the worker answers others meanwhile.
        jwks.publish(key_a.jwk, key_b.jwk)
        jwks.received.clear()
        jwks.hold = threading.Event()
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(srv.gql, ME, token=key_b.token(claims("u-b")))
            assert jwks.received.wait(30)
            assert httpx.get(f"{srv.url}/healthz", timeout=30).status_code == 200
            other = srv.gql(ME, token=key_a.token(claims("u-other"))).json()
            assert other == {"data": {"me": {"id": "u-other"}}}
            assert not waiting.done()
            jwks.hold.set()
            answer = waiting.result(timeout=60).json()
        assert answer == {"data": {"me": {"id": "u-b"}}}
        assert jwks.requests == 2 and not jwks.hold_expired

        # Made-up kids: refused, saying why, for at most one more fetch in the minute.
        before = jwks.requests
        for _ in range(20):
            refused = srv.gql(ME, token=key_a.token(claims(), kid=uuid.uuid4().hex)).json()
            assert refused["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
            assert "signing key" in refused["errors"][0]["message"]
            assert "is unknown" in refused["errors"][0]["message"]
        assert jwks.requests - before <= 1
    finally:
        srv.stop()
        jwks.close()
