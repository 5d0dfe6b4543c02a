"""Airflow DAG file: one ecr-mirror DAG per manifest in config/manifests, and the backfill DAG.

ECR_MIRROR_MANIFEST_DIR and ECR_MIRROR_BACKFILL_DIR override the folders. All logic lives in the
ecr_mirror package.
"""

from pathlib import Path

from ecr_mirror.dag_factory import register_dags
from ecr_mirror.settings import get_settings

_dags = Path(__file__).parent
register_dags(
    globals(),
    get_settings().resolved_manifest_dir(_dags),
    get_settings().resolved_backfill_dir(_dags),
)
