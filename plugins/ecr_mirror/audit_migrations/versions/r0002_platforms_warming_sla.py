"""Platform digests and warmed bytes per tag, warmed blobs, SLA misses (commit 6bb2aea, as a00658c has it).

A database from before 6bb2aea that a00658c's code opened already has the two new tables (its
``metadata.create_all`` added missing tables, never missing columns), so the tables are created
only where they are missing.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("ecr_mirror_audit", sa.Column("platform_digests", sa.Text))
    op.add_column("ecr_mirror_audit", sa.Column("warmed_bytes", sa.BigInteger))
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table("ecr_mirror_warmed_blob"):
        op.create_table(
            "ecr_mirror_warmed_blob",
            sa.Column("ecr_repository", sa.String(256), primary_key=True),
            sa.Column("digest", sa.String(100), primary_key=True),
            sa.Column("size_bytes", sa.BigInteger, nullable=False),
            sa.Column("warmed_at", sa.DateTime(timezone=True), nullable=False),
        )
    if not inspector.has_table("ecr_mirror_sla_miss"):
        op.create_table(
            "ecr_mirror_sla_miss",
            sa.Column("run_id", sa.String(250), primary_key=True),
            sa.Column("dag_id", sa.String(250), primary_key=True),
            sa.Column("manifest", sa.String(250), nullable=False),
            sa.Column("within_seconds", sa.Integer, nullable=False),
            sa.Column("deadline_at", sa.DateTime(timezone=True)),
            sa.Column("notified", sa.Text, nullable=False),
            sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        )


def downgrade() -> None:
    op.drop_table("ecr_mirror_sla_miss")
    op.drop_table("ecr_mirror_warmed_blob")
    with op.batch_alter_table("ecr_mirror_audit") as batch:
        batch.drop_column("warmed_bytes")
        batch.drop_column("platform_digests")
