"""The audit store's schema migrations (Alembic), and the upgrade every ``AuditStore`` runs first.

The tables are defined once, in ``ecr_mirror.audit``; each revision under ``versions/`` moves a
database from one schema to the next, and a test checks that the last one gives exactly the tables
``audit.metadata`` describes. The script location is this folder, found from ``__file__``, so the
migrations run the same from the installed package and from Airflow's plugins folder.

Databases made before the migrations existed (``metadata.create_all``, no version table) are
recognised by their columns and stamped with the revision they match, then upgraded.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from alembic.config import Config

#: the newest revision, the schema ``audit.metadata`` describes (a test keeps it equal to the
#: newest file under versions/). Written here so that a process whose database is current never
#: imports Alembic, which takes half a second: Alembic is imported only to upgrade.
HEAD = "0006"

#: not Alembic's default ``alembic_version``: the audit may share a database with Airflow, whose
#: own migrations keep that table
VERSION_TABLE = "ecr_mirror_alembic_version"

#: the key of the PostgreSQL advisory lock held while upgrading: any constant no other application
#: of the database uses; this one is the first 8 bytes of sha256(b"ecr_mirror_audit_migrations")
_PG_LOCK_KEY = 0x5936_7098_3CCB_EE87

#: seconds a SQLite upgrade waits for another process's upgrade (or write) to finish
_SQLITE_WAIT_SECONDS = 120

#: revisions of the schemas written by ``metadata.create_all`` before the migrations existed
_BEFORE_6BB2AEA = "0001"  # tag rows and run summaries only
_AT_A00658C = "0002"  # + platform_digests, warmed_bytes, warmed blobs, SLA misses


@dataclass(frozen=True)
class Upgrade:
    """What an upgrade did: the revision found (None: an empty database), the revision a database
    made before the migrations was recognised as (None: it had a version table or was empty), and
    the revision it is at now."""

    before: str | None
    legacy: str | None
    after: str


def config(connection: sa.Connection | None = None) -> Config:
    """Alembic's configuration for these migrations (on ``connection``, when given)."""
    from alembic.config import Config

    alembic_config = Config()
    alembic_config.set_main_option("script_location", str(Path(__file__).parent))
    if connection is not None:
        alembic_config.attributes["connection"] = connection
    return alembic_config


def current(connection: sa.Connection) -> str | None:
    """The database's revision; None when it has no version table."""
    if not sa.inspect(connection).has_table(VERSION_TABLE):
        return None
    version = sa.table(VERSION_TABLE, sa.column("version_num"))
    found: str | None = connection.execute(sa.select(version.c.version_num)).scalar()
    return found


def _legacy_revision(connection: sa.Connection) -> str | None:
    """The revision whose schema a database without a version table has, by its columns; None
    for a database without the audit tables."""
    inspector = sa.inspect(connection)
    if not inspector.has_table("ecr_mirror_audit"):
        return None
    columns = {column["name"] for column in inspector.get_columns("ecr_mirror_audit")}
    return _AT_A00658C if "platform_digests" in columns else _BEFORE_6BB2AEA


@contextmanager
def _locked(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection in a transaction that no other upgrade of the same database runs beside:
    PostgreSQL's transaction-scoped advisory lock, SQLite's exclusive transaction (which also
    keeps writers out while the tables change). Committed when the block ends without error."""
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            with connection.begin():
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
                yield connection
            return
        # pysqlite opens its transactions itself, without DDL and never exclusive: switch that off
        # for this connection and say BEGIN EXCLUSIVE (SQLAlchemy's documented pysqlite recipe).
        raw = connection.connection.driver_connection
        assert raw is not None
        isolation, wait = raw.isolation_level, connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
        connection.rollback()
        raw.isolation_level = None
        try:
            connection.exec_driver_sql(f"PRAGMA busy_timeout = {_SQLITE_WAIT_SECONDS * 1000}")
            connection.exec_driver_sql("BEGIN EXCLUSIVE")
            try:
                yield connection
            except BaseException:
                connection.rollback()
                raise
            connection.commit()
        finally:
            connection.exec_driver_sql(f"PRAGMA busy_timeout = {int(wait or 0)}")
            connection.rollback()
            raw.isolation_level = isolation


def upgrade(engine: sa.Engine) -> Upgrade:
    """Bring the audit database at ``engine`` to the newest revision, creating it when empty.

    Several processes may call this at once (Airflow workers starting together): one upgrades, the
    others wait for it, then find the database current. A database already current costs one query.
    """
    with engine.connect() as connection:
        found = current(connection)
    if found == HEAD:
        return Upgrade(found, None, found)
    from alembic import command

    with _locked(engine) as connection:
        before = current(connection)  # another process may have upgraded it meanwhile
        legacy = _legacy_revision(connection) if before is None else None
        if legacy is not None:
            command.stamp(config(connection), legacy)
        command.upgrade(config(connection), "head")
        after = current(connection)
    assert after == HEAD, f"the audit migrations end at {after}, not at HEAD {HEAD}"
    return Upgrade(before, legacy, after)
