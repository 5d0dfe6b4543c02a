"""Manifest -> Airflow DAG.

Each manifest becomes one DAG ``ecr_mirror__<name>``; per upstream registry host of its rules, a
task group ``<host>`` (e.g. ``registry_1_docker_io``) takes that host's batches and maps over them::

    ensure_rules >> resolve_tags >> <host>.batches >> <host>.compare_digests[batch]
                 >> <host>.pull_through[batch] >> record_audit

``resolve_tags`` groups the run's tags by upstream host before batching them
(``defaults.batch_size``), so every compare/pull task instance talks to one upstream and runs in
that upstream's Airflow pool (pools.py); inside a task, ``defaults.concurrency`` threads share one
pooled HTTP client. ``record_audit`` runs even when a batch failed, gives every tag an audit row,
and fails the run when any tag failed. The trigger form (params.py) narrows or extends a run.

Nothing here touches the network or a database at parse time: the tasks build their clients when
they run. The backfill DAG (backfill.py) is the same DAG over a manifest built per run.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param, TaskGroup, TriggerRule, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from ecr_mirror import backfill
from ecr_mirror.manifest import Manifest, ManifestError, load_manifests
from ecr_mirror.mirror import RunInfo, RunOptions, batches, open_mirror
from ecr_mirror.params import run_params
from ecr_mirror.plan import PlanItem
from ecr_mirror.pools import pool_name, slug, upstream_hosts
from ecr_mirror.rules import check_shared_rules
from ecr_mirror.rules import ensure_rules as reconcile_rules
from ecr_mirror.settings import get_settings
from ecr_mirror.sla import deadline_alert
from ecr_mirror.tags import TagRef

log = logging.getLogger(__name__)

START_DATE = datetime(2025, 1, 1, tzinfo=UTC)
#: record_audit's message when the run never had its tags (the rules or the resolution failed)
_NOT_RESOLVED = "no tag was resolved: ensure_rules or resolve_tags failed (see that task's log)"
#: how many failed tags record_audit names in the run's failure message
_FAILURES_SHOWN = 10
#: resolve_tags' key of a backfill run's references (next to one key of batches per host)
_REFERENCES = "references"


def _label(batch: list[dict[str, Any]]) -> str:
    first = batch[0]
    more = f" +{len(batch) - 1}" if len(batch) > 1 else ""
    return f"{first['image']}:{first['tag'] or first['digest']}{more}"


def _context() -> tuple[dict[str, Any], RunOptions]:
    context: Any = get_current_context()
    return context, RunOptions.from_dict(context["params"])


def _lanes(manifest: Manifest) -> dict[str, tuple[str, int]]:
    """Task group id -> (upstream host, retries). Tags are batched per upstream host (its pool) and
    per retries: a mapped task has one ``retries``, so an image that overrides them gets a lane of
    its own (``<host>_retries_<n>``)."""
    default = manifest.defaults.retries
    wanted = {(host, default) for host in upstream_hosts([manifest])}
    wanted |= {(spec.ref.registry, manifest.image_retries(i)) for i, spec in enumerate(manifest.images)}
    return {
        slug(host) if retries == default else f"{slug(host)}_retries_{retries}": (host, retries)
        for host, retries in sorted(wanted)
    }


def build_dag(
    manifest: Manifest,
    source: Path,
    *,
    with_deadline: bool = True,
    backfill_dir: Path | None = None,
    rules_dir: Path | None = None,
) -> DAG:
    """The DAG of one manifest (``source`` is shown in its docs).

    ``with_deadline=False`` leaves out the SLA's Deadline Alert: Airflow 3.3.2's ``dag.test()``
    crashes on a DAG with a deadline (``AttributeError: 'dict' object has no attribute 'hex'`` in
    ``DagRun.update_state``) and never fires deadlines anyway, so in-process runs build without it.
    ``backfill_dir`` makes the backfill DAG: ``manifest`` is then a BackfillManifest and each run
    mirrors the trigger form's ``references`` or the image lists in that folder. ``rules_dir``
    anchors the rules' relative file paths (default: the folder of ``source``; the backfill's
    rules come from the manifests' folder).
    """
    defaults = manifest.defaults
    lanes = _lanes(manifest)
    default_args = {
        "owner": manifest.owner,
        "retries": defaults.retries,
        "retry_delay": timedelta(seconds=defaults.retry_delay_seconds),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(seconds=defaults.max_retry_delay_seconds),
        "execution_timeout": defaults.execution_timeout,
    }
    params: dict[str, Param] = run_params()
    if backfill_dir is not None:
        params["references"] = Param(
            [],
            type="array",
            items={"type": "string", "minLength": 1},
            title="Image references",
            description=f"image:tag or image@sha256:...; empty: every line of {backfill_dir}/*.txt",
        )
    deadline = deadline_alert(manifest) if with_deadline else None

    def run_manifest(context: dict[str, Any]) -> Manifest:
        """The manifest a task of this run works with (a backfill run's is built from its references)."""
        if not isinstance(manifest, backfill.BackfillManifest):
            return manifest
        resolved = context["ti"].xcom_pull(task_ids="resolve_tags")
        return backfill.run_manifest(manifest, resolved[_REFERENCES])[0]

    with DAG(
        dag_id=manifest.dag_id,
        description=manifest.description or f"Mirror the images of {source.name} into ECR",
        schedule=manifest.schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=default_args,
        params=params,
        deadline=deadline,
        tags=["ecr-mirror", manifest.name],
        doc_md=f"Generated by ecr-mirror from `{source}` (manifest `{manifest.name}`).",
    ) as dag:

        @task
        def ensure_rules() -> list[dict[str, Any]]:
            _, options = _context()
            with open_mirror(manifest) as mirror:
                checks = reconcile_rules(
                    manifest, mirror.target, dry_run=options.dry_run, manifest_dir=rules_dir or source.parent
                )
                return [asdict(check) for check in checks]

        @task
        def resolve_tags() -> dict[str, Any]:
            """The run's tag batches under one key per lane (and a backfill's references)."""
            context, options = _context()
            run = RunInfo(context["run_id"], manifest.dag_id, manifest.name)
            out: dict[str, Any] = {}
            selected, unrouted = manifest, []
            if isinstance(manifest, backfill.BackfillManifest):
                assert backfill_dir is not None
                references = context["params"].get(_REFERENCES) or backfill.read_references(backfill_dir)
                selected, unrouted = backfill.run_manifest(manifest, references)
                out[_REFERENCES] = references
            with open_mirror(selected) as mirror:
                for u in unrouted:
                    log.error("not mirrored: %s: %s", u.reference, u.error)
                mirror.store.write([u.record(run) for u in unrouted])
                tags = mirror.resolve(options, run)
            log.info("%d tags selected from %d images", len(tags), len(selected.images))
            for lane, (host, retries) in lanes.items():
                mine = [
                    t for t in tags if (t.registry, selected.image_retries(t.image_index)) == (host, retries)
                ]
                out[lane] = [[t.to_dict() for t in b] for b in batches(mine, defaults.batch_size)]
            return out

        @task
        def batches_of(resolved: dict[str, Any], lane: str) -> list[list[dict[str, Any]]]:
            """One lane's batches (Airflow maps over a whole XCom only, not over a key of it)."""
            return resolved[lane]  # type: ignore[no-any-return]

        @task(map_index_template="{{ batch_label }}")
        def compare_digests(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
            context, options = _context()
            context["batch_label"] = _label(batch)
            with open_mirror(run_manifest(context)) as mirror:
                plan = mirror.compare([TagRef.from_dict(t) for t in batch], options)
            for item in plan:
                log.info("%s:%s %s", item.tag.image, item.tag.reference, item.action)
            return [item.to_dict() for item in plan]

        @task(map_index_template="{{ batch_label }}")
        def pull_through(plan: list[dict[str, Any]]) -> dict[str, int]:
            context, options = _context()
            context["batch_label"] = _label([p["tag"] for p in plan])
            run = RunInfo(context["run_id"], manifest.dag_id, manifest.name)
            with open_mirror(run_manifest(context)) as mirror:
                records = mirror.pull([PlanItem.from_dict(p) for p in plan], run, options)
            counts: dict[str, int] = {}
            for record in records:
                counts[record.status] = counts.get(record.status, 0) + 1
                log.info("%s:%s %s -> %s", record.image, record.tag, record.action, record.status)
            return counts

        @task(trigger_rule=TriggerRule.ALL_DONE)
        def record_audit() -> dict[str, Any]:
            # XComs are pulled here, not taken as arguments: this task runs after failures too,
            # when ensure_rules or resolve_tags may have left nothing to pull.
            context = get_current_context()
            run = RunInfo(context["run_id"], manifest.dag_id, manifest.name)
            checks = context["ti"].xcom_pull(task_ids="ensure_rules") or []
            resolved = context["ti"].xcom_pull(task_ids="resolve_tags")
            tags = [
                TagRef.from_dict(t)
                for lane in lanes
                for batch in (resolved or {}).get(lane, [])
                for t in batch
            ]
            notes = [warning for check in checks for warning in check["warnings"]]
            if resolved is None:
                notes.append(_NOT_RESOLVED)
            with open_mirror(manifest) as mirror:
                summary, records = mirror.finish(
                    run, tags, note="; ".join(notes) or None, failed=resolved is None
                )
            failed = [r for r in records if r.status == "failed"]
            log.info("run %s: %d tags, %s", run.run_id, summary.total, summary.counts)
            if resolved is None:
                raise AirflowFailException(_NOT_RESOLVED)
            if failed:
                shown = "; ".join(f"{r.image}:{r.tag}: {r.error}" for r in failed[:_FAILURES_SHOWN])
                raise AirflowFailException(f"{len(failed)} of {summary.total} tags failed: {shown}")
            return {"total": summary.total, "counts": summary.counts}

        resolved = resolve_tags()
        audit = record_audit()
        ensure_rules() >> resolved >> audit
        for lane, (host, retries) in lanes.items():
            with TaskGroup(group_id=lane, tooltip=f"batches of {host} ({retries} retries)"):
                pool = pool_name(host)
                mine = batches_of.override(task_id="batches")(resolved, lane)
                plans = compare_digests.override(pool=pool, retries=retries).expand(batch=mine)
                pull_through.override(pool=pool, retries=retries).expand(plan=plans) >> audit
    return dag


def invalid_dag(error: ManifestError) -> DAG:
    """A DAG that shows a manifest that does not load: its only task fails with the error's text."""
    message = str(error)
    with DAG(
        dag_id=f"ecr_mirror__invalid__{slug(error.path.stem)}",
        description=f"{error.path.name} does not load: fix it (see the task log or these docs)",
        schedule=None,
        start_date=START_DATE,
        catchup=False,
        tags=["ecr-mirror", "invalid"],
        doc_md=f"Manifest `{error.path}` does not load:\n\n```\n{message}\n```",
    ) as dag:

        @task
        def report_manifest_error() -> None:
            raise AirflowFailException(message)

        report_manifest_error()
    return dag


def register_dags(
    namespace: dict[str, Any], manifest_dir: Path, backfill_dir: Path | None = None
) -> list[ManifestError]:
    """Build a DAG for every valid manifest, and the backfill DAG when ``backfill_dir`` has its
    config, into ``namespace``; a file that does not load becomes an ``ecr_mirror__invalid__<file>``
    DAG, so one broken manifest never hides the others and an operator sees it in the UI."""
    with_deadline = get_settings().deadlines
    loaded, errors = load_manifests(manifest_dir)
    conflicts = check_shared_rules(loaded)
    refused = {error.path for error in conflicts}
    loaded = [(path, manifest) for path, manifest in loaded if path not in refused]
    errors += conflicts
    for path, manifest in loaded:
        namespace[manifest.dag_id] = build_dag(manifest, path, with_deadline=with_deadline)
    if backfill_dir is not None and (backfill_dir / backfill.CONFIG_FILE).is_file():
        try:
            base = backfill.load_backfill(backfill_dir, [m for _, m in loaded])
        except ManifestError as exc:
            errors.append(exc)
        else:
            source = backfill_dir / backfill.CONFIG_FILE
            namespace[base.dag_id] = build_dag(
                base, source, with_deadline=with_deadline, backfill_dir=backfill_dir, rules_dir=manifest_dir
            )
    for error in errors:
        log.error("manifest not loaded: %s", error)
        dag = invalid_dag(error)
        namespace[dag.dag_id] = dag
    return errors
