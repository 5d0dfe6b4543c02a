"""A fault-injecting forwarding proxy of the project's own, for the reliability suite.

Placed in front of a sandbox upstream registry (``ECR_MIRROR_UPSTREAM_ENDPOINTS``) or the ECR
emulator (the connection's ``endpoint_url``: the emulator names its registry endpoint after the
Host header it is sent, which the proxy keeps, so the registry endpoint is proxied too). Each
request is faulted or forwarded as a ``FaultPlan`` says, with a fixed seed: whether the n-th request
of one method and path is faulted is drawn from ``Random(f"{seed}:{method}:{path}:{n}")``, so the
same scenario faults the same requests whatever order the engine's threads send them in.

Faults: ``429`` (with ``Retry-After``), ``500``/``502``/``503``, ``reset`` (the connection is
reset: TCP RST), ``stall`` (nothing is sent for ``stall_seconds``, then the connection closes),
``short`` (half the body, then the connection closes) and ``digest`` (a body whose last byte is
changed, so its sha256 is not the digest asked for). Without faults it records what the engine
asks (``requests``, ``count``) and can lie in the digest header of manifest HEADs (``head_digest``).
"""

from __future__ import annotations

import json
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

KINDS = ("429", "500", "502", "503", "reset", "stall", "short", "digest")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "content-encoding"}


@dataclass
class FaultPlan:
    """Which requests are faulted, and how.

    ``rate``: the chance that a request is faulted (drawn with ``seed``); ``kinds``: the faults,
    one drawn per faulted request; ``match``: only requests whose path contains it (None: all);
    ``first``: also fault the first ``first`` requests of each matching path, whatever the draw;
    ``until``: fault matching requests (every one) until it returns True (e.g. once the audit has a
    failed row for the tag), whatever the per-request retries are.
    """

    seed: int = 8
    rate: float = 0.0
    kinds: tuple[str, ...] = ("503",)
    match: str | None = None
    first: int = 0
    until: Callable[[], bool] | None = None
    methods: tuple[str, ...] = ("GET", "HEAD", "POST")
    retry_after: str = "1"
    stall_seconds: float = 3.0


@dataclass
class FaultProxy:
    upstream: str
    plan: FaultPlan
    #: send the client's Host on (the ECR emulator names its registry endpoint after it)
    keep_host: bool = False
    url: str = ""
    #: the digest every manifest HEAD answers with (a cache or CDN that lies), None: the upstream's
    head_digest: str | None = None
    requests: list[tuple[str, str]] = field(default_factory=list)
    faulted: Counter[str] = field(default_factory=Counter)  # fault kind -> requests
    _seen: Counter[tuple[str, str]] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, method: str, part: str) -> int:
        """Requests seen (faulted or not) of ``method`` whose path contains ``part``."""
        return sum(m == method and part in path for m, path in self.requests)

    @property
    def faulted_total(self) -> int:
        return sum(self.faulted.values())

    def fault_for(self, method: str, path: str) -> str | None:
        """The fault of this request, or None to forward it untouched."""
        with self._lock:
            self.requests.append((method, path))
            n = self._seen[(method, path)]
            self._seen[(method, path)] += 1
        plan = self.plan
        if method not in plan.methods or (plan.match is not None and plan.match not in path):
            return None
        draw = random.Random(f"{plan.seed}:{method}:{path}:{n}")
        chosen = draw.choice(plan.kinds)
        if plan.until is not None:
            if plan.until():
                return None
        elif n >= plan.first and draw.random() >= plan.rate:
            return None
        with self._lock:
            self.faulted[chosen] += 1
        return chosen


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _proxy(self) -> FaultProxy:
        proxy: FaultProxy = self.server.proxy  # type: ignore[attr-defined]
        return proxy

    def _handle(self) -> None:
        proxy = self._proxy()
        length = int(self.headers.get("Content-Length") or 0)
        payload = self.rfile.read(length) if length else None
        fault = proxy.fault_for(self.command, self.path)
        if fault in ("reset", "stall"):
            if fault == "stall":
                time.sleep(proxy.plan.stall_seconds)
            self._reset()
            return
        if fault is not None and fault.isdigit():
            self._status(int(fault))
            return
        self._forward(payload, fault)

    def _reset(self) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _status(self, status: int) -> None:
        body = (
            b'{"errors":[{"code":"TOOMANYREQUESTS","message":"injected"}]}' if status == 429 else b"injected"
        )
        self.send_response(status)
        if status in (429, 503):
            self.send_header("Retry-After", self._proxy().plan.retry_after)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _forward(self, payload: bytes | None, fault: str | None) -> None:
        proxy = self._proxy()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        if proxy.keep_host and self.headers.get("Host"):
            headers["Host"] = self.headers["Host"]
        answer = httpx.request(self.command, proxy.upstream + self.path, headers=headers, content=payload)
        body = answer.content
        if fault == "digest" and body:
            body = body[:-1] + bytes([body[-1] ^ 0x01])
        self.send_response(answer.status_code)
        for key, value in answer.headers.items():
            if key.lower() == "docker-content-digest" and self.command == "HEAD" and proxy.head_digest:
                value = proxy.head_digest
            if key.lower() not in _HOP_BY_HOP:
                self.send_header(key, value)
        full = (
            answer.headers.get("content-length", str(len(body))) if self.command == "HEAD" else str(len(body))
        )
        self.send_header("Content-Length", full)
        self.end_headers()
        if self.command == "HEAD":
            return
        if fault == "short":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self._reset()
            return
        self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _handle


def hub_manifest(folder: Path, name: str, image: str, tags: Sequence[str], defaults: str) -> Path:
    """Write ``<folder>/manifests/<name>.yaml``: manifest ``name`` mirrors ``acme/<image>:<tags>``
    from the Docker Hub stand-in with ``defaults`` (a YAML flow mapping)."""
    path = folder / "manifests" / f"{name}.yaml"
    path.write_text(
        f"name: {name}\ntarget: {{region: eu-west-1}}\ndefaults: {defaults}\n"
        f"rules:\n  - prefix: {name}\n    upstream: docker-hub\n"
        "    credential_secret: ecr-pullthroughcache/docker-hub\n"
        f"images:\n  - image: acme/{image}\n    tags: {json.dumps(list(tags))}\n"
    )
    return path


def upstream_proxy(upstream: str) -> AbstractContextManager[FaultProxy]:
    """A proxy that faults nothing: it records the requests and may lie in HEADs' digests."""
    return fault_proxy(upstream, FaultPlan())


@contextmanager
def fault_proxy(upstream: str, plan: FaultPlan, *, keep_host: bool = False) -> Iterator[FaultProxy]:
    """A FaultProxy in front of ``upstream`` (a base URL) on a free loopback port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    proxy = FaultProxy(upstream.rstrip("/"), plan, keep_host)
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    server.proxy = proxy  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
