"""Runs that never closed: a CLI process killed mid-run, a DAG run stopped before ``record_audit``.

Before its first pull a run registers the tags it sets out to mirror (``ecr_mirror_run_tag``).
A run that has registered tags but no summary is open. The next run of the same DAG closes the
open runs whose owner is gone: each registered tag without a row gets a failed row (``interrupted``,
transient) and the run a failed summary, so every tag of every run ends with one terminal row and
``ecr-mirror audit runs`` shows the run.

Whose run is over: a CLI run's owner is ``cli:<host>:<pid>``; on the same host it is over when that
process is gone, from another host once it is a day old. An Airflow run is over when the next
Airflow run of its DAG starts: mirror DAGs allow one active run (``max_active_runs=1``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from ecr_mirror.audit import AuditRecord, AuditStore, RunSummary, run_rows, run_tags, utcnow
from ecr_mirror.states import Action, ErrorKind, RunStatus, Status
from ecr_mirror.tags import TagRef

AIRFLOW = "airflow"
#: the CLI runs going on in this process (``running``): a run of this process not in it is over
_LIVE: set[str] = set()
#: a CLI run of another host is taken as over once this old
FOREIGN_CLI_RUN_AGE = timedelta(days=1)


def this_process() -> str:
    """The owner of a CLI run: this host and process."""
    return f"cli:{socket.gethostname()}:{os.getpid()}"


@contextmanager
def running(run_id: str) -> Iterator[None]:
    """Marks a CLI run of this process as going on (a caller may run several, one after another)."""
    _LIVE.add(run_id)
    try:
        yield
    finally:
        _LIVE.discard(run_id)


def interrupted_error(closer: str) -> str:
    return (
        f"interrupted: the run stopped (killed or lost) before this tag had a result; closed by run "
        f"{closer}. The next run mirrors the tag again"
    )


@dataclass(frozen=True)
class OpenRun:
    run_id: str
    dag_id: str
    manifest: str
    owner: str
    registered_at: datetime


def register(
    store: AuditStore, run_id: str, dag_id: str, manifest: str, tags: Sequence[TagRef], owner: str
) -> None:
    """Remember the tags a run sets out to mirror (before it pulls one)."""
    now = utcnow()
    rows = [
        {
            "run_id": run_id,
            "dag_id": dag_id,
            "ecr_repository": tag.cache_repository,
            "tag": tag.reference,
            "manifest": manifest,
            "image": tag.image,
            "owner": owner,
            "registered_at": now,
        }
        for tag in tags
    ]
    store.register_run_tags(rows)


def open_runs(store: AuditStore, dag_id: str, besides: str) -> list[OpenRun]:
    """Runs of ``dag_id`` (other than ``besides``) with registered tags and no summary."""
    closed = sa.select(run_rows.c.run_id).where(
        run_rows.c.dag_id == run_tags.c.dag_id, run_rows.c.run_id == run_tags.c.run_id
    )
    query = (
        sa.select(
            run_tags.c.run_id,
            run_tags.c.dag_id,
            run_tags.c.manifest,
            run_tags.c.owner,
            sa.func.min(run_tags.c.registered_at).label("registered_at"),
        )
        .where(run_tags.c.dag_id == dag_id, run_tags.c.run_id != besides, ~sa.exists(closed))
        .group_by(run_tags.c.run_id, run_tags.c.dag_id, run_tags.c.manifest, run_tags.c.owner)
    )
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    return [OpenRun(r.run_id, r.dag_id, r.manifest, r.owner, _aware(r.registered_at)) for r in rows]


def is_over(run: OpenRun, by_airflow: bool) -> bool:
    if run.owner == AIRFLOW:
        return by_airflow
    _, host, pid = run.owner.split(":", 2) if run.owner.count(":") >= 2 else ("", "", "")
    if host != socket.gethostname() or not pid.isdigit():
        return utcnow() - run.registered_at > FOREIGN_CLI_RUN_AGE
    if int(pid) == os.getpid():
        return run.run_id not in _LIVE
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's live process
        return False
    return False


def close_interrupted(store: AuditStore, dag_id: str, closer: str, *, by_airflow: bool) -> list[RunSummary]:
    """Close the open runs of ``dag_id`` that are over (see the module's docs); their summaries."""
    closed = []
    for run in open_runs(store, dag_id, besides=closer):
        if is_over(run, by_airflow):
            closed.append(_close(store, run, closer))
    return closed


def _close(store: AuditStore, run: OpenRun, closer: str) -> RunSummary:
    records = store.records(dag_id=run.dag_id, run_id=run.run_id)
    seen = {(r.ecr_repository, r.tag) for r in records}
    query = sa.select(run_tags).where(run_tags.c.dag_id == run.dag_id, run_tags.c.run_id == run.run_id)
    with store.engine.connect() as conn:
        registered = conn.execute(query).mappings().all()
    now = datetime.now(UTC)
    lost = [
        AuditRecord(
            run_id=run.run_id,
            dag_id=run.dag_id,
            manifest=run.manifest,
            image=row["image"],
            ecr_repository=row["ecr_repository"],
            tag=row["tag"],
            action=Action.FAILED,
            status=Status.FAILED,
            error=interrupted_error(closer),
            error_kind=ErrorKind.TRANSIENT,
            started_at=run.registered_at,
            finished_at=now,
        )
        for row in registered
        if (row["ecr_repository"], row["tag"]) not in seen
    ]
    store.write(lost)
    summary = RunSummary.of(run.run_id, run.dag_id, run.manifest, records + lost)
    summary.status = RunStatus.FAILED
    summary.note = f"interrupted: closed by run {closer}; {len(lost)} tag(s) had no result"
    store.write_summary(summary)
    return summary


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
