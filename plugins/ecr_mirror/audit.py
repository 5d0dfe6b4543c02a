"""The audit trail: one row per tag per run, and one summary row per run.

Stored with SQLAlchemy Core so the same code writes SQLite (the default) and PostgreSQL. Rows are
written as each batch finishes; a retried batch replaces its own rows, so a run never holds two
rows for one tag.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime

import sqlalchemy as sa

metadata = sa.MetaData()

tag_rows = sa.Table(
    "ecr_mirror_audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(250), nullable=False, index=True),
    sa.Column("dag_id", sa.String(250), nullable=False, index=True),
    sa.Column("manifest", sa.String(250), nullable=False),
    sa.Column("image", sa.String(500), nullable=False),
    sa.Column("ecr_repository", sa.String(256), nullable=False),
    sa.Column("tag", sa.String(200), nullable=False),
    sa.Column("upstream_digest", sa.String(100)),
    sa.Column("cached_digest_before", sa.String(100)),
    sa.Column("cached_digest_after", sa.String(100)),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("platform_digests", sa.Text),  # JSON {"linux/arm64": "sha256:..."} of a platform subset
    sa.Column("warmed_bytes", sa.BigInteger),  # bytes warmed through ECR in this run (warm_layers)
    sa.Column("duration_ms", sa.Integer, nullable=False, default=0),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("run_id", "dag_id", "ecr_repository", "tag", name="uq_ecr_mirror_audit_tag"),
)

#: blobs requested once through ECR (warm_layers): later runs skip them
warmed_blobs = sa.Table(
    "ecr_mirror_warmed_blob",
    metadata,
    sa.Column("ecr_repository", sa.String(256), primary_key=True),
    sa.Column("digest", sa.String(100), primary_key=True),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("warmed_at", sa.DateTime(timezone=True), nullable=False),
)

run_rows = sa.Table(
    "ecr_mirror_run",
    metadata,
    sa.Column("run_id", sa.String(250), primary_key=True),
    sa.Column("dag_id", sa.String(250), primary_key=True),
    sa.Column("manifest", sa.String(250), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("counts", sa.Text, nullable=False),
    sa.Column("note", sa.Text),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
)

sla_miss_rows = sa.Table(
    "ecr_mirror_sla_miss",
    metadata,
    sa.Column("run_id", sa.String(250), primary_key=True),
    sa.Column("dag_id", sa.String(250), primary_key=True),
    sa.Column("manifest", sa.String(250), nullable=False),
    sa.Column("within_seconds", sa.Integer, nullable=False),
    sa.Column("deadline_at", sa.DateTime(timezone=True)),
    sa.Column("notified", sa.Text, nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
)

#: statuses that fail a run
FAILED_STATUSES = frozenset({"failed"})


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class AuditRecord:
    run_id: str
    dag_id: str
    manifest: str
    image: str
    ecr_repository: str
    tag: str
    action: str
    status: str
    upstream_digest: str | None = None
    cached_digest_before: str | None = None
    cached_digest_after: str | None = None
    error: str | None = None
    platform_digests: str | None = None
    warmed_bytes: int | None = None
    duration_ms: int = 0
    started_at: datetime = field(default_factory=utcnow)
    finished_at: datetime = field(default_factory=utcnow)


@dataclass
class RunSummary:
    run_id: str
    dag_id: str
    manifest: str
    status: str
    total: int
    counts: dict[str, int]
    note: str | None = None
    finished_at: datetime = field(default_factory=utcnow)

    @classmethod
    def of(cls, run_id: str, dag_id: str, manifest: str, records: Sequence[AuditRecord]) -> RunSummary:
        counts = Counter(r.status for r in records)
        failed = sum(counts[s] for s in FAILED_STATUSES)
        return cls(
            run_id=run_id,
            dag_id=dag_id,
            manifest=manifest,
            status="failed" if failed else "success",
            total=len(records),
            counts=dict(sorted(counts.items())),
        )


@dataclass
class SlaMiss:
    """A run that was still going when its manifest's SLA ran out (recorded by the deadline callback)."""

    run_id: str
    dag_id: str
    manifest: str
    within_seconds: int
    deadline_at: datetime | None
    #: what was told, e.g. "log; arn:aws:sns:...: sent" (a failed notification says why)
    notified: str
    recorded_at: datetime = field(default_factory=utcnow)


