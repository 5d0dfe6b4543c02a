"""Warm layers: each blob of the pulled images requested once through the ECR registry endpoint,
bytes counted, blobs warmed in an earlier run skipped."""

from __future__ import annotations

import httpx

from ecr_mirror.mirror import RunOptions
from ecr_mirror.rules import ensure_rules
from sandbox.upstream import seed_image
from tests.ptc_helpers import engine, hub_rule, manifest, mirror_run


def blob_bytes(registry: str, repository: str, digests: list[str]) -> int:
    return sum(len(httpx.get(f"{registry}/v2/{repository}/blobs/{d}").content) for d in digests)


def test_warm_layers_streams_each_blob_once_and_skips_warmed_ones(sandbox, sandbox_env):
    hub = sandbox.upstreams["registry-1.docker.io"]
    subset = seed_image(hub, "library/w-arm", "1")
    whole = seed_image(hub, "library/w-all", "1")
    images = [
        {"image": "w-arm", "tags": ["1"], "platforms": ["linux/arm64"], "warm_layers": True},
        {"image": "w-all", "tags": ["1"]},
    ]
    m = manifest("w-hub", [hub_rule("w-hub")], images)
    arm = subset.blobs[2:4]  # config and layer of the second platform (linux/arm64)
    before = sandbox.emulator("stats")
    with engine(m, f"sqlite:///{sandbox_env / 'audit.db'}") as mirror:
        ensure_rules(m, mirror.target)
        rows = mirror_run(mirror)
        after = sandbox.emulator("stats")
        assert rows["w-hub/library/w-arm:1"].warmed_bytes == blob_bytes(hub, "library/w-arm", arm)
        assert rows["w-hub/library/w-all:1"].warmed_bytes is None  # warm_layers off
        assert after["blob_gets"] - before["blob_gets"] == 2
        assert after["upstream_blob_fetches"] - before["upstream_blob_fetches"] == 2

        # the run's override warms the whole index of w-all; w-arm's blobs are skipped (audit)
        rows = mirror_run(mirror, RunOptions(force=True, warm_layers=True))
        assert rows["w-hub/library/w-arm:1"].warmed_bytes == 0
        assert rows["w-hub/library/w-all:1"].warmed_bytes == blob_bytes(hub, "library/w-all", whole.blobs)
        assert sandbox.emulator("stats")["blob_gets"] - after["blob_gets"] == len(whole.blobs)
