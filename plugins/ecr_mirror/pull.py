"""The pull through trigger and its verification.

A manifest GET on the ECR registry endpoint is what makes the pull through cache import a tag
(the documented trigger: a registry pull). Afterwards ECR's own listing must show the upstream
digest for the tag; within ECR's 24 h refresh window a drifted tag may still show the old digest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ecr_mirror.ecr import CachedImages
from ecr_mirror.plan import PULL_ACTIONS, Action, PlanItem, list_repositories
from ecr_mirror.registry import RegistryClient


class Status:
    """Outcome of one tag in a run (the audit's ``status`` column)."""

    OK = "ok"  # already cached with the upstream digest
    PULLED = "pulled"  # pulled through the cache and verified
    STALE = "stale"  # ECR still serves the old digest (its 24 h refresh window)
    FAILED = "failed"


#: the message recorded with a stale tag
STALE_NOTE = (
    "ECR still serves {cached} while upstream has {upstream}: ECR re-checks a cached tag upstream at most "
    "once per 24 h from its last pull, so the refresh comes with a pull after that window"
)


@dataclass
class Outcome:
    item: PlanItem
    status: str
    cached_digest_after: str | None
    error: str | None = None


def _verify(item: PlanItem, cached_after: str | None) -> Outcome:
    upstream = item.upstream_digest
    if cached_after == upstream:
        return Outcome(item, Status.PULLED, cached_after)
    if item.action is Action.DRIFTED and cached_after == item.cached_digest:
        note = STALE_NOTE.format(cached=cached_after, upstream=upstream)
        return Outcome(item, Status.STALE, cached_after, note)
    error = f"after the pull ECR has {cached_after or 'nothing'} for this tag, upstream has {upstream}"
    return Outcome(item, Status.FAILED, cached_after, error)


def pull_batch(
    items: Sequence[PlanItem],
    registry: Callable[[], RegistryClient],
    cached_images: Callable[[str], CachedImages],
    concurrency: int,
) -> list[Outcome]:
    """Pull what the plan says to pull, then verify against ECR; one outcome per item, in order."""

    def trigger(item: PlanItem) -> str | None:
        try:
            registry().get_manifest(item.tag.cache_repository, item.tag.reference)
        except Exception as exc:  # recorded per tag
            return f"pull through {item.tag.cache_repository}:{item.tag.reference} failed: {exc}"
        return None

    to_pull = [item for item in items if item.action in PULL_ACTIONS]
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        errors = dict(zip(map(id, to_pull), pool.map(trigger, to_pull), strict=True))
        repositories = sorted({item.tag.cache_repository for item in to_pull if errors[id(item)] is None})
        listings = list_repositories(repositories, cached_images, pool)

    outcomes = []
    for item in items:
        if item.action is Action.UP_TO_DATE:
            outcomes.append(Outcome(item, Status.OK, item.cached_digest))
        elif item.action not in PULL_ACTIONS:
            outcomes.append(Outcome(item, Status.FAILED, item.cached_digest, item.error))
        elif (error := errors[id(item)]) is not None:
            outcomes.append(Outcome(item, Status.FAILED, item.cached_digest, error))
        else:
            listing = listings[item.tag.cache_repository]
            if isinstance(listing, Exception):
                error = f"verifying {item.tag.cache_repository} in ECR failed: {listing}"
                outcomes.append(Outcome(item, Status.FAILED, item.cached_digest, error))
            else:
                outcomes.append(_verify(item, listing.digest_for(item.tag.reference)))
    return outcomes
