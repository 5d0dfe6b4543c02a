"""Trigger options narrow and extend a manifest's selection."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from ecr_mirror.manifest import load_manifest
from ecr_mirror.mirror import RunInfo, RunOptions, open_mirror
from ecr_mirror.sources import ManifestSource
from ecr_mirror.tags import SelectionError
from ecr_mirror.tasks import RunFailed, resolve_tags

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


@pytest.mark.parametrize(
    ("globs", "message"),
    [
        (("ngnix",), "image glob 'ngnix' matches no image of manifest 'options' (did you mean 'nginx'?)"),
        (
            ("nginx", "pyhton"),
            "image glob 'pyhton' matches no image of manifest 'options' "
            "(did you mean 'docker.io/library/python'?)",
        ),
        (
            ("quay.io/*", "bitnami/redis"),
            "image glob 'quay.io/*' matches no image of manifest 'options' "
            "(its images: nginx, docker.io/library/python, bitnami/redis)",
        ),
    ],
)
def test_an_image_glob_that_matches_nothing_is_an_error_naming_the_closest_image(resolve, globs, message):
    # issue #11 / #8: a typo was a green run that mirrored nothing
    with pytest.raises(SelectionError) as caught:
        resolve(RunOptions(images=globs))
    assert str(caught.value) == message


def test_a_dag_run_whose_image_glob_matches_nothing_fails_with_that_message(resolve, tmp_path, monkeypatch):
    from ecr_mirror.settings import get_settings

    monkeypatch.setenv("ECR_MIRROR_AUDIT_URL", f"sqlite:///{tmp_path / 'audit.db'}")
    get_settings.cache_clear()
    manifest = load_manifest(tmp_path / "options.yaml")
    source = ManifestSource(manifest, tmp_path)
    run = RunInfo("manual__1", manifest.dag_id, manifest.name)
    with pytest.raises(RunFailed, match=r"image glob 'ngnix' matches no image .* \(did you mean 'nginx'\?\)"):
        resolve_tags(source, run, RunOptions(images=("ngnix",)), {})
    get_settings.cache_clear()
