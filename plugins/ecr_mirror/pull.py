"""The pull through trigger, drift policies, platform subsets, verification and layer warming.

A manifest GET on the ECR registry endpoint is what makes the pull through cache import a tag
(the documented trigger: a registry pull). Afterwards ECR's own listing must show the upstream
digest for the tag. ECR re-checks a cached tag upstream at most once per 24 h and no API forces
it (containers-roadmap #2254), hence the per-tag ``on_drift`` policy:

- ``report``: record the drift, pull nothing;
- ``repull``: pull; within the window ECR still serves the old digest (``stale``);
- ``evict-and-repull``: delete the cached tag (``batch_delete_image``), pull again, verify.

A drifted tag that is immutable in its repository is never refreshed by ECR (containers-roadmap
#2275) and never deleted by this project: ``blocked_immutable``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from ecr_mirror.ecr import CachedImages, ImageDetail, Mutability
from ecr_mirror.parallel import fair_map, settled_map
from ecr_mirror.plan import PlanItem
from ecr_mirror.protocols import PullTarget, RegistryEndpoint
from ecr_mirror.registry import FetchedManifest
from ecr_mirror.states import Action, Intent, Status

REFRESH_WINDOW = timedelta(hours=24)

#: the message recorded with a stale tag
STALE_NOTE = (
    "ECR still serves {cached} while upstream has {upstream}: ECR re-checks a cached tag upstream at most "
    "once per 24 h, so the refresh comes with a pull {when} (or use on_drift: evict-and-repull)"
)


class WarmedBlobs(Protocol):
    """Which blobs of a repository were already warmed (the audit store)."""

    def warmed(self, repository: str) -> set[str]: ...

    def mark_warmed(self, repository: str, sizes: dict[str, int]) -> None: ...


@dataclass
class Outcome:
    item: PlanItem
    status: Status
    cached_digest_after: str | None
    error: str | None = None
    platform_digests: dict[str, str] | None = None
    warmed_bytes: int | None = None


@dataclass
class _Pulled:
    """What the trigger brought: the top manifest and the image manifests selected under it."""

    top: FetchedManifest
    images: dict[str, FetchedManifest] = field(default_factory=dict)  # digest -> image manifest
    platform_digests: dict[str, str] | None = None


@dataclass(frozen=True)
class _PullFailed:
    """Why the trigger did not bring the tag (the failed row's error)."""

    error: str


def refresh_hint(detail: ImageDetail) -> str:
    """When ECR will next look upstream for a stale tag, as far as describe_images tells.

    AWS times the re-check from the last upstream check, which it does not expose; the image's
    push time (when ECR cached it) is a lower bound of that check, the pull just made an upper one.
    """
    pushed: datetime | None = detail.get("imagePushedAt")
    now: datetime | None = detail.get("lastRecordedPullTime")
    if pushed is None or now is None:
        return "within 24 h of the last pull"
    latest = (now + REFRESH_WINDOW).strftime("%Y-%m-%d %H:%M UTC")
    if now - pushed < REFRESH_WINDOW:
        earliest = (pushed + REFRESH_WINDOW).strftime("%Y-%m-%d %H:%M UTC")
        return f"after {earliest} (24 h after ECR cached this image) and by {latest} at the latest"
    return f"within 24 h of the last pull, by {latest} at the latest"


def match_platform(wanted: str, children: Sequence[tuple[str, str]]) -> str | None:
    """The child digest for ``os/arch[/variant]``; without a variant any variant of os/arch matches."""
    exact = next((digest for platform, digest in children if platform == wanted), None)
    if exact or wanted.count("/") == 2:
        return exact
    return next((digest for platform, digest in children if platform.rsplit("/", 1)[0] == wanted), None)


def _image_of_item(item: PlanItem) -> int:
    return item.tag.image_index


def check_pulled(item: PlanItem, pulled: _Pulled, listing: CachedImages) -> Outcome | None:
    """The outcome of a pull whose tag now has the upstream digest in ECR: pulled, or failed when
    a manifest under it is missing (an index's children, or the selected platforms). None when
    ECR does not have the upstream digest for the tag."""
    after = listing.digest_for(item.tag.reference)
    if after != item.upstream_digest:
        return None
    platforms = pulled.platform_digests
    wanted = set(platforms.values()) if platforms is not None else {d for _, d in pulled.top.children()}
    absent = sorted(wanted - listing.digests)
    if absent:
        error = f"ECR has the index {after} but not its manifests {', '.join(absent)}"
        return Outcome(item, Status.FAILED, after, error, platforms)
    return Outcome(item, Status.PULLED, after, None, platforms)


class Puller:
    """Pulls, verifies and warms one batch of planned tags against one ECR target."""

    def __init__(
        self,
        target: PullTarget,
        warmed: WarmedBlobs,
        concurrency: int,
        *,
        slot: Callable[[int], AbstractContextManager[Any]] = lambda _: nullcontext(),
        dry_run: bool = False,
        force: bool = False,
    ) -> None:
        self.target = target
        self.warmed = warmed
        self.concurrency = concurrency
        self.slot = slot  # held per image around its pulls and blob requests (Mirror.slot)
        self.dry_run = dry_run
        self.force = force

    def run(self, items: Sequence[PlanItem]) -> list[Outcome]:
        """One outcome per item, in order; one tag's failure never stops the others."""
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            intents = self._decide(items, pool)
            outcomes = {key: value for key, value in intents.items() if isinstance(value, Outcome)}
            to_pull = [item for item in items if id(item) not in outcomes]
            triggered = fair_map(pool, self._trigger, to_pull, _image_of_item)
            pulled = dict(zip(map(id, to_pull), triggered, strict=True))
            repositories = {i.tag.cache_repository for i in to_pull if isinstance(pulled[id(i)], _Pulled)}
            listings = settled_map(pool, self.target.cached_images, sorted(repositories))
            warm: list[tuple[PlanItem, _Pulled]] = []
            for item in to_pull:
                result = pulled[id(item)]
                if isinstance(result, _PullFailed):
                    outcomes[id(item)] = Outcome(item, Status.FAILED, item.cached_digest, result.error)
                    continue
                outcome = self._verify(item, result, listings[item.tag.cache_repository])
                outcomes[id(item)] = outcome
                if item.warm_layers and outcome.status is Status.PULLED:
                    warm.append((item, result))
            self._warm(warm, outcomes, pool)
        return [outcomes[id(item)] for item in items]

    # -- what to do with each tag ------------------------------------------------------------

    def _decide(self, items: Sequence[PlanItem], pool: ThreadPoolExecutor) -> dict[int, Outcome | Intent]:
        """An outcome for tags that need no pull, else the intent."""
        drifted = sorted(
            {i.tag.cache_repository for i in items if i.action is Action.DRIFTED and i.on_drift != "report"}
        )
        mutability = settled_map(pool, self.target.mutability, drifted)
        decided: dict[int, Outcome | Intent] = {}
        for item in items:
            decided[id(item)] = self._intent(item, mutability.get(item.tag.cache_repository))
        return decided

    def _intent(self, item: PlanItem, mutability: Mutability | Exception | None) -> Outcome | Intent:
        keep = item.cached_digest
        if item.action is Action.UP_TO_DATE and not self.force:
            return Outcome(item, Status.OK, keep)
        if item.action in (Action.FAILED, Action.UPSTREAM_MISSING):
            return Outcome(item, Status.FAILED, keep, item.error)
        intent = Intent.PULL
        if item.action is Action.DRIFTED:
            decided = _drift_intent(item, mutability)
            if isinstance(decided, Outcome):
                return decided
            intent = decided
        if self.dry_run:
            what = (
                "delete the cached tag, then pull and verify" if intent is Intent.EVICT else "pull and verify"
            )
            return Outcome(item, Status.PLANNED, keep, f"dry run: would {what} ({item.action})")
        return intent

    # -- pulling -----------------------------------------------------------------------------

    def _trigger(self, item: PlanItem) -> _Pulled | _PullFailed:
        """Evict if the policy says so, pull the tag, then the selected platforms by digest."""
        with self.slot(item.tag.image_index):
            return self._trigger_held(item)

    def _trigger_held(self, item: PlanItem) -> _Pulled | _PullFailed:
        tag, repository = item.tag, item.tag.cache_repository
        step = "pull through"
        try:
            if item.action is Action.DRIFTED and item.on_drift == "evict-and-repull":
                step = "evicting the stale tag"
                self.target.delete_tag(repository, tag.reference)
                step = "pull through after the eviction"
            registry = self.target.registry()
            if tag.digest and tag.tag:
                # A first pull by digest of an uncached image is reported to fail
                # (containers-roadmap #2837): pull the tag the pin was written with first.
                registry.get_manifest(repository, tag.tag)
            pulled = _Pulled(registry.get_manifest(repository, tag.reference))
            if not pulled.top.is_index:
                pulled.images[pulled.top.digest] = pulled.top
                return pulled
            if item.platforms is None:
                return pulled
            step = "pulling the selected platforms"
            return _pull_platforms(registry, item, pulled, item.platforms)
        except Exception as exc:  # recorded per tag
            return _PullFailed(f"{step} {repository}:{tag.reference} failed: {exc}")

    def _verify(self, item: PlanItem, pulled: _Pulled, listing: CachedImages | Exception) -> Outcome:
        upstream, repository = item.upstream_digest, item.tag.cache_repository
        if isinstance(listing, Exception):
            return Outcome(
                item, Status.FAILED, item.cached_digest, f"verifying {repository} in ECR failed: {listing}"
            )
        if checked := check_pulled(item, pulled, listing):
            return checked
        after = listing.digest_for(item.tag.reference)
        platforms = pulled.platform_digests
        if item.action is Action.DRIFTED and after == item.cached_digest:
            try:
                when = refresh_hint(self.target.image_detail(repository, item.tag.reference))
            except Exception:  # the hint is a courtesy; the stale status stands without it
                when = "within 24 h of the last pull"
            note = STALE_NOTE.format(cached=after, upstream=upstream, when=when)
            return Outcome(item, Status.STALE, after, note, platforms)
        error = f"after the pull ECR has {after or 'nothing'} for this tag, upstream has {upstream}"
        return Outcome(item, Status.FAILED, after, error, platforms)

    # -- warming -----------------------------------------------------------------------------

    def _warm(
        self, work: list[tuple[PlanItem, _Pulled]], outcomes: dict[int, Outcome], pool: ThreadPoolExecutor
    ) -> None:
        """Request each blob of the pulled images once through the registry endpoint.

        ECR fetches layers from upstream lazily on the first blob request (containers-roadmap
        #2304), so a node without internet access needs them warmed. Blobs are streamed and
        discarded; those warmed in earlier runs (the audit knows) or earlier in this batch are skipped.
        """
        if not work:
            return
        jobs = self._blobs_to_warm(work, outcomes)
        registry = self.target.registry()

        def stream(job: tuple[PlanItem, str]) -> int | Exception:
            item, digest = job
            try:
                with self.slot(item.tag.image_index):
                    return registry.stream_blob(item.tag.cache_repository, digest)
            except Exception as exc:
                return exc

        done: dict[str, dict[str, int]] = {}
        streamed = fair_map(pool, stream, jobs, lambda job: job[0].tag.image_index)
        for (item, digest), result in zip(jobs, streamed, strict=True):
            outcome = outcomes[id(item)]
            if isinstance(result, Exception):
                outcome.status, outcome.error = Status.FAILED, f"warming blob {digest} failed: {result}"
                continue
            outcome.warmed_bytes = (outcome.warmed_bytes or 0) + result
            done.setdefault(item.tag.cache_repository, {})[digest] = result
        for repository, sizes in done.items():
            self.warmed.mark_warmed(repository, sizes)

    def _blobs_to_warm(
        self, work: list[tuple[PlanItem, _Pulled]], outcomes: dict[int, Outcome]
    ) -> list[tuple[PlanItem, str]]:
        """(item, blob digest) to stream: each blob once per repository, none warmed before."""
        claimed: dict[str, set[str]] = {}  # repository -> blobs warmed before or claimed by an item
        jobs: list[tuple[PlanItem, str]] = []
        for item, pulled in work:
            repository = item.tag.cache_repository
            try:
                images = self._images_to_warm(item, pulled)
                seen = claimed.setdefault(repository, self.warmed.warmed(repository))
            except Exception as exc:
                outcome = outcomes[id(item)]
                outcome.status, outcome.error = Status.FAILED, f"warming layers failed: {exc}"
                continue
            for image in images:
                doc = image.json()
                for blob in [doc.get("config") or {}, *(doc.get("layers") or [])]:
                    if (digest := blob.get("digest")) and digest not in seen:
                        seen.add(digest)
                        jobs.append((item, digest))
            outcomes[id(item)].warmed_bytes = 0
        return jobs

    def _images_to_warm(self, item: PlanItem, pulled: _Pulled) -> list[FetchedManifest]:
        """The selected image manifests; for a whole index every child, fetched by digest from ECR."""
        if pulled.images:
            return list(pulled.images.values())
        registry = self.target.registry()
        return [registry.get_manifest(item.tag.cache_repository, d) for _, d in pulled.top.children()]


def _drift_intent(item: PlanItem, mutability: Mutability | Exception | None) -> Outcome | Intent:
    """A drifted tag: reported, failed (mutability unreadable), blocked (immutable), or its intent."""
    keep = item.cached_digest
    if item.on_drift == "report":
        note = f"upstream moved to {item.upstream_digest}, ECR serves {keep}; on_drift: report pulls nothing"
        return Outcome(item, Status.DRIFT_REPORTED, keep, note)
    if isinstance(mutability, Exception):
        return Outcome(item, Status.FAILED, keep, f"reading {item.tag.cache_repository}: {mutability}")
    if mutability is not None and mutability.immutable(item.tag.reference):
        note = (
            f"tag is immutable in {item.tag.cache_repository} ({mutability.setting}): ECR never "
            f"refreshes it and this project never deletes it; upstream has {item.upstream_digest}"
        )
        return Outcome(item, Status.BLOCKED_IMMUTABLE, keep, note)
    return Intent.EVICT if item.on_drift == "evict-and-repull" else Intent.PULL


def _pull_platforms(
    registry: RegistryEndpoint, item: PlanItem, pulled: _Pulled, platforms: list[str]
) -> _Pulled | _PullFailed:
    """Pull each selected platform's manifest by digest; failed when the index lacks one."""
    children = pulled.top.children()
    selected = {platform: match_platform(platform, children) for platform in platforms}
    absent = [platform for platform, digest in selected.items() if digest is None]
    if absent:
        available = ", ".join(sorted({p for p, _ in children if p})) or "none"
        return _PullFailed(
            f"platform {', '.join(absent)} is not in the upstream index of "
            f"{item.tag.image}:{item.tag.reference} (available: {available})"
        )
    pulled.platform_digests = {p: d for p, d in selected.items() if d}
    for digest in pulled.platform_digests.values():
        pulled.images[digest] = registry.get_manifest(item.tag.cache_repository, digest)
    return pulled
