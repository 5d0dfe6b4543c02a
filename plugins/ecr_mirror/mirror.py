"""One manifest's mirroring run, step by step: the engine the DAG tasks and the CLI both call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from ecr_mirror.audit import AuditRecord, AuditStore, RunSummary
from ecr_mirror.ecr import EcrTarget
from ecr_mirror.manifest import Manifest
from ecr_mirror.plan import Action, PlanItem, make_plan
from ecr_mirror.pull import Outcome, Status, pull_batch
from ecr_mirror.tags import TagRef
from ecr_mirror.upstream import Upstreams

#: the error of a tag whose batch never reported (a task that failed all its tries)
NO_RESULT = "no result was recorded for this tag: its batch task failed (see that task's log)"


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
