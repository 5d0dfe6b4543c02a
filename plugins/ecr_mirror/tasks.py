"""The bodies of a mirror DAG's tasks: plain functions of the run's values, testable without a DAG.

dag_factory wires each one as an Airflow task and hands it what it reads from the task context
(run id, trigger parameters, upstream XComs). What a function returns is its task's XCom; a run
that must fail raises RunFailed, which the factory turns into AirflowFailException (no retry); a
batch whose tags failed for a transient reason raises RetryableFailure, which the factory turns into
AirflowException, so Airflow retries the task on those tags only (Mirror.still_to_do). No Airflow
import here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from ecr_mirror.audit import AuditRecord
from ecr_mirror.manifest import Manifest
from ecr_mirror.mirror import RunInfo, RunOptions, open_mirror
from ecr_mirror.pools import pool_slots, slug, upstream_hosts
from ecr_mirror.provenance import Provenance
from ecr_mirror.prune import build_report
from ecr_mirror.rules import ensure_rules as reconcile_rules
from ecr_mirror.run_closing import AIRFLOW
from ecr_mirror.run_report import RunReport
from ecr_mirror.shards import MAX_TASKS_PER_HOST, shards_for
from ecr_mirror.sources import RunSource
from ecr_mirror.states import ErrorKind, Status
from ecr_mirror.tags import SelectionError, TagRef

log = logging.getLogger(__name__)

#: record_audit's message when the run never had its tags (the rules or the resolution failed)
NOT_RESOLVED = "no tag was resolved: ensure_rules or resolve_tags failed (see that task's log)"
#: how many failed tags record_audit names in the run's failure message
FAILURES_SHOWN = 10

Shard = list[dict[str, Any]]
"""A shard of tags as XCom carries it (TagRef.to_dict each; see shards.py)."""
Lanes = dict[str, tuple[str, int]]
"""Task group id -> (upstream host, retries)."""


class RunFailed(Exception):
    """The run failed: some tag failed, or the run never had its tags. The message says which;
    ``report`` is the closed run's (record_audit), for its note."""

    def __init__(self, message: str, report: RunReport | None = None) -> None:
        super().__init__(message)
        self.report = report


class RetryableFailure(Exception):
    """Some tags of a batch failed for a transient reason: another try of the task may pull them."""


def lanes(manifest: Manifest) -> Lanes:
    """Task group id -> (upstream host, retries). Tags are sharded per upstream host (its pool) and
    per retries: a mapped task has one ``retries``, so an image that overrides them gets a lane of
    its own (``<host>_retries_<n>``)."""
    default = manifest.defaults.retries
    wanted = {(host, default) for host in upstream_hosts([manifest])}
    wanted |= {(spec.ref.registry, manifest.image_retries(i)) for i, spec in enumerate(manifest.images)}
    return {
        slug(host) if retries == default else f"{slug(host)}_retries_{retries}": (host, retries)
        for host, retries in sorted(wanted)
    }


def shard_label(shard: Shard) -> str:
    """A mapped task instance's name in the UI: its first tag, and how many more."""
    first = shard[0]
    more = f" +{len(shard) - 1}" if len(shard) > 1 else ""
    return f"{first['image']}:{first['tag'] or first['digest']}{more}"


