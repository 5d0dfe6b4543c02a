"""The first audit schema (commit fb51cb9, until 6bb2aea): a row per tag per run, a summary per run.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ecr_mirror_audit",
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
        sa.Column("duration_ms", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("run_id", "dag_id", "ecr_repository", "tag", name="uq_ecr_mirror_audit_tag"),
    )
    op.create_index("ix_ecr_mirror_audit_run_id", "ecr_mirror_audit", ["run_id"])
    op.create_index("ix_ecr_mirror_audit_dag_id", "ecr_mirror_audit", ["dag_id"])
    op.create_table(
        "ecr_mirror_run",
        sa.Column("run_id", sa.String(250), primary_key=True),
        sa.Column("dag_id", sa.String(250), primary_key=True),
        sa.Column("manifest", sa.String(250), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("counts", sa.Text, nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ecr_mirror_run")
    op.drop_index("ix_ecr_mirror_audit_dag_id", "ecr_mirror_audit")
    op.drop_index("ix_ecr_mirror_audit_run_id", "ecr_mirror_audit")
    op.drop_table("ecr_mirror_audit")
