"""Pull through cache of the emulator with real components: a CNCF Distribution registry as
upstream, skopeo as the client pulling through the emulator's ``/v2`` endpoint."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.ecr_emulator.process import EmulatorProcess, start_emulator
from sandbox.ecr_emulator.shapes import validate_output
from sandbox.upstream import RegistryProcess, seed_image, start_registry

pytestmark = pytest.mark.skipif(
    shutil.which("skopeo") is None, reason="skopeo (Debian package) is not installed"
)
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-pullthroughcache/docker-hub-AbCdEf"
DAY = 24 * 3600


def ecr_client(emulator: EmulatorProcess) -> Any:
    client = boto3.client(
        "ecr",
        endpoint_url=emulator.url,
        region_name="us-east-1",
        aws_access_key_id="t",
        aws_secret_access_key="t",
    )

    def check(http_response: Any, model: Any, **_: Any) -> None:
        if http_response.status_code == 200:
            validate_output(model.name, http_response.content)

    client.meta.events.register("after-call.ecr", check)
    return client


def creds(emulator: EmulatorProcess) -> str:
    token = ecr_client(emulator).get_authorization_token()["authorizationData"][0]["authorizationToken"]
    return base64.b64decode(token).decode()


def skopeo(
    emulator: EmulatorProcess, command: str, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``skopeo inspect|copy`` against the emulator (plain HTTP, fresh registry credentials)."""
    side = "--src-" if command == "copy" else "--"
    argv = [
        "skopeo",
        "--insecure-policy",
        command,
        f"{side}tls-verify=false",
        f"{side}creds",
        creds(emulator),
        *args,
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def ref(emulator: EmulatorProcess, name: str) -> str:
    return f"docker://{emulator.url.removeprefix('http://')}/{name}"


def inspect_digest(emulator: EmulatorProcess, name: str) -> str:
    raw = skopeo(emulator, "inspect", "--raw", ref(emulator, name)).stdout
    return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    registry = start_registry(tmp_path_factory.mktemp("hub"))
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory, hub: RegistryProcess) -> Iterator[EmulatorProcess]:
    with start_emulator(tmp_path_factory.mktemp("ecr"), {"registry-1.docker.io": hub.url}) as process:
        ecr_client(process).create_pull_through_cache_rule(
            ecrRepositoryPrefix="docker-hub", upstreamRegistryUrl="registry-1.docker.io", credentialArn=SECRET
        )
        yield process
        assert process.violations() == []  # the emulator checks every answer it sends


def test_skopeo_inspect_imports_the_index_and_its_children(
    emulator: EmulatorProcess, hub: RegistryProcess
) -> None:
    seeded = seed_image(hub.url, "library/nginx", "1.27")
    ecr = ecr_client(emulator)
    with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
        ecr.describe_repositories(repositoryNames=["docker-hub/library/nginx"])

    info = json.loads(skopeo(emulator, "inspect", ref(emulator, "docker-hub/library/nginx:1.27")).stdout)
    assert info["Digest"] == seeded.digest

    repo = ecr.describe_repositories(repositoryNames=["docker-hub/library/nginx"])["repositories"][0]
    assert repo["imageTagMutability"] == "MUTABLE"
    assert repo["encryptionConfiguration"] == {"encryptionType": "AES256"}
    details = ecr.describe_images(repositoryName="docker-hub/library/nginx")["imageDetails"]
    tagged = [d for d in details if d.get("imageTags")]
    assert [(d["imageDigest"], d["imageTags"]) for d in tagged] == [(seeded.digest, ["1.27"])]
    assert tagged[0]["imageManifestMediaType"] == seeded.media_type
    untagged = {d["imageDigest"] for d in details if not d.get("imageTags")}
    assert untagged == set(seeded.children.values())


