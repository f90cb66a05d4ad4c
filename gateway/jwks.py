"""An identity provider's signing keys, from its JWKS document (``HUNCH_JWT_JWKS_URL``).

Firebase Auth, Amazon Cognito, Auth0, Okta and Keycloak sign tokens with keys named by
the token header's ``kid``, publish the public halves as a JWKS document (RFC 7517) and
rotate them. A worker keeps the document's keys in memory and:

* fetches them at startup (off the event loop), then every ``refresh_seconds`` (sooner
  if the document's ``Cache-Control: max-age`` says so, never more than once a minute),
  so a key the provider withdrew stops being accepted;
* after a failed fetch keeps the keys it holds (a provider outage must not sign every
  user out), logs it, counts it in ``hunch_fallbacks_total{source="jwks"}`` and tries
  again after 1, 2, 4 ... 60 seconds;
* fetches again when a token names a ``kid`` it does not hold (the provider started
  signing with its next key): at most once per :data:`UNKNOWN_KID_REFETCH_SECONDS`,
  since anyone can send made-up kids; concurrent callers share one fetch.

Every fetch runs on this object's own thread; callers on an event loop wait for it
with ``asyncio.wrap_future``, never by blocking the loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import jwt

from gateway import metrics
from recsys.errors import HunchError

log = logging.getLogger("gateway.jwks")

# Anyone can send a token with a made-up kid, and each unknown kid could make the worker
# fetch the document again: at most one such fetch per worker in this many seconds (a
# provider's new key is published before it signs with it, so the first tokens under it
# wait for one fetch; an attacker's flood costs the provider one request a minute per
# worker). Within the minute an unknown kid is refused at once.
UNKNOWN_KID_REFETCH_SECONDS = 60.0
# A fetch's connect, each read and the whole body: a hostile or broken endpoint that
# trickles bytes must not hold the fetch (and the requests waiting on it) for long.
FETCH_TIMEOUT_SECONDS = 5.0
# Real documents are 1-5 KB (Google ~2 KB, Cognito ~1 KB, Keycloak with certificates
# ~10 KB); a bigger one is refused before it is read into memory.
MAX_DOCUMENT_BYTES = 256 * 1024
# The periodic refresh: an hour unless settings say otherwise; max-age may bring it
# closer but not under this.
MIN_REFRESH_SECONDS = 60.0
# Retries after a failed fetch: 1, 2, 4, ... seconds, at most this.
MAX_RETRY_SECONDS = 60.0

# The key type (and curve) each accepted algorithm signs with.
_KEY_TYPES = {"RS256": ("RSA", None), "ES256": ("EC", "P-256")}
_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)", re.IGNORECASE)


class JwksError(HunchError):
    """A JWKS document that could not be fetched or used; ``reason`` labels it in
    ``hunch_fallbacks_total{source="jwks"}``."""

    def __init__(self, message: str, reason: str = "invalid"):
        super().__init__(message)
        self.reason = reason


class JwksKeys:
    """The signing keys of one JWKS document, kept fresh (module docstring)."""

    def __init__(self, url: str, algorithm: str, *, allow_http: bool = False,
                 refresh_seconds: float = 3600.0,
                 timeout: float = FETCH_TIMEOUT_SECONDS,
                 max_bytes: int = MAX_DOCUMENT_BYTES,
                 first_retry_seconds: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 on_removed: Callable[[set[str]], None] | None = None,
                 transport: httpx.BaseTransport | None = None):
        check_jwks_url(url, allow_http)
        if algorithm not in _KEY_TYPES:
            raise JwksError(f"HUNCH_JWT_JWKS_URL needs HUNCH_JWT_ALGORITHM "
                            f"{' or '.join(_KEY_TYPES)}, not {algorithm}")
        self.url = url
        self.algorithm = algorithm
        self.refresh_seconds = max(refresh_seconds, MIN_REFRESH_SECONDS)
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.first_retry_seconds = first_retry_seconds
        self.clock = clock
        self.on_removed = on_removed
        self._client = httpx.Client(timeout=timeout, follow_redirects=False,
                                    transport=transport,
                                    headers={"Accept": "application/json",
                                             "Accept-Encoding": "identity"})
        self._keys: dict[str, Any] = {}  # kid -> public key; replaced whole, never mutated
        self.last_success: float | None = None  # wall time of the last good document
        self.last_error: str | None = None
        self.consecutive_failures = 0
        self.fetches = 0  # attempts finished
        self._max_age: float | None = None
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._running: Future[bool] | None = None
        self._last_unknown_kid_fetch: float | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="jwks")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    # ------------------------------------------------------------------ reading

    def key(self, kid: str) -> Any | None:
        return self._keys.get(kid)

    @property
    def kids(self) -> list[str]:
        return sorted(self._keys)

    @property
    def obtained(self) -> bool:
        """Whether this worker ever held the provider's keys (readiness)."""
        return self.last_success is not None

    def health(self) -> dict[str, Any]:
        return {"url": self.url, "keys": len(self._keys), "last_success": self.last_success,
                "consecutive_failures": self.consecutive_failures,
                "last_error": self.last_error}

    # ------------------------------------------------------------------ fetching

    def fetch(self) -> Future[bool]:
        """The fetch running, or a new one: whether it brought a usable document."""
        with self._lock:
            return self._start_locked()

    def fetch_for_unknown_kid(self) -> Future[bool] | None:
        """The fetch a token with an unknown kid may wait for: the one running, or a new
        one if no unknown kid started one in the last :data:`UNKNOWN_KID_REFETCH_SECONDS`;
        None when the token must be refused at once."""
        with self._lock:
            if self._running is not None:
                return self._running
            now = self.clock()
            last = self._last_unknown_kid_fetch
            if last is not None and now - last < UNKNOWN_KID_REFETCH_SECONDS:
                return None
            self._last_unknown_kid_fetch = now
            return self._start_locked()

    async def wait(self, future: Future[bool]) -> bool:
        """``future``'s outcome, awaited without blocking the event loop; False if it
        takes longer than twice the fetch's timeout (a name lookup is not bounded by
        httpx's timeouts): the request is answered, the fetch goes on."""
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)),
                                          2 * self.timeout)
        except asyncio.TimeoutError:
            return False

    def wait_until(self, predicate: Callable[[JwksKeys], bool], timeout: float) -> bool:
        """Whether ``predicate(self)`` held after a fetch within ``timeout`` seconds (for
        tests and tools that watch the background refresh)."""
        with self._done:
            return self._done.wait_for(lambda: predicate(self), timeout)

    def _start_locked(self) -> Future[bool]:
        if self._closed:  # shutting down: no new fetch, the keys held stay
            finished: Future[bool] = Future()
            finished.set_result(False)
            return finished
        if self._running is None:
            self._running = self._executor.submit(self._fetch_once)
        return self._running

    def _fetch_once(self) -> bool:
        try:
            keys, max_age = self._download()
        except Exception as exc:  # noqa: BLE001 - any failure keeps the keys held
            self._failed(exc)
            return False
        else:
            self._replace(keys, max_age)
            return True
        finally:
            with self._done:
                self._running = None
                self.fetches += 1
                self._done.notify_all()

    def _download(self) -> tuple[dict[str, Any], float | None]:
        deadline = time.monotonic() + self.timeout
        with self._client.stream("GET", self.url) as response:
            if response.status_code != 200:
                where = response.headers.get("location")
                raise JwksError(f"HTTP {response.status_code}"
                                + (f" (redirect to {where}: set HUNCH_JWT_JWKS_URL to it)"
                                   if where else ""), "status")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise JwksError(f"the document is {declared} bytes, over the "
                                f"{self.max_bytes} bytes accepted", "too-large")
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding != "identity":
                # Asked for identity: a compressed body would be decompressed past the
                # size cap (a few KB of gzip can hold megabytes), so it is not read.
                raise JwksError(f"the document came {encoding}-encoded although "
                                "'Accept-Encoding: identity' was asked")
            body = bytearray()
            for chunk in response.iter_raw():
                body += chunk
                if len(body) > self.max_bytes:
                    raise JwksError(f"the document is over the {self.max_bytes} bytes "
                                    "accepted", "too-large")
                if time.monotonic() > deadline:
                    raise JwksError(f"the document took over {self.timeout:g} s to arrive",
                                    "timeout")
            max_age = _max_age(response.headers.get("cache-control", ""))
        return self._parse(bytes(body)), max_age

    def _parse(self, body: bytes) -> dict[str, Any]:
        try:
            document = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise JwksError(f"the document is not JSON: {str(exc)[:200]}") from exc
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise JwksError('the document is not a JWK set: {"keys": [...]} expected')
        kty, crv = _KEY_TYPES[self.algorithm]
        keys: dict[str, Any] = {}
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            kid = entry.get("kid")
            if (not isinstance(kid, str) or not kid or kid in keys
                    or entry.get("kty") != kty
                    or (crv is not None and entry.get("crv") != crv)
                    or entry.get("use", "sig") != "sig"
                    or entry.get("alg", self.algorithm) != self.algorithm):
                continue  # an encryption key, another algorithm's, or unnamed
            try:
                keys[kid] = jwt.PyJWK(entry, algorithm=self.algorithm).key
            except jwt.PyJWTError:
                continue
        if not keys:
            raise JwksError(f"the document holds no {self.algorithm} signing key with a kid")
        return keys

    def _replace(self, keys: dict[str, Any], max_age: float | None) -> None:
        removed = set(self._keys) - set(keys)
        added = set(keys) - set(self._keys)
        self._keys = keys
        self._max_age = max_age
        self.last_success = time.time()
        self.last_error = None
        self.consecutive_failures = 0
        if added or removed:
            log.info("JWKS keys now %s (added %s, removed %s)", sorted(keys),
                     sorted(added), sorted(removed))
        if removed and self.on_removed is not None:
            self.on_removed(removed)

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, httpx.TimeoutException):
            reason, message = "timeout", f"no answer within {self.timeout:g} s"
        elif isinstance(exc, httpx.HTTPError):
            reason, message = "unreachable", f"{type(exc).__name__}: {exc}"
        elif isinstance(exc, JwksError):
            reason, message = exc.reason, str(exc)
        else:
            reason, message = "error", f"{type(exc).__name__}: {exc}"
        self.last_error = message[:500]
        self.consecutive_failures += 1
        metrics.FALLBACKS.labels("jwks", reason).inc()
        log.warning("JWKS fetch from %s failed (%s); keeping the %d keys held",
                    self.url, self.last_error, len(self._keys))

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """The first fetch (waited for; blocking: call it off the event loop), then the
        background refresh. A failed first fetch does not raise: the worker is not
        ready (readiness) and keeps trying."""
        self.fetch().result()
        self._thread = threading.Thread(target=self._refresh_loop, name="jwks-refresh",
                                        daemon=True)
        self._thread.start()

    def _next_delay(self) -> float:
        if self.consecutive_failures:
            return min(self.first_retry_seconds * 2 ** (self.consecutive_failures - 1),
                       MAX_RETRY_SECONDS)
        if self._max_age is not None:
            return min(self.refresh_seconds, max(self._max_age, MIN_REFRESH_SECONDS))
        return self.refresh_seconds

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self._next_delay()):
            self.fetch().result()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=FETCH_TIMEOUT_SECONDS * 3)
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._client.close()


def check_jwks_url(url: str, allow_http: bool) -> None:
    """https only, except in development (tests serve the document locally)."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme == "https" or (scheme == "http" and allow_http):
        return
    if scheme == "http":
        raise JwksError(f"HUNCH_JWT_JWKS_URL must be https in production (got {url!r}): "
                        "over http anyone on the path could substitute their own keys")
    raise JwksError(f"HUNCH_JWT_JWKS_URL must be an https:// URL (got {url!r})")


def _max_age(cache_control: str) -> float | None:
    match = _MAX_AGE.search(cache_control)
    return float(match.group(1)) if match else None