def lane_shards(all_lanes: Lanes, manifest: Manifest, tags: list[TagRef]) -> dict[str, list[list[TagRef]]]:
    """Each lane's shards (shards.py) of the run's ``tags`` (of ``manifest``, the run's). A host's
    task instances stay within ``MAX_TASKS_PER_HOST`` and its pool's slots: each of its lanes has
    one task that hands the shards over, and shares the rest of the host's budget with the host's
    other lanes."""
    per_host: dict[str, int] = {}
    for host, _ in all_lanes.values():
        per_host[host] = per_host.get(host, 0) + 1
    out: dict[str, list[list[TagRef]]] = {}
    for lane, (host, retries) in all_lanes.items():
        budget = min(pool_slots(host), MAX_TASKS_PER_HOST - per_host[host])
        mine = [t for t in tags if (t.registry, manifest.image_retries(t.image_index)) == (host, retries)]
        out[lane] = shards_for(mine, max(1, budget // per_host[host]), manifest.defaults.batch_size)
    return out


def ensure_rules(source: RunSource, options: RunOptions) -> list[dict[str, Any]]:
    """Reconcile the manifest's rules and templates with ECR; the checks (rules.RuleCheck each)."""
    manifest = source.manifest
    with open_mirror(manifest) as mirror:
        mirror.store.check_writable()  # before a rule changes: a run that cannot record stops here
        checks = reconcile_rules(
            manifest, mirror.target, dry_run=options.dry_run, manifest_dir=source.rules_dir
        )
    return [asdict(check) for check in checks]


def resolve_tags(
    source: RunSource, run: RunInfo, options: RunOptions, params: Mapping[str, Any]
) -> dict[str, Any]:
    """The run's tag shards under one key per lane (and what the source keeps for later tasks).

    Tags that cannot be resolved, and references no rule caches, get their failed rows here.
    """
    scope = source.scope(params)
    out: dict[str, Any] = dict(scope.remembered)
    with open_mirror(scope.manifest) as mirror:
        for closed in mirror.begin(run, by_airflow=True):
            log.warning("closed the interrupted run %s: %s", closed.run_id, closed.note)
        for unrouted in scope.unrouted:
            log.error("not mirrored: %s: %s", unrouted.reference, unrouted.error)
        mirror.store.write([unrouted.record(run) for unrouted in scope.unrouted])
        try:
            tags = mirror.resolve(options, run).tags
        except SelectionError as exc:  # the trigger's image globs: a permanent error, no retry
            raise RunFailed(str(exc)) from None
        mirror.register(run, tags, AIRFLOW)
    log.info("%d tags selected from %d images", len(tags), len(scope.manifest.images))
    for lane, shards in lane_shards(lanes(source.manifest), scope.manifest, tags).items():
        out[lane] = [[t.to_dict() for t in shard] for shard in shards]
    return out


def mirror_shard(manifest: Manifest, shard: Shard, run: RunInfo, options: RunOptions) -> dict[str, int]:
    """Compare, pull, verify and warm one shard with one set of clients, and write its audit rows;
    the count of each status."""
    with open_mirror(manifest) as mirror:
        tags = [TagRef.from_dict(t) for t in shard]
        todo = mirror.still_to_do(tags, run)
        if len(todo) < len(tags):
            log.info(
                "%d of %d tags already have their row in this run: not pulled again",
                len(tags) - len(todo),
                len(tags),
            )
        records = mirror.mirror(todo, run, options)
    counts: dict[str, int] = {}
    for record in records:
        counts[str(record.status)] = counts.get(str(record.status), 0) + 1
        log.info("%s:%s %s -> %s", record.image, record.tag, record.action, record.status)
    _raise_for_failures(records)
    return counts


def _raise_for_failures(records: list[AuditRecord]) -> None:
    failed = [r for r in records if r.status is Status.FAILED]
    transient = [r for r in failed if r.error_kind is ErrorKind.TRANSIENT]
    if transient:
        shown = "; ".join(f"{r.image}:{r.tag}: {r.error}" for r in transient[:FAILURES_SHOWN])
        raise RetryableFailure(
            f"{len(transient)} tag(s) failed for a transient reason, a retry may pull them: {shown}"
        )
    if failed:
        shown = "; ".join(f"{r.image}:{r.tag}: {r.error}" for r in failed[:FAILURES_SHOWN])
        raise RunFailed(f"{len(failed)} tag(s) failed for a permanent reason, not retried: {shown}")


def record_audit(
    manifest: Manifest,
    run: RunInfo,
    checks: list[dict[str, Any]] | None,
    resolved: Mapping[str, Any] | None,
    link: str | None = None,
    provenance: Provenance | None = None,
) -> tuple[dict[str, Any], RunReport]:
    """Close the run: a failed row for every tag without one, the summary (with the rules'
    warnings), and RunFailed when any tag failed or the run never had its tags. Returns the
    task's XCom and the run's report (its note, with ``link`` to the audit view's page).

    ``checks`` and ``resolved`` are ensure_rules' and resolve_tags' XComs, None when those failed.
    """
    tags = [
        TagRef.from_dict(t)
        for lane in lanes(manifest)
        for shard in (resolved or {}).get(lane, [])
        for t in shard
    ]
    notes = [warning for check in checks or [] for warning in check["warnings"]]
    if resolved is None:
        notes.append(NOT_RESOLVED)
    with open_mirror(manifest) as mirror:
        summary, records = mirror.finish(
            run, tags, note="; ".join(notes) or None, failed=resolved is None, provenance=provenance
        )
    report = RunReport(summary, records, link)
    failed = [r for r in records if r.status is Status.FAILED]
    log.info("run %s: %d tags, %s", run.run_id, summary.total, summary.counts)
    if resolved is None:
        raise RunFailed(NOT_RESOLVED, report)
    if failed:
        shown = "; ".join(f"{r.image}:{r.tag}: {r.error}" for r in failed[:FAILURES_SHOWN])
        raise RunFailed(f"{len(failed)} of {summary.total} tags failed: {shown}", report)
    return {"total": summary.total, "counts": summary.counts}, report


def prune_report(manifest: Manifest) -> dict[str, int]:
    """Log the cached tags no selector asks for any more (prune.py; deletes nothing); the count of
    each verdict."""
    with open_mirror(manifest) as mirror:
        selection = mirror.resolve(RunOptions())
        report = build_report(
            manifest, mirror.target, selection, manifest.prune.min_idle_days, mirror.store.pin_carrier
        )
    counts: dict[str, int] = {}
    for entry in report.entries:
        counts[entry.verdict] = counts.get(entry.verdict, 0) + 1
        log.info("%s:%s %s: %s", entry.tag.repository, entry.tag.tag, entry.verdict, entry.reason)
    for repository, why in report.skipped.items():
        log.warning("prune report skipped %s: %s", repository, why)
    return counts
