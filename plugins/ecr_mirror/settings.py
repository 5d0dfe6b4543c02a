"""Process-wide settings read from the environment (``ECR_MIRROR_*``).

pydantic-settings parses the values, so ``ECR_MIRROR_UPSTREAM_ENDPOINTS`` takes JSON, e.g.
``{"registry-1.docker.io": "http://127.0.0.1:5000"}``; the sandbox uses it to point each upstream
host at a local Distribution registry. Every Airflow component reads the same environment.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ECR_MIRROR_", extra="ignore")

    #: SQLAlchemy URL of the audit store; default: a SQLite file under AIRFLOW_HOME.
    audit_url: str | None = None
    #: upstream host -> base URL override (``https://<host>`` when absent).
    upstream_endpoints: dict[str, str] = {}
    #: folder of manifests the DAG file loads (default: config/manifests beside dags/).
    manifest_dir: Path | None = None
    #: seconds for every upstream and registry-endpoint request.
    http_timeout: float = 30.0

    def resolved_audit_url(self) -> str:
        if self.audit_url:
            return self.audit_url
        home = Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow"))
        return f"sqlite:///{home / 'ecr_mirror_audit.db'}"

    def upstream_base_url(self, host: str) -> str:
        return self.upstream_endpoints.get(host, f"https://{host}").rstrip("/")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
