"""A manifest's ``sla`` as an Airflow Deadline Alert, and the callback that handles a miss.

The scheduler notices that a run was still going ``sla.within`` after it was queued and hands
``on_sla_miss`` to the triggerer, which imports it from this package (the plugins folder is on every
component's ``sys.path``). The callback records the miss in the audit (``ecr_mirror_sla_miss``, one
row per run) and notifies: always the log, and every SNS topic the manifest lists.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from airflow.sdk.definitions.callback import AsyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

from ecr_mirror.audit import AuditStore, SlaMiss
from ecr_mirror.manifest import Manifest
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
            },
        ),
    )


def _publish(topic_arn: str, message: str, aws_conn_id: str) -> None:
    from airflow.providers.amazon.aws.hooks.sns import SnsHook

    SnsHook(aws_conn_id=aws_conn_id).publish_to_target(topic_arn, message, subject="ecr-mirror SLA missed")


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
    miss = SlaMiss(run_id, dag_id, manifest, within_seconds, deadline_at, "; ".join(told))
    await asyncio.to_thread(_record, miss)


def _record(miss: SlaMiss) -> None:
    store = AuditStore(get_settings().resolved_audit_url())
    try:
        store.write_sla_miss(miss)
    finally:
        store.engine.dispose()
