"""A JWKS document served over HTTP on 127.0.0.1 for the tests: it counts the requests
it receives, serves what the test publishes, and can hold its answers until released."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

# How long a held answer waits for the test's release before going out anyway: only a
# bound so that a broken implementation fails its test instead of hanging it.
HOLD_BOUND_SECONDS = 20.0


class JwksServer:
    def __init__(self) -> None:
        self.body = b'{"keys": []}'
        self.status = 200
        self.headers: dict[str, str] = {"Content-Type": "application/json"}
        self.declare_length = True
        self.requests = 0
        self.hold: threading.Event | None = None  # set: answers wait for it
        self.received = threading.Event()  # set by every request that arrives
        self.hold_expired = False  # a held answer went out without the release
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                with server._lock:
                    server.requests += 1
                    body, status, headers = server.body, server.status, dict(server.headers)
                    declare, hold = server.declare_length, server.hold
                server.received.set()
                if hold is not None and not hold.wait(HOLD_BOUND_SECONDS):
                    server.hold_expired = True
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if declare:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (a size cap): fine

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/.well-known/jwks.json"

    def publish(self, *keys: dict[str, Any], **headers: str) -> None:
        """Serve a JWK set of ``keys`` (200) from now on."""
        self.serve(json.dumps({"keys": list(keys)}).encode(), **headers)

    def serve(self, body: bytes, status: int = 200, declare_length: bool = True,
              **headers: str) -> None:
        with self._lock:
            self.body, self.status, self.declare_length = body, status, declare_length
            self.headers = {"Content-Type": "application/json",
                            **{k.replace("_", "-"): v for k, v in headers.items()}}

    def down(self) -> None:
        """Answer 503, as a provider's outage (or a proxy in front of it) does."""
        self.serve(b"service unavailable", status=503)

    def close(self) -> None:
        if self.hold is not None:
            self.hold.set()
        self._httpd.shutdown()
        self._httpd.server_close()


class SigningKey:
    """A provider's key pair: its public JWK (as published) and tokens it signs."""

    def __init__(self, kid: str, algorithm: str = "RS256") -> None:
        self.kid = kid
        self.algorithm = algorithm
        if algorithm == "ES256":
            self.private = ec.generate_private_key(ec.SECP256R1())
            self.jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.private.public_key()))
        else:
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        self.jwk.update(kid=kid, use="sig", alg=algorithm)

    def public_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def token(self, claims: dict[str, Any], kid: str | None = "", **header: Any) -> str:
        """``claims`` signed by this key, with ``kid`` in the header (this key's own
        unless given; None leaves it out)."""
        kid = self.kid if kid == "" else kid
        headers = {**({"kid": kid} if kid is not None else {}), **header}
        return jwt.encode(claims, self.private, algorithm=self.algorithm, headers=headers)


def hs256_token(claims: dict[str, Any], secret: bytes, kid: str) -> str:
    """An HS256 token made by hand (PyJWT refuses a PEM as an HMAC secret): the classic
    algorithm confusion, signed with the provider's public key as the secret."""
    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing_input = (b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
                     + b"." + b64(json.dumps(claims).encode()))
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + b64(signature)).decode()
