"""What pulling a tag through ECR came to: the trigger's result (``Pulled`` or ``PullFailed``) and
the tag's ``Outcome`` (its audit row to be), with the check that ECR holds what was pulled."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ecr_mirror.ecr import IDS_PER_CALL, CachedImages
from ecr_mirror.plan import PlanItem
from ecr_mirror.registry import FetchedManifest
from ecr_mirror.states import ErrorKind, Status

if TYPE_CHECKING:
    from ecr_mirror.protocols import PullTarget

#: a verification asks ECR for the pulled images by id when that takes at most this many
#: describe_images calls, else it lists the repository once (1,000 images a page, 100 ids a call)
BY_ID_CALLS = 2


@dataclass
class Outcome:
    item: PlanItem
    status: Status
    cached_digest_after: str | None
    #: why a tag failed; for the other statuses, the note (what happened and why)
    error: str | None = None
    platform_digests: dict[str, str] | None = None
    warmed_bytes: int | None = None
    #: when this run's manifest GET through ECR pulled the tag (ECR's clock), None: not pulled
    pulled_at: datetime | None = None
    #: a digest pin pulled through this upstream tag
    via_tag: str | None = None
    #: a failed tag's kind (states.ErrorKind)
    error_kind: ErrorKind | None = None

    def add_note(self, note: str) -> None:
        self.error = f"{self.error}; {note}" if self.error else note

    def fail(self, error: str, kind: ErrorKind) -> None:
        """Turn this outcome into a failure (e.g. warming a pulled tag failed)."""
        self.status, self.error, self.error_kind = Status.FAILED, error, kind


@dataclass
class Pulled:
    """What the trigger brought: the top manifest and the image manifests selected under it."""

    top: FetchedManifest
    images: dict[str, FetchedManifest] = field(default_factory=dict)  # digest -> image manifest
    platform_digests: dict[str, str] | None = None
    via_tag: str | None = None
    #: ECR's time of the GET that pulled ``top`` (this machine's when ECR sent no Date)
    pulled_at: datetime = field(init=False)

    def __post_init__(self) -> None:
        self.pulled_at = self.top.served_at or datetime.now(UTC)


@dataclass(frozen=True)
class PullFailed:
    """Why the trigger did not bring the tag (the failed row's error), and what ECR holds for it
    when a pull happened before the failure (e.g. an index that lacks a selected platform)."""

    error: str
    held: str | None = None
    platform_digests: dict[str, str] | None = None
    pulled_at: datetime | None = None
    kind: ErrorKind = ErrorKind.PERMANENT


def failed(item: PlanItem, failure: PullFailed) -> Outcome:
    held = failure.held or item.cached_digest
    return Outcome(
        item,
        Status.FAILED,
        held,
        failure.error,
        failure.platform_digests,
        pulled_at=failure.pulled_at,
        error_kind=failure.kind,
    )


def check_pulled(item: PlanItem, pulled: Pulled, listing: CachedImages) -> Outcome | None:
    """The outcome of a pull whose tag now has the upstream digest in ECR: pulled, or failed when
    a manifest under it is missing (an index's children, or the selected platforms). None when
    ECR does not have the upstream digest for the tag."""
    after = listing.digest_for(item.tag.reference)
    if after != item.upstream_digest:
        return None
    platforms = pulled.platform_digests
    absent = sorted(wanted_manifests(pulled) - listing.digests)
    if absent:
        error = f"ECR has the index {after} but not its manifests {', '.join(absent)}"
        # ECR imports an index's manifests as they are pulled: a later try may find them
        return Outcome(item, Status.FAILED, after, error, platforms, error_kind=ErrorKind.TRANSIENT)
    return Outcome(item, Status.PULLED, after, None, platforms)


def wanted_manifests(pulled: Pulled) -> set[str]:
    """The digests that must be in ECR under a pulled tag: the selected platforms, else every
    child of an index (none for an image manifest)."""
    platforms = pulled.platform_digests
    return set(platforms.values()) if platforms else {d for _, d in pulled.top.children()}


def read_pulled(target: PullTarget, repository: str, work: Sequence[tuple[PlanItem, Pulled]]) -> CachedImages:
    """What ECR holds of one repository's pulled tags, for check_pulled: by id (the tags and the
    manifests under them) when that is cheap, else one listing, never the repository once per tag.
    A missing image fails a call by id as a whole; the listing then tells which one is missing."""
    ids: dict[tuple[str, str], None] = {}
    for item, pulled in work:
        reference = item.tag.reference
        ids[("imageDigest" if reference.startswith("sha256:") else "imageTag", reference)] = None
        ids.update(dict.fromkeys(("imageDigest", digest) for digest in sorted(wanted_manifests(pulled))))
    if len(ids) > BY_ID_CALLS * IDS_PER_CALL:
        return target.cached_images(repository)
    try:
        return target.images_by_id(repository, [{kind: value} for kind, value in ids])
    except Exception:  # e.g. ImageNotFoundException: the listing says what is there
        return target.cached_images(repository)
