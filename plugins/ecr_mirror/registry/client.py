"""OCI distribution API client for upstream registries and the ECR registry endpoint.

Engine module: no Airflow imports. One pooled ``httpx.Client`` per registry; safe to share
between threads. Handles tag pagination, manifest HEAD/GET and small blob reads with digest
verification and OCI 1.1 referrers (``referrers``); authentication lives in ``auth`` (anonymous,
Basic, Bearer tokens, ECR re-login), retries, the per-host backoff, the pull budget and the
request deadline in ``retry``. Credentials and tokens never appear in exception messages, reprs
or logs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import httpx

from ecr_mirror.registry.auth import Auth
from ecr_mirror.registry.errors import (
    DigestMismatchError,
    NotFoundError,
    RateLimitedError,
    RegistryError,
)
from ecr_mirror.registry.headers import (
    RateLimit,
    response_date,
)
from ecr_mirror.registry.media import (
    DIGEST_ALGORITHMS,
    MANIFEST_ACCEPT,
    FetchedManifest,
    ManifestInfo,
    compute_digest,
    is_digest,
)
from ecr_mirror.registry.referrers import Referrers, list_referrers
from ecr_mirror.registry.retry import (
    Deadline,
    RetryPolicy,
)
from ecr_mirror.registry.transport import Transport


class RegistryClient:
    """Client for one registry (``base_url`` like ``https://registry-1.docker.io``).

    ``preemptive_basic`` sends Basic credentials without waiting for a challenge (the ECR
    registry endpoint, with ``("AWS", token)``); ``relogin`` gives new Basic credentials when
    the registry refuses the current ones (ECR's token expired). Transient failures (429, 500,
    502/503/504, connection errors, read timeouts) are retried with backoff up to
    ``max_attempts`` (retry.py); a ``Retry-After`` longer than ``max_backoff`` is not slept on:
    the error is raised so the caller can reschedule instead of blocking a worker. ``timeout``
    bounds each read and, as a deadline, each request whose body is read whole (manifests, tag
    lists, tokens, small blobs). ``pull_floor``: see retry.RetryPolicy. ``clock`` (seconds,
    monotonic) times the bearer tokens' lifetimes.
    """

    def __init__(
        self,
        base_url: str,
        *,
        credentials: tuple[str, str] | None = None,
        preemptive_basic: bool = False,
        relogin: Callable[[], tuple[str, str]] | None = None,
        timeout: float = 30.0,
        max_connections: int = 16,
        user_agent: str = "ecr-mirror",
        max_attempts: int = 5,
        backoff_initial: float = 0.5,
        max_backoff: float = 30.0,
        pull_floor: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if "://" not in base_url:
            base_url = "https://" + base_url
        url = httpx.URL(base_url)
        if url.userinfo:
            raise ValueError("pass credentials separately, not in the registry URL")
        self.base_url = str(url).rstrip("/")
        self.registry = url.netloc.decode()
        auth = Auth(credentials, preemptive_basic=preemptive_basic, clock=clock, relogin=relogin)
        policy = RetryPolicy(max_attempts, backoff_initial, max_backoff, pull_floor)
        self.timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        client = httpx.Client(
            timeout=self.timeout,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers={"User-Agent": user_agent},
        )
        self._http = Transport(self.registry, auth, policy, timeout, client)

    def __repr__(self) -> str:
        return f"RegistryClient({self.base_url!r})"

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.client.close()

    @property
    def rate_limit(self) -> RateLimit | None:
        """The host's rate-limit headers as last reported (to any client of that host)."""
        return self._http.gate.rate_limit

    @property
    def rate_limit_remaining(self) -> int | None:
        """Pulls left in the current window as last reported (None: no header seen, i.e. unlimited)."""
        return self.rate_limit.remaining if self.rate_limit else None

    # -- public API ---------------------------------------------------------------------------

    def head_manifest(self, repository: str, reference: str) -> ManifestInfo | None:
        """Digest, media type and size of a manifest without downloading it; None if absent.

        HEAD does not count against Docker Hub pull limits; a GET fallback (which does) happens
        only when the registry omits ``Docker-Content-Digest``.
        """
        url = self._url(repository, "manifests", reference)
        try:
            response = self._http.call(
                partial(self._http.send, "HEAD", url, repository, reference, {"Accept": MANIFEST_ACCEPT}),
                repository,
                reference,
            )
        except NotFoundError:
            return None
        digest = response.headers.get("Docker-Content-Digest")
        if not digest:
            fetched = self.get_manifest(repository, reference)
            return ManifestInfo(fetched.digest, fetched.media_type, len(fetched.body))
        length = response.headers.get("Content-Length")
        return ManifestInfo(digest, _media_type(response), int(length) if length else None)

    def get_manifest(self, repository: str, reference: str) -> FetchedManifest:
        """GET a manifest and verify its bytes against the requested digest and
        ``Docker-Content-Digest``; raises NotFoundError or DigestMismatchError."""
        url = self._url(repository, "manifests", reference)
        floor = self._http.policy.pull_floor
        if self._http.gate.pull_budget_spent(floor):
            raise RateLimitedError(
                f"manifest GET deferred: the host reports {self.rate_limit_remaining} pulls left, at or "
                f"below the floor of {floor} (ECR_MIRROR_PULL_FLOOR); HEAD checks go on",
                registry=self.registry,
                repository=repository,
                reference=reference,
                status=429,
            )
        response = self._http.call(
            partial(self._http.send, "GET", url, repository, reference, {"Accept": MANIFEST_ACCEPT}),
            repository,
            reference,
        )
        body = response.content
        header_digest = response.headers.get("Docker-Content-Digest")
        expected = [d for d in (reference if is_digest(reference) else None, header_digest) if d]
        for digest in expected:
            algorithm = digest.partition(":")[0]
            if algorithm not in DIGEST_ALGORITHMS or compute_digest(body, algorithm) != digest:
                raise DigestMismatchError(
                    f"manifest body does not match digest {digest}",
                    registry=self.registry,
                    repository=repository,
                    reference=reference,
                )
        digest = expected[0] if expected else compute_digest(body)
        media_type = _media_type(response)
        if media_type in ("", "application/json", "application/octet-stream"):
            media_type = json.loads(body).get("mediaType", media_type)
        return FetchedManifest(digest, media_type, body, response_date(response.headers))

    def list_tags(self, repository: str, page_size: int | None = None) -> list[str]:
        """All tags, every page."""
        params = {"n": str(page_size)} if page_size else None
        pages = self.pages(repository, "tags/list", None, {}, params)
        return [tag for page in pages for tag in page.json().get("tags") or []]

    def list_referrers(self, repository: str, digest: str, artifact_type: str | None = None) -> Referrers:
        """The OCI 1.1 referrers of manifest ``digest`` (see referrers.list_referrers)."""
        return list_referrers(self, repository, digest, artifact_type)

    def pages(
        self,
        repository: str,
        path: str,
        reference: str | None,
        headers: dict[str, str],
        params: dict[str, str] | None = None,
    ) -> Iterator[httpx.Response]:
        """Each page of a paginated ``GET /v2/<repository>/<path>``, following ``Link: <...>;
        rel="next"`` (same origin only, so auth headers never go elsewhere)."""
        url: str | None = f"{self.base_url}/v2/{repository}/{path}"
        while url:
            send = partial(self._http.send, "GET", url, repository, reference, headers, params=params)
            response = self._http.call(send, repository, reference)
            yield response
            url, params = self._next_page(response, path), None

    def read_blob(self, repository: str, digest: str, max_bytes: int = 4 << 20) -> bytes:
        """A small blob's bytes (a signature payload, an SBOM), following redirects, verified
        against ``digest``; refuses blobs over ``max_bytes`` rather than reading them into memory."""
        url = self._url(repository, "blobs", digest)

        def read() -> bytes:
            deadline = Deadline.after(self._http.deadline_s)
            response = self._http.send("GET", url, repository, digest, {}, stream=True, follow_redirects=True)
            body = bytearray()
            try:
                for chunk in response.iter_bytes():  # each read, so the deadline is checked
                    deadline.check(response.request)
                    body += chunk
                    if len(body) > max_bytes:
                        raise RegistryError(
                            f"blob is larger than {max_bytes} bytes",
                            registry=self.registry,
                            repository=repository,
                            reference=digest,
                        )
            finally:
                response.close()
            return bytes(body)

        body = self._http.call(read, repository, digest)
        algorithm = digest.partition(":")[0]
        if algorithm not in DIGEST_ALGORITHMS or compute_digest(body, algorithm) != digest:
            raise DigestMismatchError(
                f"blob body does not match digest {digest}",
                registry=self.registry,
                repository=repository,
                reference=digest,
            )
        return body

    def blob_answer(self, repository: str, digest: str, *, read: bool = True) -> BlobAnswer:
        """GET a blob without following a redirect: where the registry redirects to (ECR sends
        layers to S3), or the byte count of the body it served itself (read and discarded; not
        read when ``read`` is false)."""
        url = self._url(repository, "blobs", digest)

        def ask() -> BlobAnswer:
            response = self._http.send("GET", url, repository, digest, {}, stream=True)
            try:
                if response.is_redirect:
                    return BlobAnswer(str(response.url.join(response.headers["Location"])), None)
                size = sum(len(chunk) for chunk in response.iter_bytes(1 << 20)) if read else None
                return BlobAnswer(None, size)
            finally:
                response.close()

        return self._http.call(ask, repository, digest)

    def read_elsewhere(self, url: str, chunk_size: int = 1 << 20) -> int:
        """Read (and discard) what another host serves at ``url``, a blob redirect's target,
        following its redirects, WITHOUT this registry's credentials: S3 refuses a pre-signed
        request that also carries an Authorization header, and no other host may see them.
        Errors name the host only: a pre-signed URL's query is a credential too."""
        host = httpx.URL(url).host

        def read() -> int:
            with self._http.client.stream("GET", url, follow_redirects=True) as response:
                if response.status_code >= 400:
                    raise RegistryError(f"HTTP {response.status_code} from {host}", registry=self.registry)
                return sum(len(chunk) for chunk in response.iter_bytes(chunk_size))

        return self._http.call(read, host, None)

    # -- transport ----------------------------------------------------------------------------

    def _next_page(self, response: httpx.Response, what: str) -> str | None:
        """The ``Link: <...>; rel="next"`` URL of a paginated answer; same origin only, so auth
        headers never go elsewhere."""
        next_link = response.links.get("next", {}).get("url")
        if not next_link:
            return None
        target = response.url.join(next_link)
        if (target.scheme, target.netloc) != (response.url.scheme, response.url.netloc):
            raise RegistryError(f"{what} pagination points to another origin", registry=self.registry)
        return str(target)

    def _url(self, repository: str, kind: str, reference: str) -> str:
        return f"{self.base_url}/v2/{repository}/{kind}/{reference}"


@dataclass(frozen=True)
class BlobAnswer:
    """How a registry answered a blob GET: a redirect (``location``) or the body (``size`` read)."""

    location: str | None
    size: int | None


def _media_type(response: httpx.Response) -> str:
    content_type: str = response.headers.get("Content-Type", "")
    return content_type.split(";")[0].strip()
