"""The pull through trigger, drift policies, platform subsets, verification and layer warming.

A manifest GET on the ECR registry endpoint is what makes the pull through cache import a tag
(the documented trigger: a registry pull). Afterwards ECR's own listing must show the upstream
digest for the tag. ECR re-checks a cached tag upstream only when it is pulled once 24 h have
passed, by one reading since the image's last pull, and no API forces it (docs/ecr-facts.md,
"Refresh"; containers-roadmap #2254), hence the per-tag ``on_drift`` policy:

- ``report``: record the drift, pull nothing;
- ``repull``: pull once 24 h have passed since the last pull known, so the pull brings the refresh
  (refresh.py); before that, record ``stale`` with the time the refresh can come, without pulling
  (a pull would restart the wait);
- ``evict-and-repull``: confirm the upstream digest from the sha256 of the manifest's bytes, delete
  the cached tag (``batch_delete_image``), pull again, verify. A tag whose cached digest is what
  upstream serves is never deleted, whatever a HEAD said.

A drifted tag that is immutable in its repository is never refreshed by ECR (containers-roadmap
#2275) and never deleted by this project: ``blocked_immutable``. A digest-only pin is pulled by
digest, or through an upstream tag that carries it when ECR answers not found (pins.py); platform
subsets are selected from the pulled index (platforms.py); layers are warmed by warm.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from typing import Any, Protocol

from ecr_mirror.ecr import CachedImages, Mutability
from ecr_mirror.failures import error_kind
from ecr_mirror.parallel import fair_map, settled_map
from ecr_mirror.pins import find_carrier
from ecr_mirror.plan import PlanItem
from ecr_mirror.platforms import every_platform, select_platforms
from ecr_mirror.protocols import PullTarget, RegistryEndpoint, UpstreamRegistries
from ecr_mirror.pull_outcome import Outcome, Pulled, PullFailed, check_pulled, failed
from ecr_mirror.refresh import RefreshTimer, refresh_timer, stale_after_pull_note
from ecr_mirror.registry import FetchedManifest, NotFoundError, compute_digest
from ecr_mirror.states import Action, ErrorKind, Intent, Status
from ecr_mirror.warm import Warmed, warm_blob


class PullMemory(Protocol):
    """What earlier runs left for this one (the audit store): warmed blobs, this project's own
    pulls through ECR, and the upstream tag each digest pin was pulled through."""

    def warmed(self, repository: str) -> set[str]: ...

    def mark_warmed(self, repository: str, sizes: dict[str, int]) -> None: ...

    def last_pull(self, repository: str, digest: str) -> datetime | None: ...

    def pin_carrier(self, repository: str, digest: str) -> str | None: ...


def _image_of_item(item: PlanItem) -> int:
    return item.tag.image_index


def _ref(repository: str, reference: str) -> str:
    return f"{repository}{'@' if reference.startswith('sha256:') else ':'}{reference}"


class Puller:
    """Pulls, verifies and warms one batch of planned tags against one ECR target.

    ``upstreams`` reads upstream manifests where ECR's word is not enough: the tag that carries a
    digest pin ECR will not pull by digest, and the digest an eviction is based on; without it,
    such a pin fails and no tag is evicted.
    """

    def __init__(
        self,
        target: PullTarget,
        memory: PullMemory,
        concurrency: int,
        *,
        slot: Callable[[int], AbstractContextManager[Any]] = lambda _: nullcontext(),
        dry_run: bool = False,
        force: bool = False,
        upstreams: UpstreamRegistries | None = None,
    ) -> None:
        self.target = target
        self.memory = memory
        self.concurrency = concurrency
        self.slot = slot  # held per image around its pulls and blob requests (Mirror.slot)
        self.dry_run = dry_run
        self.force = force
        self.upstreams = upstreams
        self._timers: dict[int, RefreshTimer] = {}  # id(item) -> the refresh timer of a drifted tag

    def run(self, items: Sequence[PlanItem]) -> list[Outcome]:
        """One outcome per item, in order; one tag's failure never stops the others."""
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            intents = self._decide(items, pool)
            outcomes = {key: value for key, value in intents.items() if isinstance(value, Outcome)}
            to_pull = [item for item in items if id(item) not in outcomes]
            triggered = fair_map(pool, self._trigger, to_pull, _image_of_item)
            pulled = dict(zip(map(id, to_pull), triggered, strict=True))
            repositories = {i.tag.cache_repository for i in to_pull if isinstance(pulled[id(i)], Pulled)}
            listings = settled_map(pool, self.target.cached_images, sorted(repositories))
            warm: list[tuple[PlanItem, Pulled]] = []
            for item in to_pull:
                result = pulled[id(item)]
                if isinstance(result, PullFailed):
                    outcomes[id(item)] = failed(item, result)
                    continue
                outcome = self._verify(item, result, listings[item.tag.cache_repository])
                outcomes[id(item)] = outcome
                if item.warm_layers and outcome.status is Status.PULLED:
                    warm.append((item, result))
            self._warm(warm, outcomes, pool)
        return [outcomes[id(item)] for item in items]

    # -- what to do with each tag ------------------------------------------------------------

    def _decide(self, items: Sequence[PlanItem], pool: ThreadPoolExecutor) -> dict[int, Outcome | Intent]:
        """An outcome for tags that need no pull (or must wait for it), else the intent."""
        drifted = sorted(
            {i.tag.cache_repository for i in items if i.action is Action.DRIFTED and i.on_drift != "report"}
        )
        mutability = settled_map(pool, self.target.mutability, drifted)
        decided: dict[int, Outcome | Intent] = {
            id(item): self._intent(item, mutability.get(item.tag.cache_repository)) for item in items
        }
        pulls = [i for i in items if i.action is Action.DRIFTED and isinstance(decided[id(i)], Intent)]
        checked = fair_map(pool, lambda i: self._before_drift_pull(i, decided[id(i)]), pulls, _image_of_item)
        for item, (result, timer) in zip(pulls, checked, strict=True):
            decided[id(item)] = result
            if timer is not None:
                self._timers[id(item)] = timer
        if self.dry_run:
            for item in items:
                if isinstance(intent := decided[id(item)], Intent):
                    decided[id(item)] = _planned(item, intent)
        return decided

    def _intent(self, item: PlanItem, mutability: Mutability | Exception | None) -> Outcome | Intent:
        keep = item.cached_digest
        if item.action is Action.UP_TO_DATE and not self.force:
            return Outcome(item, Status.OK, keep, platform_digests=item.platform_digests)
        if item.action in (Action.FAILED, Action.UPSTREAM_MISSING):
            kind = item.error_kind or ErrorKind.PERMANENT
            return Outcome(item, Status.FAILED, keep, item.error, item.platform_digests, error_kind=kind)
        if item.action is Action.DRIFTED:
            return _drift_intent(item, mutability)
        return Intent.PULL

    def _before_drift_pull(
        self, item: PlanItem, intent: Outcome | Intent
    ) -> tuple[Outcome | Intent, RefreshTimer | None]:
        """A drifted tag about to be pulled: ``repull`` waits for ECR's refresh window (unless the
        run forces the pull), ``evict-and-repull`` confirms the upstream digest first."""
        if intent is Intent.EVICT:
            return (intent if self.dry_run else self._confirm_upstream(item)), None
        if self.force:
            return intent, None
        repository, reference, keep = item.tag.cache_repository, item.tag.reference, item.cached_digest
        assert keep is not None  # drifted: ECR has the tag
        try:
            times = self.target.image_times(repository, reference)
            timer = refresh_timer(times, self.memory.last_pull(repository, keep))
        except Exception as exc:  # recorded for this tag
            error = f"reading when ECR refreshes {_ref(repository, reference)} failed: {exc}"
            return Outcome(item, Status.FAILED, keep, error, error_kind=error_kind(exc)), None
        if timer.due:
            return intent, timer
        note = timer.waiting_note(keep, item.upstream_digest)
        return Outcome(item, Status.STALE, keep, note, item.platform_digests), timer

    def _confirm_upstream(self, item: PlanItem) -> Outcome | Intent:
        """The upstream digest an eviction acts on: the sha256 of the manifest upstream serves, not
        a HEAD's header, so that a wrong header never deletes a good cached tag."""
        tag, keep = item.tag, item.cached_digest
        try:
            if self.upstreams is None:
                raise RuntimeError("no upstream client was given to this run")
            with self.slot(tag.image_index):
                body = self.upstreams.client(tag.registry).get_manifest(tag.repository, tag.reference).body
        except Exception as exc:  # recorded for this tag; nothing is deleted
            what = f"{tag.image}:{tag.reference}"
            error = f"confirming the upstream digest of {what} failed, nothing deleted: {exc}"
            return Outcome(item, Status.FAILED, keep, error, error_kind=error_kind(exc))
        confirmed = compute_digest(body)
        if confirmed == keep:
            note = (
                f"upstream's HEAD answered {item.upstream_digest}, but the manifest it serves is "
                f"{confirmed}, which ECR holds: nothing deleted, nothing pulled"
            )
            return Outcome(item, Status.OK, keep, note, item.platform_digests)
        item.upstream_digest = confirmed
        return Intent.EVICT

    # -- pulling -----------------------------------------------------------------------------

    def _trigger(self, item: PlanItem) -> Pulled | PullFailed:
        """Evict if the policy says so, pull the tag, then the selected platforms by digest."""
        with self.slot(item.tag.image_index):
            return self._trigger_held(item)

    def _trigger_held(self, item: PlanItem) -> Pulled | PullFailed:
        tag, repository = item.tag, item.tag.cache_repository
        step = "pull through"
        try:
            if item.action is Action.DRIFTED and item.on_drift == "evict-and-repull":
                step = "evicting the stale tag"
                self.target.delete_tag(repository, tag.reference)
                step = "pull through after the eviction"
            registry = self.target.registry()
            if tag.tag is None:
                step = "pulling the digest pin"
                pin = self._pull_pin(registry, item)
                if isinstance(pin, PullFailed):
                    return pin
                pulled = pin
            else:
                pulled = Pulled(registry.get_manifest(repository, tag.reference))
            if not pulled.top.is_index:
                pulled.images[pulled.top.digest] = pulled.top
                if item.platforms is not None:
                    pulled.platform_digests = {}  # not an index: no platform to select
                return pulled
            if item.platforms is None:
                return pulled
            step = "pulling the selected platforms"
            return _pull_platforms(registry, item, pulled)
        except Exception as exc:  # recorded per tag
            error = f"{step} {_ref(repository, tag.reference)} failed: {exc}"
            return PullFailed(error, kind=error_kind(exc))

    def _pull_pin(self, registry: RegistryEndpoint, item: PlanItem) -> Pulled | PullFailed:
        """A digest-only pin: pulled by digest, or, when ECR answers not found (a first pull by
        digest, containers-roadmap #2837), through an upstream tag that carries the digest."""
        tag, repository = item.tag, item.tag.cache_repository
        digest = tag.reference
        try:
            return Pulled(registry.get_manifest(repository, digest))
        except NotFoundError:
            if self.upstreams is None:
                raise
        search = find_carrier(
            self.upstreams.client(tag.registry),
            tag.repository,
            digest,
            self.memory.pin_carrier(repository, digest),
        )
        if search.carrier is None:
            inside = f", {search.index_reads} indexes read" if search.index_reads else ""
            return PullFailed(
                f"{tag.image}@{digest} cannot be pulled: ECR answers not found to a first pull by digest "
                f"(containers-roadmap #2837) and none of the {search.heads} upstream tags checked carries "
                f"this digest ({search.tags} tags listed, newest versions first{inside}): pin the image with "
                f"a tag that carries it ({tag.image}:<tag>@{digest}) or check the digest"
            )
        registry.get_manifest(repository, search.carrier.tag)
        return Pulled(registry.get_manifest(repository, digest), via_tag=search.carrier.tag)

    def _verify(self, item: PlanItem, pulled: Pulled, listing: CachedImages | Exception) -> Outcome:
        repository = item.tag.cache_repository
        if isinstance(listing, Exception):
            error = f"verifying {repository} in ECR failed: {listing}"
            kind = error_kind(listing)
            return Outcome(
                item, Status.FAILED, item.cached_digest, error, pulled_at=pulled.pulled_at, error_kind=kind
            )
        outcome = check_pulled(item, pulled, listing)
        timer = self._timers.get(id(item))
        if outcome is None:
            outcome = self._not_refreshed(item, pulled, listing, timer)
        elif item.action is Action.DRIFTED and timer is not None and outcome.status is Status.PULLED:
            outcome.add_note(timer.refreshed_note())
        outcome.pulled_at, outcome.via_tag = pulled.pulled_at, pulled.via_tag
        if pulled.via_tag:
            outcome.add_note(f"pulled through the upstream tag {pulled.via_tag}, which carries this digest")
        return outcome

    def _not_refreshed(
        self, item: PlanItem, pulled: Pulled, listing: CachedImages, timer: RefreshTimer | None
    ) -> Outcome:
        """After the pull ECR does not have the upstream digest: stale (still the old image) or failed."""
        after, upstream = listing.digest_for(item.tag.reference), item.upstream_digest
        platforms = pulled.platform_digests
        if item.action is Action.DRIFTED and after == item.cached_digest:
            if timer is not None:
                note = timer.still_stale_note(after, upstream, pulled.pulled_at)
            else:
                note = stale_after_pull_note(after, upstream, pulled.pulled_at)
            return Outcome(item, Status.STALE, after, note, platforms)
        error = f"after the pull ECR has {after or 'nothing'} for this tag, upstream has {upstream}"
        # e.g. upstream moved between the comparison and the pull: the next try compares again
        return Outcome(item, Status.FAILED, after, error, platforms, error_kind=ErrorKind.TRANSIENT)

    # -- warming -----------------------------------------------------------------------------

    def _warm(
        self, work: list[tuple[PlanItem, Pulled]], outcomes: dict[int, Outcome], pool: ThreadPoolExecutor
    ) -> None:
        """Ask ECR for each blob of the pulled images once, and record which ones ECR holds.

        A node without internet access needs every layer in ECR (warm.py). Blobs are read and
        discarded; those warmed in earlier runs (the audit knows) or earlier in this batch are
        skipped. Only blobs ECR holds afterwards are remembered as warmed, and count in
        ``warmed_bytes``; a blob ECR still sends elsewhere fails the tag, naming it.
        """
        if not work:
            return
        jobs, skipped = self._blobs_to_warm(work, outcomes)
        registry = self.target.registry()

        def ask(job: tuple[PlanItem, str]) -> Warmed | Exception:
            item, digest = job
            try:
                with self.slot(item.tag.image_index):
                    return warm_blob(registry, item.tag.cache_repository, digest)
            except Exception as exc:
                return exc

        held: dict[str, dict[str, int]] = {}
        elsewhere: dict[int, list[str]] = {}
        warmed: Counter[int] = Counter()
        for (item, digest), result in zip(
            jobs, fair_map(pool, ask, jobs, lambda job: job[0].tag.image_index), strict=True
        ):
            outcome = outcomes[id(item)]
            if isinstance(result, Exception):
                outcome.fail(f"warming blob {digest} failed: {result}", error_kind(result))
            elif not result.held:
                elsewhere.setdefault(id(item), []).append(digest)
            else:
                outcome.warmed_bytes = (outcome.warmed_bytes or 0) + result.size
                held.setdefault(item.tag.cache_repository, {})[digest] = result.size
                warmed[id(item)] += 1
        for item, _ in work:
            _warm_note(outcomes[id(item)], warmed[id(item)], skipped[id(item)], elsewhere.get(id(item), []))
        for repository, sizes in held.items():
            self.memory.mark_warmed(repository, sizes)

    def _blobs_to_warm(
        self, work: list[tuple[PlanItem, Pulled]], outcomes: dict[int, Outcome]
    ) -> tuple[list[tuple[PlanItem, str]], Counter[int]]:
        """(item, blob digest) to ask for, each blob once per repository and none warmed before;
        and per item how many of its blobs were warmed before or by another tag of the batch."""
        claimed: dict[str, set[str]] = {}  # repository -> blobs warmed before or claimed by an item
        jobs: list[tuple[PlanItem, str]] = []
        skipped: Counter[int] = Counter()
        for item, pulled in work:
            repository = item.tag.cache_repository
            try:
                images = self._images_to_warm(item, pulled)
                seen = claimed.setdefault(repository, self.memory.warmed(repository))
            except Exception as exc:
                outcomes[id(item)].fail(f"warming layers failed: {exc}", error_kind(exc))
                continue
            for image in images:
                doc = image.json()
                for blob in [doc.get("config") or {}, *(doc.get("layers") or [])]:
                    if not (digest := blob.get("digest")):
                        continue
                    if digest in seen:
                        skipped[id(item)] += 1
                        continue
                    seen.add(digest)
                    jobs.append((item, digest))
            outcomes[id(item)].warmed_bytes = 0
        return jobs, skipped

    def _images_to_warm(self, item: PlanItem, pulled: Pulled) -> list[FetchedManifest]:
        """The selected image manifests; for a whole index every child, fetched by digest from ECR."""
        if pulled.images:
            return list(pulled.images.values())
        registry = self.target.registry()
        return [registry.get_manifest(item.tag.cache_repository, d) for _, d in pulled.top.children()]


