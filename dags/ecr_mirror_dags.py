"""Airflow DAG file: one ecr-mirror DAG per manifest in config/manifests.

ECR_MIRROR_MANIFEST_DIR overrides the folder. All logic lives in the ecr_mirror package.
"""

from pathlib import Path

from ecr_mirror.dag_factory import register_dags
from ecr_mirror.settings import get_settings

register_dags(globals(), get_settings().manifest_dir or Path(__file__).parents[1] / "config" / "manifests")
