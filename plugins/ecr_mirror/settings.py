"""Process-wide settings read from the environment (``ECR_MIRROR_*``).

pydantic-settings parses the values, so ``ECR_MIRROR_UPSTREAM_ENDPOINTS`` takes JSON, e.g.
``{"registry-1.docker.io": "http://127.0.0.1:5000"}``; the sandbox uses it to point each upstream
host at a local Distribution registry. Every Airflow component reads the same environment.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import PositiveInt
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    # empty counts as unset: docker-compose passes ``${ECR_MIRROR_POOLS:-}`` as ""
    model_config = SettingsConfigDict(env_prefix="ECR_MIRROR_", extra="ignore", env_ignore_empty=True)

    #: SQLAlchemy URL of the audit store; default: a SQLite file under AIRFLOW_HOME.
    audit_url: str | None = None
    #: days the audit keeps rows (never a tag's latest row, see audit_retention); unset: forever.
    audit_retention_days: PositiveInt | None = None
    #: upstream host -> base URL override (``https://<host>`` when absent).
    upstream_endpoints: dict[str, str] = {}
    #: folder of manifests the DAG file loads (default: config/manifests beside dags/).
    manifest_dir: Path | None = None
    #: seconds an audit write is retried while the database is locked or unreachable (then the
    #: run stops pulling and says so).
    audit_write_seconds: float = 120.0
    #: seconds for every upstream and registry-endpoint request.
    http_timeout: float = 30.0
    #: folder of the backfill DAG's config (backfill.yaml) and image lists (*.txt); default:
    #: config/backfill beside dags/.
    backfill_dir: Path | None = None
    #: Airflow pool slots per upstream registry host, e.g. ``{"registry-1.docker.io": 2}``.
    pools: dict[str, int] = {}
    #: slots of the pool of an upstream host that ``pools`` does not list.
    pool_slots: int = 4
    #: attach each manifest's SLA as a Deadline Alert (off for ``airflow dags test``, see dag_factory).
    deadlines: bool = True

    def resolved_audit_url(self) -> str:
        if self.audit_url:
            return self.audit_url
        home = Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow"))
        return f"sqlite:///{home / 'ecr_mirror_audit.db'}"

    def resolved_manifest_dir(self, dags_folder: Path) -> Path:
        return self.manifest_dir or dags_folder.parent / "config" / "manifests"

    def resolved_backfill_dir(self, dags_folder: Path) -> Path:
        return self.backfill_dir or dags_folder.parent / "config" / "backfill"

    def upstream_base_url(self, host: str) -> str:
        return self.upstream_endpoints.get(host, f"https://{host}").rstrip("/")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