def test_copy_all_fetches_blobs_lazily_and_once(
    emulator: EmulatorProcess, hub: RegistryProcess, tmp_path: Path
) -> None:
    seeded = seed_image(hub.url, "library/redis", "7")
    skopeo(emulator, "inspect", "--raw", ref(emulator, "docker-hub/library/redis:7"))
    emulator.reset_stats()
    skopeo(emulator, "copy", "--all", ref(emulator, "docker-hub/library/redis:7"), f"dir:{tmp_path / 'one'}")
    stats = emulator.stats()
    assert stats["upstream_blob_fetches"] == len(set(seeded.blobs))
    assert stats["upstream_manifest_fetches"] == 0
    index = (tmp_path / "one" / "manifest.json").read_bytes()
    assert "sha256:" + hashlib.sha256(index).hexdigest() == seeded.digest
    for blob in seeded.blobs:
        data = (tmp_path / "one" / blob.removeprefix("sha256:")).read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == blob

    skopeo(emulator, "copy", "--all", ref(emulator, "docker-hub/library/redis:7"), f"dir:{tmp_path / 'two'}")
    assert emulator.stats()["upstream_blob_fetches"] == len(set(seeded.blobs))
    assert emulator.stats()["blob_gets"] >= 2 * len(set(seeded.blobs))


@contextmanager
def switched(emulator: EmulatorProcess, **switches: str) -> Iterator[None]:
    """Run a block under other behaviour variants of the module's emulator, then restore them."""
    before = emulator.behaviour()
    emulator.set_behaviour(**switches)
    try:
        yield
    finally:
        emulator.set_behaviour(before["profile"], **before["overrides"])


def test_refresh_after_24_hours_moves_the_tag(emulator: EmulatorProcess, hub: RegistryProcess) -> None:
    # timed from the last upstream check: the pull at 23 h does not push the refresh back
    with switched(emulator, refresh_timer="last-check"):
        _refresh_after_24_hours_moves_the_tag(emulator, hub)


def _refresh_after_24_hours_moves_the_tag(emulator: EmulatorProcess, hub: RegistryProcess) -> None:
    old = seed_image(hub.url, "library/alpine", "3")
    assert inspect_digest(emulator, "docker-hub/library/alpine:3") == old.digest
    new = seed_image(hub.url, "library/alpine", "3", variant="repush")
    assert new.digest != old.digest

    emulator.advance_clock(DAY - 3600)
    assert inspect_digest(emulator, "docker-hub/library/alpine:3") == old.digest
    emulator.advance_clock(3600)
    assert inspect_digest(emulator, "docker-hub/library/alpine:3") == new.digest

    details = ecr_client(emulator).describe_images(repositoryName="docker-hub/library/alpine")["imageDetails"]
    by_digest = {d["imageDigest"]: d.get("imageTags", []) for d in details}
    assert by_digest[new.digest] == ["3"] and by_digest[old.digest] == []


def test_immutable_repository_keeps_the_cached_digest(
    emulator: EmulatorProcess, hub: RegistryProcess
) -> None:
    old = seed_image(hub.url, "library/busybox", "1", platforms=())
    assert inspect_digest(emulator, "docker-hub/library/busybox:1") == old.digest
    ecr_client(emulator).put_image_tag_mutability(
        repositoryName="docker-hub/library/busybox", imageTagMutability="IMMUTABLE"
    )
    seed_image(hub.url, "library/busybox", "1", platforms=(), variant="repush")
    emulator.advance_clock(DAY + 60)
    emulator.reset_stats()
    assert inspect_digest(emulator, "docker-hub/library/busybox:1") == old.digest
    assert emulator.stats()["upstream_manifest_fetches"] == 0


