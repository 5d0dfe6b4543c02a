"""A counting reverse proxy on loopback: every HTTP request a client sends, tallied exactly.

The benchmark puts one in front of the upstream registry and one in front of the ECR emulator
(its JSON API and its ``/v2`` plane share one port), so ecr-mirror and the peer are counted by the
same code, whatever client library they use (httpx, botocore, Go's net/http in skopeo). The
Distribution registries of the sandbox run with their access log disabled, and the emulator's
``/_emulator/stats`` counts neither ``/v2/`` pings, 401 answers nor API calls.

The ``Host`` header is forwarded unchanged, so the emulator's GetAuthorizationToken answers a
``proxyEndpoint`` that points back at this proxy and registry-plane traffic stays counted.
"""

from __future__ import annotations

import http.client
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

#: hop-by-hop headers (RFC 9110 7.6.1) are not forwarded; bodies are re-framed with Content-Length
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}
)
_V2_KIND = re.compile(r"^/v2/(?:(?P<name>.+)/(?P<kind>manifests|blobs|tags)/.*)?$")


def classify(method: str, path: str, headers: dict[str, str]) -> str:
    """A request's kind: ``GET manifest``, ``HEAD manifest``, ``GET ping``, ``API DescribeImages``..."""
    path = path.split("?", 1)[0]
    if method == "POST" and path == "/" and (target := headers.get("x-amz-target")):
        return "API " + target.rsplit(".", 1)[-1]
    match = _V2_KIND.match(path)
    if match is None:
        return f"{method} other"
    kind = match.group("kind")
    return f"{method} {'ping' if kind is None else kind.rstrip('s')}"


class CountingProxy:
    """Forwards ``http://127.0.0.1:<port>`` to ``target`` and counts requests and answers by kind.

    ``counts`` is keyed by :func:`classify`; ``statuses`` by ``(kind, status)``; ``not_http``
    counts connections whose first bytes were not HTTP (a TLS ClientHello, when a client tries
    https before falling back to http, as skopeo does with ``--tls-verify=false``).
    """

    def __init__(self, target: str, delay_s: float = 0.0) -> None:
        """``delay_s``: added to every request before it is forwarded (a fixed network latency)."""
        host, _, port = target.removeprefix("http://").rstrip("/").partition(":")
        self.counts: Counter[str] = Counter()
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.body_bytes: Counter[str] = Counter()  # response body bytes by kind
        self.not_http = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the real registries allow
            upstream: ClassVar[threading.local] = threading.local()

            def log_message(self, format: str, *args: object) -> None:
                pass

            def parse_request(self) -> bool:
                ok = super().parse_request()
                if not ok:
                    with proxy._lock:
                        proxy.not_http += 1
                return ok

            def _connection(self) -> http.client.HTTPConnection:
                conn = getattr(self.upstream, "conn", None)
                if conn is None:
                    conn = self.upstream.conn = http.client.HTTPConnection(host, int(port), timeout=60)
                return conn

            def _forward(self) -> None:
                # repeated fields (Go sends one Accept line per media type) are joined, not dropped
                headers: dict[str, str] = {}
                for key, value in self.headers.items():
                    if key.lower() not in _HOP_BY_HOP:
                        headers[key] = f"{headers[key]}, {value}" if key in headers else value
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                kind = classify(self.command, self.path, {k.lower(): v for k, v in headers.items()})
                if delay_s:
                    time.sleep(delay_s)
                for attempt in (1, 2):  # a kept-alive upstream connection may have been closed
                    conn = self._connection()
                    try:
                        conn.request(self.command, self.path, body=body, headers=headers)
                        response = conn.getresponse()
                        data = response.read()
                        break
                    except (http.client.HTTPException, OSError):
                        conn.close()
                        self.upstream.conn = None
                        if attempt == 2:
                            raise
                with proxy._lock:
                    proxy.counts[kind] += 1
                    proxy.statuses[(kind, response.status)] += 1
                    proxy.body_bytes[kind] += len(data)
                self.send_response_only(response.status, response.reason)
                for key, value in response.getheaders():
                    if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                if self.command == "HEAD":
                    self.send_header("Content-Length", response.getheader("Content-Length") or "0")
                else:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.statuses.clear()
            self.body_bytes.clear()
            self.not_http = 0

    def snapshot(self) -> tuple[Counter[str], Counter[tuple[str, int]], int]:
        with self._lock:
            return Counter(self.counts), Counter(self.statuses), self.not_http

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
