"""Digest-only pins (``image: name@sha256:...``) under both emulator profiles: pulled by digest where
ECR imports on a first pull by digest (``documented``), through an upstream tag that carries the
digest where ECR answers not found (``strict``, containers-roadmap #2837), refused naming the image
and digest when no tag carries it. The engine runs against the sandbox."""

from __future__ import annotations

import json

import httpx
import pytest

from ecr_mirror.rules import ensure_rules
from ecr_mirror.settings import get_settings
from sandbox.upstream import OCI_INDEX, seed_image
from tests.faults import upstream_proxy
from tests.ptc_helpers import aws, engine, hub_rule, manifest, mirror_run, per_profile

HUB = "registry-1.docker.io"
PROFILES = pytest.mark.parametrize("emulator_profile", ["documented", "strict"], indirect=True)


def tag_as(registry: str, repository: str, digest: str, tag: str) -> None:
    """Push the manifest ``digest`` of ``repository`` under another tag too."""
    got = httpx.get(f"{registry}/v2/{repository}/manifests/{digest}", headers={"Accept": OCI_INDEX})
    got.raise_for_status()
    put = httpx.put(
        f"{registry}/v2/{repository}/manifests/{tag}",
        content=got.content,
        headers={"Content-Type": got.headers["content-type"]},
    )
    put.raise_for_status()


def in_ecr(sandbox, repository: str, digest: str) -> bool:
    ecr = aws(sandbox, "ecr")
    try:
        ecr.describe_images(repositoryName=repository, imageIds=[{"imageDigest": digest}])
    except (ecr.exceptions.ImageNotFoundException, ecr.exceptions.RepositoryNotFoundException):
        return False
    return True


@PROFILES
def test_a_digest_pin_is_pulled_by_digest_or_through_the_newest_tag_that_carries_it(
    sandbox, sandbox_env, emulator_profile, request
):
    hub, name = sandbox.upstreams[HUB], per_profile("pin-a", request)
    repository = f"library/{name}"
    seed_image(hub, repository, "1.0")
    pinned = seed_image(hub, repository, "1.2")
    tag_as(hub, repository, pinned.digest, "stable")
    seed_image(hub, repository, "2.0")
    m = manifest(name, [hub_rule(name)], [{"image": f"{name}@{pinned.digest}"}])
    key = f"{name}/{repository}:{pinned.digest}"
    with engine(m, f"sqlite:///{sandbox_env / 'audit.db'}") as mirror:
        ensure_rules(m, mirror.target)
        row = mirror_run(mirror)[key]
        again = mirror_run(mirror)[key]

    assert (row.action, row.status, row.upstream_digest, row.cached_digest_after) == (
        "missing",
        "pulled",
        pinned.digest,
        pinned.digest,
    )
    if emulator_profile["digest_first_pull"] == "imports":
        assert (row.via_tag, row.error) == (None, None)
    else:  # ECR answered not found: 2.0 does not carry it, 1.2 (the newest that does) does
        assert row.via_tag == "1.2"
        assert row.error == "pulled through the upstream tag 1.2, which carries this digest"
    assert in_ecr(sandbox, f"{name}/{repository}", pinned.digest)
    assert all(in_ecr(sandbox, f"{name}/{repository}", child) for child in pinned.children.values())
    assert (again.action, again.status) == ("up_to_date", "ok")


@PROFILES
def test_a_platform_digest_is_pulled_through_the_tag_of_its_index(
    sandbox, sandbox_env, emulator_profile, request
):
    hub, name = sandbox.upstreams[HUB], per_profile("pin-arm", request)
    index = seed_image(hub, f"library/{name}", "3.0")
    arm = index.children["linux/arm64"]
    m = manifest(name, [hub_rule(name)], [{"image": f"{name}@{arm}", "warm_layers": True}])
    with engine(m, f"sqlite:///{sandbox_env / 'audit.db'}") as mirror:
        ensure_rules(m, mirror.target)
        row = mirror_run(mirror)[f"{name}/library/{name}:{arm}"]

    assert (row.status, row.cached_digest_after) == ("pulled", arm)
    assert row.via_tag == (None if emulator_profile["digest_first_pull"] == "imports" else "3.0")
    assert row.warmed_bytes == sum(
        len(httpx.get(f"{hub}/v2/library/{name}/blobs/{d}").content) for d in index.blobs[2:4]
    )