def test_head_never_imports_and_unknown_tags_are_404(emulator: EmulatorProcess, hub: RegistryProcess) -> None:
    seed_image(hub.url, "library/headonly", "1", platforms=())
    auth = tuple(creds(emulator).split(":", 1))
    url = f"{emulator.url}/v2/docker-hub/library/headonly/manifests/1"
    emulator.reset_stats()
    head = httpx.head(url, auth=auth)
    assert head.status_code == 404
    stats = emulator.stats()
    assert (stats["manifest_heads"], stats["manifest_gets"], stats["upstream_manifest_fetches"]) == (1, 0, 0)
    with pytest.raises(Exception, match="RepositoryNotFound"):
        ecr_client(emulator).describe_repositories(repositoryNames=["docker-hub/library/headonly"])

    missing = httpx.get(f"{emulator.url}/v2/docker-hub/library/headonly/manifests/nope", auth=auth)
    assert missing.status_code == 404 and missing.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    got = httpx.get(url, auth=auth, headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert got.status_code == 200
    head = httpx.head(url, auth=auth)
    assert (
        head.status_code == 200
        and head.headers["docker-content-digest"] == got.headers["docker-content-digest"]
    )
    assert int(head.headers["content-length"]) == len(got.content)
    no_rule = httpx.get(f"{emulator.url}/v2/elsewhere/x/manifests/1", auth=auth)
    assert no_rule.status_code == 404 and no_rule.json()["errors"][0]["code"] == "NAME_UNKNOWN"


def test_pull_by_digest_imports_and_tags_list_pages(emulator: EmulatorProcess, hub: RegistryProcess) -> None:
    seeded = [seed_image(hub.url, "library/multi", tag, variant=tag) for tag in ("a", "b", "c")]
    child = seeded[0].children["linux/arm64"]
    assert inspect_digest(emulator, f"docker-hub/library/multi@{child}") == child
    details = ecr_client(emulator).describe_images(repositoryName="docker-hub/library/multi")["imageDetails"]
    assert [d["imageDigest"] for d in details] == [child]

    for image in seeded:
        inspect_digest(emulator, f"docker-hub/library/multi:{image.tag}")
    auth = tuple(creds(emulator).split(":", 1))
    page = httpx.get(f"{emulator.url}/v2/docker-hub/library/multi/tags/list?n=2", auth=auth)
    assert page.json()["tags"] == ["a", "b"]
    assert page.headers["link"] == '</v2/docker-hub/library/multi/tags/list?n=2&last=b>; rel="next"'
    rest = httpx.get(f"{emulator.url}/v2/docker-hub/library/multi/tags/list?n=2&last=b", auth=auth)
    assert rest.json()["tags"] == ["c"] and "link" not in rest.headers


def test_upstream_down_and_restart_serve_the_cache(tmp_path: Path) -> None:
    upstream = start_registry(tmp_path / "quay")
    seeded = seed_image(upstream.url, "org/tool", "v1")
    state = tmp_path / "ecr"
    try:
        with start_emulator(state, {"quay.io": upstream.url}) as first:
            ecr_client(first).create_pull_through_cache_rule(
                ecrRepositoryPrefix="quay", upstreamRegistryUrl="quay.io"
            )
            skopeo(first, "copy", "--all", ref(first, "quay/org/tool:v1"), f"dir:{tmp_path / 'warm'}")
    finally:
        upstream.stop()

    with start_emulator(state, {"quay.io": upstream.url}) as second:
        ecr = ecr_client(second)
        assert (
            ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"][0]["ecrRepositoryPrefix"]
            == "quay"
        )
        tagged = ecr.describe_images(repositoryName="quay/org/tool", filter={"tagStatus": "TAGGED"})
        assert tagged["imageDetails"][0]["imageDigest"] == seeded.digest
        skopeo(second, "copy", "--all", ref(second, "quay/org/tool:v1"), f"dir:{tmp_path / 'cold'}")
        assert second.stats()["upstream_blob_fetches"] == 0

        second.advance_clock(DAY + 60)
        assert inspect_digest(second, "quay/org/tool:v1") == seeded.digest
        assert second.stats()["upstream_manifest_heads"] == 1
        failed = skopeo(second, "inspect", "--raw", ref(second, "quay/org/tool:never"), check=False)
        assert failed.returncode != 0


def test_basic_auth_upstream_and_first_digest_pull_quirk(tmp_path: Path) -> None:
    upstream = start_registry(tmp_path / "ghcr", htpasswd={"robot": "s3cret"})
    try:
        seeded = seed_image(upstream.url, "org/private", "1", auth=("robot", "s3cret"))
        with_creds = upstream.url.replace("http://", "http://robot:s3cret@")
        upstreams = {"ghcr.io": with_creds, "quay.io": upstream.url}
        with start_emulator(
            tmp_path / "ecr", upstreams, extra_args=("--fail-uncached-digest-pull",)
        ) as emulator:
            ecr = ecr_client(emulator)
            ecr.create_pull_through_cache_rule(
                ecrRepositoryPrefix="ghcr", upstreamRegistryUrl="ghcr.io", credentialArn=SECRET
            )
            ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="quay", upstreamRegistryUrl="quay.io")
            assert ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="ghcr")["isValid"] is True
            invalid = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="quay")
            assert invalid["isValid"] is False and "401" in invalid["failure"]

            child = seeded.children["linux/amd64"]
            quirk = skopeo(
                emulator, "inspect", "--raw", ref(emulator, f"ghcr/org/private@{child}"), check=False
            )
            assert quirk.returncode != 0
            assert inspect_digest(emulator, "ghcr/org/private:1") == seeded.digest
            assert inspect_digest(emulator, f"ghcr/org/private@{child}") == child

            denied = skopeo(emulator, "inspect", "--raw", ref(emulator, "quay/org/private:1"), check=False)
            assert (
                denied.returncode != 0 and "authentication to the upstream registry failed" in denied.stderr
            )
    finally:
        upstream.stop()


