"""Alembic's environment for the audit store.

``ecr_mirror.audit_migrations.upgrade`` hands over its own connection (already in the transaction
that holds the upgrade lock). Alembic's command line, used to write a new revision, connects to
``-x url=...`` or to the configured audit store instead (docs/operations.md, "Migrations").
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from ecr_mirror.audit import metadata
from ecr_mirror.audit_migrations import VERSION_TABLE
from ecr_mirror.settings import get_settings


def _migrate(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        # SQLite alters most things by copying the table; Alembic's batch mode writes that for us
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def _run() -> None:
    given = context.config.attributes.get("connection")
    if given is not None:
        _migrate(given)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or get_settings().resolved_audit_url()
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            _migrate(connection)
    finally:
        engine.dispose()


_run()
