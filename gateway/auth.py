"""Bearer JWT authentication: HS256 (shared secret) or RS256 (issuer's public key).

The algorithm is pinned from settings, so a token signed any other way (including
``none``) is refused; ``exp``, ``aud`` and ``iss`` are required and checked. ``sub`` is
the user id; a ``role: admin`` claim opens the internal-tool fields.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import jwt

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


class Unauthorized(HunchError):
    """No token, or a token that is invalid, expired or not meant for this service."""


class Forbidden(HunchError):
    """The token is valid but does not allow this operation."""


@dataclass(frozen=True)
class Principal:
    user_id: str
    is_admin: bool = False


class Authenticator:
    """Verifies bearer tokens; a verified token is remembered until its ``exp``.

    Only successes are cached (a refused token is checked again each time, so its
    message stays exact), and a cached token still expires on time: ``clock`` is
    compared with the token's ``exp`` on every hit.
    """

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time,
                 cache_size: int = TOKEN_CACHE_SIZE):
        self.settings = settings
        self.clock = clock
        self.cache_size = cache_size
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._lock = threading.Lock()  # resolvers may run on worker threads
        self.algorithm = settings.jwt_algorithm
        if self.algorithm == "RS256":
            if not settings.jwt_public_key:
                raise HunchError("HUNCH_JWT_ALGORITHM=RS256 needs HUNCH_JWT_PUBLIC_KEY (PEM)")
            self._key = settings.jwt_public_key
        else:
            self._key = settings.jwt_secret

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthorized("missing bearer token: send 'Authorization: Bearer <jwt>'")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("the Authorization header must be 'Bearer <jwt>'")
        with self._lock:
            hit = self._verified.get(token)
            if hit is not None:
                self._verified.move_to_end(token)
        if hit is not None:
            principal, expires_at = hit
            if self.clock() < expires_at:
                return principal
            with self._lock:
                self._verified.pop(token, None)
            raise Unauthorized("the token has expired; sign in again")
        principal, expires_at = self._verify(token)
        with self._lock:
            self._verified[token] = (principal, expires_at)
            while len(self._verified) > self.cache_size:
                self._verified.popitem(last=False)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            claims = jwt.decode(
                token, self._key, algorithms=[self.algorithm],
                audience=self.settings.jwt_audience, issuer=self.settings.jwt_issuer,
                options={"require": ["exp", "sub", "aud", "iss"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("the token has expired; sign in again") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"invalid token: {exc}") from exc
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
                lifetime: float = DEV_TOKEN_LIFETIME_SECONDS, private_key: str | None = None) -> str:
    """A token for development and tests (production tokens come from the auth service)."""
    now = int(time.time())
    claims = {"sub": user_id, "aud": settings.jwt_audience, "iss": settings.jwt_issuer,
              "iat": now, "exp": now + int(lifetime)}
    if admin:
        claims["role"] = ADMIN_ROLE
    key = private_key if settings.jwt_algorithm == "RS256" else settings.jwt_secret
    if key is None:
        raise HunchError("issuing an RS256 token needs the private key")
    return jwt.encode(claims, key, algorithm=settings.jwt_algorithm)


def _valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")  # a lone surrogate (JSON "\\ud800") cannot be encoded
    except UnicodeEncodeError:
        return False
    return True
