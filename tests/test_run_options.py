"""Trigger options narrow and extend a manifest's selection."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from ecr_mirror.manifest import load_manifest
from ecr_mirror.mirror import RunOptions, open_mirror

# exact tags only: resolving them reads nothing from upstream or ECR
MANIFEST = """
name: options
target: {region: eu-west-1}
rules: [{prefix: docker-hub, upstream: docker-hub, credential_secret: ecr-pullthroughcache/docker-hub}]
images:
  - {image: nginx, tags: ["1.27", "1.27-alpine"]}
  - {image: docker.io/library/python, tags: ["3.12-slim"]}
  - {image: bitnami/redis, tags: ["7.4"]}
"""


@pytest.fixture
def resolve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[RunOptions], list[str]]:
    connection = {"conn_type": "aws", "extra": {"region_name": "eu-west-1"}}
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))
    path = tmp_path / "options.yaml"
    path.write_text(MANIFEST)
    manifest = load_manifest(path)

    def resolved(options: RunOptions) -> list[str]:
        with open_mirror(manifest, f"sqlite:///{tmp_path / 'audit.db'}") as mirror:
            return [f"{t.cache_repository}:{t.reference}" for t in mirror.resolve(options).tags]

    return resolved


def test_no_options_mirror_the_whole_manifest(resolve):
    assert resolve(RunOptions()) == [
        "docker-hub/library/nginx:1.27",
        "docker-hub/library/nginx:1.27-alpine",
        "docker-hub/library/python:3.12-slim",
        "docker-hub/bitnami/redis:7.4",
    ]


def test_image_globs_match_the_written_or_the_full_name(resolve):
    assert resolve(RunOptions(images=("nginx",))) == [
        "docker-hub/library/nginx:1.27",
        "docker-hub/library/nginx:1.27-alpine",
    ]
    assert resolve(RunOptions(images=("docker.io/bitnami/*",))) == ["docker-hub/bitnami/redis:7.4"]


def test_extra_tags_apply_to_each_selected_image_once(resolve):
    assert resolve(RunOptions(images=("nginx", "*python"), extra_tags=("1.27", "mainline"))) == [
        "docker-hub/library/nginx:1.27",
        "docker-hub/library/nginx:1.27-alpine",
        "docker-hub/library/python:3.12-slim",
        "docker-hub/library/nginx:mainline",
        "docker-hub/library/python:1.27",
        "docker-hub/library/python:mainline",
    ]


def test_options_round_trip_and_refuse_a_bad_tag():
    options = RunOptions(images=("nginx",), extra_tags=("1.28",), dry_run=True, on_drift="report")
    assert RunOptions.from_dict(options.to_dict()) == options
    assert RunOptions.from_dict({"images": None, "force": True}) == RunOptions(force=True)
    with pytest.raises(ValueError, match="extra tag 'bad tag'"):
        RunOptions(extra_tags=("bad tag",))
