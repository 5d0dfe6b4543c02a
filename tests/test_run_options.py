"""Trigger options narrow and extend a manifest's selection."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecr_mirror.manifest import load_manifest
from ecr_mirror.mirror import Mirror, RunOptions

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "manifests" / "platform-base.yaml"


def resolve(options: RunOptions) -> list[str]:
    mirror = Mirror(load_manifest(EXAMPLE), target=None, store=None, upstreams=None)  # resolve reads none
    return [f"{t.cache_repository}:{t.reference}" for t in mirror.resolve(options)]


def test_no_options_mirror_the_whole_manifest():
    assert resolve(RunOptions()) == [
        "docker-hub/library/nginx:1.27",
        "docker-hub/library/nginx:1.27-alpine",
        "docker-hub/library/python:3.12-slim",
        "docker-hub/bitnami/redis:7.4",
    ]


def test_image_globs_match_the_written_or_the_full_name():
    assert resolve(RunOptions(images=("nginx",))) == [
        "docker-hub/library/nginx:1.27",
        "docker-hub/library/nginx:1.27-alpine",
    ]
    assert resolve(RunOptions(images=("docker.io/bitnami/*",))) == ["docker-hub/bitnami/redis:7.4"]


def test_extra_tags_apply_to_each_selected_image_once():
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
