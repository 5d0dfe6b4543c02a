"""One manifest's mirroring run, step by step: the engine the DAG tasks and the CLI both call."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from functools import partial
from typing import Any

from ecr_mirror import redaction
from ecr_mirror.artifact_pull import ArtifactPuller, artifact_records
from ecr_mirror.audit import AuditRecord, AuditStore, RunSummary
from ecr_mirror.audit_retention import prune_expired
from ecr_mirror.credentials import upstream_credentials
from ecr_mirror.ecr import EcrTarget
from ecr_mirror.gate import SignatureGate
from ecr_mirror.manifest import Manifest
from ecr_mirror.parallel import map_values
from ecr_mirror.plan import PlanItem, make_plan
from ecr_mirror.platforms import check_held_platforms
from ecr_mirror.protocols import MirrorTarget, UpstreamRegistries
from ecr_mirror.provenance import Provenance
from ecr_mirror.pull import Puller
from ecr_mirror.pull_outcome import Outcome
from ecr_mirror.refs import ImageRef, tag_problem
from ecr_mirror.retry import failed_in, keep_failed
from ecr_mirror.run_closing import close_interrupted, register
from ecr_mirror.settings import get_settings
from ecr_mirror.states import Action, DriftPolicy, ErrorKind, RunStatus, Status
from ecr_mirror.tags import Selection, TagRef, Unresolved, select_tags, tag_ref, wanted_images
from ecr_mirror.upstream import Upstreams

TRANSIENT = ErrorKind.TRANSIENT

#: the error of a tag whose shard never reported (a task that failed all its tries)
NO_RESULT = "no result was recorded for this tag: its shard's task failed (see that task's log)"


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
    #: a run id of the same DAG: mirror only the tags that failed in it (retry.py)
    retry_failed: str | None = None

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


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    dag_id: str
    manifest: str
    #: the try of the Airflow task that works for the run (None: the CLI)
    attempt: int | None = None


def _unresolved_record(run: RunInfo, item: Unresolved) -> AuditRecord:
    now = datetime.now(UTC)
    return AuditRecord(
        run_id=run.run_id,
        dag_id=run.dag_id,
        manifest=run.manifest,
        image=item.image,
        ecr_repository=item.cache_repository,
        tag=item.tag,
        action=item.action,
        status=Status.FAILED,
        error=item.error,
        error_kind=item.kind,
        started_at=now,
        finished_at=now,
        attempt=run.attempt,
    )


def _record(run: RunInfo, outcome: Outcome) -> AuditRecord:
    item, now = outcome.item, datetime.now(UTC)
    return AuditRecord(
        run_id=run.run_id,
        dag_id=run.dag_id,
        manifest=run.manifest,
        image=item.tag.image,
        ecr_repository=item.tag.cache_repository,
        tag=item.tag.reference,
        action=item.action,
        status=outcome.status,
        upstream_digest=item.upstream_digest,
        cached_digest_before=item.cached_digest,
        cached_digest_after=outcome.cached_digest_after,
        error=outcome.error,
        platform_digests=None
        if outcome.platform_digests is None
        else json.dumps(outcome.platform_digests, sort_keys=True),
        warmed_bytes=outcome.warmed_bytes,
        pulled_at=outcome.pulled_at,
        via_tag=outcome.via_tag,
        duration_ms=int((now - item.planned_at).total_seconds() * 1000),
        started_at=item.planned_at,
        finished_at=now,
        error_kind=_kind(outcome),
        attempt=run.attempt,
    )


def _kind(outcome: Outcome) -> ErrorKind | None:
    """A failed row's kind: the outcome's, else the comparison's; permanent when neither says."""
    if outcome.status is not Status.FAILED:
        return None
    return outcome.error_kind or outcome.item.error_kind or ErrorKind.PERMANENT


