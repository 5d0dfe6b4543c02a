"""Warm layers under each way ECR may answer a blob GET (the emulator's ``blob_delivery``): each blob
of the pulled images asked for once through the ECR registry endpoint, redirects followed to
another host without the ECR credentials (the emulator's blob host records any that arrive and the
test fails), what ECR holds afterwards reported, blobs warmed in an earlier run skipped."""

from __future__ import annotations

import httpx
import pytest

from ecr_mirror.audit import AuditStore
from ecr_mirror.mirror import RunOptions
from ecr_mirror.rules import ensure_rules
from ecr_mirror.warm import in_ecr_bucket, warm_blob
from sandbox.upstream import seed_image
from tests.ptc_helpers import engine, hub_rule, manifest, mirror_run, per_profile

DELIVERIES = {
    "documented": "documented",  # presigned-redirect: to ECR's layer bucket
    "strict": "strict",  # upstream-redirect-first-pull: to the upstream's storage, then the bucket
    "direct": {"profile": "documented", "switches": {"blob_delivery": "direct"}},
}


def blob_bytes(registry: str, repository: str, digests: list[str]) -> int:
    return sum(len(httpx.get(f"{registry}/v2/{repository}/blobs/{d}").content) for d in digests)


@pytest.mark.parametrize("emulator_profile", list(DELIVERIES.values()), ids=list(DELIVERIES), indirect=True)
def test_warm_layers_asks_for_each_blob_once_and_reports_what_ecr_holds(
    sandbox, sandbox_env, emulator_profile, request
):
    hub = sandbox.upstreams["registry-1.docker.io"]
    arm_name, all_name = per_profile("w-arm", request), per_profile("w-all", request)
    subset = seed_image(hub, f"library/{arm_name}", "1")
    whole = seed_image(hub, f"library/{all_name}", "1")
    images = [
        {"image": arm_name, "tags": ["1"], "platforms": ["linux/arm64"], "warm_layers": True},
        {"image": all_name, "tags": ["1"]},
    ]
    prefix = per_profile("w-hub", request)
    m = manifest(prefix, [hub_rule(prefix)], images)
    arm = subset.blobs[2:4]  # config and layer of the second platform (linux/arm64)
    audit = f"sqlite:///{sandbox_env / 'audit.db'}"
    sandbox.emulator("blob-host/reset", {})
    before = sandbox.emulator("stats")
    with engine(m, audit) as mirror:
        ensure_rules(m, mirror.target)
        rows = mirror_run(mirror)
        after = sandbox.emulator("stats")
        row = rows[f"{prefix}/library/{arm_name}:1"]
        assert (row.status, row.warmed_bytes) == ("pulled", blob_bytes(hub, f"library/{arm_name}", arm))
        assert row.error == "warm_layers: ECR holds the 2 blob(s) asked for, 0 held before"
        assert rows[f"{prefix}/library/{all_name}:1"].warmed_bytes is None  # warm_layers off
        assert after["upstream_blob_fetches"] - before["upstream_blob_fetches"] == 2
        assert AuditStore(audit).warmed(f"{prefix}/library/{arm_name}") == set(arm)

        # the run's override warms the whole index of w-all; w-arm's blobs are skipped (audit)
        rows = mirror_run(mirror, RunOptions(force=True, warm_layers=True))
        assert rows[f"{prefix}/library/{arm_name}:1"].warmed_bytes == 0
        assert rows[f"{prefix}/library/{arm_name}:1"].error == (
            "warm_layers: ECR holds the 0 blob(s) asked for, 2 held before"
        )
        assert rows[f"{prefix}/library/{all_name}:1"].warmed_bytes == blob_bytes(
            hub, f"library/{all_name}", whole.blobs
        )

    # where the blob GETs were sent: what ECR answered, and never with the ECR credentials
    sent = sandbox.emulator("blob-host")["requests"]
    assert not any(r["authorization"] for r in sent)
    to_upstream = [r for r in sent if r["path"].startswith("/registry-v2/")]
    to_bucket = [r for r in sent if "-starport-layer-bucket/" in r["path"]]
    gets = sandbox.emulator("stats")["blob_gets"] - before["blob_gets"]
    blobs = len(arm) + len(whole.blobs)
    if emulator_profile["blob_delivery"] == "direct":
        assert (len(sent), gets) == (0, blobs)
    elif emulator_profile["blob_delivery"] == "presigned-redirect":
        assert (len(to_upstream), len(to_bucket), gets) == (0, blobs, blobs)
    else:  # each blob read at the upstream's storage, then asked for again until ECR holds it
        assert (len(to_upstream), len(to_bucket), gets) == (blobs, 0, 2 * blobs)


@pytest.mark.parametrize("emulator_profile", ["strict"], indirect=True)
def test_a_blob_ecr_sends_to_the_upstreams_storage_is_not_held_until_ecr_redirects_to_its_bucket(
    sandbox, sandbox_env, emulator_profile
):
    hub = sandbox.upstreams["registry-1.docker.io"]
    seeded = seed_image(hub, "library/w-held", "1", platforms=())
    m = manifest("w-held", [hub_rule("w-held")], [{"image": "w-held", "tags": ["1"]}])
    config, layer = seeded.blobs
    with engine(m, f"sqlite:///{sandbox_env / 'audit.db'}") as mirror:
        ensure_rules(m, mirror.target)
        mirror_run(mirror)
        registry = mirror.target.registry()
        # asked for once and not again: read where ECR sent it, but ECR did not hold it then
        assert warm_blob(registry, "w-held/library/w-held", layer, rechecks=()).held is False
        # asked for again after ECR fetched it in the background: its own bucket
        assert warm_blob(registry, "w-held/library/w-held", config).held is True
        assert in_ecr_bucket(registry.blob_answer("w-held/library/w-held", layer, read=False).location)


def test_the_layer_bucket_is_told_from_other_hosts():
    bucket = "prod-eu-west-1-starport-layer-bucket"
    assert in_ecr_bucket(f"https://{bucket}.s3.eu-west-1.amazonaws.com/abc/def?X-Amz-Signature=1")
    assert in_ecr_bucket(f"http://127.0.0.2:9000/{bucket}/123456789012/repo/sha256:ab?X-Amz-Expires=3600")
    assert not in_ecr_bucket(
        "https://production.cloudflare.docker.com/registry-v2/docker/registry/v2/blobs/x"
    )
    assert not in_ecr_bucket("http://127.0.0.2:9000/registry-v2/docker/registry/v2/blobs/sha256/ab/abcd/data")
