"""A small OCI registry on 127.0.0.1 that misbehaves on cue, for the HTTP client's tests.

It serves one manifest (``library/app:1.0``) and, when ``tokens`` is set, requires bearer tokens
from its own token service (``/token``, Docker token spec). Tests script what the next requests
get (``faults``: a status with headers, a connection reset, a body trickled at 1 byte/s), make it
refuse fresh tokens, and add Docker Hub's rate-limit headers. Every request is logged with its
arrival time, so tests measure the gaps a client leaves between attempts.
"""

from __future__ import annotations

import hashlib
import json
import socket
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REPOSITORY, TAG = "library/app", "1.0"
OCI_MANIFEST, OCI_CONFIG = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.config.v1+json",
)
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": "sha256:" + "0" * 64,
            "size": 2,
        },
        "layers": [],
    }
).encode()
DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()


@dataclass(frozen=True)
class Fault:
    """What one request gets instead of the normal answer."""

    status: int = 0  # an HTTP status with ``headers``...
    headers: dict[str, str] = field(default_factory=dict)
    reset: bool = False  # ...or the connection closed with a TCP reset, no answer
    trickle: int = 0  # ...or the right answer, its first ``trickle`` bytes sent at 1 byte/s


@dataclass(frozen=True)
class Seen:
    at: float  # time.monotonic() on arrival
    method: str
    path: str
    authorization: str | None


@dataclass
class FaultyRegistry:
    url: str = ""
    faults: list[Fault] = field(default_factory=list)  # served in order, to registry requests
    seen: list[Seen] = field(default_factory=list)  # registry requests (not /token)
    tokens: bool = False  # require bearer tokens
    token_lifetime: int | None = 300  # expires_in of the token service's answers (None: omitted)
    refuse_fresh: int = 0  # tokens refused (401 invalid_token) as soon as they are first used
    issued: list[str] = field(default_factory=list)
    rate_limit_remaining: int | None = None  # sent as ratelimit-remaining when set
    lock: threading.Lock = field(default_factory=threading.Lock)
    _refused: set[str] = field(default_factory=set)
    _accepted: set[str] = field(default_factory=set)

    def requests(self, method: str | None = None) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if method is None or s.method == method]

    def next_fault(self) -> Fault | None:
        with self.lock:
            return self.faults.pop(0) if self.faults else None

    def token_refused(self, authorization: str | None) -> bool:
        """Whether this request's token is refused: none, unknown, or one of the first
        ``refuse_fresh`` tokens issued (each refused the first time it is used)."""
        token = (authorization or "").removeprefix("Bearer ")
        with self.lock:
            if token not in self.issued:
                return True
            if token in self._accepted:
                return False
            if len(self._refused) < self.refuse_fresh:
                self._refused.add(token)
                return True
            self._accepted.add(token)
            return False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, format: str, *args: object) -> None:
        pass

    @property
    def state(self) -> FaultyRegistry:
        state: FaultyRegistry = self.server.state
        return state

    def do_GET(self) -> None:
        if self.path.startswith("/token"):
            self._token()
            return
        state = self.state
        authorization = self.headers.get("Authorization")
        with state.lock:
            state.seen.append(Seen(time.monotonic(), self.command, self.path, authorization))
        fault = state.next_fault()
        if fault and fault.reset:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        if fault and fault.status:
            self._reply(fault.status, fault.headers, b"{}")
            return
        if state.tokens and state.token_refused(authorization):
            challenge = (
                f'Bearer realm="{state.url}/token",service="faulty",scope="repository:{REPOSITORY}:pull"'
            )
            if authorization:
                challenge += ',error="invalid_token"'
            self._reply(401, {"WWW-Authenticate": challenge}, b'{"errors":[{"code":"UNAUTHORIZED"}]}')
            return
        if self.path != f"/v2/{REPOSITORY}/manifests/{TAG}":
            self._reply(404, {}, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
            return
        headers = {
            "Content-Type": "application/vnd.oci.image.manifest.v1+json",
            "Docker-Content-Digest": DIGEST,
        }
        self._reply(200, headers, MANIFEST, trickle=fault.trickle if fault else 0)

    do_HEAD = do_GET

    def _token(self) -> None:
        state = self.state
        token = uuid.uuid4().hex
        with state.lock:
            state.issued.append(token)
        body: dict[str, Any] = {"token": token}
        if state.token_lifetime is not None:
            body["expires_in"] = state.token_lifetime
        self._reply(200, {"Content-Type": "application/json"}, json.dumps(body).encode())

    def _reply(self, status: int, headers: dict[str, str], body: bytes, trickle: int = 0) -> None:
        self.send_response(status)
        if self.state.rate_limit_remaining is not None:
            self.send_header("ratelimit-limit", "100;w=21600")
            self.send_header("ratelimit-remaining", f"{self.state.rate_limit_remaining};w=21600")
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        try:
            for i in range(min(trickle, len(body))):
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()
                time.sleep(1.0)
            self.wfile.write(body[trickle:])
        except OSError:  # the client gave up on the trickle
            self.close_connection = True


@contextmanager
def faulty_registry(**options: Any) -> Iterator[FaultyRegistry]:
    """A FaultyRegistry served on 127.0.0.1 for the ``with`` block."""
    state = FaultyRegistry(**options)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.state = state  # type: ignore[attr-defined]
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
