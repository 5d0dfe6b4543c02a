"""What registries exchange: manifest media types, manifests as fetched, and digests (OCI image
and distribution specs)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))
INDEX_MEDIA_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
DIGEST_ALGORITHMS = frozenset({"sha256", "sha512"})


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
    #: the Date of the registry's answer (its clock), when it sent one
    served_at: datetime | None = field(default=None, compare=False)

    def json(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.body)
        return document

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


def compute_digest(body: bytes, algorithm: str = "sha256") -> str:
    """``<algorithm>:<hex>`` of ``body``; ``algorithm`` is one of the OCI-registered sha256/sha512."""
    if algorithm not in DIGEST_ALGORITHMS:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    return f"{algorithm}:{hashlib.new(algorithm, body).hexdigest()}"


def is_digest(reference: str) -> bool:
    """Whether a manifest reference is a digest (``sha256:...``) rather than a tag."""
    return ":" in reference
