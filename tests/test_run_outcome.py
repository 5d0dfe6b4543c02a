"""What a finished run tells a user in Airflow itself: the run's note and record_audit's task note,
read back from the metadata database after real ``dag.test()`` runs through the ECR emulator."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from sandbox.upstream import seed_image
from tests.test_end_to_end import HUB, run, write_manifest

pytestmark = pytest.mark.slow


def notes(dag_id: str, run_id: str) -> tuple[str | None, dict[str, str | None]]:
    """The run's note and each task instance's note, as the UI reads them."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        dag_run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        tis = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
        )
        assert dag_run is not None
        return dag_run.note, {ti.task_id: ti.note for ti in tis}


@pytest.mark.own_clock
def test_a_failed_runs_note_names_failed_tags_with_errors_and_stale_tags_with_the_refresh_time(
    airflow_db, sandbox, sandbox_env
):
    hub = sandbox.upstreams[HUB]
    seed_image(hub, "library/alpine", "3.20")
    path = write_manifest(sandbox_env, "notes", '  - image: alpine\n    tags: ["3.20", "no-such-tag"]\n')
    first = run(path)
    assert first.state == "failed"
    note, _ = notes(first.dag_id, first.run_id)
    assert note.startswith("**failed**: 2 tags: 1 failed, 1 pulled")

    seed_image(hub, "library/alpine", "3.20", variant="rebuilt")  # upstream moves within ECR's 24 h
    second = run(path)

    assert second.state == "failed"
    note, task_notes = notes(second.dag_id, second.run_id)
    assert note.startswith("**failed**: 2 tags: 1 failed, 1 stale")
    assert "- `docker.io/library/alpine:no-such-tag`: " in note
    assert "not found upstream" in note
    refresh = re.search(r"- `docker\.io/library/alpine:3\.20`: ECR refreshes it after (.+ UTC)", note)
    assert refresh is not None, note
    assert f"/ecr-mirror/dags/{second.dag_id}/runs/" in note
    assert len(note) <= 1000
    assert task_notes["record_audit"].startswith("2 tags: 1 failed, 1 stale")
    assert "docker.io/library/alpine:no-such-tag" in task_notes["record_audit"]


def test_a_successful_runs_note_has_its_counts_and_keeps_the_note_a_person_wrote(
    airflow_db, sandbox, sandbox_env
):
    from airflow.models.dagrun import DagRun, DagRunNote
    from airflow.utils.session import create_session

    from ecr_mirror.run_notes import write_notes

    seed_image(sandbox.upstreams[HUB], "library/busybox", "1.36")
    path = write_manifest(sandbox_env, "kept", '  - image: busybox\n    tags: ["1.36"]\n')
    done = run(path)
    assert done.state == "success"
    note, task_notes = notes(done.dag_id, done.run_id)
    assert note.startswith("**success**: 1 tags: 1 pulled")
    assert task_notes["record_audit"] == "1 tags: 1 pulled"

    # a person's note (e.g. from the trigger dialog) stays, with the report below it
    with create_session() as session:
        dag_run = session.scalar(select(DagRun).where(DagRun.run_id == done.run_id))
        dag_run.dag_run_note = DagRunNote(content="rotating the hub credential", user_id="alice")
        session.flush()
        assert write_notes(session, dag_run) == 2
    note, _ = notes(done.dag_id, done.run_id)
    assert note.startswith("rotating the hub credential\n\n---\n\n**success**: 1 tags: 1 pulled")
