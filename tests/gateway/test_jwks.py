"""Tokens from identity providers whose keys rotate (HUNCH_JWT_JWKS_URL): keys chosen by
kid from a JWKS document served on 127.0.0.1, refetched for a new kid at most once a
minute (an injected clock), kept through outages and bad documents, never fetched on
the event loop."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import time
import uuid
from pathlib import Path

import httpx
import jwt
import pytest
from prometheus_client import REGISTRY

from gateway.app import create_app
from gateway.auth import Authenticator, Unauthorized, UnknownSigningKey, check_jwt_settings
from gateway.jwks import MAX_DOCUMENT_BYTES, JwksKeys
from gateway.production import check_production
from gateway.settings import Settings
from recsys.artifacts import ArtifactStore
from recsys.errors import HunchError
from recsys.events import EventStore, Interaction
from recsys.recipes.base import TrainingData
from recsys.recipes.popularity_count import PopularityCount
from tests.jwks_server import JwksServer, SigningKey, hs256_token

T0 = 1_700_000_000


class Clock:
    """The JWKS keys' monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def key_a() -> SigningKey:
    return SigningKey("key-a")


@pytest.fixture(scope="module")
def key_b() -> SigningKey:
    return SigningKey("key-b")


@pytest.fixture(scope="module")
def key_c() -> SigningKey:
    return SigningKey("key-c")  # never published


@pytest.fixture
def server():
    srv = JwksServer()
    yield srv
    srv.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_auth(server, clock):
    """Authenticators over ``server``'s document (closed after the test); the background
    refresh and retries are an hour away, so only what the test does fetches."""
    made: list[Authenticator] = []

    def make(start: bool = True, **jwks_options) -> Authenticator:
        settings = Settings(jwt_algorithm=jwks_options.pop("algorithm", "RS256"),
                            jwt_jwks_url=server.url)
        options = {"first_retry_seconds": 3600.0, **jwks_options}
        jwks = JwksKeys(server.url, settings.jwt_algorithm, allow_http=True, clock=clock,
                        **options)
        auth = Authenticator(settings, jwks=jwks)
        made.append(auth)
        if start:
            auth.start()
        return auth

    yield make
    for auth in made:
        auth.close()


def claims(sub: str = "u1", **kw) -> dict:
    now = int(time.time())
    return {"sub": sub, "aud": "hunch-app", "iss": "hunch-auth", "iat": now,
            "exp": now + 3600, **kw}


def bearer(token: str) -> str:
    return f"Bearer {token}"


def check(auth: Authenticator, token: str):
    """The request path: authenticate_async, run to completion."""
    return asyncio.run(auth.authenticate_async(bearer(token)))


def fallbacks(reason: str) -> float:
    return REGISTRY.get_sample_value("hunch_fallbacks_total",
                                     {"source": "jwks", "reason": reason}) or 0.0


# ---------------------------------------------------------------------- verifying


def test_a_token_under_a_published_key_gives_its_user_and_role(server, make_auth, key_a):
    server.publish(key_a.jwk)
    auth = make_auth()
    principal = check(auth, key_a.token(claims("firebase-uid-1")))
    assert principal.user_id == "firebase-uid-1" and not principal.is_admin
    admin = check(auth, key_a.token(claims("ops", role="admin")))
    assert admin.user_id == "ops" and admin.is_admin
    # the synchronous path (cached or known keys) agrees, without fetching
    assert auth.authenticate(bearer(key_a.token(claims("u2")))).user_id == "u2"
    assert server.requests == 1  # the startup fetch only
    assert auth.readiness()["ready"] is True and auth.readiness()["keys"] == 1