_RECORD_FIELDS = [f.name for f in fields(AuditRecord)]


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything in the audit is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class AuditStore:
    """Reads and writes the audit tables at one SQLAlchemy URL (tables are created on first use)."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url, future=True)
        metadata.create_all(self.engine)

    def write(self, records: Iterable[AuditRecord]) -> None:
        """Insert rows, replacing earlier rows of the same run and tag (a retried batch)."""
        rows = [asdict(r) for r in records]
        if not rows:
            return
        with self.engine.begin() as conn:
            for row in rows:
                conn.execute(
                    tag_rows.delete().where(
                        tag_rows.c.run_id == row["run_id"],
                        tag_rows.c.dag_id == row["dag_id"],
                        tag_rows.c.ecr_repository == row["ecr_repository"],
                        tag_rows.c.tag == row["tag"],
                    )
                )
            conn.execute(tag_rows.insert(), rows)

    def records(self, *, dag_id: str | None = None, run_id: str | None = None) -> list[AuditRecord]:
        query = sa.select(*(tag_rows.c[name] for name in _RECORD_FIELDS)).order_by(tag_rows.c.id)
        if dag_id:
            query = query.where(tag_rows.c.dag_id == dag_id)
        if run_id:
            query = query.where(tag_rows.c.run_id == run_id)
        with self.engine.connect() as conn:
            out = []
            for row in conn.execute(query).mappings():
                values = dict(row)
                values["started_at"] = _aware(values["started_at"])
                values["finished_at"] = _aware(values["finished_at"])
                out.append(AuditRecord(**values))
            return out

    def warmed(self, repository: str) -> set[str]:
        """Digests of the blobs already warmed through ECR in ``repository``."""
        query = sa.select(warmed_blobs.c.digest).where(warmed_blobs.c.ecr_repository == repository)
        with self.engine.connect() as conn:
            return set(conn.execute(query).scalars())

    def mark_warmed(self, repository: str, sizes: dict[str, int]) -> None:
        """Remember warmed blobs (digest -> bytes); a blob warmed again keeps one row."""
        rows = [
            {"ecr_repository": repository, "digest": d, "size_bytes": n, "warmed_at": utcnow()}
            for d, n in sizes.items()
        ]
        if not rows:
            return
        with self.engine.begin() as conn:
            conn.execute(
                warmed_blobs.delete().where(
                    warmed_blobs.c.ecr_repository == repository, warmed_blobs.c.digest.in_(list(sizes))
                )
            )
            conn.execute(warmed_blobs.insert(), rows)

    def write_summary(self, summary: RunSummary) -> None:
        row = asdict(summary)
        row["counts"] = json.dumps(summary.counts)
        with self.engine.begin() as conn:
            conn.execute(
                run_rows.delete().where(
                    run_rows.c.run_id == summary.run_id, run_rows.c.dag_id == summary.dag_id
                )
            )
            conn.execute(run_rows.insert(), [row])

    def summaries(self, *, dag_id: str | None = None, limit: int = 20) -> list[RunSummary]:
        query = sa.select(run_rows).order_by(run_rows.c.finished_at.desc()).limit(limit)
        if dag_id:
            query = query.where(run_rows.c.dag_id == dag_id)
        with self.engine.connect() as conn:
            out = []
            for row in conn.execute(query).mappings():
                values = dict(row)
                values["counts"] = json.loads(values["counts"])
                values["finished_at"] = _aware(values["finished_at"])
                out.append(RunSummary(**values))
            return out

    def write_sla_miss(self, miss: SlaMiss) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sla_miss_rows.delete().where(
                    sla_miss_rows.c.run_id == miss.run_id, sla_miss_rows.c.dag_id == miss.dag_id
                )
            )
            conn.execute(sla_miss_rows.insert(), [asdict(miss)])

    def sla_misses(self, *, dag_id: str | None = None) -> list[SlaMiss]:
        query = sa.select(sla_miss_rows).order_by(sla_miss_rows.c.recorded_at)
        if dag_id:
            query = query.where(sla_miss_rows.c.dag_id == dag_id)
        with self.engine.connect() as conn:
            out = []
            for row in conn.execute(query).mappings():
                values = dict(row)
                values["recorded_at"] = _aware(values["recorded_at"])
                if values["deadline_at"] is not None:
                    values["deadline_at"] = _aware(values["deadline_at"])
                out.append(SlaMiss(**values))
            return out
