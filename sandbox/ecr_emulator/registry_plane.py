"""The ``/v2/`` registry endpoint (OCI distribution spec, pull side) with ECR's Basic auth.

ECR registry auth: ``docker login -u AWS -p <token>`` where the password is the decoded
``authorizationToken`` of GetAuthorizationToken minus ``AWS:`` (API_GetAuthorizationToken.html;
userguide/registry_auth.html). Manifests are negotiated on ``Accept`` (negotiation.py); blobs are
answered as the ``blob_delivery`` behaviour says (pullthrough.py, blobhost.py).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from .errors import RegistryError
from .negotiation import negotiate
from .pullthrough import PullThroughCache
from .referrers import Referrers
from .store import Store

API_VERSION = {"Docker-Distribution-Api-Version": "registry/2.0"}
NAME = r"(?P<name>[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*)"
MANIFEST_PATH = re.compile(
    rf"{NAME}/manifests/(?P<ref>[A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}|sha256:[a-f0-9]{{64}})"
)
BLOB_PATH = re.compile(rf"{NAME}/blobs/(?P<digest>sha256:[a-f0-9]{{64}})")
TAGS_PATH = re.compile(rf"{NAME}/tags/list")
REFERRERS_PATH = re.compile(rf"{NAME}/referrers/(?P<digest>sha256:[a-f0-9]{{64}})")


def error_response(exc: RegistryError, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"errors": [{"code": exc.code, "message": exc.message, "detail": None}]}
    return JSONResponse(body, status_code=exc.status, headers={**API_VERSION, **(headers or {})})


class RegistryPlane:
    def __init__(self, store: Store, cache: PullThroughCache) -> None:
        self.store = store
        self.cache = cache
        self.referrers = Referrers(store, cache)

    def _authorize(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            raise RegistryError(401, "UNAUTHORIZED", "Not Authorized")
        try:
            user, _, token = base64.b64decode(value).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise RegistryError(401, "UNAUTHORIZED", "Not Authorized") from exc
        expires_at = self.store.token_expiry(token) if user == "AWS" else None
        if expires_at is None:
            raise RegistryError(401, "UNAUTHORIZED", "Not Authorized")
        if expires_at <= self.cache.clock.now():
            raise RegistryError(
                403, "DENIED", "Your authorization token has expired. Reauthenticate and try again."
            )

    async def handle(self, request: Request) -> Response:
        try:
            self._authorize(request)
            return await self._route(request)
        except RegistryError as exc:
            challenge = {}
            if exc.status == 401:
                realm = f"{request.url.scheme}://{request.headers.get('host', '')}/"
                challenge = {"WWW-Authenticate": f'Basic realm="{realm}",service="ecr.amazonaws.com"'}
            return error_response(exc, challenge)

    async def _route(self, request: Request) -> Response:
        path = request.url.path.removeprefix("/v2/")
        head = request.method == "HEAD"
        if request.method not in ("GET", "HEAD"):
            raise RegistryError(
                405, "UNSUPPORTED", "The emulator implements the pull side of the registry only"
            )
        if path == "":
            return JSONResponse({}, headers=API_VERSION)
        if match := MANIFEST_PATH.fullmatch(path):
            name, reference = match["name"], match["ref"]
            image = await run_in_threadpool(self.cache.manifest, name, reference, head=head)

            def child(digest: str) -> tuple[bytes, str, str] | None:
                found = self.store.get_image(name, digest)
                return (found.manifest, found.media_type, found.digest) if found else None

            served = await run_in_threadpool(
                negotiate,
                image.manifest,
                image.media_type,
                image.digest,
                # clients may send one Accept header per type (containers/image does)
                ", ".join(request.headers.getlist("accept")) or None,
                by_tag=not reference.startswith("sha256:"),
                child=child,
            )
            headers = {
                **API_VERSION,
                "Docker-Content-Digest": served.digest,
                "Content-Type": served.media_type,
                "Content-Length": str(len(served.body)),
            }
            return Response(b"" if head else served.body, headers=headers)
        if match := BLOB_PATH.fullmatch(path):
            answer = await run_in_threadpool(self.cache.blob, match["name"], match["digest"], head=head)
            headers = {**API_VERSION, "Docker-Content-Digest": match["digest"]}
            if answer.redirect:
                # what ECR answers: 307 to storage on another host (see blobhost.py)
                return Response(b"", 307, headers={**headers, "Location": answer.redirect})
            if answer.file is None:
                return Response(b"", headers={**headers, "Content-Length": str(answer.size)})
            return FileResponse(answer.file, media_type="application/octet-stream", headers=headers)
        if match := REFERRERS_PATH.fullmatch(path):
            artifact_type = request.query_params.get("artifactType")
            body, extra = await run_in_threadpool(
                self.referrers.answer, match["name"], match["digest"], artifact_type
            )
            headers = {**API_VERSION, **extra, "Content-Type": "application/vnd.oci.image.index.v1+json"}
            return Response(b"" if head else body, headers=headers)
        if match := TAGS_PATH.fullmatch(path):
            return await run_in_threadpool(self._tags, match["name"], request)
        raise RegistryError(404, "NAME_UNKNOWN", f"Unknown registry path /v2/{path}")

    def _tags(self, name: str, request: Request) -> Response:
        if self.store.get_repository(name) is None:
            raise RegistryError(404, "NAME_UNKNOWN", f"The repository with name '{name}' does not exist")
        tags = self.store.tag_names(name)
        last = request.query_params.get("last")
        if last:
            tags = [tag for tag in tags if tag > last]
        headers = dict(API_VERSION)
        limit = request.query_params.get("n")
        if limit is not None and limit.isdigit() and int(limit) < len(tags):
            tags = tags[: int(limit)]
        if tags and limit is not None and limit.isdigit() and tags[-1] != self.store.tag_names(name)[-1]:
            headers["Link"] = f'</v2/{name}/tags/list?n={limit}&last={quote(tags[-1])}>; rel="next"'
        body = json.dumps({"name": name, "tags": tags}).encode()
        return Response(body, media_type="application/json", headers=headers)