def test_a_rotated_key_is_accepted_after_exactly_one_refetch(server, make_auth, key_a,
                                                             key_b):
    server.publish(key_a.jwk)
    auth = make_auth()
    old = key_a.token(claims("u-old"))
    assert check(auth, old).user_id == "u-old"
    server.publish(key_b.jwk)  # the provider rotates: signs with B, withdraws A
    assert check(auth, key_b.token(claims("u-new"))).user_id == "u-new"
    assert server.requests == 2
    # A was withdrawn: a token under it, remembered before, is not accepted any more
    # (a key withdrawn after an incident must stop working), and within the minute
    # its unknown kid fetches nothing.
    with pytest.raises(UnknownSigningKey, match="signing key .*'key-a'.* is unknown"):
        check(auth, old)
    assert server.requests == 2


def test_made_up_kids_cause_one_fetch_a_minute(server, make_auth, clock, key_a):
    server.publish(key_a.jwk)
    auth = make_auth()
    forged = [bearer(key_a.token(claims(), kid=uuid.uuid4().hex)) for _ in range(200)]

    async def flood():
        return await asyncio.gather(*(auth.authenticate_async(h) for h in forged),
                                    return_exceptions=True)

    results = asyncio.run(flood())
    assert all(isinstance(r, UnknownSigningKey) for r in results), results[:3]
    assert "is unknown" in str(results[-1])
    assert server.requests == 2  # startup + one refetch for 200 made-up kids
    clock.t += 59
    with pytest.raises(UnknownSigningKey, match="is unknown"):
        check(auth, key_a.token(claims(), kid="another-made-up-one"))
    assert server.requests == 2
    assert check(auth, key_a.token(claims("u7"))).user_id == "u7"  # known keys unaffected
    clock.t += 2  # a minute after the refetch
    with pytest.raises(UnknownSigningKey):
        check(auth, key_a.token(claims(), kid="made-up-after-the-minute"))
    assert server.requests == 3


def test_a_token_minted_by_a_clock_a_little_ahead_is_accepted(server, make_auth, key_a):
    """The provider's clock may be ahead of ours: a token used the moment it is minted
    has an iat in our future (PyJWT alone refused it: "not yet valid (iat)")."""
    server.publish(key_a.jwk)
    auth = make_auth()
    now = int(time.time())
    fresh = claims("u-fresh", iat=now + 5, nbf=now + 5)
    assert check(auth, key_a.token(fresh)).user_id == "u-fresh"
    with pytest.raises(Unauthorized, match="not valid yet: its nbf"):
        check(auth, key_a.token(claims("u-later", nbf=now + 3600)))
    with pytest.raises(Unauthorized, match="iat claim must be a number"):
        check(auth, key_a.token(claims("u-odd", iat="yesterday")))


def test_a_known_kid_with_another_keys_signature_is_refused(server, make_auth, key_a,
                                                            key_c):
    server.publish(key_a.jwk)
    auth = make_auth()
    with pytest.raises(Unauthorized, match="(?i)signature"):
        check(auth, key_c.token(claims("mallory"), kid="key-a"))
    assert server.requests == 1


@pytest.mark.parametrize("forge, message", [
    (lambda a: a.token(claims("mallory"), kid=None), "names no signing key"),
    (lambda a: hs256_token(claims("mallory"), a.public_pem(), "key-a"), "accepts RS256 only"),
    (lambda a: hs256_token(claims("mallory"), json.dumps(a.jwk).encode(), "key-a"),
     "accepts RS256 only"),
    (lambda a: jwt.encode(claims("mallory"), None, algorithm="none",
                          headers={"kid": "key-a"}), "accepts RS256 only"),
    (lambda a: jwt.encode(claims("mallory"), a.private, algorithm="RS512",
                          headers={"kid": "key-a"}), "accepts RS256 only"),
    (lambda a: "not.a.jwt", "invalid token"),
], ids=["no-kid", "hs256-public-pem", "hs256-jwk-json", "alg-none", "rs512", "garbage"])
def test_tokens_without_kid_or_with_another_algorithm_are_refused_without_a_fetch(
        server, make_auth, clock, key_a, forge, message):
    server.publish(key_a.jwk)
    auth = make_auth()
    for _ in range(2):
        with pytest.raises(Unauthorized, match=message):
            check(auth, forge(key_a))
        clock.t += 120  # a minute later: still no fetch for such a token
    assert server.requests == 1


