"""What pulling a tag through ECR came to: the trigger's result (``Pulled`` or ``PullFailed``) and
the tag's ``Outcome`` (its audit row to be), with the check that ECR holds what was pulled."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from ecr_mirror.ecr import CachedImages
from ecr_mirror.plan import PlanItem
from ecr_mirror.registry import FetchedManifest
from ecr_mirror.states import ErrorKind, Status


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
    wanted = set(platforms.values()) if platforms else {d for _, d in pulled.top.children()}
    absent = sorted(wanted - listing.digests)
    if absent:
        error = f"ECR has the index {after} but not its manifests {', '.join(absent)}"
        # ECR imports an index's manifests as they are pulled: a later try may find them
        return Outcome(item, Status.FAILED, after, error, platforms, error_kind=ErrorKind.TRANSIENT)
    return Outcome(item, Status.PULLED, after, None, platforms)
