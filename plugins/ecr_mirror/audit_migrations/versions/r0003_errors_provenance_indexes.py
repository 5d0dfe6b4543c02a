"""Error kinds, attempts and referrers per tag; a run's provenance; the audit view's indexes.

The single-column indexes on run_id and dag_id go: the unique key (run_id, dag_id, ...) serves
lookups by run_id, the new (dag_id, run_id) index lookups by dag_id.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

#: (name, type) of the new nullable columns of each table
_NEW_COLUMNS: dict[str, list[tuple[str, sa.types.TypeEngine[Any]]]] = {
    "ecr_mirror_audit": [
        ("error_kind", sa.String(16)),
        ("attempt", sa.Integer()),
        ("subject_digest", sa.String(100)),
        ("artifact_kind", sa.String(32)),
    ],
    "ecr_mirror_run": [
        ("started_at", sa.DateTime(timezone=True)),
        ("manifest_hash", sa.String(64)),
        ("manifest_path", sa.String(500)),
        ("conf", sa.Text()),
        ("dry_run", sa.Boolean()),
        ("triggered_by", sa.String(250)),
        ("run_type", sa.String(32)),
    ],
}


def upgrade() -> None:
    for table, columns in _NEW_COLUMNS.items():
        for name, type_ in columns:
            op.add_column(table, sa.Column(name, type_))
    op.drop_index("ix_ecr_mirror_audit_run_id", "ecr_mirror_audit")
    op.drop_index("ix_ecr_mirror_audit_dag_id", "ecr_mirror_audit")
    op.create_index("ix_ecr_mirror_audit_dag_run", "ecr_mirror_audit", ["dag_id", "run_id"])
    op.create_index(
        "ix_ecr_mirror_audit_tag_history", "ecr_mirror_audit", ["ecr_repository", "tag", "finished_at"]
    )
    op.create_index("ix_ecr_mirror_audit_status", "ecr_mirror_audit", ["status"])
    op.create_index("ix_ecr_mirror_run_dag_finished", "ecr_mirror_run", ["dag_id", "finished_at"])


def downgrade() -> None:
    op.drop_index("ix_ecr_mirror_run_dag_finished", "ecr_mirror_run")
    op.drop_index("ix_ecr_mirror_audit_status", "ecr_mirror_audit")
    op.drop_index("ix_ecr_mirror_audit_tag_history", "ecr_mirror_audit")
    op.drop_index("ix_ecr_mirror_audit_dag_run", "ecr_mirror_audit")
    op.create_index("ix_ecr_mirror_audit_dag_id", "ecr_mirror_audit", ["dag_id"])
    op.create_index("ix_ecr_mirror_audit_run_id", "ecr_mirror_audit", ["run_id"])
    for table, columns in _NEW_COLUMNS.items():
        with op.batch_alter_table(table) as batch:
            for name, _ in reversed(columns):
                batch.drop_column(name)