def test_a_cognito_access_token_without_aud_is_refused(server, make_auth, key_a):
    """Cognito's access tokens name the app client in client_id, with no aud: the
    README says to send the ID token instead."""
    server.publish(key_a.jwk)
    auth = make_auth()
    access = {k: v for k, v in claims("cognito-sub").items() if k != "aud"}
    with pytest.raises(Unauthorized, match='missing the "aud" claim'):
        check(auth, key_a.token({**access, "client_id": "hunch-app", "token_use": "access"}))
    id_token = {**claims("cognito-sub"), "token_use": "id"}
    assert check(auth, key_a.token(id_token)).user_id == "cognito-sub"


def test_es256_keys(server, make_auth):
    ec_key = SigningKey("ec-1", "ES256")
    rsa_key = SigningKey("rsa-1")
    server.publish(ec_key.jwk, rsa_key.jwk)
    auth = make_auth(algorithm="ES256")
    assert auth.jwks.kids == ["ec-1"]  # the RSA key is not an ES256 key
    assert check(auth, ec_key.token(claims("u-ec"))).user_id == "u-ec"
    with pytest.raises(Unauthorized, match="accepts ES256 only"):
        check(auth, rsa_key.token(claims()))


def test_only_signing_keys_for_the_algorithm_are_kept(server, make_auth, key_a, key_b):
    encryption = {**key_b.jwk, "use": "enc", "kid": "enc-1"}
    other_alg = {**key_b.jwk, "alg": "RS512", "kid": "rs512-1"}
    # a symmetric key named like a published one: never an HMAC secret
    symmetric = {"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", "kid": "oct-1"}
    unnamed = {k: v for k, v in key_b.jwk.items() if k != "kid"}
    server.publish(encryption, other_alg, symmetric, unnamed, "not a key", key_a.jwk,
                   {**key_b.jwk, "kid": "key-a"})  # a second key-a: the first is kept
    auth = make_auth()
    assert auth.jwks.kids == ["key-a"]
    assert check(auth, key_a.token(claims())).user_id == "u1"
    with pytest.raises(Unauthorized, match="(?i)signature"):
        check(auth, key_b.token(claims(), kid="key-a"))


def test_the_sync_path_never_fetches(server, make_auth, clock, key_a, key_b):
    server.publish(key_a.jwk)
    auth = make_auth()
    server.publish(key_a.jwk, key_b.jwk)
    with pytest.raises(UnknownSigningKey, match="is unknown"):
        auth.authenticate(bearer(key_b.token(claims())))
    assert server.requests == 1
    assert check(auth, key_b.token(claims("u-b"))).user_id == "u-b"  # the async path does
    assert server.requests == 2


# ---------------------------------------------------------------------- outages


def test_endpoint_down_at_startup_then_up(server, make_auth, clock, key_a):
    server.down()
    auth = make_auth()  # does not raise: the worker starts, unready
    state = auth.readiness()
    assert state["ready"] is False and "HTTP 503" in state["last_error"]
    token = key_a.token(claims("u-early"))
    with pytest.raises(UnknownSigningKey, match="could not be fetched yet .*HTTP 503"):
        check(auth, token)
    assert server.requests == 2  # startup, and the request's one refetch
    server.publish(key_a.jwk)
    with pytest.raises(UnknownSigningKey, match="could not be fetched yet"):
        check(auth, token)  # within the minute: refused at once
    assert server.requests == 2
    clock.t += 60
    assert check(auth, token).user_id == "u-early"
    assert auth.readiness()["ready"] is True and auth.readiness()["last_error"] is None


