"""OCI 1.1 referrers (distribution-spec v1.1, "Listing Referrers"): what a referrers list holds, the
tag schema fallback's tag, and reading a list out of an image index."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from ecr_mirror.registry.errors import NotFoundError, RegistryError
from ecr_mirror.registry.media import OCI_INDEX

if TYPE_CHECKING:
    from ecr_mirror.registry.client import RegistryClient


@dataclass(frozen=True)
class Referrer:
    """One descriptor of a referrers list."""

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


def referrers_tag(digest: str) -> str:
    """The referrers tag schema's tag for ``digest``: algorithm (32 chars at most), ``-``, encoded
    part (64 at most), characters a tag cannot hold replaced by ``-``."""
    algorithm, _, encoded = digest.partition(":")
    return re.sub(r"[^A-Za-z0-9_.-]", "-", f"{algorithm[:32]}-{encoded[:64]}")


def filters_applied(response: httpx.Response) -> set[str]:
    """The filters the registry says it applied (``OCI-Filters-Applied``), lower case."""
    applied = response.headers.get("OCI-Filters-Applied", "")
    return {name.strip().lower() for name in applied.split(",") if name.strip()}


def referrers_from_index(body: bytes, registry: str, repository: str, digest: str) -> list[Referrer]:
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


def list_referrers(
    client: RegistryClient, repository: str, digest: str, artifact_type: str | None = None
) -> Referrers:
    """The OCI 1.1 referrers of manifest ``digest``, optionally only those of ``artifact_type``.

    Asks the referrers API (``GET /v2/<name>/referrers/<digest>``, all ``Link`` pages); a
    registry without it answers 404, and then the referrers tag schema's index is read instead
    (distribution-spec v1.1: clients MUST fall back). A tag that does not hold an image index, or
    that resolves to the subject itself (GitLab's registry reads ``sha256-<hex>`` as the digest,
    oras-project/oras#2148), means no referrers. The ``artifactType`` filter is applied here
    whenever the registry did not apply it.
    """
    params = {"artifactType": artifact_type} if artifact_type else None
    found: list[Referrer] = []
    try:
        for page in client.pages(repository, f"referrers/{digest}", digest, {"Accept": OCI_INDEX}, params):
            listed = referrers_from_index(page.content, client.registry, repository, digest)
            if artifact_type and "artifacttype" not in filters_applied(page):
                listed = [r for r in listed if r.artifact_type == artifact_type]
            found += listed
    except NotFoundError:
        try:
            index = client.get_manifest(repository, referrers_tag(digest))
        except NotFoundError:
            return Referrers(digest, (), "tag-schema")
        if index.media_type != OCI_INDEX or index.digest == digest:
            return Referrers(digest, (), "tag-schema")
        listed = referrers_from_index(index.body, client.registry, repository, digest)
        kept = [r for r in listed if not artifact_type or r.artifact_type == artifact_type]
        return Referrers(digest, tuple(kept), "tag-schema")
    return Referrers(digest, tuple(found), "api")
