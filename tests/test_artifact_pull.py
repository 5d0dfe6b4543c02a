"""Signatures, SBOMs and referrers mirrored with their image through a real ``ecr-mirror sync``:
the image's cosign tags and OCI referrers (tag schema upstream, as Distribution 2.8 has no
referrers API) come through the same pull through cache rule, each with an audit row naming its
subject, and the project's verifier accepts the ECR copy's signature offline."""

from __future__ import annotations

import json

import httpx
import pytest

from ecr_mirror.cli import main
from ecr_mirror.manifest import load_manifest
from ecr_mirror.mirror import open_mirror
from ecr_mirror.signatures import SignaturePolicy, TrustedKey, verify_signature
from sandbox import signing
from sandbox.upstream import OCI_MANIFEST, seed_image
from tests.ptc_helpers import per_profile

HUB = "registry-1.docker.io"
SPDX = "application/spdx+json"

MANIFEST = """\
name: {name}
target: {{region: eu-west-1}}
defaults:
  retries: 0
  artifacts: {{cosign: [signature, sbom], artifact_types: ['{spdx}']}}
rules:
  - prefix: {name}
    upstream: docker-hub
    credential_secret: ecr-pullthroughcache/docker-hub
images:
  - image: {repository}
    tags: ['1.0']
    verify: {{keys: [release.pub]}}
"""


def sig_tag(digest: str, suffix: str = "sig") -> str:
    return digest.replace(":", "-") + f".{suffix}"


@pytest.mark.parametrize("emulator_profile", ["documented", "strict"], indirect=True)
def test_signed_multi_arch_image_arrives_with_its_signatures_sbom_and_referrer(
    sandbox, emulator_profile, sandbox_env, request, capsys
):
    name = per_profile("art", request)
    repository = f"{name}/app"
    hub = sandbox.upstreams[HUB]
    image = seed_image(hub, repository, "1.0")
    amd64 = image.children["linux/amd64"]
    key = signing.generate_key(name="release")
    reference = f"docker.io/{repository}"
    signing.push_signatures(
        hub, repository, image.digest, [signing.key_signature(key, reference, image.digest)]
    )
    signing.push_signatures(hub, repository, amd64, [signing.key_signature(key, reference, amd64)])
    sbom = signing.attach_sbom(hub, repository, image.digest, b'{"spdxVersion": "SPDX-2.3"}')
    index = httpx.get(f"{hub}/v2/{repository}/manifests/{image.digest}", headers={"Accept": image.media_type})
    subject = {"mediaType": image.media_type, "digest": image.digest, "size": len(index.content)}
    spdx = signing.attach_referrer(hub, repository, subject, SPDX, b'{"spdxVersion":"SPDX-2.3"}', SPDX)
    signing.attach_referrer(hub, repository, subject, "application/vnd.example.other", b"x", "text/plain")
    (sandbox_env / "release.pub").write_bytes(key.public_pem)
    path = sandbox_env / f"{name}.yaml"
    path.write_text(MANIFEST.format(name=name, spdx=SPDX, repository=repository))

    assert main(["sync", str(path), "--json"]) == 0
    rows = {r["tag"]: r for r in json.loads(capsys.readouterr().out)["tags"]}

    assert rows["1.0"]["status"] == "pulled"
    assert rows["1.0"]["artifact_kind"] is None
    expected = {
        sig_tag(image.digest): ("signature", image.digest),
        sig_tag(amd64): ("signature", amd64),
        sig_tag(image.digest, "sbom"): ("sbom", image.digest),
        spdx: ("referrer", image.digest),  # the other referrer's type is filtered out
    }
    artifacts = {tag: r for tag, r in rows.items() if r["artifact_kind"]}
    assert {tag: (r["artifact_kind"], r["subject_digest"]) for tag, r in artifacts.items()} == expected
    assert {r["status"] for r in artifacts.values()} == {"pulled"}
    assert artifacts[sig_tag(image.digest, "sbom")]["cached_digest_after"] == sbom
    assert artifacts[spdx]["cached_digest_after"] == spdx
    # ECR's referrers API lists what a pull imported (documented), or only what a referrers
    # request synced, which the upstream's tag schema cannot feed (strict): the row says which
    if emulator_profile["ptc_pulled_referrers_listed"] == "listed":
        assert artifacts[spdx]["error"].endswith("; listed by ECR's referrers API")
    else:
        assert (
            f"ECR holds it but its referrers API does not list it for {image.digest}"
            in artifacts[spdx]["error"]
        )

    # the ECR copy verifies offline with the same key: signature and image both came through
    policy = SignaturePolicy(keys=(TrustedKey.from_pem(key.public_pem, "release"),))
    with open_mirror(load_manifest(path)) as mirror:
        ecr = mirror.target.registry()
        verdict = verify_signature(ecr, f"{name}/{repository}", image.digest, policy)
        assert verdict.verified, verdict.message
        assert ecr.get_manifest(f"{name}/{repository}", spdx).media_type == OCI_MANIFEST

    # a second run finds the index's artifacts held: ok rows, nothing pulled again; the platform
    # manifests' artifacts are looked for when the index is pulled (reading it again through ECR
    # would restart ECR's refresh window)
    assert main(["sync", str(path), "--json"]) == 0
    again = {r["tag"]: r for r in json.loads(capsys.readouterr().out)["tags"]}
    assert {tag: r["status"] for tag, r in again.items() if r["artifact_kind"]} == {
        tag: "ok" for tag, (_, subject) in expected.items() if subject == image.digest
    }


@pytest.mark.own_clock
def test_a_signature_added_upstream_reaches_ecr_when_its_refresh_window_has_passed(
    sandbox, sandbox_env, capsys
):
    repository = "art-refresh/app"
    hub = sandbox.upstreams[HUB]
    image = seed_image(hub, repository, "1.0", platforms=())
    first, second = signing.generate_key(name="first"), signing.generate_key(name="second")
    reference = f"docker.io/{repository}"
    signing.push_signatures(
        hub, repository, image.digest, [signing.key_signature(first, reference, image.digest)]
    )
    path = sandbox_env / "refresh.yaml"
    path.write_text(
        MANIFEST.format(name="art-refresh", spdx=SPDX, repository=repository).replace(
            "    verify: {keys: [release.pub]}\n", ""
        )
    )

    def sig_row() -> dict:
        assert main(["sync", str(path), "--json"]) == 0
        return {r["tag"]: r for r in json.loads(capsys.readouterr().out)["tags"]}[sig_tag(image.digest)]

    held = sig_row()["cached_digest_after"]
    added = signing.push_signatures(
        hub, repository, image.digest, [signing.key_signature(second, reference, image.digest)]
    )
    # within ECR's 24 h window a pull would not refresh the tag and would restart the wait
    gets = sandbox.emulator("stats")["manifest_gets"]
    waiting = sig_row()
    assert (waiting["action"], waiting["status"], waiting["cached_digest_after"]) == (
        "drifted",
        "stale",
        held,
    )
    assert sandbox.emulator("stats")["manifest_gets"] == gets
    sandbox.emulator("clock", {"advance_seconds": 25 * 3600})
    refreshed = sig_row()
    assert (refreshed["status"], refreshed["cached_digest_after"]) == ("pulled", added)
