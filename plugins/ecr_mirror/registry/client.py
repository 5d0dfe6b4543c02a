"""OCI distribution API client for upstream registries and the ECR registry endpoint.

Engine module: no Airflow imports. One pooled ``httpx.Client`` per registry; safe to share
between threads. Handles anonymous, Basic and Bearer (token service) auth, tag pagination,
manifest HEAD/GET and small blob reads with digest verification, OCI 1.1 referrers (the API or
the tag schema fallback, ``referrers``), and retries with backoff (honouring Retry-After).
Docker Hub's rate-limit headers are recorded (``rate_limit``) for callers to read; the client
does not pace itself by them. Credentials and tokens never appear in exception messages, reprs
or logs.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from ecr_mirror.registry.errors import (
    AuthError,
    DigestMismatchError,
    NotFoundError,
    RateLimitedError,
    RegistryError,
    UnavailableError,
)
from ecr_mirror.registry.headers import (
    Challenge,
    RateLimit,
    parse_rate_limit,
    parse_www_authenticate,
    response_date,
    retry_after,
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

RETRY_STATUSES = frozenset({502, 503, 504})
DEFAULT_TOKEN_LIFETIME_S = 60  # Docker token spec: assume 60 s when expires_in is absent

T = TypeVar("T")


class RegistryClient:
    """Client for one registry (``base_url`` like ``https://registry-1.docker.io``).

    ``preemptive_basic`` sends Basic credentials without waiting for a challenge (the ECR
    registry endpoint, with ``("AWS", token)``). Transient failures (429, 502/503/504,
    connection errors, timeouts) are retried with exponential backoff up to ``max_attempts``;
    a ``Retry-After`` longer than ``max_backoff`` is not slept on: the error is raised so the
    caller can reschedule instead of blocking a worker. ``clock`` (seconds, monotonic) times the
    bearer tokens' lifetimes.
    """

    def __init__(
        self,
        base_url: str,
        *,
        credentials: tuple[str, str] | None = None,
        preemptive_basic: bool = False,
        timeout: float = 30.0,
        max_connections: int = 16,
        user_agent: str = "ecr-mirror",
        max_attempts: int = 5,
        backoff_initial: float = 0.5,
        max_backoff: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if "://" not in base_url:
            base_url = "https://" + base_url
        url = httpx.URL(base_url)
        if url.userinfo:
            raise ValueError("pass credentials separately, not in the registry URL")
        self.base_url = str(url).rstrip("/")
        self.registry = url.netloc.decode()
        self.rate_limit: RateLimit | None = None
        self._credentials = credentials
        self._basic = preemptive_basic and credentials is not None
        self._bearer: Challenge | None = None
        self._tokens: dict[str, tuple[str, float]] = {}
        self._scope_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._max_attempts, self._backoff_initial, self._max_backoff = (
            max_attempts,
            backoff_initial,
            max_backoff,
        )
        self.timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        self._client = httpx.Client(
            timeout=self.timeout,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers={"User-Agent": user_agent},
        )

    def __repr__(self) -> str:
        return f"RegistryClient({self.base_url!r})"

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

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
            response = self._call(
                partial(self._send, "HEAD", url, repository, reference, {"Accept": MANIFEST_ACCEPT}),
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
        response = self._call(
            partial(self._send, "GET", url, repository, reference, {"Accept": MANIFEST_ACCEPT}),
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
            send = partial(self._send, "GET", url, repository, reference, headers, params=params)
            response = self._call(send, repository, reference)
            yield response
            url, params = self._next_page(response, path), None

    def read_blob(self, repository: str, digest: str, max_bytes: int = 4 << 20) -> bytes:
        """A small blob's bytes (a signature payload, an SBOM), following redirects, verified
        against ``digest``; refuses blobs over ``max_bytes`` rather than reading them into memory."""
        url = self._url(repository, "blobs", digest)

        def read() -> bytes:
            response = self._send("GET", url, repository, digest, {}, stream=True, follow_redirects=True)
            body = bytearray()
            try:
                for chunk in response.iter_bytes(1 << 16):
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

        body = self._call(read, repository, digest)
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
            response = self._send("GET", url, repository, digest, {}, stream=True)
            try:
                if response.is_redirect:
                    return BlobAnswer(str(response.url.join(response.headers["Location"])), None)
                size = sum(len(chunk) for chunk in response.iter_bytes(1 << 20)) if read else None
                return BlobAnswer(None, size)
            finally:
                response.close()

        return self._call(ask, repository, digest)

    def read_elsewhere(self, url: str, chunk_size: int = 1 << 20) -> int:
        """Read (and discard) what another host serves at ``url``, a blob redirect's target,
        following its redirects, WITHOUT this registry's credentials: S3 refuses a pre-signed
        request that also carries an Authorization header, and no other host may see them.
        Errors name the host only: a pre-signed URL's query is a credential too."""
        host = httpx.URL(url).host

        def read() -> int:
            with self._client.stream("GET", url, follow_redirects=True) as response:
                if response.status_code >= 400:
                    raise RegistryError(f"HTTP {response.status_code} from {host}", registry=self.registry)
                return sum(len(chunk) for chunk in response.iter_bytes(chunk_size))

        return self._call(read, host, None)

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

    def _call(self, attempt: Callable[[], T], repository: str, reference: str | None) -> T:
        """Run one request attempt under the retry policy; wrap transport errors."""

        def retryable(exc: BaseException) -> bool:
            if isinstance(exc, httpx.TransportError):
                return True
            if isinstance(exc, (RateLimitedError, UnavailableError)):
                return exc.retry_after is None or exc.retry_after <= self._max_backoff
            return False

        backoff = wait_exponential(multiplier=self._backoff_initial, max=self._max_backoff) + wait_random(
            0, self._backoff_initial
        )

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            hinted = getattr(exc, "retry_after", None)
            return hinted if hinted is not None else backoff(state)

        retrying = Retrying(
            retry=retry_if_exception(retryable),
            wait=wait,
            stop=stop_after_attempt(self._max_attempts),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except httpx.TransportError as exc:
            raise RegistryError(
                f"{type(exc).__name__} after {self._max_attempts} attempt(s)",
                registry=self.registry,
                repository=repository,
                reference=reference,
            ) from exc

    def _send(
        self,
        method: str,
        url: str,
        repository: str,
        reference: str | None,
        headers: dict[str, str],
        *,
        params: dict[str, str] | None = None,
        stream: bool = False,
        follow_redirects: bool = False,
    ) -> httpx.Response:
        """One request with the auth dance: at most one re-send after answering a 401 challenge."""
        scope = f"repository:{repository}:pull"
        for answered in (False, True):
            auth = self._auth_header(scope, repository, reference)
            request = self._client.build_request(method, url, headers={**headers, **auth}, params=params)
            response = self._client.send(request, stream=stream, follow_redirects=follow_redirects)
            if limit := parse_rate_limit(response.headers):
                self.rate_limit = limit
            if response.status_code != 401:
                break
            response.close()
            self._forget_token(scope, auth)
            if answered or not self._answer(response.headers.get("WWW-Authenticate", "")):
                break
        if response.status_code >= 400:
            response.close()
            self._raise_for_status(response, repository, reference)
        return response

    def _raise_for_status(self, response: httpx.Response, repository: str, reference: str | None) -> None:
        status = response.status_code

        def error(cls: type[RegistryError], message: str, wait: float | None = None) -> RegistryError:
            return cls(
                message,
                registry=self.registry,
                repository=repository,
                reference=reference,
                status=status,
                retry_after=wait,
            )

        if status in (401, 403):
            raise error(AuthError, f"access denied (HTTP {status})")
        if status == 404:
            raise error(NotFoundError, "not found")
        if status == 429 or status in RETRY_STATUSES:
            cls = RateLimitedError if status == 429 else UnavailableError
            raise error(cls, f"HTTP {status}", retry_after(response.headers))
        raise error(RegistryError, f"HTTP {status}")

    # -- auth ---------------------------------------------------------------------------------

    def _auth_header(self, scope: str, repository: str, reference: str | None) -> dict[str, str]:
        """Authorization for a request: a cached (or, once the realm is known, fresh) bearer
        token, else Basic once the registry asked for it or ``preemptive_basic`` is set."""
        if self._bearer is not None:
            return {"Authorization": f"Bearer {self._token(scope, repository, reference)}"}
        if self._basic and self._credentials:
            return {"Authorization": _basic_header(self._credentials)}
        return {}

    def _answer(self, header: str) -> bool:
        """Learn from a 401 challenge; True if a re-send with new auth is worth trying."""
        challenges = {c.scheme: c for c in parse_www_authenticate(header)}
        if (bearer := challenges.get("bearer")) and "realm" in bearer.params:
            self._bearer = bearer
            return True
        if "basic" in challenges and self._credentials and not self._basic:
            self._basic = True
            return True
        return False

    def _forget_token(self, scope: str, sent: dict[str, str]) -> None:
        """Drop the cached token if it is the one that just drew a 401 (another thread may
        already have replaced it; an unauthenticated request's 401 says nothing about it)."""
        with self._lock:
            cached = self._tokens.get(scope)
            if cached and sent.get("Authorization") == f"Bearer {cached[0]}":
                del self._tokens[scope]

    def _token(self, scope: str, repository: str, reference: str | None) -> str:
        with self._lock:
            lock = self._scope_locks.setdefault(scope, threading.Lock())
        with lock:  # one token request per scope even when many threads need it at once
            cached = self._tokens.get(scope)
            if cached and cached[1] > self._clock():
                return cached[0]
            token, lifetime = self._fetch_token(scope, repository, reference)
            margin = min(10.0, lifetime / 2)
            self._tokens[scope] = (token, self._clock() + lifetime - margin)
            return token

    def _fetch_token(self, scope: str, repository: str, reference: str | None) -> tuple[str, float]:
        assert self._bearer is not None
        params = {"scope": scope}
        if service := self._bearer.params.get("service"):
            params["service"] = service
        headers = {"Authorization": _basic_header(self._credentials)} if self._credentials else {}
        response = self._client.get(self._bearer.params["realm"], params=params, headers=headers)
        status = response.status_code
        if status == 429 or status in RETRY_STATUSES:
            self._raise_for_status(response, repository, reference)
        body = response.json() if status == 200 else {}
        token = body.get("token") or body.get("access_token")
        if not token:
            cls = AuthError if status in (200, 401, 403) else RegistryError
            raise cls(
                f"token service refused scope {scope} (HTTP {status})",
                registry=self.registry,
                repository=repository,
                reference=reference,
                status=status,
            )
        return token, float(body.get("expires_in") or DEFAULT_TOKEN_LIFETIME_S)


@dataclass(frozen=True)
class BlobAnswer:
    """How a registry answered a blob GET: a redirect (``location``) or the body (``size`` read)."""

    location: str | None
    size: int | None


def _basic_header(credentials: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(":".join(credentials).encode()).decode()


def _media_type(response: httpx.Response) -> str:
    content_type: str = response.headers.get("Content-Type", "")
    return content_type.split(";")[0].strip()
