"""Bearer JWT: pinned algorithm, exp/aud/iss checked, sub is the user, admin role."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.auth import Authenticator, Unauthorized, issue_token
from gateway.settings import Settings


def settings(**kw) -> Settings:
    return Settings(jwt_secret="s" * 40, **kw)


def claims(**kw):
    now = int(time.time())
    # An hour: parametrize builds these at collection, long before the test runs.
    base = {"sub": "u1", "aud": "hunch-app", "iss": "hunch-auth", "iat": now, "exp": now + 3600}
    base.update(kw)
    return base


def test_valid_token_gives_the_user_and_role():
    s = settings()
    auth = Authenticator(s)
    assert auth.authenticate(f"Bearer {issue_token(s, 'u1')}").user_id == "u1"
    principal = auth.authenticate(f"Bearer {issue_token(s, 'ops', admin=True)}")
    assert principal.is_admin and principal.user_id == "ops"


@pytest.mark.parametrize("bad, message", [
    (claims(exp=int(time.time()) - 5), "expired"),
    (claims(aud="someone-else"), "(?i)audience"),
    (claims(iss="evil"), "(?i)issuer"),
    ({k: v for k, v in claims().items() if k != "exp"}, "exp"),
])
def test_bad_claims_are_refused(bad, message):
    token = jwt.encode(bad, "s" * 40, algorithm="HS256")
    with pytest.raises(Unauthorized, match=message):
        Authenticator(settings()).authenticate(f"Bearer {token}")


def test_algorithm_is_pinned():
    unsigned = jwt.encode(claims(), None, algorithm="none")
    with pytest.raises(Unauthorized):
        Authenticator(settings()).authenticate(f"Bearer {unsigned}")
    other = jwt.encode(claims(), "s" * 40, algorithm="HS512")
    with pytest.raises(Unauthorized):
        Authenticator(settings()).authenticate(f"Bearer {other}")
    with pytest.raises(Unauthorized, match="Bearer"):
        Authenticator(settings()).authenticate("Basic abc")
    with pytest.raises(Unauthorized, match="missing"):
        Authenticator(settings()).authenticate(None)


def test_rs256_with_the_issuers_public_key():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    s = Settings(jwt_algorithm="RS256", jwt_public_key=public_pem)
    token = issue_token(s, "u9", private_key=private_pem)
    assert Authenticator(s).authenticate(f"Bearer {token}").user_id == "u9"
    # an HS256 token signed with the public key as secret (the classic confusion) fails
    forged = jwt.encode(claims(), "x" * 40, algorithm="HS256")
    with pytest.raises(Unauthorized):
        Authenticator(s).authenticate(f"Bearer {forged}")


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_a_remembered_token_still_expires_on_time():
    s = settings()
    clock = Clock(time.time())
    auth = Authenticator(s, clock=clock)
    header = f"Bearer {issue_token(s, 'u1', lifetime=60)}"
    assert auth.authenticate(header).user_id == "u1"
    clock.t += 30
    assert auth.authenticate(header).user_id == "u1"  # from the cache, still valid
    clock.t += 31
    with pytest.raises(Unauthorized, match="expired"):
        auth.authenticate(header)


def test_refused_tokens_are_refused_every_time_and_do_not_crowd_out_good_ones():
    s = settings()
    auth = Authenticator(s, cache_size=2)
    forged = jwt.encode(claims(sub="mallory"), "x" * 40, algorithm="HS256")
    for _ in range(3):
        with pytest.raises(Unauthorized, match="(?i)signature"):
            auth.authenticate(f"Bearer {forged}")
    users = [f"u{i}" for i in range(5)]
    headers = [f"Bearer {issue_token(s, u)}" for u in users]
    for _ in range(2):  # more users than the cache holds: the oldest are verified again
        assert [auth.authenticate(h).user_id for h in headers] == users
    admin = f"Bearer {issue_token(s, 'ops', admin=True)}"
    assert auth.authenticate(admin).is_admin and auth.authenticate(admin).is_admin
