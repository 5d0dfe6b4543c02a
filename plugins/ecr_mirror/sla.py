"""A manifest's ``sla`` as an Airflow Deadline Alert, and the callback that handles a miss.

The scheduler notices that a run was still going ``sla.within`` after it was queued and hands
``on_sla_miss`` to the triggerer, which imports it from this package (the plugins folder is on every
component's ``sys.path``). The callback records the miss in the audit (``ecr_mirror_sla_miss``, one
row per run) and notifies: always the log, every SNS topic ``sla.notify`` lists, and every
``notify`` target that wants ``sla_miss`` (notify.py), naming the tags that failed so far.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from airflow.sdk.definitions.callback import AsyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

from ecr_mirror.audit import AuditStore, SlaMiss
from ecr_mirror.manifest import Manifest, NotifyTarget
from ecr_mirror.settings import get_settings

log = logging.getLogger(__name__)


def deadline_alert(manifest: Manifest) -> DeadlineAlert | None:
    """The Deadline Alert of the manifest's SLA (None without one): ``within`` from the run's queueing."""
    if manifest.sla is None:
        return None
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=manifest.sla.within,
        callback=AsyncCallback(
            on_sla_miss,
            kwargs={
                "dag_id": manifest.dag_id,
                "manifest": manifest.name,
                "within_seconds": int(manifest.sla.within.total_seconds()),
                "notify": list(manifest.sla.notify),
                "aws_conn_id": manifest.target.aws_conn_id,
                "targets": [t.model_dump() for t in manifest.notify if "sla_miss" in t.events],
            },
        ),
    )


def _publish(topic_arn: str, message: str, aws_conn_id: str) -> None:
    from airflow.providers.amazon.aws.notifications.sns import SnsNotifier

    SnsNotifier(
        aws_conn_id=aws_conn_id, target_arn=topic_arn, message=message, subject="ecr-mirror SLA missed"
    ).notify({})


def _failed_so_far(dag_id: str, run_id: str) -> str:
    """The tags of the run that failed before the deadline, one line each ("" if none)."""
    store = AuditStore(get_settings().resolved_audit_url())
    try:
        failed = [r for r in store.records(dag_id=dag_id, run_id=run_id) if r.status == "failed"]
    finally:
        store.engine.dispose()
    return "".join(f"\n{r.image}:{r.tag}: {r.error}" for r in failed)


def _deadline_time(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value) if isinstance(value, str) else None


async def on_sla_miss(
    *,
    dag_id: str,
    manifest: str,
    within_seconds: int,
    notify: list[str],
    aws_conn_id: str,
    targets: list[dict[str, Any]] | None = None,
    context: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    """Deadline callback (runs in the triggerer): log, notify, then record the miss in the audit."""
    context = context or {}
    dag_run = context.get("dag_run") or {}
    run_id = str(dag_run.get("dag_run_id") or dag_run.get("run_id") or "unknown")
    deadline_at = _deadline_time((context.get("deadline") or {}).get("deadline_time"))
    message = (
        f"ecr-mirror SLA missed: run {run_id} of {dag_id} (manifest {manifest}) "
        f"was not done {within_seconds} s after it was queued"
    )
    log.warning(message)
    failed = await asyncio.to_thread(_failed_so_far, dag_id, run_id)
    if failed:
        message += f"\n\nTags failed so far:{failed}"
    told = []
    for target in notify:
        if target == "log":
            told.append("log")
            continue
        try:
            await asyncio.to_thread(_publish, target, message, aws_conn_id)
            told.append(f"{target}: sent")
        except Exception as exc:  # a failed notification must not lose the record
            log.exception("SNS notification to %s failed", target)
            told.append(f"{target}: failed: {exc}")
    if targets:
        from ecr_mirror.notify import send

        wanted = [NotifyTarget.model_validate(target) for target in targets]
        subject = f"ecr-mirror {manifest}: SLA missed"
        told += await asyncio.to_thread(send, wanted, aws_conn_id, subject, message, context)
    miss = SlaMiss(run_id, dag_id, manifest, within_seconds, deadline_at, "; ".join(told))
    await asyncio.to_thread(_record, miss)


def _record(miss: SlaMiss) -> None:
    store = AuditStore(get_settings().resolved_audit_url())
    try:
        store.write_sla_miss(miss)
    finally:
        store.engine.dispose()
