"""The sandbox upstream: a real Distribution registry with deterministic seeded images, checked by skopeo."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandbox.seed_demo import DEMO_IMAGES, main, seed_demo
from sandbox.upstream import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    RegistryProcess,
    seed_image,
    start_registry,
)

EXAMPLE_PINS = Path(__file__).resolve().parents[1] / "config" / "manifests" / "monitoring.yaml"

pytestmark = pytest.mark.skipif(
    not (shutil.which("docker-registry") and shutil.which("skopeo")),
    reason="needs the docker-registry and skopeo Debian packages",
)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    with start_registry(tmp_path / "registry") as process:
        yield process


def _skopeo(*args: str) -> str:
    result = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _docker_ref(registry: RegistryProcess, ref: str) -> str:
    return "docker://" + registry.url.removeprefix("http://") + "/" + ref


def test_registry_answers_v2(registry: RegistryProcess) -> None:
    assert httpx.get(f"{registry.url}/v2/").status_code == 200


def test_seed_is_deterministic_and_variant_changes_digest(registry: RegistryProcess, tmp_path: Path) -> None:
    first = seed_image(registry.url, "library/nginx", "1.27")
    again = seed_image(registry.url, "library/nginx", "1.27")
    assert again == first
    with start_registry(tmp_path / "other") as other:
        assert seed_image(other.url, "library/nginx", "1.27") == first
    repushed = seed_image(registry.url, "library/nginx", "1.27", variant="rebuild")
    assert repushed.digest != first.digest
    assert set(repushed.children.values()).isdisjoint(first.children.values())
    head = httpx.head(
        f"{registry.url}/v2/library/nginx/manifests/1.27", headers={"Accept": OCI_INDEX}
    ).headers
    assert head["Docker-Content-Digest"] == repushed.digest


@pytest.mark.parametrize(
    ("platforms", "oci", "media_type", "child_type"),
    [
        (("linux/amd64", "linux/arm64", "linux/arm/v7"), True, OCI_INDEX, OCI_MANIFEST),
        (("linux/amd64", "linux/arm64"), False, DOCKER_LIST, DOCKER_MANIFEST),
        (("linux/arm64",), False, DOCKER_LIST, DOCKER_MANIFEST),
    ],
)
def test_index_matches_skopeo(
    registry: RegistryProcess,
    tmp_path: Path,
    platforms: tuple[str, ...],
    oci: bool,
    media_type: str,
    child_type: str,
) -> None:
    image = seed_image(registry.url, "team/app", "1.0", platforms=platforms, oci=oci)
    assert image.media_type == media_type
    assert list(image.children) == list(platforms)
    assert len(image.blobs) == 2 * len(platforms)
    ref = _docker_ref(registry, "team/app:1.0")

    for platform in platforms:
        os_, arch, *variant = platform.split("/")
        overrides = ["--override-os", os_, "--override-arch", arch, "--override-variant", "".join(variant)]
        info = json.loads(_skopeo("inspect", "--tls-verify=false", *overrides, ref))
        assert (info["Digest"], info["Os"], info["Architecture"]) == (image.digest, os_, arch)
    raw = json.loads(_skopeo("inspect", "--tls-verify=false", "--raw", ref))
    assert raw["mediaType"] == media_type
    listed = {}
    for entry in raw["manifests"]:
        assert entry["mediaType"] == child_type
        p = entry["platform"]
        listed["/".join(filter(None, (p["os"], p["architecture"], p.get("variant"))))] = entry["digest"]
    assert listed == image.children

    # Copying every platform proves each manifest, config and layer is valid and present.
    target = tmp_path / "copy"
    _skopeo("copy", "--all", "--src-tls-verify=false", ref, f"dir:{target}")
    copied = {p.name for p in target.iterdir()}
    assert {b.removeprefix("sha256:") for b in image.blobs} <= copied


@pytest.mark.parametrize(("oci", "media_type"), [(True, OCI_MANIFEST), (False, DOCKER_MANIFEST)])
def test_single_manifest(registry: RegistryProcess, tmp_path: Path, oci: bool, media_type: str) -> None:
    image = seed_image(registry.url, "bitnami/redis", "7.4", platforms=(), oci=oci)
    assert (image.media_type, image.children, len(image.blobs)) == (media_type, {}, 2)
    ref = _docker_ref(registry, "bitnami/redis:7.4")
    info = json.loads(_skopeo("inspect", "--tls-verify=false", ref))
    assert (info["Digest"], info["Architecture"], info["Os"]) == (image.digest, "amd64", "linux")
    assert json.loads(_skopeo("inspect", "--tls-verify=false", "--raw", ref))["mediaType"] == media_type
    _skopeo("copy", "--src-tls-verify=false", ref, f"dir:{tmp_path / 'copy'}")


def test_htpasswd_registry(tmp_path: Path) -> None:
    with start_registry(tmp_path / "auth", htpasswd={"alice": "s3cret"}) as registry:
        assert httpx.get(f"{registry.url}/v2/").status_code == 401
        assert httpx.get(f"{registry.url}/v2/", auth=("alice", "s3cret")).status_code == 200
        with pytest.raises(httpx.HTTPStatusError):
            seed_image(registry.url, "private/app", "1")
        image = seed_image(registry.url, "private/app", "1", auth=("alice", "s3cret"))
        info = _skopeo(
            "inspect", "--tls-verify=false", "--creds", "alice:s3cret", _docker_ref(registry, "private/app:1")
        )
        assert json.loads(info)["Digest"] == image.digest


def test_start_failure_reports_log(tmp_path: Path) -> None:
    with start_registry(tmp_path / "first") as first:
        port = int(first.url.rsplit(":", 1)[1])
        with pytest.raises(RuntimeError, match="did not start"):
            start_registry(tmp_path / "second", port)


def test_seed_demo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with start_registry(tmp_path / "hub") as hub, start_registry(tmp_path / "quay") as quay:
        images = seed_demo({"registry-1.docker.io": hub.url, "quay.io": quay.url})
        assert [i.ref for i in images] == [f"{repo}:{tag}" for _, repo, tag, *_ in DEMO_IMAGES]
        tags = httpx.get(f"{quay.url}/v2/prometheus/prometheus/tags/list").json()["tags"]
        assert sorted(tags) == sorted(t for _, repo, t, *_ in DEMO_IMAGES if repo == "prometheus/prometheus")
        # the pins of the example manifest are digests the demo seeds
        pins = re.findall(r"image: quay\.io/(\S+?)(?::\S+)?@(sha256:\w+)", EXAMPLE_PINS.read_text())
        seeded = {(i.repository, i.digest) for i in images}
        assert len(pins) == 2 and set(pins) <= seeded
        main(["--registry", f"registry-1.docker.io={hub.url}", "--registry", f"quay.io={quay.url}"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"registry-1.docker.io/library/nginx:1.27 {images[0].digest}"
    assert len(lines) == len(DEMO_IMAGES)
