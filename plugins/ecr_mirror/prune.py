"""What a manifest no longer asks for: cached tags in its repositories that no selector selects.

The report (``ecr-mirror prune --report``) resolves the manifest's selectors as a run does, lists
each of its cache repositories in ECR (describe_images, with ``lastRecordedPullTime``) and sorts
every cached tag into:

- ``selected``: a selector asks for it (not listed), or it carries a digest a digest pin asks for
  (the upstream tag a pin came through, pins.py);
- ``stale``: nothing asks for it and it was not pulled in the last ``min_idle_days`` days: the
  apply deletes it;
- ``recent``: nothing asks for it, but someone pulled it in the last ``min_idle_days`` days (or,
  never pulled, it was cached that recently): kept;
- ``immutable``: its repository has immutable tags (any ``IMMUTABLE*`` setting): never deleted.

cosign tags (``sha256-<hex>.sig``/``.att``/``.sbom``) and the referrers tag schema's index tags
(``sha256-<hex>``) follow their subject: kept while an image with that digest stays tagged or is a
platform manifest ECR holds untagged, stale once their image goes.

A repository whose selection could not be resolved this time (the upstream tag list failed, a
selector matched nothing) is skipped as a whole: a failed listing must never read as "nothing is
wanted". The apply deletes the stale tags of a report one by one (``batch_delete_image`` by tag)
and writes one audit row per deletion. Engine module: no Airflow imports.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ecr_mirror.audit import AuditRecord
from ecr_mirror.ecr import server_time
from ecr_mirror.manifest import Manifest
from ecr_mirror.protocols import MirrorTarget
from ecr_mirror.states import Action, Status
from ecr_mirror.tags import Selection

#: a tag that belongs to a digest: cosign's artifacts, or the referrers tag schema's index
_SUBJECT_TAG = re.compile(r"^(?P<alg>sha256|sha512)-(?P<hex>[0-9a-f]{64,128})(?:\.(?:sig|att|sbom))?$")

STALE, RECENT, IMMUTABLE = "stale", "recent", "immutable"


@dataclass(frozen=True)
class CachedTag:
    repository: str
    tag: str
    digest: str
    last_pull: datetime | None
    pushed_at: datetime | None

    @property
    def last_used(self) -> datetime | None:
        """The last recorded pull, else when ECR cached it."""
        return self.last_pull or self.pushed_at


@dataclass(frozen=True)
class PruneEntry:
    tag: CachedTag
    verdict: str  # stale, recent, immutable
    reason: str


@dataclass
class PruneReport:
    manifest: str
    dag_id: str
    min_idle_days: int
    entries: list[PruneEntry] = field(default_factory=list)
    #: repository -> why it was not examined
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def stale(self) -> list[PruneEntry]:
        return [e for e in self.entries if e.verdict == STALE]


def subject_of(tag: str) -> str | None:
    """The digest a cosign or tag schema tag belongs to (None: an ordinary tag)."""
    match = _SUBJECT_TAG.fullmatch(tag)
    return f"{match['alg']}:{match['hex']}" if match else None


@dataclass
class Listing:
    """A repository's tags, its untagged digests, and the time of ECR's answer (ECR's clock)."""

    tags: list[CachedTag]
    untagged: set[str]
    now: datetime


def list_cached_tags(target: MirrorTarget, repository: str, registry_id: str | None) -> Listing | None:
    """Every tag of ``repository`` with its digest and times, and the untagged digests; None when
    the repository does not exist."""
    client = target.client
    ids: dict[str, Any] = {"registryId": registry_id} if registry_id else {}
    tags: list[CachedTag] = []
    untagged: set[str] = set()
    now = datetime.now(UTC)
    try:
        for page in client.get_paginator("describe_images").paginate(repositoryName=repository, **ids):
            now = server_time(page.get("ResponseMetadata", {}).get("HTTPHeaders", {}))
            for detail in page.get("imageDetails", []):
                names = detail.get("imageTags") or []
                if not names:
                    untagged.add(detail["imageDigest"])
                for name in names:
                    tags.append(
                        CachedTag(
                            repository,
                            name,
                            detail["imageDigest"],
                            detail.get("lastRecordedPullTime"),
                            detail.get("imagePushedAt"),
                        )
                    )
    except client.exceptions.RepositoryNotFoundException:
        return None
    return Listing(tags, untagged, now)


def _wanted(selection: Selection) -> tuple[set[tuple[str, str]], set[tuple[str, str]], dict[str, str]]:
    """(repository, tag) the selectors ask for, (repository, digest) of digest pins, and the
    repositories to skip with why."""
    tags = {(t.cache_repository, t.reference) for t in selection.tags if t.tag is not None}
    pins = {(t.cache_repository, t.digest) for t in selection.tags if t.digest is not None}
    skipped = {
        u.cache_repository: f"the selection of {u.image} could not be resolved ({u.action}: {u.error})"
        for u in selection.unresolved
    }
    return tags, pins, skipped


def build_report(
    manifest: Manifest,
    target: MirrorTarget,
    selection: Selection,
    min_idle_days: int,
    carrier: Callable[[str, str], str | None] = lambda repository, digest: None,
) -> PruneReport:
    """The prune report of one manifest (see the module's docstring). Idle days are counted on
    ECR's clock (the Date of its answer), as the refresh timer is (refresh.py). ``carrier`` is
    the upstream tag a digest pin was last pulled through (the audit's ``pin_carrier``): kept,
    since a pin of a platform manifest came in with the index that tag names."""
    report = PruneReport(manifest.name, manifest.dag_id, min_idle_days)
    tags, pins, report.skipped = _wanted(selection)
    tags |= {(repo, via) for repo, digest in pins if (via := carrier(repo, digest)) is not None}
    repositories = sorted({manifest.cache_repository(spec.ref) for spec in manifest.images})
    for repository in repositories:
        if repository in report.skipped:
            continue
        listed = list_cached_tags(target, repository, manifest.target.registry_id)
        if listed is None:
            continue
        cached, untagged = listed.tags, listed.untagged
        unwanted = [
            c for c in cached if (repository, c.tag) not in tags and (repository, c.digest) not in pins
        ]
        dropped = {c.tag for c in unwanted}
        kept_images = {c.digest for c in cached if subject_of(c.tag) is None and c.tag not in dropped}
        survivors = kept_images | untagged
        candidates = [c for c in unwanted if subject_of(c.tag) not in survivors]
        if not candidates:
            continue
        setting = target.mutability(repository).setting
        report.entries += [_judge(c, setting, min_idle_days, listed.now) for c in candidates]
    return report


def _judge(tag: CachedTag, setting: str, min_idle_days: int, now: datetime) -> PruneEntry:
    used = tag.last_used
    when = f"last pulled {tag.last_pull.isoformat()}" if tag.last_pull else "never pulled"
    subject = subject_of(tag.tag)
    why = f"its image {subject} is no longer selected" if subject else "no selector asks for it"
    if setting.startswith("IMMUTABLE"):
        return PruneEntry(tag, IMMUTABLE, f"{why}, but {tag.repository} has {setting} tags: never deleted")
    if used is not None and now - used < timedelta(days=min_idle_days):
        return PruneEntry(tag, RECENT, f"{why}, but {when} (within {min_idle_days} days): kept")
    return PruneEntry(tag, STALE, f"{why}; {when}")


def apply_report(report: PruneReport, target: MirrorTarget, run_id: str) -> list[AuditRecord]:
    """Delete the report's stale tags; one audit row per tag (``deleted`` or ``failed``)."""
    records = []
    for entry in report.stale:
        started = datetime.now(UTC)
        tag = entry.tag
        status, note = Status.DELETED, f"pruned: {entry.reason}"
        try:
            target.delete_tag(tag.repository, tag.tag)
        except Exception as exc:  # recorded for this tag; the others are still deleted
            status, note = Status.FAILED, f"pruning failed: {exc}"
        records.append(
            AuditRecord(
                run_id,
                report.dag_id,
                report.manifest,
                tag.repository,  # the image as ECR names it: the selection no longer does
                tag.repository,
                tag.tag,
                Action.UNSELECTED,
                status,
                cached_digest_before=tag.digest,
                cached_digest_after=None if status is Status.DELETED else tag.digest,
                error=note,
                pulled_at=tag.last_pull,
                started_at=started,
                finished_at=datetime.now(UTC),
            )
        )
    return records


def lifecycle_policy(repositories: Iterable[str], min_idle_days: int) -> dict[str, Any]:
    """An ECR lifecycle policy that expires any image not pulled for ``min_idle_days`` days
    (``countType: sinceImagePulled``): the alternative to the prune, applied by ECR itself, which
    knows pull times but not what the manifest selects."""
    names = sorted(set(repositories))
    return {
        "rules": [
            {
                "rulePriority": 1,
                "description": f"ecr-mirror: expire images not pulled for {min_idle_days} days "
                f"({', '.join(names)})"[:256],
                "selection": {
                    "tagStatus": "any",
                    "countType": "sinceImagePulled",
                    "countUnit": "days",
                    "countNumber": min_idle_days,
                },
                "action": {"type": "expire"},
            }
        ]
    }


def report_rows(report: PruneReport) -> Sequence[dict[str, Any]]:
    """The report as plain rows (the CLI's JSON and table)."""
    return [
        {
            "manifest": report.manifest,
            "repository": e.tag.repository,
            "tag": e.tag.tag,
            "digest": e.tag.digest,
            "last_pull": e.tag.last_pull.isoformat() if e.tag.last_pull else None,
            "verdict": e.verdict,
            "reason": e.reason,
        }
        for e in report.entries
    ]
