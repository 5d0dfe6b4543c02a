"""The audit trail: one row per tag per run, and one summary row per run.

Stored with SQLAlchemy Core so the same code writes SQLite (the default) and PostgreSQL. Rows are
written as each shard finishes, in one multi-row upsert statement (``INSERT ... ON CONFLICT DO
UPDATE`` through the dialect's insert) per thousand-odd rows, not a round trip per tag; a retried
shard replaces its own rows (the upsert's key), so a run never holds two rows for one tag.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import RowMapping
from sqlalchemy.dialects import postgresql, sqlite

from ecr_mirror.audit_migrations import upgrade
from ecr_mirror.audit_writes import check_writable, durably
from ecr_mirror.states import Action, ErrorKind, RunStatus, Status

R = TypeVar("R")

metadata = sa.MetaData()

tag_rows = sa.Table(
    "ecr_mirror_audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("dag_id", sa.String(250), nullable=False),
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
    # when this run's manifest GET through ECR pulled the tag (ECR's clock: its answer's Date); the
    # pulls restart ECR's refresh window (refresh.py); null: not pulled
    sa.Column("pulled_at", sa.DateTime(timezone=True)),
    sa.Column("via_tag", sa.String(128)),  # a digest pin pulled through this upstream tag (pins.py)
    sa.Column("duration_ms", sa.Integer, nullable=False, default=0),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("error_kind", sa.String(16)),  # transient or permanent (states.ErrorKind), failed rows
    sa.Column("attempt", sa.Integer),  # the task try that wrote the row
    sa.Column("subject_digest", sa.String(100)),  # a signature/attestation/sbom/referrer: its image
    sa.Column("artifact_kind", sa.String(32)),
    sa.UniqueConstraint("run_id", "dag_id", "ecr_repository", "tag", name="uq_ecr_mirror_audit_tag"),
    # the unique key serves lookups by run_id; these serve the audit view and the CLI
    sa.Index("ix_ecr_mirror_audit_dag_run", "dag_id", "run_id"),
    sa.Index("ix_ecr_mirror_audit_tag_history", "ecr_repository", "tag", "finished_at"),
    sa.Index("ix_ecr_mirror_audit_status", "status"),
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
    # provenance: what the run was asked to do, and by whom
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("manifest_hash", sa.String(64)),  # sha256 of the manifest file's bytes
    sa.Column("manifest_path", sa.String(500)),
    sa.Column("conf", sa.Text),  # the trigger conf as JSON (secrets never)
    sa.Column("dry_run", sa.Boolean),
    sa.Column("triggered_by", sa.String(250)),
    sa.Column("run_type", sa.String(32)),  # scheduled, manual, backfill, cli
    sa.Column("dag_version", sa.String(64)),  # the Airflow DAG version's id the run used
    sa.Index("ix_ecr_mirror_run_dag_finished", "dag_id", "finished_at"),
)

#: the tags a run set out to mirror, registered before its first pull (run_closing.py)
run_tags = sa.Table(
    "ecr_mirror_run_tag",
    metadata,
    sa.Column("run_id", sa.String(250), primary_key=True),
    sa.Column("dag_id", sa.String(250), primary_key=True),
    sa.Column("ecr_repository", sa.String(256), primary_key=True),
    sa.Column("tag", sa.String(200), primary_key=True),
    sa.Column("manifest", sa.String(250), nullable=False),
    sa.Column("image", sa.String(500), nullable=False),
    # who runs it: "airflow", or "cli:<host>:<pid>" (a CLI run whose process is gone is over)
    sa.Column("owner", sa.String(250), nullable=False),
    sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
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
FAILED_STATUSES = frozenset({Status.FAILED})

#: the INSERT ... ON CONFLICT DO UPDATE of each dialect the store supports
_UPSERTS: dict[str, Callable[[sa.Table], Any]] = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
#: bound parameters one statement may carry: SQLite's SQLITE_MAX_VARIABLE_NUMBER (32,766 since 3.32,
#: https://www.sqlite.org/limits.html#max_variable_number), PostgreSQL's 65,535 of its protocol
_MAX_PARAMETERS = {"sqlite": 32766 if sqlite3.sqlite_version_info >= (3, 32) else 999, "postgresql": 65535}


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
    action: Action
    status: Status
    upstream_digest: str | None = None
    cached_digest_before: str | None = None
    cached_digest_after: str | None = None
    error: str | None = None
    platform_digests: str | None = None
    warmed_bytes: int | None = None
    pulled_at: datetime | None = None
    via_tag: str | None = None
    #: a signature, attestation, SBOM or referrer row: the digest it belongs to, and its kind
    subject_digest: str | None = None
    artifact_kind: str | None = None
    duration_ms: int = 0
    started_at: datetime = field(default_factory=utcnow)
    finished_at: datetime = field(default_factory=utcnow)
    #: a failed row's kind: transient (another try may cure it) or permanent
    error_kind: ErrorKind | None = None
    #: the Airflow task's try that wrote the row (None: the CLI, or rows record_audit closes)
    attempt: int | None = None


@dataclass
class RunSummary:
    run_id: str
    dag_id: str
    manifest: str
    status: RunStatus
    total: int
    counts: dict[str, int]
    note: str | None = None
    finished_at: datetime = field(default_factory=utcnow)
    # provenance (provenance.py): what the run was asked to do, from which manifest, by whom
    started_at: datetime | None = None
    manifest_hash: str | None = None
    manifest_path: str | None = None
    conf: str | None = None  # JSON
    dry_run: bool | None = None
    triggered_by: str | None = None
    run_type: str | None = None
    dag_version: str | None = None

    @classmethod
    def of(cls, run_id: str, dag_id: str, manifest: str, records: Sequence[AuditRecord]) -> RunSummary:
        counts = Counter(str(r.status) for r in records)
        failed = sum(counts[s] for s in FAILED_STATUSES)
        return cls(
            run_id=run_id,
            dag_id=dag_id,
            manifest=manifest,
            status=RunStatus.FAILED if failed else RunStatus.SUCCESS,
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
_SUMMARY_FIELDS = [f.name for f in fields(RunSummary)]


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything in the audit is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _record(row: RowMapping) -> AuditRecord:
    values = dict(row)
    values.update(
        action=Action(values["action"]),
        status=Status(values["status"]),
        started_at=_aware(values["started_at"]),
        finished_at=_aware(values["finished_at"]),
        pulled_at=None if values["pulled_at"] is None else _aware(values["pulled_at"]),
        error_kind=None if values["error_kind"] is None else ErrorKind(values["error_kind"]),
    )
    return AuditRecord(**values)


def _summary(row: RowMapping) -> RunSummary:
    values = dict(row)
    values.update(
        status=RunStatus(values["status"]),
        counts=json.loads(values["counts"]),
        finished_at=_aware(values["finished_at"]),
        started_at=None if values["started_at"] is None else _aware(values["started_at"]),
    )
    return RunSummary(**values)


def _sla_miss(row: RowMapping) -> SlaMiss:
    values = dict(row)
    values["recorded_at"] = _aware(values["recorded_at"])
    if values["deadline_at"] is not None:
        values["deadline_at"] = _aware(values["deadline_at"])
    return SlaMiss(**values)


class AuditStore:
    """Reads and writes the audit tables at one SQLAlchemy URL (the schema is created, or upgraded
    to this version's, on first use: ``audit_migrations.upgrade``).

    SQLite and PostgreSQL: rows are written with their dialect's INSERT ... ON CONFLICT DO UPDATE.
    """

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url, future=True)
        if self.engine.dialect.name not in _UPSERTS:
            self.engine.dispose()
            raise ValueError(f"the audit store runs on SQLite or PostgreSQL, not {self.engine.dialect.name}")
        try:
            upgrade(self.engine)
        except BaseException:
            self.engine.dispose()
            raise

    def _upsert(self, table: sa.Table, rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> None:
        """Insert ``rows``; a row whose ``keys`` are stored already replaces that row (a retried
        batch, a blob warmed again, a summary written again). Of rows with equal keys the last wins."""
        unique = list({tuple(row[key] for key in keys): row for row in rows}.values())
        if not unique:
            return
        dialect = self.engine.dialect.name
        changed = [name for name in unique[0] if name not in keys]
        per_statement = max(1, _MAX_PARAMETERS[dialect] // len(unique[0]))

        def execute() -> None:
            with self.engine.begin() as conn:
                for start in range(0, len(unique), per_statement):
                    # one multi-row INSERT ... ON CONFLICT DO UPDATE: one round trip for the chunk
                    insert = _UPSERTS[dialect](table).values(unique[start : start + per_statement])
                    excluded = {name: insert.excluded[name] for name in changed}
                    conn.execute(insert.on_conflict_do_update(index_elements=list(keys), set_=excluded))

        durably(self.engine, execute, f"writing {len(unique)} row(s) to {table.name}")

    def check_writable(self) -> None:
        """Raise AuditWriteError, naming the store, unless a row can be written now (after the
        retries on a locked database): checked before a run changes anything."""
        check_writable(self.engine, warmed_blobs)

    def _read(self, query: sa.Select[Any], convert: Callable[[RowMapping], R]) -> list[R]:
        with self.engine.connect() as conn:
            return [convert(row) for row in conn.execute(query).mappings()]

    def write(self, records: Iterable[AuditRecord]) -> None:
        """Insert rows, replacing earlier rows of the same run and tag (a retried batch)."""
        keys = ("run_id", "dag_id", "ecr_repository", "tag")
        self._upsert(tag_rows, [asdict(r) for r in records], keys)

    def records(self, *, dag_id: str | None = None, run_id: str | None = None) -> list[AuditRecord]:
        query = sa.select(*(tag_rows.c[name] for name in _RECORD_FIELDS)).order_by(tag_rows.c.id)
        if dag_id:
            query = query.where(tag_rows.c.dag_id == dag_id)
        if run_id:
            query = query.where(tag_rows.c.run_id == run_id)
        return self._read(query, _record)

    # -- what earlier runs learnt about ECR (pull.py's PullMemory) ------------------------------

    def last_pull(self, repository: str, digest: str) -> datetime | None:
        """When a run last pulled the image ``digest`` of ``repository`` through ECR (ECR's clock)."""
        rows = tag_rows.c
        query = sa.select(sa.func.max(rows.pulled_at)).where(
            rows.ecr_repository == repository, rows.cached_digest_after == digest
        )
        with self.engine.connect() as conn:
            last = conn.execute(query).scalar()
        return None if last is None else _aware(last)

    def pin_carrier(self, repository: str, digest: str) -> str | None:
        """The upstream tag the digest pin ``digest`` was last pulled through, if any."""
        rows = tag_rows.c
        query = (
            sa.select(rows.via_tag)
            .where(rows.ecr_repository == repository, rows.tag == digest, rows.via_tag.is_not(None))
            .order_by(rows.finished_at.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            carrier: str | None = conn.execute(query).scalar()
        return carrier

    def held_platforms(self, repository: str, tag: str, digest: str) -> tuple[Status, dict[str, str]] | None:
        """The platform digests the last row of ``tag`` whose cached index is ``digest`` recorded,
        with its status: the selection (``ok``/``pulled``), or every platform of the index (a
        ``failed`` row of a platform the index lacks)."""
        rows = tag_rows.c
        query = (
            sa.select(rows.status, rows.platform_digests)
            .where(
                rows.ecr_repository == repository,
                rows.tag == tag,
                rows.cached_digest_after == digest,
                rows.platform_digests.is_not(None),
            )
            .order_by(rows.finished_at.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else (Status(row.status), json.loads(row.platform_digests))

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
        self._upsert(warmed_blobs, rows, ("ecr_repository", "digest"))

    def register_run_tags(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """The tags a run sets out to mirror (run_closing.register builds the rows)."""
        self._upsert(run_tags, rows, ("run_id", "dag_id", "ecr_repository", "tag"))

    def write_summary(self, summary: RunSummary) -> None:
        row = {**asdict(summary), "counts": json.dumps(summary.counts)}
        self._upsert(run_rows, [row], ("run_id", "dag_id"))

    def summaries(
        self, *, dag_id: str | None = None, run_id: str | None = None, limit: int = 20
    ) -> list[RunSummary]:
        columns = (run_rows.c[name] for name in _SUMMARY_FIELDS)
        query = sa.select(*columns).order_by(run_rows.c.finished_at.desc()).limit(limit)
        if dag_id:
            query = query.where(run_rows.c.dag_id == dag_id)
        if run_id:
            query = query.where(run_rows.c.run_id == run_id)
        return self._read(query, _summary)

    def write_sla_miss(self, miss: SlaMiss) -> None:
        self._upsert(sla_miss_rows, [asdict(miss)], ("run_id", "dag_id"))

    def sla_misses(self, *, dag_id: str | None = None) -> list[SlaMiss]:
        query = sa.select(sla_miss_rows).order_by(sla_miss_rows.c.recorded_at)
        if dag_id:
            query = query.where(sla_miss_rows.c.dag_id == dag_id)
        return self._read(query, _sla_miss)
