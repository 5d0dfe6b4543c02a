"""Audit databases for the tests: a throwaway database per test (a SQLite file, or a database of
its own on the machine's PostgreSQL, 127.0.0.1:5432), and the schemas ecr-mirror created with
``metadata.create_all`` before it had migrations, copied from the commits that defined them, with
rows as that code wrote them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

PG_ADMIN = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
DIALECTS = ["sqlite", "postgresql"]


@contextmanager
def throwaway_url(dialect: str, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database, dropped afterwards (PostgreSQL: skips where there is none)."""
    if dialect == "sqlite":
        yield f"sqlite:///{tmp_path / 'audit.db'}"
        return
    name = f"ecr_mirror_audit_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:  # only where the machine has no PostgreSQL
        admin.dispose()
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def before_6bb2aea() -> sa.MetaData:
    """fb51cb9 until 6bb2aea: no platform digests, no warmed bytes, no warmed blobs, no SLA misses."""
    metadata = sa.MetaData()
    sa.Table(
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
        sa.Column("duration_ms", sa.Integer, nullable=False, default=0),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("run_id", "dag_id", "ecr_repository", "tag", name="uq_ecr_mirror_audit_tag"),
    )
    sa.Table(
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
    return metadata


def at_a00658c() -> sa.MetaData:
    """6bb2aea until the migrations (a00658c): platform digests and warmed bytes per tag, the warmed
    blobs and the SLA misses."""
    metadata = sa.MetaData()
    sa.Table(
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
        sa.Column("platform_digests", sa.Text),
        sa.Column("warmed_bytes", sa.BigInteger),
        sa.Column("duration_ms", sa.Integer, nullable=False, default=0),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("run_id", "dag_id", "ecr_repository", "tag", name="uq_ecr_mirror_audit_tag"),
    )
    sa.Table(
        "ecr_mirror_warmed_blob",
        metadata,
        sa.Column("ecr_repository", sa.String(256), primary_key=True),
        sa.Column("digest", sa.String(100), primary_key=True),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("warmed_at", sa.DateTime(timezone=True), nullable=False),
    )
    sa.Table(
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
    sa.Table(
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
    return metadata


SCHEMAS = {"before_6bb2aea": before_6bb2aea, "a00658c": at_a00658c}

WHEN = datetime(2025, 1, 6, 3, 0, tzinfo=UTC)
DIGEST = "sha256:" + "1" * 64


def old_rows(metadata: sa.MetaData) -> dict[str, list[dict]]:
    """Rows as the old code wrote them: two runs of one DAG (the second failed), by table."""
    tags = metadata.tables["ecr_mirror_audit"]
    rows: dict[str, list[dict]] = {
        "ecr_mirror_audit": [
            {
                "run_id": run_id,
                "dag_id": "ecr_mirror__old",
                "manifest": "old",
                "image": "docker.io/library/nginx",
                "ecr_repository": "docker-hub/library/nginx",
                "tag": tag,
                "upstream_digest": DIGEST,
                "cached_digest_before": None,
                "cached_digest_after": DIGEST if status == "pulled" else None,
                "action": "missing",
                "status": status,
                "error": "boom" if status == "failed" else None,
                "duration_ms": 12,
                "started_at": WHEN,
                "finished_at": WHEN,
            }
            for run_id, tag, status in (
                ("scheduled__1", "1.27", "pulled"),
                ("scheduled__1", "1.26", "pulled"),
                ("scheduled__2", "1.27", "ok"),
                ("scheduled__2", "1.26", "failed"),
            )
        ],
        "ecr_mirror_run": [
            {
                "run_id": run_id,
                "dag_id": "ecr_mirror__old",
                "manifest": "old",
                "status": status,
                "total": 2,
                "counts": json.dumps(counts),
                "note": None,
                "finished_at": WHEN,
            }
            for run_id, status, counts in (
                ("scheduled__1", "success", {"pulled": 2}),
                ("scheduled__2", "failed", {"failed": 1, "ok": 1}),
            )
        ],
    }
    if "platform_digests" in tags.c:
        rows["ecr_mirror_audit"][0]["platform_digests"] = json.dumps({"linux/amd64": DIGEST})
        rows["ecr_mirror_audit"][0]["warmed_bytes"] = 1024
        for row in rows["ecr_mirror_audit"][1:]:
            row.update(platform_digests=None, warmed_bytes=None)
        rows["ecr_mirror_warmed_blob"] = [
            {
                "ecr_repository": "docker-hub/library/nginx",
                "digest": DIGEST,
                "size_bytes": 1024,
                "warmed_at": WHEN,
            }
        ]
        rows["ecr_mirror_sla_miss"] = [
            {
                "run_id": "scheduled__2",
                "dag_id": "ecr_mirror__old",
                "manifest": "old",
                "within_seconds": 600,
                "deadline_at": WHEN,
                "notified": "log",
                "recorded_at": WHEN,
            }
        ]
    return rows


def create_old_store(url: str, schema: str) -> dict[str, list[dict]]:
    """A database as the old code left it (``create_all`` of that schema, then its rows); returns
    the rows written, by table."""
    metadata = SCHEMAS[schema]()
    rows = old_rows(metadata)
    engine = sa.create_engine(url)
    try:
        metadata.create_all(engine)
        with engine.begin() as conn:
            for table, values in rows.items():
                conn.execute(metadata.tables[table].insert(), values)
    finally:
        engine.dispose()
    return rows
