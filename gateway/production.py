"""What production refuses to start with: the published default secrets, or short ones.

Anyone who has read the README can sign an admin token with the default JWT secret,
or forge feed cursors with the default cursor secret. ``hunch serve`` and
``create_app`` call :func:`check_production` before serving anything.
"""

from __future__ import annotations

from gateway.settings import Settings
from recsys.errors import HunchError

# RFC 7518 section 3.2: an HS256 key must be at least as long as the hash, 256 bits.
# The cursor secret signs with HMAC-SHA256 as well.
MIN_SECRET_BYTES = 32


class InsecureProductionSettings(HunchError):
    """HUNCH_ENVIRONMENT=production with a default or short secret."""


def check_production(settings: Settings) -> None:
    """Raises :class:`InsecureProductionSettings` naming the first weak secret; in
    development every secret is accepted (the defaults are there for the demo)."""
    if settings.development:
        return
    secrets = [("cursor_secret", "HUNCH_CURSOR_SECRET")]
    if settings.jwt_algorithm == "HS256":  # RS256/ES256 verify with public keys instead
        secrets.insert(0, ("jwt_secret", "HUNCH_JWT_SECRET"))
    for field, variable in secrets:
        value: str = getattr(settings, field)
        if value == Settings.model_fields[field].default:
            raise InsecureProductionSettings(
                f"{variable} is the published default; set a random secret of at least "
                f"{MIN_SECRET_BYTES} bytes for HUNCH_ENVIRONMENT=production "
                "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        if len(value.encode()) < MIN_SECRET_BYTES:
            raise InsecureProductionSettings(
                f"{variable} is {len(value.encode())} bytes; HUNCH_ENVIRONMENT=production "
                f"needs a random secret of at least {MIN_SECRET_BYTES} bytes")
    # Optional, but a short one can be guessed by anyone who can reach /metrics.
    if settings.ops_token and len(settings.ops_token.encode()) < MIN_SECRET_BYTES:
        raise InsecureProductionSettings(
            f"HUNCH_OPS_TOKEN is {len(settings.ops_token.encode())} bytes; "
            f"HUNCH_ENVIRONMENT=production needs a random token of at least "
            f"{MIN_SECRET_BYTES} bytes, or none (only admins then read /metrics)")
