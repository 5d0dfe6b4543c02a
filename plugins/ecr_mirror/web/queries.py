"""What the audit view reads from the audit tables (SQLAlchemy Core, SQLite and PostgreSQL alike).

Every query takes the set of DAG ids the user may read and never returns a row of another DAG:
authorization is decided by the caller (``ecr_mirror.web.auth``), enforced here.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import sqlalchemy as sa

from ecr_mirror.audit import run_rows, tag_rows
from ecr_mirror.states import Status

#: every status a tag row can have, in the order the pages list them
STATUSES: tuple[str, ...] = tuple(Status)
#: the series of the chart: mirrored (pulled through the cache), stale, failed
CHART_STATUSES: tuple[str, ...] = (Status.PULLED, Status.STALE, Status.FAILED)
_GLOB_CHARS = frozenset("*?")


@dataclass(frozen=True)
class TagFilter:
    """The filters of every page: statuses, an image (substring or ``*``/``?`` glob) and a time range."""

    statuses: frozenset[str] = frozenset()
    image: str = ""
    since: datetime | None = None
    until: datetime | None = None

    def clauses(self) -> list[sa.ColumnElement[bool]]:
        """WHERE clauses on ``ecr_mirror_audit`` rows."""
        out: list[sa.ColumnElement[bool]] = []
        if self.statuses:
            out.append(tag_rows.c.status.in_(sorted(self.statuses)))
        if self.image:
            out.append(_image_clause(self.image))
        if self.since:
            out.append(tag_rows.c.finished_at >= self.since)
        if self.until:
            out.append(tag_rows.c.finished_at <= self.until)
        return out


def _image_clause(text: str) -> sa.ColumnElement[bool]:
    """Case-insensitive match of the upstream image, the ECR repository, or either with ``:tag``.

    A value with ``*`` or ``?`` is a glob that must match the whole name; any other value is a
    substring. The glob becomes a LIKE pattern (escaping LIKE's own ``%`` and ``_``), so the
    database filters, on SQLite and PostgreSQL alike.
    """
    value = text.strip().lower()
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    glob = bool(_GLOB_CHARS & set(value))
    pattern = escaped.replace("*", "%").replace("?", "_") if glob else f"%{escaped}%"
    names = (
        tag_rows.c.image,
        tag_rows.c.ecr_repository,
        tag_rows.c.image + ":" + tag_rows.c.tag,
        tag_rows.c.ecr_repository + ":" + tag_rows.c.tag,
    )
    return sa.or_(*(sa.func.lower(name).like(pattern, escape="\\") for name in names))


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; the audit writes UTC only (its times are never null).
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass
class RunOverview:
    """One run of a manifest: its counts per status and, once ``record_audit`` ran, its summary."""

    dag_id: str
    run_id: str
    manifest: str
    started_at: datetime
    finished_at: datetime
    total: int
    counts: dict[str, int]
    #: the run summary's status (``success``/``failed``); None while no summary is written
    status: str | None = None
    note: str | None = None
    #: what the run was asked to do and from which manifest (provenance.py), once summarised
    provenance: dict[str, Any] = field(default_factory=dict)


#: the summary's provenance columns the run page shows, with their labels
PROVENANCE = {
    "run_type": "Type",
    "triggered_by": "Triggered by",
    "dry_run": "Dry run",
    "conf": "Trigger conf",
    "manifest_path": "Manifest file",
    "manifest_hash": "Manifest sha256",
    "dag_version": "DAG version",
}


@dataclass
class ManifestRuns:
    dag_id: str
    manifest: str
    runs: list[RunOverview] = field(default_factory=list)


@dataclass
class TagRow:
    """One audit row as the pages show it."""

    dag_id: str
    run_id: str
    manifest: str
    image: str
    ecr_repository: str
    tag: str
    action: str
    status: str
    upstream_digest: str | None
    cached_digest_before: str | None
    cached_digest_after: str | None
    error: str | None
    platform_digests: dict[str, str]
    warmed_bytes: int | None
    duration_ms: int
    started_at: datetime
    finished_at: datetime
    #: history only: the cached digest differs from the previous run's (older row) cached digest
    changed: bool = False


_TAG_COLUMNS = [
    tag_rows.c[name]
    for name in (
        "dag_id",
        "run_id",
        "manifest",
        "image",
        "ecr_repository",
        "tag",
        "action",
        "status",
        "upstream_digest",
        "cached_digest_before",
        "cached_digest_after",
        "error",
        "platform_digests",
        "warmed_bytes",
        "duration_ms",
        "started_at",
        "finished_at",
    )
]


def _tag_row(row: sa.RowMapping) -> TagRow:
    values: dict[str, Any] = dict(row)
    values["platform_digests"] = json.loads(values["platform_digests"]) if values["platform_digests"] else {}
    values["started_at"] = _aware(values["started_at"])
    values["finished_at"] = _aware(values["finished_at"])
    return TagRow(**values)


def audited_dag_ids(conn: sa.Connection) -> set[str]:
    """Every DAG id with audit rows (the candidates an auth manager filters)."""
    return set(conn.execute(sa.select(tag_rows.c.dag_id).distinct()).scalars())


def latest_runs(
    conn: sa.Connection, dag_ids: Collection[str], flt: TagFilter, per_dag: int
) -> list[ManifestRuns]:
    """Per DAG, its ``per_dag`` latest runs that have a row matching ``flt``, with full counts.

    Runs are ordered by their last row's time, newest first; DAGs by id.
    """
    if not dag_ids:
        return []
    matching = (
        sa.select(
            tag_rows.c.dag_id,
            tag_rows.c.run_id,
            sa.func.max(tag_rows.c.finished_at).label("last"),
        )
        .where(tag_rows.c.dag_id.in_(sorted(dag_ids)), *flt.clauses())
        .group_by(tag_rows.c.dag_id, tag_rows.c.run_id)
        .subquery()
    )
    ranked = sa.select(
        matching.c.dag_id,
        matching.c.run_id,
        sa.func.row_number()
        .over(partition_by=matching.c.dag_id, order_by=(matching.c.last.desc(), matching.c.run_id.desc()))
        .label("rank"),
    ).subquery()
    chosen = sa.select(ranked.c.dag_id, ranked.c.run_id).where(ranked.c.rank <= per_dag).subquery()
    counts = (
        sa.select(
            tag_rows.c.dag_id,
            tag_rows.c.run_id,
            sa.func.max(tag_rows.c.manifest).label("manifest"),
            tag_rows.c.status,
            sa.func.count().label("n"),
            sa.func.min(tag_rows.c.started_at).label("started_at"),
            sa.func.max(tag_rows.c.finished_at).label("finished_at"),
        )
        .join(chosen, sa.and_(chosen.c.dag_id == tag_rows.c.dag_id, chosen.c.run_id == tag_rows.c.run_id))
        .group_by(tag_rows.c.dag_id, tag_rows.c.run_id, tag_rows.c.status)
    )
    runs: dict[tuple[str, str], RunOverview] = {}
    for row in conn.execute(counts).mappings():
        key = (row["dag_id"], row["run_id"])
        run = runs.get(key)
        started, finished = _aware(row["started_at"]), _aware(row["finished_at"])
        if run is None:
            run = runs[key] = RunOverview(
                row["dag_id"], row["run_id"], row["manifest"], started, finished, 0, {}
            )
        run.started_at, run.finished_at = min(run.started_at, started), max(run.finished_at, finished)
        run.counts[row["status"]] = row["n"]
        run.total += row["n"]
    _attach_summaries(conn, runs)
    by_dag: dict[str, ManifestRuns] = {}
    for run in sorted(runs.values(), key=lambda r: (r.finished_at, r.run_id), reverse=True):
        run.counts = {s: run.counts[s] for s in _ordered(run.counts)}
        by_dag.setdefault(run.dag_id, ManifestRuns(run.dag_id, run.manifest)).runs.append(run)
    return [by_dag[d] for d in sorted(by_dag)]


def _ordered(statuses: Iterable[str]) -> list[str]:
    known = [s for s in STATUSES if s in set(statuses)]
    return known + sorted(set(statuses) - set(known))


def _attach_summaries(conn: sa.Connection, runs: dict[tuple[str, str], RunOverview]) -> None:
    if not runs:
        return
    columns = [run_rows.c[name] for name in ("dag_id", "run_id", "status", "note", *PROVENANCE)]
    query = sa.select(*columns).where(
        run_rows.c.dag_id.in_(sorted({d for d, _ in runs})),
        run_rows.c.run_id.in_(sorted({r for _, r in runs})),
    )
    for row in conn.execute(query).mappings():
        run = runs.get((row["dag_id"], row["run_id"]))
        if run is not None:
            run.status, run.note = row["status"], row["note"]
            run.provenance = {name: row[name] for name in PROVENANCE if row[name] is not None}


def run_overview(conn: sa.Connection, dag_id: str, run_id: str) -> RunOverview | None:
    """One run's counts and summary; None when the audit has no row of it."""
    query = (
        sa.select(
            tag_rows.c.status,
            sa.func.max(tag_rows.c.manifest).label("manifest"),
            sa.func.count().label("n"),
            sa.func.min(tag_rows.c.started_at).label("started_at"),
            sa.func.max(tag_rows.c.finished_at).label("finished_at"),
        )
        .where(tag_rows.c.dag_id == dag_id, tag_rows.c.run_id == run_id)
        .group_by(tag_rows.c.status)
    )
    rows = list(conn.execute(query).mappings())
    if not rows:
        return None
    counts = {r["status"]: r["n"] for r in rows}
    run = RunOverview(
        dag_id=dag_id,
        run_id=run_id,
        manifest=rows[0]["manifest"],
        started_at=min(_aware(r["started_at"]) for r in rows),
        finished_at=max(_aware(r["finished_at"]) for r in rows),
        total=sum(counts.values()),
        counts={s: counts[s] for s in _ordered(counts)},
    )
    _attach_summaries(conn, {(dag_id, run_id): run})
    return run


def run_tags(conn: sa.Connection, dag_id: str, run_id: str, flt: TagFilter) -> list[TagRow]:
    """Every row of one run matching ``flt``, failed first, then by image and tag."""
    failed_first = sa.case((tag_rows.c.status == Status.FAILED, 0), else_=1)
    query = (
        sa.select(*_TAG_COLUMNS)
        .where(tag_rows.c.dag_id == dag_id, tag_rows.c.run_id == run_id, *flt.clauses())
        .order_by(failed_first, tag_rows.c.image, tag_rows.c.tag)
    )
    return [_tag_row(row) for row in conn.execute(query).mappings()]


def search_tags(conn: sa.Connection, dag_ids: Collection[str], flt: TagFilter, limit: int) -> list[TagRow]:
    """Rows of every readable run matching ``flt``, newest first, at most ``limit``."""
    if not dag_ids:
        return []
    query = (
        sa.select(*_TAG_COLUMNS)
        .where(tag_rows.c.dag_id.in_(sorted(dag_ids)), *flt.clauses())
        .order_by(tag_rows.c.finished_at.desc(), tag_rows.c.id.desc())
        .limit(limit)
    )
    return [_tag_row(row) for row in conn.execute(query).mappings()]


def tag_history(
    conn: sa.Connection, dag_ids: Collection[str], repository: str, tag: str, limit: int
) -> list[TagRow]:
    """The rows of one ECR ``repository:tag`` across runs, newest first; ``changed`` marks the runs
    after which ECR served another digest than after the run before."""
    if not dag_ids:
        return []
    query = (
        sa.select(*_TAG_COLUMNS)
        .where(
            tag_rows.c.dag_id.in_(sorted(dag_ids)),
            tag_rows.c.ecr_repository == repository,
            tag_rows.c.tag == tag,
        )
        .order_by(tag_rows.c.finished_at.desc(), tag_rows.c.id.desc())
        .limit(limit)
    )
    rows = [_tag_row(row) for row in conn.execute(query).mappings()]
    for newer, older in pairwise(rows):
        newer.changed = bool(newer.cached_digest_after) and newer.cached_digest_after != (
            older.cached_digest_after
        )
    return rows


@dataclass
class ChartBucket:
    start: datetime
    counts: dict[str, int]


@dataclass
class Series:
    """Tags per chart status per time bucket (``step`` long), oldest first, empty buckets included."""

    step: timedelta
    buckets: list[ChartBucket]


def status_series(
    conn: sa.Connection, dag_ids: Collection[str], flt: TagFilter, now: datetime, max_buckets: int = 60
) -> Series:
    """Tags mirrored (pulled), stale and failed over time, from the rows matching ``flt``.

    Grouped per run in SQL (a run's rows share one time: its last row's), bucketed here so the
    same code serves SQLite and PostgreSQL. The bucket is an hour, a day or a week, whichever
    keeps the range (the filter's, else the data's) within ``max_buckets``.
    """
    if not dag_ids:
        return Series(timedelta(hours=1), [])
    statuses = sorted(set(CHART_STATUSES) & set(flt.statuses)) if flt.statuses else list(CHART_STATUSES)
    query = (
        sa.select(
            tag_rows.c.run_id,
            tag_rows.c.status,
            sa.func.max(tag_rows.c.finished_at).label("at"),
            sa.func.count().label("n"),
        )
        .where(tag_rows.c.dag_id.in_(sorted(dag_ids)), tag_rows.c.status.in_(statuses))
        .where(*TagFilter(image=flt.image, since=flt.since, until=flt.until).clauses())
        .group_by(tag_rows.c.dag_id, tag_rows.c.run_id, tag_rows.c.status)
    )
    points = [(_aware(r["at"]), r["status"], r["n"]) for r in conn.execute(query).mappings()]
    if not points:
        return Series(timedelta(hours=1), [])
    first = flt.since or min(at for at, _, _ in points)
    last = flt.until or max(now, *(at for at, _, _ in points))
    step = next(
        (s for s in (timedelta(hours=1), timedelta(days=1)) if (last - first) / s < max_buckets),
        timedelta(weeks=1),
    )
    origin = _floor(first, step)
    count = min(int((last - origin) / step) + 1, max_buckets)
    origin = max(origin, _floor(last, step) - step * (count - 1))
    buckets = [ChartBucket(origin + step * i, dict.fromkeys(statuses, 0)) for i in range(count)]
    per_bucket: dict[int, dict[str, int]] = defaultdict(dict)
    for at, status, n in points:
        index = int((at - origin) / step)
        if 0 <= index < count:
            per_bucket[index][status] = per_bucket[index].get(status, 0) + n
    for index, counts in per_bucket.items():
        buckets[index].counts.update(counts)
    return Series(step, buckets)


def _floor(value: datetime, step: timedelta) -> datetime:
    value = value.astimezone(UTC)
    day = value.replace(hour=0, minute=0, second=0, microsecond=0)
    if step < timedelta(days=1):
        return value.replace(minute=0, second=0, microsecond=0)
    if step == timedelta(days=1):
        return day
    return day - timedelta(days=day.weekday())  # weeks start on Monday
