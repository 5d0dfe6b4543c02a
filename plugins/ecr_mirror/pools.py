"""Airflow pools per upstream registry: every compare/pull task of one upstream host shares its pool.

Pool sizes come from ``ECR_MIRROR_POOLS`` (JSON: host -> slots) and ``ECR_MIRROR_POOL_SLOTS`` (the
rest). The scheduler leaves a task whose pool does not exist unscheduled, so the pools are created
before the first run: ``ecr-mirror-pools`` (run by the compose init service) creates or resizes the
pool of every upstream host the manifests use.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable
from pathlib import Path

from ecr_mirror.manifest import Manifest, load_manifests
from ecr_mirror.settings import get_settings


def slug(host: str) -> str:
    """An upstream host as an Airflow id: ``registry-1.docker.io`` -> ``registry_1_docker_io``."""
    return re.sub(r"[^a-z0-9]+", "_", host.lower()).strip("_")


def pool_name(host: str) -> str:
    return f"ecr_mirror__{slug(host)}"


def upstream_hosts(manifests: Iterable[Manifest]) -> list[str]:
    """The upstream registry hosts of the manifests' rules, sorted."""
    return sorted({rule.url for manifest in manifests for rule in manifest.rules})


def pool_slots(host: str) -> int:
    settings = get_settings()
    return settings.pools.get(host, settings.pool_slots)


def ensure_pools(hosts: Iterable[str]) -> dict[str, int]:
    """Create or resize the pool of each host in Airflow's metadata database; pool name -> slots."""
    from airflow.models.pool import Pool

    made = {}
    for host in hosts:
        name, slots = pool_name(host), pool_slots(host)
        Pool.create_or_update_pool(name, slots, f"ecr-mirror requests to {host}", include_deferred=False)
        made[name] = slots
    return made


def main(argv: list[str] | None = None) -> int:
    """``ecr-mirror-pools [MANIFEST_DIR]``: create the pools of every upstream of the manifests."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("manifest_dir", nargs="?", type=Path, help="default: ECR_MIRROR_MANIFEST_DIR")
    args = parser.parse_args(argv)
    from airflow.configuration import conf

    directory = args.manifest_dir or get_settings().resolved_manifest_dir(
        Path(conf.get("core", "dags_folder"))
    )
    loaded, errors = load_manifests(directory)
    for error in errors:
        print(f"skipped, invalid manifest: {error}")
    hosts = set(upstream_hosts(m for _, m in loaded)) | set(get_settings().pools)
    for name, slots in ensure_pools(sorted(hosts)).items():
        print(f"pool {name}: {slots} slots")
    return 0


def configured_slots(name: str) -> int:
    """The slots ``ECR_MIRROR_POOLS``/``ECR_MIRROR_POOL_SLOTS`` give the pool called ``name``."""
    settings = get_settings()
    by_name = {pool_name(host): slots for host, slots in settings.pools.items()}
    return by_name.get(name, settings.pool_slots)