def test_the_background_keeps_trying_until_the_endpoint_is_up(server, make_auth, key_a):
    server.down()
    auth = make_auth(first_retry_seconds=0.01)  # retries at 10 ms, 20 ms, ...
    assert not auth.jwks.obtained
    server.publish(key_a.jwk)
    assert auth.jwks.wait_until(lambda keys: keys.obtained, timeout=30)
    assert auth.readiness()["ready"] is True
    assert auth.authenticate(bearer(key_a.token(claims("u-bg")))).user_id == "u-bg"


def test_the_periodic_refresh_drops_a_withdrawn_key(server, make_auth, key_a, key_b):
    server.publish(key_a.jwk, key_b.jwk)
    auth = make_auth(start=False)
    auth.jwks.refresh_seconds = 0.01  # under the setting's floor, for the test only
    auth.start()
    withdrawn = key_a.token(claims("u-a"))
    assert auth.authenticate(bearer(withdrawn)).user_id == "u-a"  # remembered
    server.publish(key_b.jwk)  # key A withdrawn (say, after an incident)
    assert auth.jwks.wait_until(lambda keys: keys.kids == ["key-b"], timeout=30)
    with pytest.raises(UnknownSigningKey, match="is unknown"):
        auth.authenticate(bearer(withdrawn))
    assert auth.authenticate(bearer(key_b.token(claims("u-b")))).user_id == "u-b"


def test_endpoint_down_at_a_refresh_keeps_the_keys(server, make_auth, key_a):
    server.publish(key_a.jwk)
    auth = make_auth()
    before = fallbacks("status")
    server.down()
    assert auth.jwks.fetch().result() is False
    assert fallbacks("status") == before + 1
    assert check(auth, key_a.token(claims("u-during"))).user_id == "u-during"
    state = auth.readiness()
    assert state["ready"] is True and state["keys"] == 1 and "HTTP 503" in state["last_error"]
    server.close()  # connection refused now
    unreachable = fallbacks("unreachable")
    assert auth.jwks.fetch().result() is False
    assert fallbacks("unreachable") == unreachable + 1
    assert check(auth, key_a.token(claims("u-still"))).user_id == "u-still"
    assert auth.readiness()["ready"] is True


def test_a_slow_endpoint_times_out_and_the_keys_stay(server, make_auth, key_a):
    server.publish(key_a.jwk)
    auth = make_auth(timeout=0.5)
    server.hold = threading.Event()  # answers wait until the test ends
    assert auth.jwks.fetch().result() is False
    assert "0.5 s" in auth.readiness()["last_error"]
    assert check(auth, key_a.token(claims("u-slow"))).user_id == "u-slow"


class StuckTransport(httpx.BaseTransport):
    """A fetch stuck where httpx's timeouts do not reach (a name lookup), until released."""

    def __init__(self, document: bytes) -> None:
        self.release = threading.Event()
        self.document = document

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.release.wait(30)
        return httpx.Response(200, stream=httpx.ByteStream(self.document))


def test_a_request_waits_for_a_stuck_fetch_only_so_long(clock, key_a, key_b):
    url = "http://jwks.invalid/keys.json"
    transport = StuckTransport(json.dumps({"keys": [key_a.jwk, key_b.jwk]}).encode())
    jwks = JwksKeys(url, "RS256", allow_http=True, clock=clock, timeout=0.25,
                    transport=transport)
    auth = Authenticator(Settings(jwt_algorithm="RS256", jwt_jwks_url=url), jwks=jwks)
    try:
        with pytest.raises(UnknownSigningKey, match="could not be fetched yet"):
            check(auth, key_b.token(claims("u-stuck")))  # answered after 2 x 0.25 s
        transport.release.set()
        # the stuck fetch ends refused: its answer came after the whole fetch's deadline
        assert jwks.wait_until(lambda keys: keys.fetches == 1, timeout=30)
        assert "took over 0.25 s" in jwks.last_error and not jwks.obtained
        clock.t += 60
        assert check(auth, key_b.token(claims("u-stuck"))).user_id == "u-stuck"
    finally:
        transport.release.set()
        auth.close()


