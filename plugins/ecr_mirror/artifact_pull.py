"""Signatures, attestations, SBOMs and referrers pulled through the cache with their image.

After a batch's tags are pulled (or found up to date), each tag whose image has ``artifacts:``
brings its artifacts along through the same pull through cache rule: they live in the image's
upstream repository, so the same cache repository holds them. For each subject digest (the tag's
digest and the manifests under it: the selected platforms, or every child of a whole index) the
artifacts are found upstream (artifacts.discover_artifacts: manifest HEADs and referrers lists,
no pulls), then:

- a cosign tag (``sha256-<hex>.sig``/``.att``/``.sbom``) ECR does not hold with the upstream
  digest is pulled by tag, like an image tag;
- a referrer (known by digest only) ECR does not hold is pulled by digest; where ECR answers not
  found to a first pull by digest (containers-roadmap #2837, the emulator's ``digest_first_pull``)
  and the upstream lists its referrers in the tag schema's index (``sha256-<hex>``), that index
  tag is pulled first, which brings its manifests along, then the referrer by digest.

Then ECR's listing must show each artifact's upstream digest (under its tag for cosign tags), as
for images. Each artifact gets its own audit row (its tag, or its digest for a referrer) with the
subject digest and its kind; an artifact that cannot be pulled fails its own row and never the
image's (a tag whose artifacts cannot even be listed upstream fails, keeping what ECR holds).
A dry run pulls no artifact. Engine module: no Airflow imports.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from ecr_mirror.artifacts import Artifact, ArtifactKind, discover_artifacts
from ecr_mirror.audit import AuditRecord
from ecr_mirror.ecr import CachedImages
from ecr_mirror.manifest import ArtifactsSpec
from ecr_mirror.parallel import fair_map, settled_map
from ecr_mirror.plan import PlanItem
from ecr_mirror.protocols import PullTarget, UpstreamRegistries
from ecr_mirror.pull_outcome import Outcome
from ecr_mirror.refresh import refresh_timer
from ecr_mirror.registry import NotFoundError, referrers_tag
from ecr_mirror.states import Action, Status

#: the statuses after which the tag's image is in ECR, so its artifacts belong there too
HELD = frozenset({Status.OK, Status.PULLED})


@dataclass(frozen=True)
class Found:
    """An artifact to mirror, with the tag of the image it came with."""

    item: PlanItem
    artifact: Artifact


@dataclass(frozen=True)
class ArtifactResult:
    found: Found
    action: Action
    status: Status
    before: str | None
    after: str | None
    note: str
    pulled_at: datetime | None = None


class ArtifactPuller:
    """Finds and pulls the artifacts of one batch's tags; ``settings(image_index)`` is the image's
    ``artifacts:`` (None: none)."""

    def __init__(
        self,
        target: PullTarget,
        upstreams: UpstreamRegistries,
        settings: Callable[[int], ArtifactsSpec | None],
        concurrency: int,
        slot: Callable[[int], AbstractContextManager[Any]],
        last_pull: Callable[[str, str], datetime | None],
    ) -> None:
        self.target = target
        self.upstreams = upstreams
        self.settings = settings
        self.concurrency = concurrency
        self.slot = slot
        self.last_pull = last_pull  # this project's last pull of a digest (the audit's)

    def run(self, outcomes: Sequence[Outcome]) -> list[ArtifactResult]:
        """One result per artifact. A tag whose artifacts cannot be listed upstream keeps what ECR
        holds but its own outcome fails, saying so: the next run, which finds the tag up to date,
        mirrors its artifacts."""
        wanted = [o for o in outcomes if o.status in HELD and self.settings(o.item.tag.image_index)]
        if not wanted:
            return []
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            listed = fair_map(pool, self._discover, wanted, lambda o: o.item.tag.image_index)
            found: dict[tuple[str, str], Found] = {}
            for outcome, result in zip(wanted, listed, strict=True):
                if isinstance(result, str):
                    outcome.status = Status.FAILED
                    outcome.add_note(result)
                    continue
                for artifact in result:
                    key = (outcome.item.tag.cache_repository, artifact.reference)
                    found.setdefault(key, Found(outcome.item, artifact))
            work = list(found.values())
            before = settled_map(pool, self.target.cached_images, sorted({r for r, _ in found}))
            pulled = fair_map(pool, lambda f: self._pull(f, before), work, lambda f: f.item.tag.image_index)
            after = settled_map(pool, self.target.cached_images, sorted({r for r, _ in found}))
            results = [_check(f, p, before, after) for f, p in zip(work, pulled, strict=True)]
            subjects = sorted(
                {
                    (r.found.item.tag.cache_repository, r.found.artifact.subject)
                    for r in results
                    if _is_held_referrer(r)
                }
            )
            discoverable = settled_map(pool, self._ecr_referrers, subjects)
        return [_with_discovery(r, discoverable) for r in results]

    def _ecr_referrers(self, key: tuple[str, str]) -> set[str]:
        """The digests ECR's referrers API lists for a subject (the request that also makes a pull
        through cache sync its upstream referrers, where it does: ptc_referrers_sync)."""
        repository, subject = key
        return {r.digest for r in self.target.registry().list_referrers(repository, subject).referrers}

    def _discover(self, outcome: Outcome) -> list[Artifact] | str:
        item, spec = outcome.item, self.settings(outcome.item.tag.image_index)
        assert spec is not None and outcome.cached_digest_after is not None
        tag = item.tag
        try:
            with self.slot(tag.image_index):
                subjects = self._subjects(outcome)
                return discover_artifacts(
                    self.upstreams.client(tag.registry),
                    tag.repository,
                    subjects,
                    kinds={ArtifactKind(kind) for kind in spec.cosign},
                    referrers=spec.referrers,
                    artifact_types=spec.artifact_types,
                )
        except Exception as exc:  # recorded for this tag's artifacts
            return (
                f"listing the artifacts of {tag.image}@{outcome.cached_digest_after} upstream failed: {exc}"
            )

    def _subjects(self, outcome: Outcome) -> list[str]:
        """The tag's digest, then its selected platforms; for a whole index pulled in this run,
        every child (read from ECR, which this run pulled it through anyway). A whole index found
        up to date brings its own artifacts only: reading it through ECR would count as a pull and
        restart ECR's 24 h refresh window (refresh.py), upstream as a Docker Hub pull."""
        digest = outcome.cached_digest_after
        assert digest is not None
        children: list[str] = []
        if outcome.platform_digests is not None:
            children = list(outcome.platform_digests.values())
        elif outcome.status is Status.PULLED:
            index = self.target.registry().get_manifest(outcome.item.tag.cache_repository, digest)
            children = [child for _, child in index.children()]
        return [digest, *(c for c in children if c != digest)]

    def _pull(
        self, found: Found, before: dict[str, CachedImages | Exception]
    ) -> datetime | str | Waiting | None:
        """Pull one artifact unless ECR holds it already: the time of the pull, None (held, not
        pulled), Waiting (a changed cosign tag whose refresh window has not passed), or why the
        pull failed."""
        repository, artifact = found.item.tag.cache_repository, found.artifact
        listing = before.get(repository)
        held = listing.digest_for(artifact.reference) if isinstance(listing, CachedImages) else None
        if held == artifact.digest:
            return None
        registry = self.target.registry()
        try:
            with self.slot(found.item.tag.image_index):
                if artifact.tag is not None and held is not None:
                    # a signature added upstream: ECR refreshes the tag only on a pull once 24 h
                    # have passed since its last pull, and a pull before that restarts the wait
                    times = self.target.image_times(repository, artifact.tag)
                    timer = refresh_timer(times, self.last_pull(repository, held))
                    if not timer.due:
                        return Waiting(timer.waiting_note(held, artifact.digest))
                if artifact.tag is not None:
                    return _served_at(registry.get_manifest(repository, artifact.tag).served_at)
                try:
                    return _served_at(registry.get_manifest(repository, artifact.digest).served_at)
                except NotFoundError:
                    if artifact.source != "tag-schema":
                        raise
                # a first pull by digest ECR answers not found: through the index that lists it
                registry.get_manifest(repository, referrers_tag(artifact.subject))
                return _served_at(registry.get_manifest(repository, artifact.digest).served_at)
        except Exception as exc:  # recorded for this artifact
            where = f"{repository}{'@' if artifact.tag is None else ':'}{artifact.reference}"
            return f"pulling {where} failed: {exc}"


