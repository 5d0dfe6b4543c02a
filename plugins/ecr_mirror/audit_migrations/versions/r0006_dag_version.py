"""The Airflow DAG version a run used (with the manifest hash that 0003 added, its provenance).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("ecr_mirror_run", sa.Column("dag_version", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("ecr_mirror_run") as batch:
        batch.drop_column("dag_version")
