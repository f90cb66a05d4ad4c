"""Bearer JWT authentication: HS256 (shared secret) or RS256 (issuer's public key).

The algorithm is pinned from settings, so a token signed any other way (including
``none``) is refused; ``exp``, ``aud`` and ``iss`` are required and checked. ``sub`` is
the user id; a ``role: admin`` claim opens the internal-tool fields.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from gateway.settings import Settings
from recsys.errors import HunchError

ADMIN_ROLE = "admin"
DEV_TOKEN_LIFETIME_SECONDS = 24 * 3600


class Unauthorized(HunchError):
    """No token, or a token that is invalid, expired or not meant for this service."""


class Forbidden(HunchError):
    """The token is valid but does not allow this operation."""


@dataclass(frozen=True)
class Principal:
    user_id: str
    is_admin: bool = False


class Authenticator:
    def __init__(self, settings: Settings):
        self.settings = settings
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
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <jwt>'")
        try:
            claims = jwt.decode(
                token.strip(), self._key, algorithms=[self.algorithm],
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
        return Principal(sub, claims.get("role") == ADMIN_ROLE)


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
