"""The operators' routes, /metrics and /readyz, on the port every client reaches.

Both were open to anyone: /readyz listed the host's store paths, its artifact store and
Neo4j errors, and every call took the SQLite write lock (on the event loop: a probe
during an import froze every request of the worker for the lock's timeout), listed the
artifact store (an S3 LIST a recipe, billed) and counted the graph; /metrics rendered
every series (a multiprocess render costs more than a feed page). An anonymous loop on
either was work and money spent for nothing, and the details a map of the deployment.

In production (``HUNCH_ENVIRONMENT=production``):

* ``/metrics`` needs ``Authorization: Bearer $HUNCH_OPS_TOKEN`` (Prometheus:
  ``authorization: {credentials: ...}`` in the scrape config) or an admin JWT;
  anyone else gets 401. Without ``HUNCH_OPS_TOKEN`` only admins may read it.
* ``/readyz`` answers anyone ``{"ready": true|false}`` with 200 or 503 (what a load
  balancer or a kubelet probe needs), from a check at most
  :data:`PUBLIC_READINESS_SECONDS` old and never two at once in a worker; the same
  callers as /metrics get the whole, fresh check.

In development every caller gets everything, fresh, as before (the demo and the tests).
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.auth import Authenticator, Unauthorized, bearer_credentials
from gateway.settings import Settings

# How old a readiness answer given to an anonymous caller may be. Probes come every few
# seconds (a kubelet's default period is 10 s), so a second is fresh enough for them,
# and a flood of probes costs one check a second.
PUBLIC_READINESS_SECONDS = 1.0


class OpsAccess:
    """Who may read the operators' details (module docstring)."""

    def __init__(self, settings: Settings, authenticator: Authenticator):
        self.open = settings.development
        self._token = settings.ops_token.encode()
        self._authenticator = authenticator

    async def allows(self, authorization: str | None) -> bool:
        if self.open:
            return True
        try:
            credentials = bearer_credentials(authorization)
        except Unauthorized:
            return False
        if self._token and hmac.compare_digest(credentials.encode(), self._token):
            return True
        try:
            # async: an admin token under a new JWKS key waits for the refetch, off
            # the event loop (gateway/jwks.py)
            return (await self._authenticator.authenticate_async(authorization)).is_admin
        except Unauthorized:
            return False


class SharedReadiness:
    """One worker's readiness check as anonymous callers see it: computed at most once
    per ``max_age`` seconds, and callers arriving while it runs wait for that run."""

    def __init__(self, check: Callable[[], Awaitable[dict[str, Any]]],
                 max_age: float = PUBLIC_READINESS_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self._check = check
        self._max_age = max_age
        self._clock = clock
        self._latest: tuple[float, bool] | None = None  # (when, ready)
        self._running: asyncio.Future[bool] | None = None

    async def ready(self) -> bool:
        latest = self._latest
        if latest is not None and self._clock() - latest[0] < self._max_age:
            return latest[1]
        if self._running is None:
            self._running = asyncio.ensure_future(self._run())
        # shielded: one caller going away must not cancel the check the others wait on
        return await asyncio.shield(self._running)

    async def _run(self) -> bool:
        try:
            ready = bool((await self._check())["ready"])
            self._latest = (self._clock(), ready)
            return ready
        finally:
            self._running = None
