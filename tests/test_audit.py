"""The audit store on SQLite and on PostgreSQL (the machine's server on 127.0.0.1:5432)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from ecr_mirror.audit import AuditRecord, AuditStore, RunSummary
from ecr_mirror.states import Action, Status
from tests.audit_databases import DIALECTS, throwaway_url


@pytest.fixture(params=DIALECTS)
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[AuditStore]:
    with throwaway_url(request.param, tmp_path) as url:
        store = AuditStore(url)
        yield store
        store.engine.dispose()


def record(tag: str, status: str = "pulled", **extra) -> AuditRecord:
    return AuditRecord(
        run_id="run-1",
        dag_id="ecr_mirror__base",
        manifest="base",
        image="docker.io/library/nginx",
        ecr_repository="docker-hub/library/nginx",
        tag=tag,
        action=Action.MISSING,
        status=Status(status),
        upstream_digest="sha256:" + "a" * 64,
        **extra,
    )


def test_rows_round_trip_with_timezone_aware_times(store):
    store.write([record("1.27"), record("1.26", status="failed", error="boom")])
    rows = store.records(run_id="run-1")
    assert [(r.tag, r.status, r.error) for r in rows] == [
        ("1.27", "pulled", None),
        ("1.26", "failed", "boom"),
    ]
    assert rows[0].started_at.tzinfo is not None and rows[0].started_at <= datetime.now(UTC)


def test_a_retried_batch_replaces_its_rows_instead_of_duplicating(store):
    store.write([record("1.27", status="failed", error="timeout")])
    store.write([record("1.27", status="pulled")])
    assert [(r.tag, r.status) for r in store.records(run_id="run-1")] == [("1.27", "pulled")]


def test_summary_counts_statuses_and_fails_on_any_failed_tag(store):
    rows = [record("a"), record("b", status="ok"), record("c", status="failed")]
    summary = RunSummary.of("run-1", "ecr_mirror__base", "base", rows)
    store.write_summary(summary)
    [stored] = store.summaries(dag_id="ecr_mirror__base")
    assert (stored.status, stored.total, stored.counts) == ("failed", 3, {"failed": 1, "ok": 1, "pulled": 1})


def test_a_shard_of_rows_is_written_in_one_statement_not_a_round_trip_per_tag(store):
    import sqlalchemy as sa

    statements: list[tuple[str, bool]] = []

    def seen(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append((statement.split(None, 1)[0].upper(), executemany))

    store.write([record(f"old-{i}") for i in range(3)])  # rows a retried shard replaces
    sa.event.listen(store.engine, "before_cursor_execute", seen)
    try:
        store.write(
            [record(f"old-{i}", status="ok") for i in range(3)] + [record(f"1.{i}") for i in range(997)]
        )
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", seen)

    assert statements == [("INSERT", False)]  # no DELETE, no executemany: one statement for 1,000 rows
    rows = store.records(run_id="run-1")
    assert len(rows) == 1000
    assert {r.status for r in rows if r.tag.startswith("old-")} == {"ok"}
