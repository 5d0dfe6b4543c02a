"""The audit as people ask about it: runs with their counts and provenance, the rows of one run, the
digest history of one tag. Reads only; the queries use the indexes audit.py declares.

Statuses are read as the strings stored, not as ``states`` enums: a store written by a newer
ecr-mirror may hold a status this one does not know, and reading it must not fail.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from ecr_mirror.audit import AuditStore, run_rows, tag_rows
from ecr_mirror.states import RunStatus

#: a tag row as stored: every column of ``ecr_mirror_audit``, times in UTC
TagRow = dict[str, Any]


@dataclass
class RunView:
    """One run: its summary row, the count of each status among its tag rows, its provenance."""

    dag_id: str
    run_id: str
    manifest: str
    status: str
    total: int
    finished_at: datetime
    note: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    started_at: datetime | None = None
    run_type: str | None = None
    dry_run: bool | None = None
    triggered_by: str | None = None
    manifest_hash: str | None = None
    manifest_path: str | None = None
    #: the Airflow DAG version's id the run used
    dag_version: str | None = None
    #: the trigger conf (parsed from its JSON)
    conf: Any = None

    @property
    def failed(self) -> bool:
        return self.status == RunStatus.FAILED


#: the columns of ``ecr_mirror_run`` a RunView shows (its counts come from the tag rows)
_RUN_COLUMNS = [run_rows.c[f.name] for f in fields(RunView) if f.name != "counts"]


def _times(row: dict[str, Any]) -> dict[str, Any]:
    # SQLite hands back naive datetimes; everything in the audit is UTC
    return {
        k: v.replace(tzinfo=UTC) if isinstance(v, datetime) and v.tzinfo is None else v
        for k, v in row.items()
    }


def _conf(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:  # not written by ecr-mirror: shown as stored
        return text


def _run_view(row: sa.RowMapping) -> RunView:
    values = _times(dict(row))
    values["conf"] = _conf(values["conf"])
    return RunView(**values)


def dag_known(store: AuditStore, dag_id: str) -> bool:
    """Whether the audit has a run or a tag row of ``dag_id``."""
    queries = [
        sa.select(run_rows.c.dag_id).where(run_rows.c.dag_id == dag_id).limit(1),
        sa.select(tag_rows.c.dag_id).where(tag_rows.c.dag_id == dag_id).limit(1),
    ]
    with store.engine.connect() as conn:
        return any(conn.execute(query).first() is not None for query in queries)


def runs(
    store: AuditStore,
    *,
    dag_id: str | None = None,
    run_id: str | None = None,
    statuses: Iterable[str] = (),
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = 20,
) -> list[RunView]:
    """Runs, the most recently finished first, with the count of each status among their rows."""
    query = sa.select(*_RUN_COLUMNS).order_by(run_rows.c.finished_at.desc(), run_rows.c.run_id.desc())
    if dag_id is not None:
        query = query.where(run_rows.c.dag_id == dag_id)
    if run_id is not None:
        query = query.where(run_rows.c.run_id == run_id)
    if wanted := list(statuses):
        query = query.where(run_rows.c.status.in_(wanted))
    if since is not None:
        query = query.where(run_rows.c.finished_at >= since)
    if until is not None:
        query = query.where(run_rows.c.finished_at < until)
    if limit is not None:
        query = query.limit(limit)
    with store.engine.connect() as conn:
        found = [_run_view(row) for row in conn.execute(query).mappings()]
        counts = _counts(conn, [(r.dag_id, r.run_id) for r in found])
    for view in found:
        view.counts = counts.get((view.dag_id, view.run_id), {})
    return found


def _counts(conn: sa.Connection, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], dict[str, int]]:
    """The count of each status among the tag rows of each (dag_id, run_id)."""
    if not keys:
        return {}
    query = (
        sa.select(tag_rows.c.dag_id, tag_rows.c.run_id, tag_rows.c.status, sa.func.count())
        .where(sa.tuple_(tag_rows.c.dag_id, tag_rows.c.run_id).in_(keys))
        .group_by(tag_rows.c.dag_id, tag_rows.c.run_id, tag_rows.c.status)
    )
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for dag, run, status, count in conn.execute(query):
        counts[(dag, run)][status] = count
    return {key: dict(sorted(value.items())) for key, value in counts.items()}


def tag_rows_of(store: AuditStore, dag_id: str, run_id: str) -> list[TagRow]:
    """Every row of one run, in the order they were first written."""
    query = (
        sa.select(tag_rows)
        .where(tag_rows.c.dag_id == dag_id, tag_rows.c.run_id == run_id)
        .order_by(tag_rows.c.id)
    )
    with store.engine.connect() as conn:
        return [_times(dict(row)) for row in conn.execute(query).mappings()]


def history(
    store: AuditStore,
    names: Iterable[str],
    tag: str,
    *,
    dag_id: str | None = None,
    limit: int | None = 50,
) -> list[TagRow]:
    """The rows of one tag across runs, newest first. ``names`` are the spellings that may name it:
    the upstream image as the audit stores it ("docker.io/library/nginx") or its ECR repository."""
    spelled = list(names)
    query = (
        sa.select(tag_rows)
        .where(
            tag_rows.c.tag == tag,
            sa.or_(tag_rows.c.ecr_repository.in_(spelled), tag_rows.c.image.in_(spelled)),
        )
        .order_by(tag_rows.c.finished_at.desc(), tag_rows.c.id.desc())
    )
    if dag_id is not None:
        query = query.where(tag_rows.c.dag_id == dag_id)
    if limit is not None:
        query = query.limit(limit)
    with store.engine.connect() as conn:
        return [_times(dict(row)) for row in conn.execute(query).mappings()]


def latest_run_without_summary(store: AuditStore, dag_id: str | None) -> tuple[str, str] | None:
    """(dag_id, run_id) of the run whose rows finished last, for an audit whose runs have rows but
    no summary (a run still going, or killed before it wrote one)."""
    query = sa.select(tag_rows.c.dag_id, tag_rows.c.run_id).order_by(
        tag_rows.c.finished_at.desc(), tag_rows.c.id.desc()
    )
    if dag_id is not None:
        query = query.where(tag_rows.c.dag_id == dag_id)
    with store.engine.connect() as conn:
        row = conn.execute(query.limit(1)).first()
    return (row[0], row[1]) if row else None


def dags_of_run(store: AuditStore, run_id: str, dag_id: str | None = None) -> list[str]:
    """The DAGs with tag rows of a run called ``run_id`` (Airflow's run ids repeat across DAGs)."""
    query = sa.select(tag_rows.c.dag_id).where(tag_rows.c.run_id == run_id).distinct()
    if dag_id is not None:
        query = query.where(tag_rows.c.dag_id == dag_id)
    with store.engine.connect() as conn:
        return sorted(conn.execute(query).scalars())
