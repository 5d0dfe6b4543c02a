"""OCI distribution API client for upstream registries and the ECR registry endpoint.

Engine module: no Airflow imports. One pooled ``httpx.Client`` per registry; safe to share
between threads. Handles anonymous, Basic and Bearer (token service) auth, tag pagination,
manifest HEAD/GET and small blob reads with digest verification, OCI 1.1 referrers (the API or
the tag schema fallback), rate-limit headers, and retries with backoff.
Credentials and tokens never appear in exception messages, reprs or logs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any, TypeVar

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))
INDEX_MEDIA_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})

DIGEST_ALGORITHMS = frozenset({"sha256", "sha512"})
RETRY_STATUSES = frozenset({502, 503, 504})
DEFAULT_TOKEN_LIFETIME_S = 60  # Docker token spec: assume 60 s when expires_in is absent

T = TypeVar("T")


class RegistryError(Exception):
    """A registry call failed. The message names registry, repository and reference only."""

    def __init__(
        self,
        message: str,
        *,
        registry: str,
        repository: str | None = None,
        reference: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        target = _ref(repository, reference) if repository else None
        super().__init__(f"{registry}" + (f" {target}" if target else "") + f": {message}")
        self.registry, self.repository, self.reference = registry, repository, reference
        self.status = status
        self.retry_after = retry_after  # seconds, from Retry-After on 429/503


class NotFoundError(RegistryError):
    pass


class AuthError(RegistryError):
    pass


class DigestMismatchError(RegistryError):
    pass


class RateLimitedError(RegistryError):
    """HTTP 429 after the retries ran out (or with a Retry-After too long to wait for)."""


class UnavailableError(RegistryError):
    """HTTP 502/503/504 after the retries ran out."""


@dataclass(frozen=True)
class RateLimit:
    """``ratelimit-limit`` / ``ratelimit-remaining`` as Docker Hub sends them (``76;w=21600``)."""

    limit: int | None
    remaining: int | None
    window_s: int | None


@dataclass(frozen=True)
class ManifestInfo:
    digest: str
    media_type: str
    size: int | None


@dataclass(frozen=True)
class FetchedManifest:
    digest: str
    media_type: str
    body: bytes

    def json(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_MEDIA_TYPES

    def children(self) -> list[tuple[str, str]]:
        """(``os/arch[/variant]``, digest) per entry of an index; [] for an image manifest.

        Entries without a platform (e.g. attestations) get ``""``.
        """
        if not self.is_index:
            return []
        result = []
        for entry in self.json().get("manifests", []):
            p = entry.get("platform") or {}
            platform = "/".join(filter(None, (p.get("os"), p.get("architecture"), p.get("variant"))))
            result.append((platform, entry["digest"]))
        return result


@dataclass(frozen=True)
class Referrer:
    """One descriptor of a referrers list (OCI distribution-spec v1.1, "Listing Referrers")."""

    digest: str
    media_type: str
    artifact_type: str | None
    size: int | None
    annotations: dict[str, str]


@dataclass(frozen=True)
class Referrers:
    """The referrers of a subject digest and where they were read: ``api`` (the referrers API)
    or ``tag-schema`` (the ``<alg>-<hex>`` index tag, for registries without the API)."""

    subject: str
    referrers: tuple[Referrer, ...]
    source: str


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case
    params: dict[str, str]  # keys lower case


# RFC 7235 challenges carry quoted strings that may contain commas and escaped quotes, and one
# header may hold several challenges; neither the stdlib nor httpx parses them, so a small
# tokenizer: a scheme token, then key=value pairs until the next bare token.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_SCHEME_RE = re.compile(rf"[\s,]*({_TOKEN})")
_PARAM_RE = re.compile(rf"""[\s,]*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)""")


def parse_www_authenticate(value: str) -> list[Challenge]:
    challenges = []
    pos = 0
    while scheme := _SCHEME_RE.match(value, pos):
        pos = scheme.end()
        params = {}
        while param := _PARAM_RE.match(value, pos):
            key, raw = param.groups()
            if raw.startswith('"'):
                raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
            params[key.lower()] = raw
            pos = param.end()
        challenges.append(Challenge(scheme.group(1).lower(), params))
    return challenges


def parse_rate_limit(headers: httpx.Headers) -> RateLimit | None:
    def split(value: str | None) -> tuple[int | None, int | None]:
        if not value:
            return None, None
        count, _, rest = value.partition(";")
        window = re.search(r"w=(\d+)", rest)
        return int(count) if count.strip().isdigit() else None, int(window.group(1)) if window else None

    limit, window = split(headers.get("ratelimit-limit"))
    remaining, window2 = split(headers.get("ratelimit-remaining"))
    if limit is None and remaining is None:
        return None
    return RateLimit(limit, remaining, window or window2)


def compute_digest(body: bytes, algorithm: str = "sha256") -> str:
    """``<algorithm>:<hex>`` of ``body``; ``algorithm`` is one of the OCI-registered sha256/sha512."""
    if algorithm not in DIGEST_ALGORITHMS:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    return f"{algorithm}:{hashlib.new(algorithm, body).hexdigest()}"


def referrers_tag(digest: str) -> str:
    """The referrers tag schema's tag for ``digest``: algorithm (32 chars at most), ``-``, encoded
    part (64 at most), characters a tag cannot hold replaced by ``-`` (distribution-spec v1.1)."""
    algorithm, _, encoded = digest.partition(":")
    return re.sub(r"[^A-Za-z0-9_.-]", "-", f"{algorithm[:32]}-{encoded[:64]}")


def _is_digest(reference: str) -> bool:
    return ":" in reference


def _ref(repository: str | None, reference: str | None) -> str:
    if not reference:
        return repository or ""
    return f"{repository}{'@' if _is_digest(reference) else ':'}{reference}"


def _retry_after(headers: httpx.Headers) -> float | None:
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class RegistryClient:
    """Client for one registry (``base_url`` like ``https://registry-1.docker.io``).

    ``preemptive_basic`` sends Basic credentials without waiting for a challenge (the ECR
    registry endpoint, with ``("AWS", token)``). Transient failures (429, 502/503/504,
    connection errors, timeouts) are retried with exponential backoff up to ``max_attempts``;
    a ``Retry-After`` longer than ``max_backoff`` is not slept on: the error is raised so the
    caller can reschedule instead of blocking a worker.
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
        expected = [d for d in (reference if _is_digest(reference) else None, header_digest) if d]
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
        return FetchedManifest(digest, media_type, body)

    def list_tags(self, repository: str, page_size: int | None = None) -> list[str]:
        """All tags, following ``Link: <...>; rel="next"`` pages (same origin only, so auth
        headers never go elsewhere)."""
        url: str | None = f"{self.base_url}/v2/{repository}/tags/list"
        params = {"n": str(page_size)} if page_size else None
        tags: list[str] = []
        while url:
            send = partial(self._send, "GET", url, repository, None, {}, params=params)
            response = self._call(send, repository, None)
            tags += response.json().get("tags") or []
            url, params = self._next_page(response, "tag list"), None
        return tags

    def list_referrers(self, repository: str, digest: str, artifact_type: str | None = None) -> Referrers:
        """The OCI 1.1 referrers of manifest ``digest``, optionally only those of ``artifact_type``.

        Asks the referrers API (``GET /v2/<name>/referrers/<digest>``, all ``Link`` pages); a
        registry without it answers 404, and then the referrers tag schema's index is read
        instead (distribution-spec v1.1: clients MUST fall back). A tag that does not hold an
        image index, or that resolves to the subject itself (GitLab's registry reads
        ``sha256-<hex>`` as the digest, oras-project/oras#2148), means no referrers. The
        ``artifactType`` filter is applied here whenever the registry did not apply it.
        """
        url: str | None = f"{self.base_url}/v2/{repository}/referrers/{digest}"
        params = {"artifactType": artifact_type} if artifact_type else None
        found: list[Referrer] = []
        source = "api"
        try:
            while url:
                headers = {"Accept": OCI_INDEX}
                send = partial(self._send, "GET", url, repository, digest, headers, params=params)
                response = self._call(send, repository, digest)
                page = _referrers_from_index(response.content, self.registry, repository, digest)
                if artifact_type and "artifacttype" not in _filters_applied(response):
                    page = [r for r in page if r.artifact_type == artifact_type]
                found += page
                url, params = self._next_page(response, "referrers list"), None
        except NotFoundError:
            source, found = "tag-schema", []
            try:
                index = self.get_manifest(repository, referrers_tag(digest))
            except NotFoundError:
                index = None
            if index is not None and index.media_type == OCI_INDEX and index.digest != digest:
                found = _referrers_from_index(index.body, self.registry, repository, digest)
                if artifact_type:
                    found = [r for r in found if r.artifact_type == artifact_type]
        return Referrers(digest, tuple(found), source)

    def read_blob(self, repository: str, digest: str, max_bytes: int = 4 << 20) -> bytes:
        """A small blob's bytes (a signature payload, an SBOM), verified against ``digest``;
        refuses blobs over ``max_bytes`` rather than reading them into memory."""
        url = self._url(repository, "blobs", digest)

        def read() -> bytes:
            response = self._send("GET", url, repository, digest, {}, stream=True, follow_redirects=True)
            try:
                body = bytearray()
                for chunk in response.iter_bytes(1 << 16):
                    body += chunk
                    if len(body) > max_bytes:
                        raise RegistryError(
                            f"blob is larger than {max_bytes} bytes",
                            registry=self.registry,
                            repository=repository,
                            reference=digest,
                        )
                return bytes(body)
            finally:
                response.close()

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

    def stream_blob(self, repository: str, digest: str, chunk_size: int = 1 << 20) -> int:
        """Read a blob (following redirects) and discard it; returns the byte count.

        httpx drops the Authorization header when a redirect leaves the origin (e.g. to S3).
        """
        url = self._url(repository, "blobs", digest)

        def read() -> int:
            response = self._send("GET", url, repository, digest, {}, stream=True, follow_redirects=True)
            try:
                return sum(len(chunk) for chunk in response.iter_bytes(chunk_size))
            finally:
                response.close()

        return self._call(read, repository, digest)

    # -- transport ----------------------------------------------------------------------------

    def _url(self, repository: str, kind: str, reference: str) -> str:
        return f"{self.base_url}/v2/{repository}/{kind}/{reference}"

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
        kwargs = {
            "registry": self.registry,
            "repository": repository,
            "reference": reference,
            "status": status,
        }
        if status in (401, 403):
            raise AuthError(f"access denied (HTTP {status})", **kwargs)
        if status == 404:
            raise NotFoundError("not found", **kwargs)
        if status == 429 or status in RETRY_STATUSES:
            cls = RateLimitedError if status == 429 else UnavailableError
            raise cls(f"HTTP {status}", retry_after=_retry_after(response.headers), **kwargs)
        raise RegistryError(f"HTTP {status}", **kwargs)

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
            if cached and cached[1] > time.monotonic():
                return cached[0]
            token, lifetime = self._fetch_token(scope, repository, reference)
            margin = min(10.0, lifetime / 2)
            self._tokens[scope] = (token, time.monotonic() + lifetime - margin)
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


def _basic_header(credentials: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(":".join(credentials).encode()).decode()


def _media_type(response: httpx.Response) -> str:
    return response.headers.get("Content-Type", "").split(";")[0].strip()


def _filters_applied(response: httpx.Response) -> set[str]:
    applied = response.headers.get("OCI-Filters-Applied", "")
    return {name.strip().lower() for name in applied.split(",") if name.strip()}


def _referrers_from_index(body: bytes, registry: str, repository: str, digest: str) -> list[Referrer]:
    """The descriptors of a referrers image index; a descriptor without a digest is skipped."""
    try:
        manifests = json.loads(body).get("manifests") or []
    except (ValueError, AttributeError) as exc:
        raise RegistryError(
            "referrers list is not an image index", registry=registry, repository=repository, reference=digest
        ) from exc
    referrers = []
    for entry in manifests:
        if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str):
            continue
        size = entry.get("size")
        referrers.append(
            Referrer(
                digest=entry["digest"],
                media_type=str(entry.get("mediaType", "")),
                artifact_type=entry.get("artifactType") or None,
                size=size if isinstance(size, int) else None,
                annotations={str(k): str(v) for k, v in (entry.get("annotations") or {}).items()},
            )
        )
    return referrers
