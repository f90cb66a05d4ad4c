"""Bearer JWT authentication: HS256 (shared secret), or RS256/ES256 with the issuer's
public key (one PEM) or its JWKS document (keys chosen by the token's ``kid``, fetched
and kept fresh by :mod:`gateway.jwks`).

The algorithm is pinned from settings, so a token signed any other way (including
``none``, or HS256 with a public key as its secret) is refused; ``exp``, ``aud`` and
``iss`` are required and checked. ``sub`` is the user id; a ``role: admin`` claim opens
the internal-tool fields.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import jwt

from gateway.jwks import JwksError, JwksKeys, check_jwks_url
from gateway.settings import Settings
from recsys.admission import check_printable
from recsys.errors import HunchError, InvalidEvent
from recsys.schemas import MAX_ID_LENGTH

ADMIN_ROLE = "admin"
DEV_TOKEN_LIFETIME_SECONDS = 24 * 3600
# Tokens verified recently, kept until their exp: a mobile client sends the same token
# with every request, and verifying it (HMAC, base64, JSON, claim checks) was ~10% of a
# feed request's time in the event loop. 10,000 entries is ~3 MB and covers the users
# active on one worker within a token's lifetime; the least recently used go first.
TOKEN_CACHE_SIZE = 10_000
# How far a token's iat or nbf may be ahead of this server's clock. A provider's token
# is used the moment it is minted, so with no allowance a server whose clock is a little
# behind the provider's refused fresh tokens ("not yet valid (iat)": the complaint
# firebase-admin's clock_skew_seconds answers). exp gets none: it is the token's end.
CLOCK_SKEW_SECONDS = 60


class Unauthorized(HunchError):
    """No token, or a token that is invalid, expired or not meant for this service."""


class Forbidden(HunchError):
    """The token is valid but does not allow this operation."""


class UnknownSigningKey(Unauthorized):
    """The token names a key (kid) the provider's JWKS document does not hold."""


def check_jwt_settings(settings: Settings) -> None:
    """Refuses (HunchError, one line) settings that cannot verify a token as meant."""
    algorithm = settings.jwt_algorithm
    if settings.jwt_jwks_url:
        if settings.jwt_public_key:
            raise HunchError("HUNCH_JWT_JWKS_URL and HUNCH_JWT_PUBLIC_KEY are both set: "
                             "keep one (the JWKS URL for a provider that rotates its keys, "
                             "the PEM for a single fixed key)")
        if algorithm == "HS256":
            raise HunchError("HUNCH_JWT_JWKS_URL needs HUNCH_JWT_ALGORITHM=RS256 (or ES256): "
                             "the provider's keys are public keys, never an HS256 secret")
        try:
            check_jwks_url(settings.jwt_jwks_url, allow_http=settings.development)
        except JwksError as exc:
            raise HunchError(str(exc)) from exc
    elif algorithm != "HS256" and not settings.jwt_public_key:
        raise HunchError(f"HUNCH_JWT_ALGORITHM={algorithm} needs HUNCH_JWT_JWKS_URL (the "
                         "identity provider's JWKS document) or HUNCH_JWT_PUBLIC_KEY (PEM)")


@dataclass(frozen=True)
class Principal:
    user_id: str
    is_admin: bool = False


