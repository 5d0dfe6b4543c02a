"""The OCI 1.1 referrers API of the registry endpoint, and what a pull through cache does with it.

Documented by AWS (sources in docs/supply-chain.md, "What Amazon ECR does"):

- ECR implements OCI Distribution 1.1: ``GET /v2/<name>/referrers/<digest>`` answers an image
  index of the manifests whose ``subject`` is the digest, empty when there are none, with the
  ``artifactType`` filter (what's new, June 2024; AWS open source blog "Diving into OCI Image and
  Distribution 1.1 Support in Amazon ECR").
- Since April 2026 a pull through cache "will now reach upstream during referrers API requests
  and automatically cache related referrer artifacts in your private repository" (what's new,
  17 April 2026); before, a PTC repository listed only what it held.

AWS is silent on the rest, so each open point is a behaviour switch (behaviour.py):
``ptc_referrers_sync`` (does a referrers request on a PTC repository fetch upstream referrers),
``ptc_referrers_upstream`` (an upstream without the referrers API: read its tag schema index, or
find nothing) and ``ptc_pulled_referrers_listed`` (is a manifest with ``subject`` that a plain
pull imported listed by the referrers API).
"""

from __future__ import annotations

import json
from typing import Any

from .errors import RegistryError, UpstreamError
from .pullthrough import PullThroughCache
from .store import Image, Store

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_SYNCED = "referrers_synced:{name}@{digest}"


def _subject(image: Image) -> str | None:
    try:
        doc = json.loads(image.manifest)
    except ValueError:
        return None
    subject = doc.get("subject") if isinstance(doc, dict) else None
    return subject.get("digest") if isinstance(subject, dict) else None


class Referrers:
    def __init__(self, store: Store, cache: PullThroughCache) -> None:
        self.store = store
        self.cache = cache

    def answer(self, name: str, digest: str, artifact_type: str | None) -> tuple[bytes, dict[str, str]]:
        """The referrers index of ``name@digest`` and its headers (``OCI-Filters-Applied``)."""
        if self.store.get_repository(name) is None:
            raise RegistryError(404, "NAME_UNKNOWN", f"The repository with name '{name}' does not exist")
        synced = set(json.loads(self.store.get_meta(_SYNCED.format(name=name, digest=digest)) or "[]"))
        if self.cache.behaviour["ptc_referrers_sync"] == "referrers-api":
            synced |= self._sync(name, digest)
            self.store.set_meta(_SYNCED.format(name=name, digest=digest), json.dumps(sorted(synced)))
        listed_pulled = self.cache.behaviour["ptc_pulled_referrers_listed"] == "listed"
        descriptors = []
        for image in self.store.images(name):
            if _subject(image) != digest or not (listed_pulled or image.digest in synced):
                continue
            if artifact_type and image.artifact_media_type != artifact_type:
                continue
            descriptors.append(_descriptor(image))
        headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type else {}
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
        return json.dumps(index).encode(), headers

    def _sync(self, name: str, digest: str) -> set[str]:
        """Fetch the upstream's referrers of ``digest`` into the repository; their digests. An
        upstream failure leaves what is held (as a refresh does)."""
        matched = self.cache.match(name)
        if matched is None:
            return set()
        rule, upstream_repo = matched
        try:
            client = self.cache.client(rule)
            listed = client.referrers(upstream_repo, digest)
            if listed is None:
                if self.cache.behaviour["ptc_referrers_upstream"] != "tag-schema":
                    return set()
                listed = self._tag_schema(client, upstream_repo, digest)
            for entry in listed:
                self.cache.store_manifest(name, client, upstream_repo, entry["digest"])
        except UpstreamError:
            return set()
        return {entry["digest"] for entry in listed}

    @staticmethod
    def _tag_schema(client: Any, upstream_repo: str, digest: str) -> list[dict[str, Any]]:
        """The upstream's referrers tag schema index (``sha256-<hex>``), empty when absent."""
        try:
            index = client.get_manifest(upstream_repo, digest.replace(":", "-", 1))
        except UpstreamError:
            return []
        if index.media_type != OCI_INDEX or index.digest == digest:
            return []
        manifests = json.loads(index.body).get("manifests") or []
        return [m for m in manifests if isinstance(m, dict) and isinstance(m.get("digest"), str)]


def _descriptor(image: Image) -> dict[str, Any]:
    descriptor: dict[str, Any] = {
        "mediaType": image.media_type,
        "digest": image.digest,
        "size": len(image.manifest),
    }
    if image.artifact_media_type:
        descriptor["artifactType"] = image.artifact_media_type
    annotations = json.loads(image.manifest).get("annotations")
    if annotations:
        descriptor["annotations"] = annotations
    return descriptor
