"""One manifest's mirroring run, step by step: the engine the DAG tasks and the CLI both call."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

from ecr_mirror.audit import AuditRecord, AuditStore, RunSummary
from ecr_mirror.ecr import EcrTarget
from ecr_mirror.manifest import DriftPolicy, Manifest
from ecr_mirror.plan import Action, PlanItem, make_plan
from ecr_mirror.pull import Outcome, Status, pull_batch
from ecr_mirror.refs import tag_problem
from ecr_mirror.tags import TagRef, select_tags
from ecr_mirror.upstream import Upstreams

#: the error of a tag whose batch never reported (a task that failed all its tries)
NO_RESULT = "no result was recorded for this tag: its batch task failed (see that task's log)"


@dataclass(frozen=True)
class RunOptions:
    """How one run deviates from its manifest: the trigger form's parameters (all optional).

    ``images`` are globs matched against an image's name as written in the manifest and its full
    name (``nginx``, ``docker.io/library/nginx``, ``quay.io/prometheus/*``); ``extra_tags`` are
    mirrored for every selected image that is not pinned by digest.
    """

    images: tuple[str, ...] = ()
    extra_tags: tuple[str, ...] = ()
    dry_run: bool = False
    force: bool = False
    on_drift: DriftPolicy | None = None
    warm_layers: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunOptions:
        values = {key: data[key] for key in (f.name for f in fields(cls)) if data.get(key) is not None}
        for key in ("images", "extra_tags"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    def __post_init__(self) -> None:
        for tag in self.extra_tags:
            if problem := tag_problem(tag):
                raise ValueError(f"extra tag {tag!r}: {problem}")

    def wants(self, written: str, name: str) -> bool:
        return not self.images or any(fnmatchcase(written, g) or fnmatchcase(name, g) for g in self.images)


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    dag_id: str
    manifest: str


def batches(tags: Sequence[TagRef], size: int) -> list[list[TagRef]]:
    return [list(tags[i : i + size]) for i in range(0, len(tags), size)]


def _record(run: RunInfo, outcome: Outcome) -> AuditRecord:
    item, now = outcome.item, datetime.now(UTC)
    return AuditRecord(
        run_id=run.run_id,
        dag_id=run.dag_id,
        manifest=run.manifest,
        image=item.tag.image,
        ecr_repository=item.tag.cache_repository,
        tag=item.tag.reference,
        action=str(item.action),
        status=outcome.status,
        upstream_digest=item.upstream_digest,
        cached_digest_before=item.cached_digest,
        cached_digest_after=outcome.cached_digest_after,
        error=outcome.error,
        duration_ms=int((now - item.planned_at).total_seconds() * 1000),
        started_at=item.planned_at,
        finished_at=now,
    )


class Mirror:
    """Compare, pull and audit the tags of one manifest against one ECR target."""

    def __init__(
        self, manifest: Manifest, target: EcrTarget, store: AuditStore, upstreams: Upstreams
    ) -> None:
        self.manifest = manifest
        self.target = target
        self.store = store
        self.upstreams = upstreams
        self.concurrency = manifest.defaults.concurrency

    def resolve(self, options: RunOptions) -> list[TagRef]:
        """The tags this run mirrors: the manifest's selection, narrowed and extended by the options."""
        selected = [
            tag
            for tag in select_tags(self.manifest)
            if options.wants(self.manifest.images[tag.image_index].image, tag.image)
        ]
        pinned = {tag.image_index for tag in selected if tag.digest}
        firsts = {tag.image_index: tag for tag in selected if tag.image_index not in pinned}
        known = {(tag.cache_repository, tag.reference) for tag in selected}
        extra = []
        for first in firsts.values():
            for name in options.extra_tags:
                if (first.cache_repository, name) not in known:
                    known.add((first.cache_repository, name))
                    extra.append(replace(first, tag=name))
        return selected + extra

    def compare(self, tags: Sequence[TagRef]) -> list[PlanItem]:
        return make_plan(tags, self.upstreams.digest, self.target.cached_images, self.concurrency)

    def pull(self, plan: Sequence[PlanItem], run: RunInfo) -> list[AuditRecord]:
        """Pull and verify one batch, then write its audit rows before returning."""
        outcomes = pull_batch(plan, self.target.registry, self.target.cached_images, self.concurrency)
        records = [_record(run, outcome) for outcome in outcomes]
        self.store.write(records)
        return records

    def finish(self, run: RunInfo, tags: Sequence[TagRef]) -> RunSummary:
        """Give every tag without a row a failed row, then write and return the run summary."""
        records = self.store.records(dag_id=run.dag_id, run_id=run.run_id)
        seen = {(r.ecr_repository, r.tag) for r in records}
        lost = [
            Outcome(PlanItem(tag, Action.FAILED), Status.FAILED, None, NO_RESULT)
            for tag in tags
            if (tag.cache_repository, tag.reference) not in seen
        ]
        lost_records = [_record(run, outcome) for outcome in lost]
        self.store.write(lost_records)
        summary = RunSummary.of(run.run_id, run.dag_id, run.manifest, records + lost_records)
        self.store.write_summary(summary)
        return summary
