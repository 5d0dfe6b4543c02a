"""The audit view's reads on SQLite and on PostgreSQL: filters (status, image substring and glob,
time range), the latest runs per manifest, the digest history, the chart's series, and that no
query returns a row of a DAG the caller did not allow.

Rows are written through ``AuditStore`` with chosen times, so a week of runs takes no week.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from fastapi import HTTPException

from ecr_mirror.audit import AuditRecord, AuditStore, RunSummary
from ecr_mirror.states import Action, Status
from ecr_mirror.web import queries
from ecr_mirror.web.filters import tag_filter
from ecr_mirror.web.queries import TagFilter

PG_ADMIN = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
T0 = datetime(2025, 3, 3, 9, 30, tzinfo=UTC)  # a Monday
A, B = "ecr_mirror__a", "ecr_mirror__b"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[AuditStore]:
    if request.param == "sqlite":
        yield AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
        return
    name = f"ecr_mirror_web_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:  # only where the machine has no PostgreSQL
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    store = AuditStore(PG_ADMIN.rsplit("/", 1)[0] + f"/{name}")
    yield store
    store.engine.dispose()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


def row(dag_id: str, run: int, image: str, tag: str, status: str, cached: str = "1", **extra) -> AuditRecord:
    at = T0 + timedelta(days=run)
    repository = f"hub/{image.split('/', 1)[1]}"
    return AuditRecord(
        run_id=f"run-{run}",
        dag_id=dag_id,
        manifest=dag_id.removeprefix("ecr_mirror__"),
        image=image,
        ecr_repository=repository,
        tag=tag,
        action=Action.MISSING,
        status=Status(status),
        upstream_digest="sha256:" + "u" * 64,
        cached_digest_after="sha256:" + cached * 64,
        started_at=at,
        finished_at=at + timedelta(seconds=5),
        **extra,
    )


@pytest.fixture
def audit(store: AuditStore) -> Iterator[sa.Connection]:
    """DAG a: runs 0..4, one a day; DAG b: run 2. Run 4 of a has no summary (still going)."""
    # nginx 1.27 drifts before run 2, which pulls it: ECR serves the new digest from then on
    nginx = [("pulled", "1"), ("ok", "1"), ("pulled", "2"), ("ok", "2"), ("ok", "2")]
    rows = []
    for run in range(5):
        rows += [
            row(A, run, "docker.io/library/nginx", "1.27", *nginx[run]),
            row(A, run, "docker.io/acme/my_app", "2.0", "stale" if run == 3 else "ok"),
            row(A, run, "docker.io/acme/myxapp", "2.0", "failed" if run in (1, 3) else "pulled"),
        ]
    rows += [row(B, 2, "docker.io/library/nginx", "1.27", "failed", "9", error="secret team's failure")]
    store.write(rows)
    for dag_id, run in [(A, r) for r in range(4)] + [(B, 2)]:
        records = [r for r in rows if r.dag_id == dag_id and r.run_id == f"run-{run}"]
        summary = RunSummary.of(f"run-{run}", dag_id, dag_id.removeprefix("ecr_mirror__"), records)
        store.write_summary(summary)
    with store.engine.connect() as conn:
        yield conn


def keys(rows: list[queries.TagRow]) -> set[tuple[str, str, str]]:
    return {(r.run_id, r.image.rsplit("/", 1)[1], r.status) for r in rows}


def test_image_filters_are_substrings_or_globs_and_case_insensitive(audit):
    def images(text: str) -> set[str]:
        return {r.image for r in queries.search_tags(audit, {A}, TagFilter(image=text), 100)}

    assert images("NGINX") == {"docker.io/library/nginx"}
    # LIKE's own wildcards are literal: my_app is not myxapp
    assert images("my_app") == {"docker.io/acme/my_app"}
    assert images("acme/my?app") == set()  # a glob matches the whole name...
    assert images("*/acme/my?app") == {"docker.io/acme/my_app", "docker.io/acme/myxapp"}
    assert images("hub/acme/*:2.?") == {"docker.io/acme/my_app", "docker.io/acme/myxapp"}  # ECR name:tag
    assert images("*:1.27") == {"docker.io/library/nginx"}


def test_status_and_time_filters(audit):
    failed = TagFilter(statuses=frozenset({"failed"}))
    assert keys(queries.search_tags(audit, {A, B}, failed, 100)) == {
        ("run-1", "myxapp", "failed"),
        ("run-3", "myxapp", "failed"),
        ("run-2", "nginx", "failed"),
    }
    window = TagFilter(since=T0 + timedelta(days=1), until=T0 + timedelta(days=2, hours=1))
    assert {r.run_id for r in queries.search_tags(audit, {A}, window, 100)} == {"run-1", "run-2"}
    # a time with an offset is the same instant in UTC (SQLite keeps none)
    since = tag_filter(since=(T0 + timedelta(days=4)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M+00:00"))
    shifted = tag_filter(since=(T0 + timedelta(days=4, hours=2)).strftime("%Y-%m-%dT%H:%M+02:00"))
    assert since.since == shifted.since
    assert {r.run_id for r in queries.search_tags(audit, {A}, shifted, 100)} == {"run-4"}
    # a date alone as the end of a range takes in the whole day
    day = tag_filter(until=(T0 + timedelta(days=1)).strftime("%Y-%m-%d"))
    assert {r.run_id for r in queries.search_tags(audit, {A}, day, 100)} == {"run-0", "run-1"}


def test_bad_filters_are_refused_naming_the_parameter():
    for kwargs, message in (
        ({"status_": ["done"]}, "status: 'done' is not one of ok, pulled"),
        ({"since": "yesterday"}, "since: 'yesterday' is not a time"),
        ({"last": "2w"}, "last: '2w' is not one of 1h, 24h, 7d, 30d"),
        ({"since": "2025-02-01", "until": "2025-01-01"}, "since (2025-02-01) is after until (2025-01-01)"),
    ):
        with pytest.raises(HTTPException) as refused:
            tag_filter(**kwargs)
        assert refused.value.status_code == 400 and str(refused.value.detail).startswith(message)


def test_latest_runs_per_manifest_with_full_counts(audit):
    found = queries.latest_runs(audit, {A, B}, TagFilter(), per_dag=2)
    assert [(m.dag_id, [r.run_id for r in m.runs]) for m in found] == [
        (A, ["run-4", "run-3"]),
        (B, ["run-2"]),
    ]
    newest, older = found[0].runs
    assert newest.status is None and newest.total == 3  # no summary yet
    assert (older.status, older.counts) == ("failed", {"ok": 1, "stale": 1, "failed": 1})
    # runs with a failed tag, counted in full
    failed = queries.latest_runs(audit, {A}, TagFilter(statuses=frozenset({"failed"})), per_dag=10)
    assert [(r.run_id, r.counts) for r in failed[0].runs] == [
        ("run-3", {"ok": 1, "stale": 1, "failed": 1}),
        ("run-1", {"ok": 2, "failed": 1}),
    ]
    one = queries.run_overview(audit, A, "run-1")
    assert one is not None and (one.total, one.status, one.manifest) == (3, "failed", "a")
    assert queries.run_overview(audit, A, "run-9") is None


def test_no_query_returns_a_row_of_a_dag_not_allowed(audit):
    everything = TagFilter()
    assert {r.dag_id for r in queries.search_tags(audit, {A}, everything, 100)} == {A}
    assert queries.search_tags(audit, set(), everything, 100) == []
    assert [m.dag_id for m in queries.latest_runs(audit, {A}, everything, 10)] == [A]
    history = queries.tag_history(audit, {A}, "hub/library/nginx", "1.27", 100)
    assert {r.dag_id for r in history} == {A} and len(history) == 5
    assert (
        queries.tag_history(audit, {B}, "hub/library/nginx", "1.27", 100)[0].error == "secret team's failure"
    )
    series = queries.status_series(audit, {A}, everything, T0 + timedelta(days=5))
    assert sum(b.counts.get("failed", 0) for b in series.buckets) == 2  # b's failure is not counted
    assert queries.audited_dag_ids(audit) == {A, B}


def test_the_digest_history_marks_the_runs_that_changed_the_cached_digest(audit):
    history = queries.tag_history(audit, {A}, "hub/library/nginx", "1.27", 100)
    assert [(r.run_id, r.cached_digest_after[7], r.changed) for r in history] == [
        ("run-4", "2", False),
        ("run-3", "2", False),
        ("run-2", "2", True),
        ("run-1", "1", False),
        ("run-0", "1", False),
    ]


def test_the_chart_series_buckets_mirrored_stale_and_failed_tags_per_day(audit):
    series = queries.status_series(audit, {A}, TagFilter(), now=T0 + timedelta(days=4, hours=1))
    assert series.step == timedelta(days=1)
    assert [b.start.date().isoformat() for b in series.buckets] == [
        "2025-03-03",
        "2025-03-04",
        "2025-03-05",
        "2025-03-06",
        "2025-03-07",
    ]
    assert [b.counts for b in series.buckets] == [
        {"pulled": 2, "stale": 0, "failed": 0},
        {"pulled": 0, "stale": 0, "failed": 1},
        {"pulled": 2, "stale": 0, "failed": 0},
        {"pulled": 0, "stale": 1, "failed": 1},
        {"pulled": 1, "stale": 0, "failed": 0},
    ]
    # within a day the buckets are hours; the status filter picks the series
    hours = queries.status_series(
        audit,
        {A},
        TagFilter(
            statuses=frozenset({"failed"}),
            since=T0 + timedelta(days=1),
            until=T0 + timedelta(days=1, hours=3),
        ),
        now=T0 + timedelta(days=9),
    )
    assert hours.step == timedelta(hours=1) and len(hours.buckets) == 4
    assert [b.counts for b in hours.buckets] == [{"failed": 1}, {"failed": 0}, {"failed": 0}, {"failed": 0}]
