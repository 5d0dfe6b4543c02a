"""The tags each run set out to mirror, written before its first pull, so that a run killed before
its summary (a CLI process killed, a DAG run stopped) can be closed by the next one: every tag
gets a row and the run a summary (run_closing.py).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ecr_mirror_run_tag",
        sa.Column("run_id", sa.String(250), primary_key=True),
        sa.Column("dag_id", sa.String(250), primary_key=True),
        sa.Column("ecr_repository", sa.String(256), primary_key=True),
        sa.Column("tag", sa.String(200), primary_key=True),
        sa.Column("manifest", sa.String(250), nullable=False),
        sa.Column("image", sa.String(500), nullable=False),
        sa.Column("owner", sa.String(250), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ecr_mirror_run_tag")
