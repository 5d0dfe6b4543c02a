"""Retention: audit rows older than a cut-off are deleted, except what the audit must keep answering.

Kept whatever their age: the latest row of every tag (per DAG, ECR repository and tag), so the
audit always says what each tag last was; the summary of every run that still has a row; the SLA
miss of every run that still has a summary. The warmed-blob table is not history (it says what
ECR has already been asked for) and is left alone.

``ECR_MIRROR_AUDIT_RETENTION_DAYS`` prunes each DAG's rows when one of its runs finishes;
``ecr-mirror audit prune --older-than 90d`` prunes every DAG on demand.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from ecr_mirror.audit import AuditStore, run_rows, sla_miss_rows, tag_rows, utcnow
from ecr_mirror.settings import get_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pruned:
    """How many rows a prune deleted (or would delete, on a dry run), per table."""

    tag_rows: int
    runs: int
    sla_misses: int


def prune(
    store: AuditStore,
    older_than: timedelta,
    *,
    dag_id: str | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
) -> Pruned:
    """Delete what finished before ``now - older_than`` (every DAG's, or ``dag_id``'s), in one
    transaction; ``dry_run`` counts the same rows and deletes nothing."""
    cutoff = (now or utcnow()) - older_than
    newer = tag_rows.alias("newer")
    superseded = sa.exists().where(
        newer.c.dag_id == tag_rows.c.dag_id,
        newer.c.ecr_repository == tag_rows.c.ecr_repository,
        newer.c.tag == tag_rows.c.tag,
        sa.or_(
            newer.c.finished_at > tag_rows.c.finished_at,
            sa.and_(newer.c.finished_at == tag_rows.c.finished_at, newer.c.id > tag_rows.c.id),
        ),
    )
    has_rows = sa.exists().where(
        tag_rows.c.dag_id == run_rows.c.dag_id, tag_rows.c.run_id == run_rows.c.run_id
    )
    has_summary = sa.exists().where(
        run_rows.c.dag_id == sla_miss_rows.c.dag_id, run_rows.c.run_id == sla_miss_rows.c.run_id
    )
    statements = [
        sa.delete(tag_rows).where(tag_rows.c.finished_at < cutoff, superseded),
        sa.delete(run_rows).where(run_rows.c.finished_at < cutoff, ~has_rows),
        sa.delete(sla_miss_rows).where(sla_miss_rows.c.recorded_at < cutoff, ~has_summary),
    ]
    if dag_id is not None:
        tables = (tag_rows, run_rows, sla_miss_rows)
        statements = [s.where(t.c.dag_id == dag_id) for s, t in zip(statements, tables, strict=True)]
    with store.engine.connect() as conn, conn.begin() as transaction:
        counts = [conn.execute(statement).rowcount for statement in statements]
        if dry_run:
            transaction.rollback()
    return Pruned(*counts)


def prune_expired(store: AuditStore, dag_id: str) -> Pruned | None:
    """Apply ``ECR_MIRROR_AUDIT_RETENTION_DAYS`` to ``dag_id``'s rows (nothing when it is unset).

    Called as a run finishes; a prune that fails is logged and never fails the run."""
    days = get_settings().audit_retention_days
    if days is None:
        return None
    try:
        pruned = prune(store, timedelta(days=days), dag_id=dag_id)
    except sa.exc.SQLAlchemyError as exc:
        log.warning("audit retention: could not prune %s's rows older than %d days: %s", dag_id, days, exc)
        return None
    log.info(
        "audit retention: deleted %d tag rows, %d run summaries and %d SLA misses of %s (older than %d days)",
        pruned.tag_rows,
        pruned.runs,
        pruned.sla_misses,
        dag_id,
        days,
    )
    return pruned