@PROFILES
def test_a_digest_no_upstream_tag_carries_is_refused_where_ecr_will_not_pull_it_by_digest(
    sandbox, sandbox_env, emulator_profile, request
):
    hub, name = sandbox.upstreams[HUB], per_profile("pin-gone", request)
    repository = f"library/{name}"
    orphan = seed_image(hub, repository, "1", platforms=())
    seed_image(hub, repository, "1", platforms=(), variant="rebuilt")  # the tag moves on
    seed_image(hub, repository, "2", platforms=())
    m = manifest(name, [hub_rule(name)], [{"image": f"{name}@{orphan.digest}"}])
    with engine(m, f"sqlite:///{sandbox_env / 'audit.db'}") as mirror:
        ensure_rules(m, mirror.target)
        row = mirror_run(mirror)[f"{name}/{repository}:{orphan.digest}"]

    if emulator_profile["digest_first_pull"] == "imports":
        assert (row.status, row.cached_digest_after, row.via_tag) == ("pulled", orphan.digest, None)
        return
    assert (row.action, row.status, row.cached_digest_after) == ("missing", "failed", None)
    assert row.error == (
        f"docker.io/{repository}@{orphan.digest} cannot be pulled: ECR answers not found to a first "
        "pull by digest (containers-roadmap #2837) and none of the 2 upstream tags checked carries this "
        "digest (2 tags listed, newest versions first): pin the image with a tag that carries it "
        f"(docker.io/{repository}:<tag>@{orphan.digest}) or check the digest"
    )
    assert not in_ecr(sandbox, f"{name}/{repository}", orphan.digest)


@pytest.mark.parametrize("emulator_profile", ["strict"], indirect=True)
def test_the_tag_that_carried_a_pin_is_asked_first_next_time(
    sandbox, sandbox_env, emulator_profile, monkeypatch
):
    hub = sandbox.upstreams[HUB]
    for tag in ("0.9", "1.0", "1.1"):
        seed_image(hub, "library/pin-again", tag, platforms=())
    pinned = seed_image(hub, "library/pin-again", "0.8", platforms=())
    m = manifest("pin-again", [hub_rule("pin-again")], [{"image": f"pin-again@{pinned.digest}"}])
    key, audit = f"pin-again/library/pin-again:{pinned.digest}", f"sqlite:///{sandbox_env / 'audit.db'}"
    with upstream_proxy(hub) as proxy:
        monkeypatch.setenv("ECR_MIRROR_UPSTREAM_ENDPOINTS", json.dumps({**sandbox.upstreams, HUB: proxy.url}))
        get_settings.cache_clear()
        with engine(m, audit) as mirror:
            ensure_rules(m, mirror.target)
            assert mirror_run(mirror)[key].via_tag == "0.8"
            first = list(proxy.requests)
            # the image leaves ECR (say a lifecycle rule expired it): the next run pulls it again
            aws(sandbox, "ecr").batch_delete_image(
                repositoryName="pin-again/library/pin-again", imageIds=[{"imageDigest": pinned.digest}]
            )
            proxy.requests.clear()
            row = mirror_run(mirror)[key]

    assert (row.status, row.via_tag) == ("pulled", "0.8")
    heads = [path for method, path in first if method == "HEAD"]
    assert (
        heads[-1] == "/v2/library/pin-again/manifests/0.8" and len(heads) == 6
    )  # pin (twice), 1.1, 1.0, 0.9, 0.8
    assert [path for method, path in proxy.requests if "/tags/list" in path] == []
    assert [(m, p.rsplit("/", 1)[1]) for m, p in proxy.requests if m == "HEAD"] == [
        ("HEAD", pinned.digest),  # the comparison
        ("HEAD", pinned.digest),  # the pin's media type
        ("HEAD", "0.8"),  # the tag the audit remembers
    ]