class Authenticator:
    """Verifies bearer tokens; a verified token is remembered until its ``exp``.

    Only successes are cached (a refused token is checked again each time, so its
    message stays exact), and a cached token still expires on time: ``clock`` is
    compared with the token's ``exp`` on every hit. With a JWKS URL, a token is cached
    with its kid and forgotten when the provider withdraws that key.

    :meth:`authenticate_async` is the request path: a token under a key this worker
    does not hold yet waits (off the event loop) for the document to be fetched again.
    :meth:`authenticate` never fetches (its callers may be on the event loop): it
    refuses such a token.
    """

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time,
                 cache_size: int = TOKEN_CACHE_SIZE, jwks: JwksKeys | None = None):
        check_jwt_settings(settings)
        self.settings = settings
        self.clock = clock
        self.cache_size = cache_size
        # token -> (principal, exp, kid or None)
        self._verified: OrderedDict[str, tuple[Principal, float, str | None]] = OrderedDict()
        self._lock = threading.Lock()  # resolvers may run on worker threads
        self.algorithm = settings.jwt_algorithm
        self.jwks: JwksKeys | None = None
        if settings.jwt_jwks_url:
            self.jwks = jwks if jwks is not None else JwksKeys(
                settings.jwt_jwks_url, self.algorithm, allow_http=settings.development,
                refresh_seconds=settings.jwt_jwks_refresh_seconds)
            self.jwks.on_removed = self._forget_kids
            self._key = None
        elif self.algorithm != "HS256":
            self._key = settings.jwt_public_key
        else:
            self._key = settings.jwt_secret

    # ------------------------------------------------------------------ the JWKS keys

    def start(self) -> None:
        """The JWKS keys' first fetch and background refresh (blocking: call it off the
        event loop); nothing to do with a secret or a PEM."""
        if self.jwks is not None:
            self.jwks.start()

    def close(self) -> None:
        if self.jwks is not None:
            self.jwks.close()

    def readiness(self) -> dict | None:
        """The JWKS keys' state for /readyz (None without a JWKS URL): a worker that
        never obtained them cannot verify anyone; one that did stays ready through
        failed refreshes (it keeps the keys)."""
        if self.jwks is None:
            return None
        return {**self.jwks.health(), "ready": self.jwks.obtained}

    def _forget_kids(self, removed: set[str]) -> None:
        with self._lock:
            for token in [t for t, (_, _, kid) in self._verified.items() if kid in removed]:
                del self._verified[token]

    # ------------------------------------------------------------------ verifying

    def authenticate(self, authorization: str | None) -> Principal:
        token = bearer_credentials(authorization)
        hit = self._cached(token)
        if hit is not None:
            return hit
        return self._verify_and_remember(token, self._key_for(token))

    async def authenticate_async(self, authorization: str | None) -> Principal:
        token = bearer_credentials(authorization)
        hit = self._cached(token)
        if hit is not None:
            return hit
        try:
            key = self._key_for(token)
        except UnknownSigningKey:
            jwks = self.jwks
            assert jwks is not None  # only JWKS keys can be unknown
            fetch = jwks.fetch_for_unknown_kid()
            if fetch is None:
                raise
            await jwks.wait(fetch)
            key = self._key_for(token)  # refused again, with what the fetch found
        return self._verify_and_remember(token, key)

    def _cached(self, token: str) -> Principal | None:
        with self._lock:
            hit = self._verified.get(token)
            if hit is not None:
                self._verified.move_to_end(token)
        if hit is None:
            return None
        principal, expires_at, _ = hit
        if self.clock() < expires_at:
            return principal
        with self._lock:
            self._verified.pop(token, None)
        raise Unauthorized("the token has expired; sign in again")

    def _key_for(self, token: str) -> tuple[object, str | None]:
        """The key that must have signed ``token`` and its kid (None without JWKS)."""
        jwks = self.jwks
        if jwks is None:
            return self._key, None
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"invalid token: {exc}") from exc
        alg = header.get("alg")
        if alg != self.algorithm:
            # Checked before any key is chosen: no algorithm confusion (HS256 with the
            # public key as its secret, or none), and no fetch for such a token.
            raise Unauthorized(f"invalid token: signed with {str(alg)[:20]!r}; this "
                               f"service accepts {self.algorithm} only")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("invalid token: its header names no signing key (kid)")
        key = jwks.key(kid)
        if key is not None:
            return key, kid
        if not jwks.obtained:
            raise UnknownSigningKey(
                "the identity provider's signing keys could not be fetched yet "
                f"({jwks.last_error or 'first fetch under way'}); try again shortly")
        failing = (f" (and the latest fetch of them failed: {jwks.last_error})"
                   if jwks.last_error else "")
        raise UnknownSigningKey(
            f"the token's signing key (kid {kid[:64]!r}) is unknown: not among the "
            f"identity provider's published keys{failing}")

    def _verify_and_remember(self, token: str, key: tuple[object, str | None]) -> Principal:
        principal, expires_at = self._verify(token, key[0])
        kid = key[1]
        with self._lock:
            self._verified[token] = (principal, expires_at, kid)
            while len(self._verified) > self.cache_size:
                self._verified.popitem(last=False)
        if kid is not None and self.jwks is not None and self.jwks.key(kid) is None:
            self._forget_kids({kid})  # withdrawn while this token was being verified
        return principal

    def _verify(self, token: str, key: object) -> tuple[Principal, float]:
        try:
            claims = jwt.decode(
                token, key, algorithms=[self.algorithm],
                audience=self.settings.jwt_audience, issuer=self.settings.jwt_issuer,
                options={"require": ["exp", "sub", "aud", "iss"],
                         "verify_iat": False, "verify_nbf": False},  # below, with skew
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("the token has expired; sign in again") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"invalid token: {exc}") from exc
        _check_not_before(claims, time.time())
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise Unauthorized("the token's sub claim must be the user id")
        if len(sub) > MAX_ID_LENGTH or not _valid_unicode(sub):
            # The id reaches the stores as USER_ID: it must fit the schema's limits.
            raise Unauthorized(f"the token's sub claim must be a user id of at most "
                               f"{MAX_ID_LENGTH} characters of valid Unicode")
        try:
            # The rule every other writer of USER_ID applies (`hunch data import`
            # refuses such ids): with "u\x00x" or " u1" as sub, events and polls were
            # stored that made the store's export impossible to import again.
            check_printable("the token's sub claim", sub)
        except InvalidEvent as exc:
            raise Unauthorized(f"{exc} (the user id the identity provider issues)") from exc
        # PyJWT checked exp against the wall clock; later hits check it against ours.
        return Principal(sub, claims.get("role") == ADMIN_ROLE), float(claims["exp"])


