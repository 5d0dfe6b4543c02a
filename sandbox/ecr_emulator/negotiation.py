"""Manifest content negotiation on ``GET``/``HEAD /v2/<name>/manifests/<reference>``.

ECR (userguide/image-manifest-formats.html, "Amazon ECR image manifest conversion"): pulled *by
tag*, a manifest is returned as stored if the client's ``Accept`` understands it, else translated
(Docker Image Manifest V2 Schema 2 <-> OCI image manifest); pulled *by digest* there is no
translation. Index types are not covered by that page, so the emulator answers what the CNCF
Distribution registry answers (registry/handlers/manifests.go): an OCI index or OCI manifest the
client does not accept is ``404 MANIFEST_UNKNOWN``, a Docker manifest list asked for by tag is
replaced by its linux/amd64 image, and a Docker schema 2 manifest is served to anyone.

No ``Accept`` header, or a wildcard (``*/*``, ``application/*``), accepts what is stored. Docker
schema 1 is not implemented (ECR would translate to it for a client that accepts only schema 1).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from .errors import RegistryError

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
#: Docker schema 2 <-> OCI media types of the parts of an image manifest
_TO_OCI = {
    DOCKER_MANIFEST: OCI_MANIFEST,
    "application/vnd.docker.container.image.v1+json": "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": (
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    ),
}
_TO_DOCKER = {oci: docker for docker, oci in _TO_OCI.items()}
DEFAULT_PLATFORM = ("linux", "amd64")  # Distribution's default for manifest list rewrites


@dataclass(frozen=True)
class Served:
    body: bytes
    media_type: str
    digest: str


def accepted_types(header: str | None) -> set[str] | None:
    """The media types an ``Accept`` header names; None when it accepts anything."""
    if not header or not header.strip():
        return None
    types = {part.split(";", 1)[0].strip().lower() for part in header.split(",")}
    if "*/*" in types or "application/*" in types:
        return None
    return types - {""}


def _translate(body: bytes, mapping: dict[str, str]) -> bytes | None:
    """The manifest with every media type mapped, or None when a part has no counterpart."""
    doc = json.loads(body)
    parts = [doc, doc.get("config") or {}, *(doc.get("layers") or [])]
    for part in parts:
        if part.get("mediaType") is not None:
            if part["mediaType"] not in mapping:
                return None
            part["mediaType"] = mapping[part["mediaType"]]
    return json.dumps(doc, indent=3).encode()  # Docker writes schema 2 manifests with 3-space indents


def _served(body: bytes, media_type: str) -> Served:
    return Served(body, media_type, f"sha256:{hashlib.sha256(body).hexdigest()}")


def negotiate(
    body: bytes,
    media_type: str,
    digest: str,
    accept: str | None,
    *,
    by_tag: bool,
    child: Callable[[str], tuple[bytes, str, str] | None],
) -> Served:
    """What to send for a stored manifest; ``child(digest)`` reads another stored manifest.

    Raises RegistryError 404 MANIFEST_UNKNOWN when nothing acceptable can be sent.
    """
    stored = Served(body, media_type, digest)
    types = accepted_types(accept)
    if types is None or media_type in types:
        return stored
    if media_type == DOCKER_MANIFEST:
        if by_tag and OCI_MANIFEST in types and (translated := _translate(body, _TO_OCI)):
            return _served(translated, OCI_MANIFEST)
        return stored
    if media_type == OCI_MANIFEST:
        if by_tag and DOCKER_MANIFEST in types and (translated := _translate(body, _TO_DOCKER)):
            return _served(translated, DOCKER_MANIFEST)
        raise RegistryError(
            404, "MANIFEST_UNKNOWN", "OCI manifest found, but accept header does not support OCI manifests"
        )
    if media_type == OCI_INDEX:
        raise RegistryError(
            404, "MANIFEST_UNKNOWN", "OCI index found, but accept header does not support OCI indexes"
        )
    if media_type == DOCKER_LIST and by_tag:
        for entry in json.loads(body).get("manifests") or []:
            platform = entry.get("platform") or {}
            if (platform.get("os"), platform.get("architecture")) == DEFAULT_PLATFORM:
                found = child(entry["digest"])
                if found:
                    return negotiate(*found, accept, by_tag=False, child=child)
        raise RegistryError(
            404,
            "MANIFEST_UNKNOWN",
            f"manifest list {digest} does not contain a manifest image for the platform linux/amd64",
        )
    return stored
