"""Audit retention: old rows go, a tag's latest row and the summaries of kept rows never do, on
SQLite and PostgreSQL; ECR_MIRROR_AUDIT_RETENTION_DAYS prunes as each run finishes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from ecr_mirror.audit import AuditRecord, AuditStore, RunSummary, SlaMiss, run_rows, sla_miss_rows, tag_rows
from ecr_mirror.audit_retention import Pruned, prune, prune_expired
from ecr_mirror.cli import main
from ecr_mirror.settings import get_settings
from ecr_mirror.states import Action, Status
from sandbox.upstream import seed_image
from tests.audit_databases import DIALECTS, throwaway_url

NOW = datetime(2025, 6, 1, tzinfo=UTC)
A, B = "ecr_mirror__a", "ecr_mirror__b"


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def record(dag_id: str, run_id: str, tag: str, when: datetime, repository: str = "docker-hub/library/nginx"):
    return AuditRecord(
        run_id=run_id,
        dag_id=dag_id,
        manifest=dag_id,
        image="docker.io/library/nginx",
        ecr_repository=repository,
        tag=tag,
        action=Action.UP_TO_DATE,
        status=Status.OK,
        started_at=when,
        finished_at=when,
    )


def write_run(
    store: AuditStore,
    dag_id: str,
    run_id: str,
    when: datetime,
    tags: list[str],
    repository: str = "docker-hub/library/nginx",
) -> None:
    rows = [record(dag_id, run_id, tag, when, repository) for tag in tags]
    store.write(rows)
    summary = RunSummary.of(run_id, dag_id, dag_id, rows)
    summary.finished_at = when
    store.write_summary(summary)
    store.write_sla_miss(SlaMiss(run_id, dag_id, dag_id, 60, None, "log", recorded_at=when))


def kept(store: AuditStore) -> tuple[set, set, set]:
    with store.engine.connect() as conn:
        tags = {
            tuple(r) for r in conn.execute(sa.select(tag_rows.c.dag_id, tag_rows.c.run_id, tag_rows.c.tag))
        }
        runs = {tuple(r) for r in conn.execute(sa.select(run_rows.c.dag_id, run_rows.c.run_id))}
        misses = {tuple(r) for r in conn.execute(sa.select(sla_miss_rows.c.dag_id, sla_miss_rows.c.run_id))}
    return tags, runs, misses


@pytest.fixture(params=DIALECTS)
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[AuditStore]:
    """A's tag 1.27 in runs 100, 95 and 1 days ago; its 1.25 only in the oldest run (then dropped
    from the manifest); B mirrors the same repository and tag, once, 200 days ago."""
    with throwaway_url(request.param, tmp_path) as url:
        store = AuditStore(url)
        write_run(store, A, "r100", ago(100), ["1.27", "1.25"])
        write_run(store, A, "r95", ago(95), ["1.27"])
        write_run(store, A, "r1", ago(1), ["1.27"])
        write_run(store, B, "r200", ago(200), ["1.27"])
        yield store
        store.engine.dispose()


def test_prune_keeps_each_tags_latest_row_and_the_summaries_of_kept_rows(store):
    assert prune(store, timedelta(days=90), now=NOW) == Pruned(tag_rows=2, runs=1, sla_misses=1)
    tags, runs, misses = kept(store)
    assert tags == {
        (A, "r100", "1.25"),  # 1.25's latest row, however old
        (A, "r1", "1.27"),
        (B, "r200", "1.27"),  # B's latest row of the tag A mirrors too
    }
    assert runs == {(A, "r100"), (A, "r1"), (B, "r200")}  # r95 lost its only row
    assert misses == {(A, "r100"), (A, "r1"), (B, "r200")}
    assert prune(store, timedelta(days=90), now=NOW) == Pruned(0, 0, 0)


def test_a_dry_run_counts_and_deletes_nothing(store):
    before = kept(store)
    assert prune(store, timedelta(days=90), now=NOW, dry_run=True) == Pruned(2, 1, 1)
    assert kept(store) == before


def test_rows_younger_than_the_cutoff_stay(store):
    assert prune(store, timedelta(days=96), now=NOW) == Pruned(1, 0, 0)  # r100's 1.27 only
    assert (A, "r95", "1.27") in kept(store)[0]


def test_prune_of_one_dag_leaves_the_others(store):
    write_run(store, B, "r150", ago(150), ["1.27"])
    assert prune(store, timedelta(days=90), dag_id=A, now=NOW) == Pruned(2, 1, 1)
    assert {(d, r) for d, r, _ in kept(store)[0] if d == B} == {(B, "r200"), (B, "r150")}


def test_of_two_rows_finished_at_the_same_time_the_later_written_is_the_latest(store):
    write_run(store, B, "r200-retry", ago(200), ["1.27"])
    assert prune(store, timedelta(days=90), dag_id=B, now=NOW) == Pruned(1, 1, 1)
    assert {(d, r) for d, r, _ in kept(store)[0] if d == B} == {(B, "r200-retry")}


def test_retention_is_off_unless_set(store, monkeypatch):
    monkeypatch.delenv("ECR_MIRROR_AUDIT_RETENTION_DAYS", raising=False)
    get_settings.cache_clear()
    before = kept(store)
    assert prune_expired(store, A) is None
    assert kept(store) == before
    monkeypatch.setenv("ECR_MIRROR_AUDIT_RETENTION_DAYS", "90")
    get_settings.cache_clear()
    try:
        # against today's clock every row is more than 90 days old: A keeps each tag's latest row
        assert prune_expired(store, A) == Pruned(2, 1, 1)
    finally:
        get_settings.cache_clear()
    assert {(d, r) for d, r, _ in kept(store)[0]} == {(A, "r100"), (A, "r1"), (B, "r200")}


MANIFEST = """\
name: keep
target: {region: eu-west-1}
rules: [{prefix: keep, upstream: quay}]
images: [{image: quay.io/keep/app, tags: {exact: ['1.0']}}]
"""


@pytest.mark.slow
def test_a_finished_sync_applies_the_retention_setting(sandbox, sandbox_env, monkeypatch, capsys):
    """With ECR_MIRROR_AUDIT_RETENTION_DAYS=30 a run's end deletes its DAG's rows older than 30 days."""
    seed_image(sandbox.upstreams["quay.io"], "keep/app", "1.0", platforms=())
    (sandbox_env / "keep.yaml").write_text(MANIFEST)
    store = AuditStore(get_settings().resolved_audit_url())
    dag, before = "ecr_mirror__keep", datetime.now(UTC) - timedelta(days=45)
    write_run(store, dag, "old", before, ["1.0"], repository="keep/keep/app")
    write_run(store, "ecr_mirror__other", "old", before, ["1.0"], repository="keep/keep/app")
    monkeypatch.setenv("ECR_MIRROR_AUDIT_RETENTION_DAYS", "30")
    get_settings.cache_clear()

    assert main(["sync", str(sandbox_env / "keep.yaml"), "--json"]) == 0
    new = json.loads(capsys.readouterr().out)  # the run, its rows under "tags"
    tags, runs, _ = kept(store)
    assert {(d, r) for d, r, _ in tags} == {(dag, new["run_id"]), ("ecr_mirror__other", "old")}
    assert (dag, "old") not in runs
    store.engine.dispose()