@dataclass(frozen=True)
class Waiting:
    """A changed cosign tag not pulled yet: ECR's refresh window has not passed (the note says when)."""

    note: str


def _is_held_referrer(result: ArtifactResult) -> bool:
    return result.found.artifact.kind is ArtifactKind.REFERRER and result.status in HELD


def _with_discovery(
    result: ArtifactResult, listed: dict[tuple[str, str], set[str] | Exception]
) -> ArtifactResult:
    """A referrer ECR holds: noted when ECR's referrers API does not list it, since verifiers that
    discover referrers through the API (Notation, Ratify) will not find it there."""
    if not _is_held_referrer(result):
        return result
    artifact = result.found.artifact
    answer = listed.get((result.found.item.tag.cache_repository, artifact.subject))
    if isinstance(answer, Exception):
        note = f"{result.note}; ECR's referrers API could not be read: {answer}"
    elif answer is not None and artifact.digest not in answer:
        note = (
            f"{result.note}; ECR holds it but its referrers API does not list it for {artifact.subject}: "
            "clients that discover referrers through the API will not find it (pull it by digest)"
        )
    else:
        note = f"{result.note}; listed by ECR's referrers API"
    return replace(result, note=note)


def _served_at(when: datetime | None) -> datetime:
    return when or datetime.now(UTC)


