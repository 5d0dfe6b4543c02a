"""When a run pulled a tag through ECR (refresh.py reads it to know when ECR refreshes a drifted
tag) and the upstream tag a digest pin came through (pins.py tries it first next time).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("ecr_mirror_audit", sa.Column("pulled_at", sa.DateTime(timezone=True)))
    op.add_column("ecr_mirror_audit", sa.Column("via_tag", sa.String(128)))


def downgrade() -> None:
    with op.batch_alter_table("ecr_mirror_audit") as batch:
        batch.drop_column("via_tag")
        batch.drop_column("pulled_at")
