"""Manifest -> Airflow DAG.

Each manifest becomes one DAG ``ecr_mirror__<name>``; per upstream registry host of its rules, a
task group ``<host>`` (e.g. ``registry_1_docker_io``) takes that host's shards and maps over them::

    ensure_rules >> resolve_tags >> <host>.shards >> <host>.mirror[shard] >> record_audit

``resolve_tags`` groups the run's tags by upstream host, then into shards (shards.py): every tag of
an ECR repository in one shard, at most the host's pool slots and 11 shards per host, so a run has
a fixed number of task instances whatever its number of tags. Each ``mirror`` task instance
compares and pulls its shard with one set of clients (one ECR listing per repository), talks to
one upstream and runs in that upstream's Airflow pool (pools.py); inside a task,
``defaults.concurrency`` threads share one pooled HTTP client. ``record_audit`` runs even when a
shard failed, gives every tag an audit row, and fails the run when any tag failed. The trigger
form (params.py) narrows or extends a run.

Nothing here touches the network or a database at parse time: the tasks build their clients when
they run. The task bodies live in tasks.py; this module wires them. A DAG is built around a
RunSource (sources.py): a manifest file's, or the backfill's (backfill.BackfillSource), whose
runs each mirror a manifest built from their image references.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param, TaskGroup, TriggerRule, get_current_context, task
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from airflow.sdk.log import mask_secret

from ecr_mirror import assets, backfill, notify, run_notes, tasks
from ecr_mirror.dag_doc import dag_doc
from ecr_mirror.manifest import Defaults, Identity, Manifest, ManifestError, load_manifests
from ecr_mirror.mirror import RunInfo, RunOptions
from ecr_mirror.params import run_params
from ecr_mirror.pools import pool_name, slug
from ecr_mirror.provenance import ManifestFile, for_dag_run
from ecr_mirror.rules import check_shared_rules
from ecr_mirror.secret_sink import set_secret_sink
from ecr_mirror.settings import get_settings
from ecr_mirror.sla import deadline_alert
from ecr_mirror.sources import ManifestSource, ResolvedTags, RunSource

log = logging.getLogger(__name__)

# every credential the engine reads in a task (secret_sink.py) is masked in the task's logs
set_secret_sink(mask_secret)

START_DATE = datetime(2025, 1, 1, tzinfo=UTC)


def build_dag(manifest: Manifest, source: Path, *, with_deadline: bool = True) -> DAG:
    """The DAG of one manifest file (``source`` is shown in its docs).

    ``with_deadline=False`` leaves out the SLA's Deadline Alert: Airflow 3.3.2's ``dag.test()``
    crashes on a DAG with a deadline (``AttributeError: 'dict' object has no attribute 'hex'`` in
    ``DagRun.update_state``) and never fires deadlines anyway, so in-process runs build without it.
    """
    return dag_for(ManifestSource(manifest, source.parent), source, with_deadline=with_deadline)


def dag_for(run_source: RunSource, source: Path, *, with_deadline: bool = True) -> DAG:
    """The DAG of a run source: a manifest's (build_dag) or the backfill's (backfill.BackfillSource)."""
    manifest = run_source.manifest
    manifest_file, text = ManifestFile.read(source)
    params: dict[str, Param] = run_params()
    params.update({name: Param(**field) for name, field in run_source.form_fields().items()})
    with DAG(
        dag_id=manifest.dag_id,
        description=manifest.description or f"Mirror the images of {source.name} into ECR",
        schedule=manifest.schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=_default_args(manifest),
        params=params,
        deadline=deadline_alert(manifest) if with_deadline else None,
        **notify.callbacks(manifest),
        tags=["ecr-mirror", manifest.name],
        doc_md=dag_doc(manifest, source, text, run_notes.audit_base()),
    ) as dag:
        _wire(run_source, manifest_file)
    return dag


def _default_args(manifest: Manifest) -> dict[str, Any]:
    defaults: Defaults = manifest.defaults
    return {
        "owner": manifest.owner,
        "retries": defaults.retries,
        "retry_delay": timedelta(seconds=defaults.retry_delay_seconds),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(seconds=defaults.max_retry_delay_seconds),
        "execution_timeout": defaults.execution_timeout,
    }


def _context(manifest: Manifest) -> tuple[Any, RunInfo, RunOptions]:
    """The running task's context, its run and the run's trigger options."""
    current: Any = get_current_context()
    run = RunInfo(current["run_id"], manifest.dag_id, manifest.name, attempt=current["ti"].try_number)
    return current, run, RunOptions.from_dict(current["params"])


def _resolved_tags(current: Any) -> ResolvedTags:
    """Reads resolve_tags' XCom of the running task's run, when called."""
    return lambda: current["ti"].xcom_pull(task_ids="resolve_tags")


@contextmanager
def _as_airflow_failures() -> Iterator[None]:
    """A batch's failures as Airflow takes them: RetryableFailure (a tag failed for a transient
    reason) fails the try, so Airflow retries it; RunFailed (permanent) fails it without retries."""
    try:
        yield
    except tasks.RetryableFailure as exc:
        raise AirflowException(str(exc)) from None
    except tasks.RunFailed as exc:
        raise AirflowFailException(str(exc)) from None


def _close_run(manifest: Manifest, manifest_file: ManifestFile) -> dict[str, Any]:
    """record_audit's body: close the run in the audit and publish its note (run_notes)."""
    # XComs are pulled here, not taken as arguments: this task runs after failures too,
    # when ensure_rules or resolve_tags may have left nothing to pull.
    current, this, options = _context(manifest)
    ti = current["ti"]
    link = run_notes.audit_link(this.dag_id, this.run_id)
    origin = for_dag_run(
        manifest_file, current["dag_run"], getattr(ti, "dag_version_id", None), options.dry_run
    )
    try:
        checks = ti.xcom_pull(task_ids="ensure_rules")
        resolved = ti.xcom_pull(task_ids="resolve_tags")
        result, report = tasks.record_audit(manifest, this, checks, resolved, link, origin)
    except tasks.RunFailed as exc:
        if exc.report is not None:
            run_notes.publish(ti, exc.report)
        raise AirflowFailException(str(exc)) from None
    run_notes.publish(ti, report)
    assets.describe(current["outlet_events"], manifest, report)
    return result


