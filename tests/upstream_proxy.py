"""A forwarding proxy in front of a sandbox upstream registry that records what the engine asks and
can lie in the ``Docker-Content-Digest`` header of manifest HEADs (a cache or CDN that serves a
wrong digest), while every body passes through untouched."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass
class UpstreamProxy:
    upstream: str
    url: str = ""
    #: the digest every manifest HEAD answers with, None: the upstream's own
    head_digest: str | None = None
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path)
    #: when each request came in (time.monotonic()), in the order of ``requests``
    times: list[float] = field(default_factory=list)

    def count(self, method: str, part: str) -> int:
        return sum(m == method and part in path for m, path in self.requests)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _forward(self) -> None:
        proxy: UpstreamProxy = self.server.proxy  # type: ignore[attr-defined]
        proxy.times.append(time.monotonic())
        proxy.requests.append((self.command, self.path))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        answer = httpx.request(self.command, proxy.upstream + self.path, headers=headers)
        body = answer.content
        self.send_response(answer.status_code)
        for key, value in answer.headers.items():
            if key.lower() in _HOP_BY_HOP or key.lower() == "content-encoding":
                continue
            if key.lower() == "docker-content-digest" and self.command == "HEAD" and proxy.head_digest:
                value = proxy.head_digest
            self.send_header(key, value)
        self.send_header("Content-Length", answer.headers.get("content-length", str(len(body))))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = _forward


@contextmanager
def upstream_proxy(upstream: str) -> Iterator[UpstreamProxy]:
    """A proxy in front of ``upstream`` (a registry URL) on a free loopback port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    proxy = UpstreamProxy(upstream, f"http://127.0.0.1:{server.server_address[1]}")
    server.proxy = proxy  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
