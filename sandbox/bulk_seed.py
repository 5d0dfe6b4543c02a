"""Many tags in a Distribution registry, fast: the blobs of a repository are pushed once, then each
tag is a tiny manifest of its own (an annotation names the tag), so thousands of distinct digests
cost one manifest PUT each (three for a two-platform index). For the scale tests and bench/scale.py;
``upstream.seed_image`` builds one realistic image at a time."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import httpx

from sandbox.upstream import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    _canonical,
    _digest,
    _layer,
    _platform,
    _Pusher,
)

ANNOTATION = "org.opencontainers.image.ref.name"


def _shared_blobs(push: _Pusher, repository: str, platforms: Sequence[str]) -> dict[str, dict[str, object]]:
    """One config and one layer per platform, pushed once: platform -> the manifest's blob fields."""
    fields: dict[str, dict[str, object]] = {}
    for spec in platforms:
        raw, compressed = _layer(repository, "shared", spec, "")
        config = _canonical({**_platform(spec), "rootfs": {"type": "layers", "diff_ids": [_digest(raw)]}})
        fields[spec] = {
            "config": {"mediaType": OCI_CONFIG, "size": len(config), "digest": push.blob(config)},
            "layers": [{"mediaType": OCI_LAYER, "size": len(compressed), "digest": push.blob(compressed)}],
        }
    return fields


def seed_tags(
    registry_url: str,
    repository: str,
    tags: Sequence[str],
    *,
    platforms: Sequence[str] = (),
    generation: str = "",
    workers: int = 8,
) -> dict[str, str]:
    """Push ``tags`` to ``repository``: each an image manifest (``platforms`` empty) or an OCI
    index over one image per platform; tag -> top digest. Another ``generation`` gives every tag a
    new digest (an upstream re-push)."""
    specs = list(platforms) or ["linux/amd64"]
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    with httpx.Client(timeout=30.0, limits=limits) as client:
        push = _Pusher(client, registry_url, repository)
        blobs = _shared_blobs(push, repository, specs)

        def image(tag: str, spec: str) -> bytes:
            annotations = {ANNOTATION: f"{tag}{generation}", "platform": spec}
            doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, **blobs[spec], "annotations": annotations}
            return _canonical(doc)

        def one(tag: str) -> str:
            if not platforms:
                body = image(tag, specs[0])
                push.manifest(tag, body, OCI_MANIFEST)
                return _digest(body)
            entries = []
            for spec in specs:
                body = image(tag, spec)
                push.manifest(_digest(body), body, OCI_MANIFEST)
                entries.append(
                    {
                        "mediaType": OCI_MANIFEST,
                        "size": len(body),
                        "digest": _digest(body),
                        "platform": _platform(spec),
                    }
                )
            index = _canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
            push.manifest(tag, index, OCI_INDEX)
            return _digest(index)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            return dict(zip(tags, pool.map(one, tags), strict=True))