class Mirror:
    """Compare, pull and audit the tags of one manifest against one ECR target (open_mirror
    builds one with its collaborators)."""

    def __init__(
        self, manifest: Manifest, target: MirrorTarget, store: AuditStore, upstreams: UpstreamRegistries
    ) -> None:
        self.manifest = manifest
        self.target = target
        self.store = store
        self.upstreams = upstreams
        self.concurrency = manifest.defaults.concurrency
        self._slots: dict[int, threading.BoundedSemaphore] = {}
        self._slots_lock = threading.Lock()
        self._requests = threading.BoundedSemaphore(self.concurrency)

    def resolve(self, options: RunOptions, run: RunInfo | None = None) -> Selection:
        """The tags this run mirrors: the manifest's selection, narrowed and extended by the options,
        and what could not be resolved (see Unresolved).

        An image whose tag list cannot be read, whose selector matches nothing or whose pinned tag
        moved yields no tag; with `run`, each gets one failed audit row, which fails the run. An
        image glob that matches no image raises tags.SelectionError (the run fails with it), and so
        does a ``retry_failed`` run that the audit does not know or in which nothing failed.
        Upstream tag lists are read only for images whose selector has a filter, one listing per
        image, `concurrency` at a time; pinned tags are checked with one HEAD each.
        """
        manifest = self.manifest
        wanted = wanted_images(manifest, options.images)
        specs = [manifest.images[i] for i in wanted]
        to_list = {spec.ref.name: spec.ref for spec in specs if spec.tags and spec.tags.needs_listing}
        listings = map_values(self._list_tags, to_list, self.concurrency)
        selection = select_tags(manifest, listings, wanted)
        self._drop_moved_pins(selection)
        self._add_extra_tags(selection, wanted, options.extra_tags)
        if options.retry_failed:
            keep_failed(selection, failed_in(self.store, manifest.dag_id, options.retry_failed))
        if run is not None and selection.unresolved:
            self.store.write([_unresolved_record(run, item) for item in selection.unresolved])
        return selection

    def _drop_moved_pins(self, selection: Selection) -> None:
        pins = {str(tag): tag for tag in selection.tags if tag.tag and tag.digest}
        moved = map_values(self._moved_pin, pins, self.concurrency)
        for key, tag in pins.items():
            if error := moved[key]:
                selection.tags.remove(tag)
                where = (tag.image_index, tag.image, tag.cache_repository)
                selection.unresolved.append(Unresolved(*where, Action.PIN_MISMATCH, error, tag.reference))

    def _add_extra_tags(self, selection: Selection, wanted: Sequence[int], extra_tags: Sequence[str]) -> None:
        """The run's extra tags for each wanted image that is not pinned by digest, once each."""
        known = {(tag.cache_repository, tag.reference) for tag in selection.tags}
        known |= {(item.cache_repository, item.tag) for item in selection.unresolved}  # e.g. an overlap
        for index in wanted:
            if self.manifest.images[index].ref.digest:
                continue
            for name in extra_tags:
                extra = tag_ref(self.manifest, index, name)
                if (extra.cache_repository, name) not in known:
                    known.add((extra.cache_repository, name))
                    selection.tags.append(extra)

    def _list_tags(self, ref: ImageRef) -> list[str] | Exception:
        try:
            return self.upstreams.client(ref.registry).list_tags(ref.repository)
        except Exception as exc:  # reported for this image, never raised
            return exc

    def _moved_pin(self, tag: TagRef) -> str | None:
        """Why a pinned tag is not mirrored (it points at another digest now), or None.

        A tag that is gone or cannot be read stays selected: the comparison reports it.
        """
        assert tag.tag is not None
        try:
            info = self.upstreams.client(tag.registry).head_manifest(tag.repository, tag.tag)
        except Exception:
            return None
        if info is None or info.digest == tag.digest:
            return None
        return (
            f"{tag.image}:{tag.tag} is pinned to {tag.digest} but upstream now points at {info.digest}: "
            "not mirrored; update the pin in the manifest to take the new image"
        )

    @contextmanager
    def slot(self, image_index: int) -> Iterator[None]:
        """Held around each upstream or ECR request for a tag of images[image_index]: an image's
        ``concurrency`` caps its requests in flight, and ``defaults.concurrency`` caps them all,
        however many shards of the run share this engine (the CLI runs them side by side)."""
        with self._slots_lock:
            if image_index not in self._slots:
                size = self.manifest.image_concurrency(image_index)
                self._slots[image_index] = threading.BoundedSemaphore(size)
            image = self._slots[image_index]
        with image, self._requests:  # always in this order: no two threads wait for each other
            yield

    def _upstream_digest(self, tag: TagRef) -> str | None:
        with self.slot(tag.image_index):
            return self.upstreams.digest(tag)

    def compare(
        self,
        tags: Sequence[TagRef],
        options: RunOptions = RunOptions(),
        on_compared: Callable[[PlanItem], None] | None = None,
    ) -> list[PlanItem]:
        """Each tag's action, with the image settings the pull will apply (the run's overrides
        first); ``on_compared`` sees each item as soon as it is decided (the CLI's progress)."""
        plan = make_plan(
            tags, self._upstream_digest, self.target.cached_images, self.concurrency, on_compared
        )
        for item in plan:
            settings = self.manifest.image_settings(item.tag.image_index)
            item.platforms = settings.platforms
            item.on_drift = options.on_drift or settings.on_drift
            item.warm_layers = settings.warm_layers if options.warm_layers is None else options.warm_layers
        check_held_platforms(plan, self.store, lambda: self.target.registry(), self.concurrency)
        return plan

    def begin(self, run: RunInfo, *, by_airflow: bool) -> list[RunSummary]:
        """Before a run changes anything: check the audit takes writes (AuditWriteError if not),
        and close this DAG's earlier runs that were interrupted (their summaries, run_closing.py)."""
        self.store.check_writable()
        return close_interrupted(self.store, run.dag_id, run.run_id, by_airflow=by_airflow)

    def register(self, run: RunInfo, tags: Sequence[TagRef], owner: str) -> None:
        """Remember the run's tags before its first pull, so that an interrupted run can be closed."""
        register(self.store, run.run_id, run.dag_id, run.manifest, tags, owner)

    def still_to_do(self, tags: Sequence[TagRef], run: RunInfo) -> list[TagRef]:
        """The tags of a shard this run has not settled: a tag whose row is good, or failed for a
        permanent reason, is skipped (a retried task never pulls it again); a tag whose earlier
        try failed for a transient reason is compared again, then pulled."""
        rows = {
            (r.ecr_repository, r.tag): r for r in self.store.records(dag_id=run.dag_id, run_id=run.run_id)
        }

        def settled(tag: TagRef) -> bool:
            row = rows.get((tag.cache_repository, tag.reference))
            return row is not None and (
                row.status is not Status.FAILED or row.error_kind is ErrorKind.PERMANENT
            )

        return [tag for tag in tags if not settled(tag)]

    def pull(
        self, plan: Sequence[PlanItem], run: RunInfo, options: RunOptions = RunOptions()
    ) -> list[AuditRecord]:
        """Pull, verify and warm one batch as the plan and the run's options say, then write its
        audit rows before returning. Tags the image's signature gate refuses are not pulled (gate.py).
        ``dry_run`` pulls and deletes nothing (status ``planned``); ``force`` pulls up-to-date tags
        too. The audit must take a write first (AuditWriteError: nothing of this batch is pulled)."""
        self.store.check_writable()
        puller = Puller(
            self.target,
            self.store,
            self.concurrency,
            slot=self.slot,
            dry_run=options.dry_run,
            force=options.force,
            upstreams=self.upstreams,
        )
        gate = SignatureGate(self.manifest, self.upstreams, self.concurrency, self.slot)
        refused, verified = gate.screen(plan, options.force)
        pulled = iter(puller.run([item for item in plan if id(item) not in refused]))
        outcomes = [refused[id(item)] if id(item) in refused else next(pulled) for item in plan]
        for outcome in outcomes:
            if note := verified.get(id(outcome.item)):
                outcome.add_note(note)
        records = self._artifact_records(outcomes, run) if not options.dry_run else []
        records = [_record(run, outcome) for outcome in outcomes] + records
        self.store.write(records)
        return records

    def _artifact_records(self, outcomes: Sequence[Outcome], run: RunInfo) -> list[AuditRecord]:
        """Pull the artifacts of the batch's mirrored tags (artifact_pull.py); their rows. A tag
        whose artifacts cannot be listed has its outcome failed here, before its row is made."""
        puller = ArtifactPuller(
            self.target,
            self.upstreams,
            lambda index: self.manifest.image_settings(index).artifacts,
            self.concurrency,
            self.slot,
            self.store.last_pull,
        )
        return artifact_records((run.run_id, run.dag_id, run.manifest), puller.run(outcomes))

    def mirror(
        self,
        tags: Sequence[TagRef],
        run: RunInfo,
        options: RunOptions = RunOptions(),
        on_compared: Callable[[PlanItem], None] | None = None,
    ) -> list[AuditRecord]:
        """Compare and pull one shard (shards.py) with this engine's clients: each repository of
        the shard is listed once, by the comparison, and the pull verifies only what it pulled."""
        return self.pull(self.compare(tags, options, on_compared), run, options)

    def finish(
        self,
        run: RunInfo,
        tags: Sequence[TagRef],
        note: str | None = None,
        failed: bool = False,
        provenance: Provenance | None = None,
    ) -> tuple[RunSummary, list[AuditRecord]]:
        """Give every tag without a row a failed row, write the run summary, and return it with
        every row of the run (``note``: what the run warns about, e.g. a template that makes tags
        immutable; ``failed``: the run failed before it had tags, whatever the rows say)."""
        records = self.store.records(dag_id=run.dag_id, run_id=run.run_id)
        seen = {(r.ecr_repository, r.tag) for r in records}
        lost = [
            Outcome(PlanItem(tag, Action.FAILED), Status.FAILED, None, NO_RESULT, error_kind=TRANSIENT)
            for tag in tags
            if (tag.cache_repository, tag.reference) not in seen
        ]
        lost_records = [_record(run, outcome) for outcome in lost]
        self.store.write(lost_records)
        summary = RunSummary.of(run.run_id, run.dag_id, run.manifest, records + lost_records)
        summary.note = note
        if failed:
            summary.status = RunStatus.FAILED
        if provenance is not None:
            provenance.apply(summary)
        self.store.write_summary(summary)
        prune_expired(self.store, run.dag_id)  # ECR_MIRROR_AUDIT_RETENTION_DAYS, when set
        return summary, records + lost_records


@contextmanager
def open_mirror(manifest: Manifest, audit_url: str | None = None) -> Iterator[Mirror]:
    """The engine for one manifest, as every caller builds it (DAG tasks, CLI, tests, bench): the
    manifest's ECR target through its Airflow connection, pooled upstream clients that log in with
    the rules' secrets, and the audit store (``audit_url``, default from settings), all closed on
    exit."""
    redaction.install()  # before the first AWS call: no credential in a DEBUG log
    target = manifest.target
    ecr = EcrTarget(target.aws_conn_id, target.region, target.registry_id)
    store = AuditStore(audit_url or get_settings().resolved_audit_url())
    # The upstream digest checks log in with the rule's own PTC secret (read when first needed).
    credentials = partial(upstream_credentials, manifest, ecr)
    try:
        with Upstreams(credentials) as upstreams:
            yield Mirror(manifest, ecr, store, upstreams)
    finally:
        ecr.close()
        store.engine.dispose()
