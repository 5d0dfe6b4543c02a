"""Re-run only the tags that failed in an earlier run (the trigger form's ``retry_failed``, and
``ecr-mirror sync --retry-failed RUN_ID``).

The retry resolves the manifest as any run does (so a selector that matched nothing, or a tag list
that could not be read, is tried again), then keeps only what failed in the given run of the same
DAG, as the audit recorded it: its failed rows, by ECR repository and tag. What failed and is no
longer selected (the manifest changed since) is not mirrored; the run's log says so.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

from ecr_mirror.audit import AuditStore, tag_rows
from ecr_mirror.states import Status
from ecr_mirror.tags import Selection, SelectionError

log = logging.getLogger(__name__)


def failed_in(store: AuditStore, dag_id: str, run_id: str) -> set[tuple[str, str]]:
    """(ECR repository, tag) of each tag that failed in the run; SelectionError when the audit has
    no row of that run, or none failed in it (a retry of nothing is a mistake, not a no-op)."""
    query = sa.select(tag_rows.c.ecr_repository, tag_rows.c.tag, tag_rows.c.status).where(
        tag_rows.c.dag_id == dag_id, tag_rows.c.run_id == run_id
    )
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    if not rows:
        raise SelectionError(f"retry_failed: the audit has no run {run_id!r} of {dag_id}")
    failed = {(repository, tag) for repository, tag, status in rows if status == Status.FAILED}
    if not failed:
        raise SelectionError(f"retry_failed: no tag failed in run {run_id!r} of {dag_id}: nothing to retry")
    return failed


def keep_failed(selection: Selection, failed: set[tuple[str, str]]) -> None:
    """Narrow ``selection`` (in place) to the tags and unresolved images of ``failed``."""
    selection.tags = [t for t in selection.tags if (t.cache_repository, t.reference) in failed]
    selection.unresolved = [u for u in selection.unresolved if (u.cache_repository, u.tag) in failed]
    found = {(t.cache_repository, t.reference) for t in selection.tags}
    found |= {(u.cache_repository, u.tag) for u in selection.unresolved}
    for repository, tag in sorted(failed - found):
        log.warning("not retried: %s:%s is no longer selected by the manifest", repository, tag)
