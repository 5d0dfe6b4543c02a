"""Process-wide settings read from the environment (``ECR_MIRROR_*``).

pydantic-settings parses the values, so ``ECR_MIRROR_UPSTREAM_ENDPOINTS`` takes JSON, e.g.
``{"registry-1.docker.io": "http://127.0.0.1:5000"}``; the sandbox uses it to point each upstream
host at a local Distribution registry. Every Airflow component reads the same environment.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import NonNegativeInt, PositiveFloat, PositiveInt
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
    audit_write_seconds: PositiveFloat = 120.0
    #: seconds for every upstream and registry-endpoint request: each read, and the whole of a
    #: request whose body is read at once (manifests, tag lists, tokens, small blobs), so a body
    #: trickled byte by byte cannot hold a worker longer. Layer streams are bounded per read only.
    http_timeout: PositiveFloat = 30.0
    #: attempts per request on 429, 500/502/503/504, resets and read timeouts (1: no retry).
    http_max_attempts: PositiveInt = 5
    #: first backoff in seconds; doubled each retry, with jitter, up to ``http_max_backoff``.
    http_backoff_initial: PositiveFloat = 0.5
    #: longest wait before a retry; a ``Retry-After`` longer than this is not slept on (the tag
    #: fails as rate limited, and the task's Airflow retries come back later).
    http_max_backoff: PositiveFloat = 30.0
    #: ``ratelimit-remaining`` (Docker Hub's pulls left) at or below which the engine defers its
    #: own manifest GETs to that upstream; HEAD checks go on. Unset: never deferred.
    pull_floor: NonNegativeInt | None = None
    #: folder of the backfill DAG's config (backfill.yaml) and image lists (*.txt); default:
    #: config/backfill beside dags/.
    backfill_dir: Path | None = None
    #: Airflow pool slots per upstream registry host, e.g. ``{"registry-1.docker.io": 2}``.
    pools: dict[str, int] = {}
    #: slots of the pool of an upstream host that ``pools`` does not list.
    pool_slots: int = 4
    #: attach each manifest's SLA as a Deadline Alert (off for ``airflow dags test``, see dag_factory).
    deadlines: bool = True
    #: limits on one manifest file (manifest/limits.py): a file past one is refused with the
    #: limit's name, so a hostile or runaway file cannot stall the DAG file or the CLI.
    #: bytes of the file
    manifest_max_bytes: PositiveInt = 4 * 1024 * 1024
    #: nesting depth of its collections (a manifest needs about 6)
    manifest_max_depth: PositiveInt = 64
    #: YAML aliases (``*name``) it uses
    manifest_max_aliases: PositiveInt = 10_000
    #: nodes once its aliases are expanded (what validation walks)
    manifest_max_nodes: PositiveInt = 1_000_000
    #: entries of its ``images`` list
    manifest_max_images: PositiveInt = 10_000
    #: seconds one manifest pattern (include, exclude, variant) may take on one tag (patterns.py)
    regex_timeout_seconds: PositiveFloat = 0.25

    def resolved_audit_url(self) -> str:
        if self.audit_url:
            return self.audit_url
        home = Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow"))
        return f"sqlite:///{home / 'ecr_mirror_audit.db'}"

    def resolved_manifest_dir(self, dags_folder: Path) -> Path:
        return self.manifest_dir or dags_folder.parent / "config" / "manifests"

    def resolved_backfill_dir(self, dags_folder: Path) -> Path:
        return self.backfill_dir or dags_folder.parent / "config" / "backfill"

    def client_options(self) -> dict[str, Any]:
        """The RegistryClient keyword arguments these settings set (timeouts, retries, floor)."""
        return {
            "timeout": self.http_timeout,
            "max_attempts": self.http_max_attempts,
            "backoff_initial": self.http_backoff_initial,
            "max_backoff": self.http_max_backoff,
            "pull_floor": self.pull_floor,
        }

    def upstream_base_url(self, host: str) -> str:
        return self.upstream_endpoints.get(host, f"https://{host}").rstrip("/")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