def _wire(source: RunSource, manifest_file: ManifestFile) -> None:
    """The tasks of a mirror DAG (bodies in tasks.py) and their dependencies::

    ensure_rules >> resolve_tags >> <lane>.shards >> <lane>.mirror[shard] >> record_audit
    """
    manifest = source.manifest

    @task
    def ensure_rules() -> list[dict[str, Any]]:
        return tasks.ensure_rules(source, _context(manifest)[2])

    @task
    def resolve_tags() -> dict[str, Any]:
        current, this, options = _context(manifest)
        try:
            return tasks.resolve_tags(source, this, options, current["params"])
        except tasks.RunFailed as exc:  # e.g. an image glob that matches nothing: retrying cannot help
            raise AirflowFailException(str(exc)) from None

    @task
    def shards_of(resolved: dict[str, Any], lane: str) -> list[tasks.Shard]:
        """One lane's shards (Airflow records a mapped length for a task's whole return value only,
        not for one key of a ``multiple_outputs`` dict)."""
        lane_shards: list[tasks.Shard] = resolved[lane]
        return lane_shards

    @task(map_index_template="{{ shard_label }}")
    def mirror(shard: tasks.Shard) -> dict[str, int]:
        current, this, options = _context(manifest)
        current["shard_label"] = tasks.shard_label(shard)
        with _as_airflow_failures():
            return tasks.mirror_shard(source.run_manifest(_resolved_tags(current)), shard, this, options)

    @task(trigger_rule=TriggerRule.ALL_DONE, outlets=assets.outlets(manifest))
    def record_audit() -> dict[str, Any]:
        return _close_run(manifest, manifest_file)

    resolved = resolve_tags()
    audit = record_audit()
    ensure_rules() >> resolved >> audit
    _wire_prune_report(manifest, audit)
    for lane, (host, retries) in tasks.lanes(manifest).items():
        with TaskGroup(group_id=lane, tooltip=f"shards of {host} ({retries} retries)"):
            # Airflow hands the task resolve_tags' value for the XComArg when it runs
            mine = shards_of.override(task_id="shards")(resolved, lane)  # type: ignore[arg-type]
            mirror.override(pool=pool_name(host), retries=retries).expand(shard=mine) >> audit