def issue_token(settings: Settings, user_id: str, *, admin: bool = False,
                lifetime: float = DEV_TOKEN_LIFETIME_SECONDS, private_key: str | None = None,
                kid: str | None = None) -> str:
    """A token for development and tests (production tokens come from the auth service)."""
    now = int(time.time())
    claims = {"sub": user_id, "aud": settings.jwt_audience, "iss": settings.jwt_issuer,
              "iat": now, "exp": now + int(lifetime)}
    if admin:
        claims["role"] = ADMIN_ROLE
    key = private_key if settings.jwt_algorithm != "HS256" else settings.jwt_secret
    if key is None:
        raise HunchError(f"issuing an {settings.jwt_algorithm} token needs the private key")
    return jwt.encode(claims, key, algorithm=settings.jwt_algorithm,
                      headers={"kid": kid} if kid else None)


def bearer_credentials(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header (Unauthorized if none)."""
    if not authorization:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <jwt>'")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("the Authorization header must be 'Bearer <jwt>'")
    return token


def _check_not_before(claims: dict, now: float) -> None:
    """``nbf`` and ``iat`` may be up to :data:`CLOCK_SKEW_SECONDS` ahead of this server's
    clock; ``exp`` is checked without it."""
    for claim in ("nbf", "iat"):
        if claim not in claims:
            continue
        value = claims[claim]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Unauthorized(f"invalid token: its {claim} claim must be a number")
        if value > now + CLOCK_SKEW_SECONDS:
            raise Unauthorized(f"the token is not valid yet: its {claim} is "
                               f"{value - now:.0f} s ahead of this server's clock")


def _valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")  # a lone surrogate (JSON "\\ud800") cannot be encoded
    except UnicodeEncodeError:
        return False
    return True