def _warm_note(outcome: Outcome, warmed: int, skipped: int, elsewhere: list[str]) -> None:
    """What warming left in ECR, on the tag's row; blobs ECR does not hold fail the tag."""
    if outcome.status is Status.FAILED and not elsewhere:
        return
    if elsewhere:
        outcome.status, outcome.error_kind = Status.FAILED, ErrorKind.TRANSIENT  # ECR may hold them later
        outcome.add_note(
            f"warm_layers: ECR does not hold {len(elsewhere)} blob(s) after warming, it still sends them to "
            f"another host than its layer bucket (the upstream's storage): {', '.join(elsewhere)}; "
            "a run with force warms them again"
        )
        return
    outcome.add_note(f"warm_layers: ECR holds the {warmed} blob(s) asked for, {skipped} held before")


def _planned(item: PlanItem, intent: Intent) -> Outcome:
    """A dry run's outcome for a tag it would pull."""
    what = "delete the cached tag, then pull and verify" if intent is Intent.EVICT else "pull and verify"
    return Outcome(item, Status.PLANNED, item.cached_digest, f"dry run: would {what} ({item.action})")


def _drift_intent(item: PlanItem, mutability: Mutability | Exception | None) -> Outcome | Intent:
    """A drifted tag: reported, failed (mutability unreadable), blocked (immutable), or its intent."""
    keep = item.cached_digest
    if item.on_drift == "report":
        note = f"upstream moved to {item.upstream_digest}, ECR serves {keep}; on_drift: report pulls nothing"
        return Outcome(item, Status.DRIFT_REPORTED, keep, note, item.platform_digests)
    if isinstance(mutability, Exception):
        error = f"reading {item.tag.cache_repository}: {mutability}"
        return Outcome(item, Status.FAILED, keep, error, error_kind=error_kind(mutability))
    if mutability is not None and mutability.immutable(item.tag.reference):
        note = (
            f"tag is immutable in {item.tag.cache_repository} ({mutability.setting}): ECR never "
            f"refreshes it and this project never deletes it; upstream has {item.upstream_digest}"
        )
        return Outcome(item, Status.BLOCKED_IMMUTABLE, keep, note)
    return Intent.EVICT if item.on_drift == "evict-and-repull" else Intent.PULL


def _pull_platforms(registry: RegistryEndpoint, item: PlanItem, pulled: Pulled) -> Pulled | PullFailed:
    """Pull each selected platform's manifest by digest; failed when the index lacks one, keeping
    what ECR now holds: the index, with every platform it offers."""
    children = pulled.top.children()
    selected = select_platforms(item, children)
    if isinstance(selected, str):
        return PullFailed(selected, pulled.top.digest, every_platform(children), pulled.pulled_at)
    pulled.platform_digests = selected
    for digest in selected.values():
        pulled.images[digest] = registry.get_manifest(item.tag.cache_repository, digest)
    return pulled