def _wire_prune_report(manifest: Manifest, audit: Any) -> None:
    """``prune_report`` after ``record_audit``, on its success only: a failed run keeps a failed
    leaf (Airflow decides a run's state by its leaves), and only a resolved selection is a list of
    what is wanted. Off unless the manifest says ``prune: {report: true}``."""
    if not manifest.prune.report:
        return

    @task
    def prune_report() -> dict[str, int]:
        return tasks.prune_report(manifest)

    audit >> prune_report()


def invalid_dag(error: ManifestError) -> DAG:
    """The DAG of a manifest that does not load: its only task fails with the error's text
    (file, line, field), without retries.

    It keeps the manifest's DAG id and schedule when the raw YAML gives them
    (``ManifestError.identity``): the DAG keeps its paused state and its runs, and each scheduled
    run turns red until the file is fixed, instead of the mirroring stopping unseen. Otherwise
    (the YAML does not parse, the name is invalid or already taken) it is
    ``ecr_mirror__invalid__<file>``, unscheduled.
    """
    message = str(error)
    identity = error.identity
    with DAG(
        dag_id=identity.dag_id if identity else f"ecr_mirror__invalid__{slug(error.path.stem)}",
        description=f"{error.path.name} does not load: fix it (see the task log or these docs)",
        schedule=identity.schedule if identity else None,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args={"retries": 0},
        tags=["ecr-mirror", "invalid"],
        doc_md=f"Manifest `{error.path}` does not load:\n\n```\n{message}\n```",
        on_failure_callback=notify.ManifestErrorNotifier(error, identity) if identity else None,
    ) as dag:

        @task(retries=0)
        def report_manifest_error() -> None:
            raise AirflowFailException(message)

        report_manifest_error()
    return dag


def register_dags(
    namespace: dict[str, Any], manifest_dir: Path, backfill_dir: Path | None = None
) -> list[ManifestError]:
    """Build a DAG for every valid manifest, and the backfill DAG when ``backfill_dir`` has its
    config, into ``namespace``; a file that does not load becomes a DAG whose runs fail with its
    error (invalid_dag), so one broken manifest never hides the others and never stops unseen."""
    with_deadline = get_settings().deadlines
    loaded, errors = load_manifests(manifest_dir)
    conflicts = check_shared_rules(loaded)
    refused = {error.path for error in conflicts}
    refused_manifests = {path: manifest for path, manifest in loaded if path in refused}
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
            source = backfill.BackfillSource(base, backfill_dir, manifest_dir)
            config = backfill_dir / backfill.CONFIG_FILE
            namespace[base.dag_id] = dag_for(source, config, with_deadline=with_deadline)
    for error in errors:
        log.error("manifest not loaded: %s", error)
        _keep_identity(error, refused_manifests, namespace)
        dag = invalid_dag(error)
        namespace[dag.dag_id] = dag
    return errors


def _keep_identity(error: ManifestError, refused: dict[Path, Manifest], namespace: dict[str, Any]) -> None:
    """A manifest refused for its rules keeps its DAG id and schedule too; no invalid DAG takes
    the id of a DAG already built (two files that give the same name)."""
    if error.identity is None and (manifest := refused.get(error.path)) is not None:
        error.identity = Identity(
            manifest.dag_id, manifest.schedule, manifest.target.aws_conn_id, tuple(manifest.notify)
        )
    if error.identity is not None and error.identity.dag_id in namespace:
        error.identity = None
