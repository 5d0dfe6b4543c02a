"""A small OCI distribution client for the upstream side of the pull through cache.

Supports anonymous access, the Bearer token challenge flow (distribution token spec) and Basic
auth. Credentials come from the rule's Secrets Manager secret when the emulator reads secrets
(``--secrets-endpoint``), else from the userinfo of the mapped upstream URL
(``--upstream registry-1.docker.io=http://user:secret@127.0.0.1:5000``).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from .errors import UpstreamError

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class Manifest:
    body: bytes
    media_type: str
    digest: str


def sha256_digest(body: bytes) -> str:
    return f"sha256:{hashlib.sha256(body).hexdigest()}"


class UpstreamClient:
    """Talks to one upstream registry; ``on_request(kind)`` counts manifest GET/HEAD and blob GETs."""

    def __init__(
        self,
        base_url: str,
        on_request: Callable[[str], None],
        timeout: float = 30.0,
        auth: tuple[str, str] | None = None,
    ) -> None:
        url = httpx.URL(base_url)
        self._auth = auth or ((url.username, url.password) if url.username else None)
        self.base_url = str(url.copy_with(username=None, password=None)).rstrip("/")
        self._on_request = on_request
        self._http = httpx.Client(timeout=timeout, follow_redirects=True)
        self._tokens: dict[str, str] = {}
        self._use_basic = False
        self._lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def _bearer(self, challenge: str, scope: str) -> str:
        params = dict(_CHALLENGE_PARAM.findall(challenge))
        query = {"service": params.get("service", ""), "scope": params.get("scope", scope)}
        query = {key: value for key, value in query.items() if value}
        response = self._http.get(params["realm"], params=query, auth=self._auth)
        if response.status_code != 200:
            raise UpstreamError(response.status_code, f"token endpoint answered {response.status_code}")
        body = response.json()
        return body.get("token") or body["access_token"]

    def _request(
        self, method: str, path: str, scope: str, headers: dict[str, str], stream: bool = False
    ) -> httpx.Response:
        """Send a request, answering at most one auth challenge (Bearer token or Basic)."""
        url = f"{self.base_url}{path}"
        try:
            answered = False
            while True:
                sent = dict(headers)
                with self._lock:
                    token = self._tokens.get(scope)
                if token:
                    sent["Authorization"] = f"Bearer {token}"
                auth = httpx.BasicAuth(*self._auth) if self._auth and self._use_basic and not token else None
                request = self._http.build_request(method, url, headers=sent)
                response = self._http.send(request, auth=auth, stream=stream)
                challenge = response.headers.get("www-authenticate", "")
                if response.status_code != 401 or answered:
                    return response
                answered = True
                response.close()
                if challenge.lower().startswith("bearer"):
                    token = self._bearer(challenge, scope)
                    with self._lock:
                        self._tokens[scope] = token
                elif self._auth:
                    self._use_basic = True
                else:
                    return response
        except httpx.HTTPError as exc:
            raise UpstreamError(None, f"upstream {self.base_url} unreachable: {exc}") from exc

    def ping(self) -> None:
        """``GET /v2/`` with authentication: raises UpstreamError unless the upstream answers 200."""
        response = self._request("GET", "/v2/", "", {})
        if response.status_code != 200:
            raise UpstreamError(response.status_code, f"GET /v2/ answered {response.status_code}")

    def repository_exists(self, repository: str) -> bool | None:
        """Whether the upstream has ``repository`` (its tag list answers 200, or 404 NAME_UNKNOWN);
        None when it cannot tell. Distribution answers a manifest of a missing repository with
        MANIFEST_UNKNOWN, as it does a missing tag, so this is how the two are told apart."""
        try:
            response = self._request(
                "GET", f"/v2/{repository}/tags/list?n=1", f"repository:{repository}:pull", {}
            )
        except UpstreamError:
            return None
        if response.status_code == 200:
            return True
        return False if response.status_code == 404 else None

    def head_manifest(self, repository: str, reference: str) -> str | None:
        """The digest the upstream reports for a manifest, or None when it sends no digest header."""
        self._on_request("manifest_head")
        response = self._request(
            "HEAD",
            f"/v2/{repository}/manifests/{reference}",
            f"repository:{repository}:pull",
            {"Accept": ", ".join(MANIFEST_TYPES)},
        )
        self._raise_for(response, repository, reference)
        return response.headers.get("docker-content-digest")

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        self._on_request("manifest_get")
        response = self._request(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            f"repository:{repository}:pull",
            {"Accept": ", ".join(MANIFEST_TYPES)},
        )
        self._raise_for(response, repository, reference)
        body = response.content
        digest = sha256_digest(body)
        if reference.startswith("sha256:") and digest != reference:
            raise UpstreamError(502, f"upstream manifest {repository}@{reference} has digest {digest}")
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        return Manifest(body=body, media_type=media_type, digest=digest)

    def referrers(self, repository: str, digest: str) -> list[dict[str, Any]] | None:
        """The upstream's referrers API list of ``digest`` (distribution-spec v1.1); None when the
        upstream has no referrers API (404)."""
        response = self._request(
            "GET",
            f"/v2/{repository}/referrers/{digest}",
            f"repository:{repository}:pull",
            {"Accept": "application/vnd.oci.image.index.v1+json"},
        )
        if response.status_code == 404:
            return None
        self._raise_for(response, repository, digest)
        manifests = response.json().get("manifests") or []
        return [m for m in manifests if isinstance(m, dict) and isinstance(m.get("digest"), str)]

    @contextmanager
    def blob(self, repository: str, digest: str, *, count: bool = True) -> Iterator[Iterator[bytes]]:
        """Stream a blob's bytes from upstream; ``count=False`` for reads that are not ECR's own
        (the upstream storage a redirected client reads from)."""
        if count:
            self._on_request("blob_get")
        response = self._request(
            "GET", f"/v2/{repository}/blobs/{digest}", f"repository:{repository}:pull", {}, stream=True
        )
        try:
            self._raise_for(response, repository, digest)
            yield response.iter_bytes()
        except httpx.HTTPError as exc:
            raise UpstreamError(None, f"upstream blob {digest} interrupted: {exc}") from exc
        finally:
            response.close()

    @staticmethod
    def _raise_for(response: httpx.Response, repository: str, reference: str) -> None:
        if response.status_code >= 400:
            raise UpstreamError(
                response.status_code,
                f"upstream answered {response.status_code} for {repository}:{reference}",
                code=_error_code(response),
            )


def _error_code(response: httpx.Response) -> str | None:
    """The first OCI error code of an error answer (``NAME_UNKNOWN``...), None without a JSON body."""
    if response.request.method == "HEAD":
        return None
    try:
        if not response.is_stream_consumed:
            response.read()
        errors = response.json().get("errors") or []
        return errors[0].get("code") if errors else None
    except (ValueError, AttributeError, httpx.HTTPError):
        return None