def test_concurrent_first_pulls_import_once(emulator: EmulatorProcess, hub: RegistryProcess) -> None:
    seed_image(hub.url, "library/busy", "1")
    auth = tuple(creds(emulator).split(":", 1))
    url = f"{emulator.url}/v2/docker-hub/library/busy/manifests/1"
    emulator.reset_stats()
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: httpx.get(url, auth=auth, timeout=30), range(8)))
    assert {a.status_code for a in answers} == {200}
    assert len({a.headers["docker-content-digest"] for a in answers}) == 1
    assert emulator.stats()["upstream_manifest_fetches"] == 3  # the index and its two children, once


def bearer_front(registry_url: str, token: str) -> Starlette:
    """An upstream that demands the distribution token flow, in front of a real registry."""

    async def issue(request: Request) -> Response:
        return JSONResponse({"token": token, "scope": request.query_params.get("scope")})

    async def proxy(request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {token}":
            realm = f"http://{request.headers['host']}/token"
            challenge = f'Bearer realm="{realm}",service="front",scope="repository:org/tok:pull"'
            return JSONResponse({"errors": [{"code": "UNAUTHORIZED"}]}, 401, {"WWW-Authenticate": challenge})
        async with httpx.AsyncClient() as client:
            answer = await client.request(
                request.method,
                f"{registry_url}{request.url.path}",
                headers={"Accept": request.headers["accept"]},
            )
        keep = ("content-type", "docker-content-digest")
        return Response(
            answer.content, answer.status_code, {k: v for k, v in answer.headers.items() if k in keep}
        )

    return Starlette(
        routes=[Route("/token", issue), Route("/v2/{path:path}", proxy, methods=["GET", "HEAD"])]
    )


def test_bearer_token_upstream(tmp_path: Path, hub: RegistryProcess) -> None:
    seeded = seed_image(hub.url, "org/tok", "1", platforms=())
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(bearer_front(hub.url, "t0ken"), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        front = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with start_emulator(tmp_path / "ecr", {"quay.io": front}) as emulator:
            ecr_client(emulator).create_pull_through_cache_rule(
                ecrRepositoryPrefix="quay", upstreamRegistryUrl="quay.io"
            )
            assert inspect_digest(emulator, "quay/org/tok:1") == seeded.digest
    finally:
        server.should_exit = True
        thread.join(timeout=10)