def _check(
    found: Found,
    pulled: datetime | str | Waiting | None,
    before: dict[str, CachedImages | Exception],
    after: dict[str, CachedImages | Exception],
) -> ArtifactResult:
    """The artifact's row to be: ok (held before), pulled (held after), stale or failed."""
    artifact, repository = found.artifact, found.item.tag.cache_repository
    old = before.get(repository)
    held_before = old.digest_for(artifact.reference) if isinstance(old, CachedImages) else None
    action = (
        Action.UP_TO_DATE
        if held_before == artifact.digest
        else Action.DRIFTED
        if held_before
        else Action.MISSING
    )
    what = _describe(artifact)
    if pulled is None:
        return ArtifactResult(found, action, Status.OK, held_before, held_before, what)
    if isinstance(pulled, str):
        return ArtifactResult(found, action, Status.FAILED, held_before, held_before, f"{what}: {pulled}")
    if isinstance(pulled, Waiting):
        return ArtifactResult(found, action, Status.STALE, held_before, held_before, f"{what}: {pulled.note}")
    new = after.get(repository)
    if isinstance(new, Exception):
        note = f"{what}: verifying {repository} in ECR failed: {new}"
        return ArtifactResult(found, action, Status.FAILED, held_before, None, note, pulled)
    held = new.digest_for(artifact.reference) if new is not None else None
    if held == artifact.digest:
        return ArtifactResult(found, action, Status.PULLED, held_before, held, what, pulled)
    if action is Action.DRIFTED and held == held_before:
        note = (
            f"{what}: upstream has {artifact.digest}, ECR still serves {held} (a cached tag is "
            "re-checked upstream once 24 h have passed since its last pull)"
        )
        return ArtifactResult(found, action, Status.STALE, held_before, held, note, pulled)
    note = f"{what}: after the pull ECR has {held or 'nothing'} for it, upstream has {artifact.digest}"
    return ArtifactResult(found, action, Status.FAILED, held_before, held, note, pulled)


def _describe(artifact: Artifact) -> str:
    kind = artifact.artifact_type or artifact.media_type
    if artifact.kind is ArtifactKind.REFERRER:
        return f"referrer ({kind}, found by {artifact.source}) of {artifact.subject}"
    return f"cosign {artifact.kind} of {artifact.subject}"


def artifact_records(run: tuple[str, str, str], results: Sequence[ArtifactResult]) -> list[AuditRecord]:
    """The audit rows of the artifacts: one per artifact, named by its tag (cosign) or digest;
    ``run`` is the run's (run_id, dag_id, manifest)."""
    now = datetime.now(UTC)
    records = []
    for result in results:
        item, artifact = result.found.item, result.found.artifact
        where = (item.tag.image, item.tag.cache_repository, artifact.reference)
        # the required fields by position (a dataclass keeps them first), the others by name
        record = AuditRecord(*run, *where, result.action, result.status)
        record.upstream_digest, record.cached_digest_before, record.cached_digest_after = (
            artifact.digest,
            result.before,
            result.after,
        )
        record.error, record.pulled_at, record.subject_digest, record.artifact_kind = (
            result.note,
            result.pulled_at,
            artifact.subject,
            str(artifact.kind),
        )
        record.started_at, record.finished_at = item.planned_at, now
        record.duration_ms = int((now - item.planned_at).total_seconds() * 1000)
        records.append(record)
    return records
