"""The run's note and record_audit's task note in Airflow's grid, from the run's report.

Airflow 3.3's Task SDK gives a task no way to write its DAG run's note or its own note (a task
talks to the api-server's Execution API only, which has no such call: apache/airflow#64890, and the
helper proposed in apache/airflow#69403 is not in 3.3). So the work is split:

- ``record_audit`` (the worker) pushes the note texts as XComs (``publish``);
- this module's listener (registered by plugins/ecr_mirror_plugin.py) runs where Airflow decides
  that the run succeeded or failed (the scheduler, or ``dag.test()``'s process), reads those
  XComs from the metadata database and writes them as the run's note and as the notes of the task
  instances that pushed a task summary, in the scheduler's own session (committed with the run's
  new state).

A note a person wrote on the run (the trigger dialog's note, or one added in the UI while the run
was going) is kept: the report is appended below it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.listeners import hookimpl
from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from ecr_mirror.run_report import NOTE_LIMIT, RunReport, audit_path

if TYPE_CHECKING:
    from airflow.models.dagrun import DagRun

log = logging.getLogger(__name__)

#: XCom keys record_audit pushes
RUN_NOTE = "ecr_mirror_run_note"
TASK_SUMMARY = "ecr_mirror_task_summary"
#: the audit view's mount (web/app.py's MOUNT; not imported, so the scheduler does not load FastAPI)
AUDIT_MOUNT = "/ecr-mirror"
DAG_PREFIX = "ecr_mirror__"
_SEPARATOR = "\n\n---\n\n"


def audit_base(*, absolute: bool = False) -> str:
    """Where the audit view is mounted, under the api-server's base path ([api] base_url); with
    ``absolute``, with the base URL's scheme and host too (for messages read outside the UI)."""
    from airflow.configuration import conf

    base = urlsplit(conf.get("api", "base_url", fallback="") or "")
    origin = f"{base.scheme}://{base.netloc}" if absolute and base.netloc else ""
    return origin + base.path.rstrip("/") + AUDIT_MOUNT


def audit_link(dag_id: str, run_id: str, *, absolute: bool = False) -> str:
    """The audit view's page of a run."""
    return audit_path(audit_base(absolute=absolute), dag_id, run_id)


def publish(ti: Any, report: RunReport) -> None:
    """Push the run's note and the task's summary (record_audit's task instance ``ti``)."""
    ti.xcom_push(key=RUN_NOTE, value=report.note())
    ti.xcom_push(key=TASK_SUMMARY, value=report.task_summary())


def _notes(session: Session, dag_run: DagRun) -> list[Any]:
    from airflow.models.xcom import XComModel

    query = XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id).where(
        XComModel.key.in_([RUN_NOTE, TASK_SUMMARY])
    )
    return list(session.scalars(query))


def _merged(existing: Any, ours: str) -> str:
    """Our note under a person's note (cut to Airflow's limit), or ours alone."""
    if existing is None or not existing.user_id or not existing.content:
        return ours
    room = NOTE_LIMIT - len(ours) - len(_SEPARATOR)
    person = str(existing.content).split(_SEPARATOR)[0]
    return (person[: max(room, 0)] + _SEPARATOR + ours)[:NOTE_LIMIT]


def write_notes(session: Session, dag_run: DagRun) -> int:
    """Copy the run's pushed notes into the run and its task instances; how many were written."""
    from airflow.models.dagrun import DagRunNote
    from airflow.models.taskinstance import TaskInstance, TaskInstanceNote
    from airflow.models.xcom import XComModel

    written = 0
    for xcom in _notes(session, dag_run):
        text = str(XComModel.deserialize_value(xcom))[:NOTE_LIMIT]
        if xcom.key == RUN_NOTE:
            merged = _merged(dag_run.dag_run_note, text)
            if dag_run.dag_run_note is None:
                dag_run.dag_run_note = DagRunNote(content=merged)
            else:
                dag_run.dag_run_note.content = merged  # a person's note stays theirs
            written += 1
            continue
        ti = session.scalar(
            select(TaskInstance).where(
                TaskInstance.dag_id == dag_run.dag_id,
                TaskInstance.run_id == dag_run.run_id,
                TaskInstance.task_id == xcom.task_id,
                TaskInstance.map_index == xcom.map_index,
            )
        )
        if ti is not None:
            ti.task_instance_note = TaskInstanceNote(content=text)
            written += 1
    return written


def _session_of(dag_run: DagRun) -> tuple[Session, DagRun]:
    """The run's own session (the scheduler's), or, for a run that is detached from it (dag.test()
    runs tasks through an in-process api-server that closes the thread's scoped session), the
    thread's scoped session, which the caller commits, with the run loaded in it."""
    session = object_session(dag_run)
    if session is not None:
        return session, dag_run
    from airflow import settings
    from airflow.models.dagrun import DagRun as DagRunModel

    assert settings.Session is not None
    scoped: Session = settings.Session()
    attached = scoped.scalar(
        select(DagRunModel).where(DagRunModel.dag_id == dag_run.dag_id, DagRunModel.run_id == dag_run.run_id)
    )
    return scoped, attached if attached is not None else dag_run


def _on_finished(dag_run: DagRun) -> None:
    if not dag_run.dag_id.startswith(DAG_PREFIX):
        return
    try:
        write_notes(*_session_of(dag_run))
    except Exception:  # a note must never change how the run ends
        log.exception("could not write the notes of run %s of %s", dag_run.run_id, dag_run.dag_id)


@hookimpl
def on_dag_run_success(dag_run: DagRun, msg: str) -> None:
    _on_finished(dag_run)


@hookimpl
def on_dag_run_failed(dag_run: DagRun, msg: str) -> None:
    _on_finished(dag_run)