def _padded(key: SigningKey, size: int) -> bytes:
    return json.dumps({"keys": [key.jwk], "padding": "x" * size}).encode()


@pytest.mark.parametrize("serve, error", [
    (lambda s, b: s.serve(_padded(b, MAX_DOCUMENT_BYTES)), "over the 262144 bytes"),
    (lambda s, b: s.serve(_padded(b, 4 * MAX_DOCUMENT_BYTES), declare_length=False),
     "over the 262144 bytes"),
    (lambda s, b: s.serve(b"<html>502 Bad Gateway</html>"), "not JSON"),
    (lambda s, b: s.serve(b"[" * 100_000), "not JSON"),
    (lambda s, b: s.serve(b'{"keys": "key-b"}'), "not a JWK set"),
    (lambda s, b: s.serve(b"[]"), "not a JWK set"),
    (lambda s, b: s.publish(), "no RS256 signing key"),
    (lambda s, b: s.publish({**b.jwk, "use": "enc"}), "no RS256 signing key"),
    (lambda s, b: s.publish({**b.jwk, "n": "!!not base64!!"}), "no RS256 signing key"),
    (lambda s, b: s.serve(gzip.compress(_padded(b, 10 * MAX_DOCUMENT_BYTES)),
                          Content_Encoding="gzip"), "gzip-encoded"),
], ids=["huge", "huge-undeclared", "html", "deep", "keys-not-a-list", "a-list", "empty",
        "encryption-only", "broken-key", "gzip"])
def test_a_huge_or_malformed_document_is_refused_and_the_keys_stay(
        server, make_auth, key_a, key_b, serve, error):
    server.publish(key_a.jwk)
    auth = make_auth()
    serve(server, key_b)
    assert auth.jwks.fetch().result() is False
    assert error in auth.readiness()["last_error"]
    assert auth.jwks.kids == ["key-a"]
    assert check(auth, key_a.token(claims("u-kept"))).user_id == "u-kept"
    assert auth.readiness()["ready"] is True


def test_refresh_period_follows_max_age_within_bounds(server, make_auth, key_a):
    auth = make_auth(start=False, refresh_seconds=3600, first_retry_seconds=1)
    for max_age, delay in (("120", 120), ("5", 60), ("86400", 3600)):
        server.publish(key_a.jwk, Cache_Control=f"public, max-age={max_age}, must-revalidate")
        assert auth.jwks.fetch().result() is True
        assert auth.jwks._next_delay() == delay
    server.publish(key_a.jwk)
    assert auth.jwks.fetch().result() is True
    assert auth.jwks._next_delay() == 3600
    server.down()
    delays = []
    for _ in range(8):
        auth.jwks.fetch().result()
        delays.append(auth.jwks._next_delay())
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]  # after failures: retries, doubling


# ---------------------------------------------------------------------- settings


def test_settings_that_cannot_work_are_refused_at_startup(server, key_a):
    pem = key_a.public_pem().decode()
    with pytest.raises(HunchError, match="both set"):
        check_jwt_settings(Settings(jwt_algorithm="RS256", jwt_public_key=pem,
                                    jwt_jwks_url=server.url))
    with pytest.raises(HunchError, match="needs HUNCH_JWT_ALGORITHM=RS256"):
        check_jwt_settings(Settings(jwt_jwks_url=server.url))  # HS256
    with pytest.raises(HunchError, match="must be https in production"):
        Authenticator(Settings(jwt_algorithm="RS256", jwt_jwks_url=server.url,
                               environment="production"))
    with pytest.raises(HunchError, match="https://"):
        check_jwt_settings(Settings(jwt_algorithm="RS256", jwt_jwks_url="file:///etc/keys"))
    with pytest.raises(HunchError, match="needs HUNCH_JWT_JWKS_URL .* or HUNCH_JWT_PUBLIC_KEY"):
        check_jwt_settings(Settings(jwt_algorithm="ES256"))
    production = Settings(jwt_algorithm="RS256", environment="production",
                          cursor_secret="c" * 40,
                          jwt_jwks_url="https://www.googleapis.com/service_accounts/v1/jwk/"
                                       "securetoken@system.gserviceaccount.com")
    check_jwt_settings(production)
    check_production(production)  # no HS256 secret needed


