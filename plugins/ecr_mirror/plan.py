"""Digest comparison: for each selected tag, what the run must do."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from ecr_mirror.ecr import CachedImages
from ecr_mirror.failures import error_kind
from ecr_mirror.parallel import fair_map, settled_map
from ecr_mirror.states import Action, DriftPolicy, ErrorKind
from ecr_mirror.tags import TagRef


@dataclass
class PlanItem:
    tag: TagRef
    action: Action
    upstream_digest: str | None = None
    cached_digest: str | None = None
    error: str | None = None
    planned_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # the image's effective settings for the pull (manifest, then the run's overrides)
    platforms: list[str] | None = None
    on_drift: DriftPolicy = "repull"
    warm_layers: bool = False
    #: an up-to-date tag's platform digests ECR holds (platforms.check_held_platforms)
    platform_digests: dict[str, str] | None = None
    #: a failed comparison's kind (states.ErrorKind)
    error_kind: ErrorKind | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "tag": self.tag.to_dict(),
            "action": str(self.action),
            "upstream_digest": self.upstream_digest,
            "cached_digest": self.cached_digest,
            "error": self.error,
            "planned_at": self.planned_at.isoformat(),
            "platforms": self.platforms,
            "on_drift": self.on_drift,
            "warm_layers": self.warm_layers,
            "platform_digests": self.platform_digests,
            "error_kind": None if self.error_kind is None else str(self.error_kind),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlanItem:
        return cls(
            tag=TagRef.from_dict(data["tag"]),
            action=Action(data["action"]),
            upstream_digest=data.get("upstream_digest"),
            cached_digest=data.get("cached_digest"),
            error=data.get("error"),
            planned_at=datetime.fromisoformat(data["planned_at"]),
            platforms=data.get("platforms"),
            on_drift=cast(DriftPolicy, data.get("on_drift", "repull")),
            warm_layers=data.get("warm_layers", False),
            platform_digests=data.get("platform_digests"),
            error_kind=ErrorKind(data["error_kind"]) if data.get("error_kind") else None,
        )


def decide(tag: TagRef, upstream_digest: str | None, cached_digest: str | None) -> Action:
    if upstream_digest is None:
        return Action.UPSTREAM_MISSING
    if cached_digest is None:
        return Action.MISSING
    return Action.UP_TO_DATE if cached_digest == upstream_digest else Action.DRIFTED


def make_plan(
    tags: Sequence[TagRef],
    upstream_digest: Callable[[TagRef], str | None],
    cached_images: Callable[..., CachedImages],  # CachedImagesReader.cached_images
    concurrency: int,
    on_compared: Callable[[PlanItem], None] | None = None,
) -> list[PlanItem]:
    """Compare every tag, in the order given; one failing tag or repository never stops the rest.

    Cached digests come from one listing per ECR repository (only its tagged images when no tag of
    the repository is a digest pin: a multi-arch tag's children are untagged images, so this
    lists a third as much for a two-platform index); upstream digests from one HEAD per tag.
    ``on_compared`` is called with each tag's item as soon as it is decided (a progress display).
    """
    by_repository: dict[str, list[TagRef]] = defaultdict(list)
    for tag in tags:
        by_repository[tag.cache_repository].append(tag)

    def compare(tag: TagRef, cached: CachedImages | Exception) -> PlanItem:
        item = _compare(tag, cached)
        if on_compared is not None:
            on_compared(item)
        return item

    def _compare(tag: TagRef, cached: CachedImages | Exception) -> PlanItem:
        if isinstance(cached, Exception):
            error = f"listing ECR repository {tag.cache_repository}: {cached}"
            return PlanItem(tag, Action.FAILED, error=error, error_kind=error_kind(cached))
        try:
            upstream = upstream_digest(tag)
        except Exception as exc:  # one tag's failure is recorded, never raised
            error = f"upstream {tag.image}:{tag.reference}: {exc}"
            return PlanItem(tag, Action.FAILED, error=error, error_kind=error_kind(exc))
        cached_digest = cached.digest_for(tag.reference)
        action = decide(tag, upstream, cached_digest)
        if upstream is None:
            error = f"{tag.image}:{tag.reference} was not found upstream"
            return PlanItem(tag, action, None, cached_digest, error, error_kind=ErrorKind.PERMANENT)
        return PlanItem(tag, action, upstream, cached_digest)

    pinned = {tag.cache_repository for tag in tags if tag.reference.startswith("sha256:")}

    def listing(repository: str) -> CachedImages:
        return cached_images(repository, tagged_only=repository not in pinned)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        listings = settled_map(pool, listing, by_repository)
        return fair_map(pool, lambda t: compare(t, listings[t.cache_repository]), tags, _image_of)


def _image_of(tag: TagRef) -> int:
    return tag.image_index
