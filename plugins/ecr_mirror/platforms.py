"""Platform subsets (``platforms:``) of tags ECR already holds: a platform the cached index lacks
fails the tag on every run, and ``ecr-mirror plan`` shows it, until the index or the manifest changes.

A pull reads the platforms from the index it brings (pull.py). A tag that is up to date is not
pulled again, so its platforms come from the audit: the last row for the same index recorded the
platforms it selected, or, when a platform was missing, every platform of the index. Only when the
audit cannot answer (a new selection) is the cached index read from ECR, once: neither case counts
a pull at the upstream (Docker Hub counts manifest GETs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from ecr_mirror.failures import error_kind
from ecr_mirror.plan import PlanItem
from ecr_mirror.protocols import RegistryEndpoint
from ecr_mirror.states import Action, ErrorKind, Status


class HeldPlatforms(Protocol):
    """What earlier runs recorded about the platforms of a cached index (the audit store)."""

    def held_platforms(
        self, repository: str, tag: str, digest: str
    ) -> tuple[Status, dict[str, str]] | None: ...


def match_platform(wanted: str, children: Sequence[tuple[str, str]]) -> str | None:
    """The child digest for ``os/arch[/variant]``; without a variant any variant of os/arch matches."""
    exact = next((digest for platform, digest in children if platform == wanted), None)
    if exact or wanted.count("/") == 2:
        return exact
    return next((digest for platform, digest in children if platform.rsplit("/", 1)[0] == wanted), None)


def missing_platforms(image: str, reference: str, absent: Sequence[str], available: Sequence[str]) -> str:
    """The error of a tag whose index lacks selected platforms, naming the ones it has."""
    offered = ", ".join(sorted({p for p in available if p})) or "none"
    missing = ", ".join(absent)
    return f"platform {missing} is not in the upstream index of {image}:{reference} (available: {offered})"


def select_platforms(item: PlanItem, children: Sequence[tuple[str, str]]) -> dict[str, str] | str:
    """The digest of each selected platform, or the error naming the platforms the index lacks
    (``children``: (platform, digest) of the index's entries)."""
    assert item.platforms is not None
    selected = {platform: match_platform(platform, children) for platform in item.platforms}
    absent = [platform for platform, digest in selected.items() if digest is None]
    if absent:
        return missing_platforms(item.tag.image, item.tag.reference, absent, [p for p, _ in children])
    return {platform: digest for platform, digest in selected.items() if digest}


def check_held_platforms(
    plan: Sequence[PlanItem],
    memory: HeldPlatforms,
    registry: Callable[[], RegistryEndpoint],
    concurrency: int,
) -> None:
    """Give each up-to-date tag with ``platforms`` the digests ECR holds for them, or turn it into
    a failed item naming the platforms its cached index lacks (the cached digest is kept). A
    drifted tag gets the digests its cached index holds when it has them (its row shows what ECR
    still serves, e.g. while stale), and is never failed for them: the pull may bring them."""
    checked = (Action.UP_TO_DATE, Action.DRIFTED)
    items = [i for i in plan if i.action in checked and i.platforms is not None and i.cached_digest]
    if not items:
        return
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(lambda item: _check(item, memory, registry), items))


def _check(item: PlanItem, memory: HeldPlatforms, registry: Callable[[], RegistryEndpoint]) -> None:
    repository, digest = item.tag.cache_repository, item.cached_digest
    assert digest is not None
    try:
        known = memory.held_platforms(repository, item.tag.reference, digest)
        if known is not None:
            status, platforms = known
            if not platforms:  # recorded as no index: there are no platforms to select
                item.platform_digests = {}
                return
            result = select_platforms(item, list(platforms.items()))
            # a failed row recorded every platform of the index, a good row only its selection
            if isinstance(result, dict) or status is Status.FAILED:
                _apply(item, result, platforms)
                return
        # The audit cannot tell: read the cached index from ECR (ECR's copy, never the upstream's).
        index = registry().get_manifest(repository, digest)
        children = index.children()
        _apply(item, select_platforms(item, children) if index.is_index else {}, every_platform(children))
    except Exception as exc:  # recorded for this tag
        if item.action is Action.UP_TO_DATE:  # a drifted tag is pulled whatever its old index holds
            item.action, item.error = Action.FAILED, f"reading the platforms of {repository}@{digest}: {exc}"
            item.error_kind = error_kind(exc)


def every_platform(children: Sequence[tuple[str, str]]) -> dict[str, str]:
    """platform -> digest of an index's entries that name a platform (not attestations)."""
    return {platform: digest for platform, digest in children if platform}


def _apply(item: PlanItem, result: dict[str, str] | str, platforms: dict[str, str]) -> None:
    """A selection becomes the item's platform digests; an error fails an up-to-date item, which
    records every platform of the index (what ECR holds) for the next runs."""
    if item.action is Action.DRIFTED:
        item.platform_digests = result if isinstance(result, dict) else None
    elif isinstance(result, str):
        item.action, item.error, item.platform_digests = Action.FAILED, result, platforms
        item.error_kind = ErrorKind.PERMANENT  # the cached index lacks a selected platform
    else:
        item.platform_digests = result
