"""Multi-arch: a whole index with every child verified, a platform subset pulled by digest with
per-platform digests in the audit, and a platform the upstream lacks reported."""

from __future__ import annotations

import json

from ecr_mirror.rules import ensure_rules
from sandbox.upstream import seed_image
from tests.ptc_helpers import aws, engine, hub_rule, manifest, mirror_run

PLATFORMS = ("linux/amd64", "linux/arm64", "linux/arm/v7")


def test_platform_subsets_whole_indexes_and_missing_platforms(sandbox, sandbox_env):
    hub = sandbox.upstreams["registry-1.docker.io"]
    seeded = seed_image(hub, "library/p-multi", "1", platforms=PLATFORMS)
    images = [
        {"image": "p-multi", "tags": ["1"], "platforms": ["linux/arm64", "linux/arm/v7"]},
        {"image": "p-whole", "tags": ["1"]},
        {"image": "p-odd", "tags": ["1"], "platforms": ["linux/s390x", "linux/amd64"]},
    ]
    whole = seed_image(hub, "library/p-whole", "1", oci=False)
    seed_image(hub, "library/p-odd", "1")
    m = manifest("p-hub", [hub_rule("p-hub")], images)
    gets = sandbox.emulator("stats")["manifest_gets"]
    with engine(m, f"sqlite:///{sandbox_env / 'audit.db'}") as mirror:
        ensure_rules(m, mirror.target)
        rows = mirror_run(mirror)

    subset = rows["p-hub/library/p-multi:1"]
    assert (subset.status, subset.cached_digest_after) == ("pulled", seeded.digest)
    assert json.loads(subset.platform_digests) == {
        "linux/arm64": seeded.children["linux/arm64"],
        "linux/arm/v7": seeded.children["linux/arm/v7"],
    }
    listed = aws(sandbox, "ecr").describe_images(repositoryName="p-hub/library/p-whole")["imageDetails"]
    assert {d["imageDigest"] for d in listed} == {whole.digest, *whole.children.values()}
    assert (rows["p-hub/library/p-whole:1"].status, rows["p-hub/library/p-whole:1"].platform_digests) == (
        "pulled",
        None,
    )

    odd = rows["p-hub/library/p-odd:1"]
    assert odd.status == "failed"
    assert odd.error == (
        "platform linux/s390x is not in the upstream index of docker.io/library/p-odd:1 "
        "(available: linux/amd64, linux/arm64)"
    )
    # tag pulls for the three images, then the two selected platforms by digest
    assert sandbox.emulator("stats")["manifest_gets"] == gets + 5