# ---------------------------------------------------------------------- the app


def _home(tmp_path: Path, jwks_url: str) -> Settings:
    """A home with a few polls and a popularity model, so the worker is otherwise ready."""
    s = Settings(home=tmp_path, cursor_secret="c" * 40, jwt_algorithm="RS256",
                 jwt_jwks_url=jwks_url)
    events = EventStore(s.events_db)
    polls = [f"p{i}" for i in range(5)]
    events.upsert_items([{"ITEM_ID": p, "CATEGORY": "news", "AUTHOR_ID": "a1",
                          "CREATION_TIMESTAMP": T0, "QUESTION": f"{p}?"} for p in polls])
    events.close()
    model = PopularityCount().fit(TrainingData(
        [Interaction(f"u{k}", p, "HUNCH", T0 + k) for k, p in enumerate(polls)]))
    ArtifactStore(s.artifacts_dir).publish("popularity-count", model, model.params(), "fp",
                                           extra={"trained_until": T0 + 100})
    return s


def _serve(settings: Settings, clock: Clock, scenario) -> None:
    jwks = JwksKeys(settings.jwt_jwks_url, "RS256", allow_http=True, clock=clock,
                    first_retry_seconds=3600)
    app = create_app(settings, authenticator=Authenticator(settings, jwks=jwks))

    async def main() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
                await scenario(client)

    asyncio.run(main())


def _me(client: httpx.AsyncClient, token: str):
    return client.post("/graphql", json={"query": "{ me { id } }"},
                       headers={"Authorization": bearer(token)})


def test_app_unready_and_refusing_until_the_keys_come(tmp_path, server, clock, key_a):
    server.down()
    settings = _home(tmp_path, server.url)

    async def scenario(client: httpx.AsyncClient) -> None:
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["jwks"]["ready"] is False
        assert "HTTP 503" in ready.json()["jwks"]["last_error"]
        assert (await client.get("/healthz")).status_code == 200  # alive, not ready
        refused = (await _me(client, key_a.token(claims("u-app")))).json()
        assert refused["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        assert "signing keys could not be fetched yet" in refused["errors"][0]["message"]
        server.publish(key_a.jwk)
        clock.t += 60  # the next unknown-kid refetch is allowed
        answer = (await _me(client, key_a.token(claims("u-app")))).json()
        assert answer == {"data": {"me": {"id": "u-app"}}}
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["jwks"]["keys"] == 1

    _serve(settings, clock, scenario)


def test_app_answers_other_requests_while_a_new_kid_is_fetched(tmp_path, server, clock,
                                                              key_a, key_b):
    server.publish(key_a.jwk)
    settings = _home(tmp_path, server.url)

    async def scenario(client: httpx.AsyncClient) -> None:
        assert server.requests == 1  # the lifespan's fetch
        server.publish(key_a.jwk, key_b.jwk)
        server.received.clear()
        server.hold = threading.Event()
        waiting = asyncio.create_task(_me(client, key_b.token(claims("u-rotated"))))
        # the refetch reached the JWKS server, which holds its answer
        assert await asyncio.to_thread(server.received.wait, 20)
        health = await client.get("/healthz")  # the same worker's event loop
        assert health.status_code == 200
        assert not waiting.done()
        # another user's request with a known key is served too
        other = (await _me(client, key_a.token(claims("u-other")))).json()
        assert other == {"data": {"me": {"id": "u-other"}}}
        server.hold.set()
        answer = (await waiting).json()
        assert answer == {"data": {"me": {"id": "u-rotated"}}}
        assert not server.hold_expired and server.requests == 2

    _serve(settings, clock, scenario)
