"""The blob host: where the registry endpoint redirects blob GETs, on its own loopback origin.

Real ECR answers a layer GET with ``307`` to a pre-signed Amazon S3 URL in the bucket
``prod-<region>-starport-layer-bucket`` (userguide/vpc-endpoints.html; the URL is what
GetDownloadUrlForLayer returns), and first pulls through a pull through cache rule have been seen
redirected to the upstream's own storage (containers-roadmap #2304: Docker Hub's CDN). Both are
other hosts than the registry endpoint, and a client must not send its ECR ``Authorization`` there:
S3 refuses a pre-signed request that also carries one (400 ``InvalidArgument``, "Only one auth
mechanism allowed"). The emulator serves both kinds of URL from a second listener (127.0.0.2 when
the registry listens on 127.0.0.1, so even clients that compare host names without the port see
another host), refuses requests that carry ``Authorization`` and records them as violations.

URLs are signed with an HMAC of the process (the stand-in for SigV4 query signing) and expire with
the emulated clock: 403 ``AccessDenied`` "Request has expired", or ``SignatureDoesNotMatch``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Route

from .clock import Clock
from .shapes import Violations

#: lifetime of a pre-signed layer URL; GetDownloadUrlForLayer does not document it (S3's own
#: pre-signed URLs last up to 7 days; ECR's are short): 1 hour keeps expiry testable.
URL_LIFETIME = 3600
UPSTREAM_STORAGE = "registry-v2"
REQUESTS_KEPT = 10_000  # the path Docker Hub's CDN URLs start with (containers-roadmap #2304)


def s3_error(status: int, code: str, message: str) -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return Response(body, status, media_type="application/xml")


@dataclass
class BlobHost:
    """Signs URLs for the blob host and answers them.

    ``open_blob(repository, digest)`` -> a file path ECR holds (or None); ``stream_upstream(repository,
    digest)`` -> the blob's bytes from the upstream registry, as its storage would serve them.
    """

    url: str
    region: str
    clock: Clock
    violations: Violations
    open_blob: Callable[[str, str], Any]
    stream_upstream: Callable[[str, str], Iterator[bytes]]
    _key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: the latest requests (a long-running sandbox keeps only these)
    requests: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=REQUESTS_KEPT))

    @property
    def bucket(self) -> str:
        return f"prod-{self.region}-starport-layer-bucket"

    def _sign(self, path: str, expires: int) -> str:
        return hmac.new(self._key, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def presigned_url(self, account: str, repository: str, digest: str) -> str:
        """A pre-signed URL for a blob ECR holds (the answer of GetDownloadUrlForLayer)."""
        path = f"/{self.bucket}/{account}/{repository}/{digest}"
        expires = int(self.clock.now()) + URL_LIFETIME
        query = {
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Expires": str(URL_LIFETIME),
            "X-Amz-SignedHeaders": "host",
            "x-emulator-expires": str(expires),
            "X-Amz-Signature": self._sign(path, expires),
        }
        return f"{self.url}{path}?{urlencode(query)}"

    def upstream_url(self, repository: str, digest: str) -> str:
        """A signed URL of the upstream registry's storage for a blob ECR does not hold yet."""
        hexdigest = digest.removeprefix("sha256:")
        path = f"/{UPSTREAM_STORAGE}/docker/registry/v2/blobs/sha256/{hexdigest[:2]}/{hexdigest}/data"
        expires = int(self.clock.now()) + URL_LIFETIME
        verify = f"{expires}-{self._sign(f'{path}?r={repository}', expires)}"
        return f"{self.url}{path}?{urlencode({'r': repository, 'verify': verify})}"

    def _record(self, request: Request, status: int) -> None:
        with self._lock:
            self.requests.append(
                {
                    "method": request.method,
                    "path": request.url.path,
                    "authorization": "authorization" in request.headers,
                    "status": status,
                }
            )

    def doc(self) -> dict[str, Any]:
        with self._lock:
            return {"url": self.url, "requests": list(self.requests)}

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()

    def _expired_or_forged(self, signed: str, expires: str, signature: str) -> Response | None:
        if not expires.isdigit() or not hmac.compare_digest(self._sign(signed, int(expires)), signature):
            return s3_error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        if int(expires) <= self.clock.now():
            return s3_error(403, "AccessDenied", "Request has expired")
        return None

    async def handle(self, request: Request) -> Response:
        path = request.url.path
        if "authorization" in request.headers:
            # S3's answer to a pre-signed request that also carries an Authorization header.
            self.violations.record(
                "credential-leak",
                request.method,
                [f"{request.method} {path} on the blob host carried an Authorization header"],
            )
            self._record(request, 400)
            return s3_error(
                400,
                "InvalidArgument",
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature "
                "query string parameter or the Authorization header should be specified",
            )
        response = await self._serve(request, path)
        self._record(request, response.status_code)
        return response

    async def _serve(self, request: Request, path: str) -> Response:
        query = request.query_params
        if path.startswith(f"/{self.bucket}/"):
            refused = self._expired_or_forged(
                path, query.get("x-emulator-expires", ""), query.get("X-Amz-Signature", "")
            )
            if refused:
                return refused
            _, _, rest = path.removeprefix("/").partition("/")
            _account, _, name_and_digest = rest.partition("/")
            repository, _, digest = name_and_digest.rpartition("/")
            file = await run_in_threadpool(self.open_blob, repository, digest)
            if file is None:
                return s3_error(404, "NoSuchKey", "The specified key does not exist.")
            return FileResponse(file, media_type="application/octet-stream")
        if path.startswith(f"/{UPSTREAM_STORAGE}/"):
            expires, _, signature = query.get("verify", "").partition("-")
            repository = query.get("r", "")
            refused = self._expired_or_forged(f"{path}?r={repository}", expires, signature)
            if refused:
                return refused
            digest = "sha256:" + path.rsplit("/", 2)[-2]
            chunks = await run_in_threadpool(self.stream_upstream, repository, digest)
            if request.method == "HEAD":
                return Response(b"", media_type="application/octet-stream")
            return StreamingResponse(iterate_in_threadpool(chunks), media_type="application/octet-stream")
        return s3_error(404, "NoSuchBucket", "The specified bucket does not exist")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self.handle, methods=["GET", "HEAD"])])
