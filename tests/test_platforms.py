"""Multi-arch: a whole index with every child verified, a platform subset pulled by digest with
per-platform digests in the audit, and a platform the upstream lacks reported on every run (and by
``ecr-mirror plan``) until the manifest changes."""

from __future__ import annotations

import json

import pytest
import yaml

from ecr_mirror.cli import main
from ecr_mirror.rules import ensure_rules
from sandbox.upstream import seed_image
from tests.ptc_helpers import aws, engine, hub_rule, manifest, mirror_run, per_profile

PLATFORMS = ("linux/amd64", "linux/arm64", "linux/arm/v7")


@pytest.mark.parametrize("emulator_profile", ["documented", "strict"], indirect=True)
def test_platform_subsets_whole_indexes_and_missing_platforms(
    sandbox, sandbox_env, emulator_profile, request
):
    hub = sandbox.upstreams["registry-1.docker.io"]
    multi, entire, odd_name = (per_profile(n, request) for n in ("p-multi", "p-whole", "p-odd"))
    seeded = seed_image(hub, f"library/{multi}", "1", platforms=PLATFORMS)
    images = [
        {"image": multi, "tags": ["1"], "platforms": ["linux/arm64", "linux/arm/v7"]},
        {"image": entire, "tags": ["1"]},
        {"image": odd_name, "tags": ["1"], "platforms": ["linux/s390x", "linux/amd64"]},
    ]
    whole = seed_image(hub, f"library/{entire}", "1", oci=False)
    odd_index = seed_image(hub, f"library/{odd_name}", "1")
    prefix = per_profile("p-hub", request)
    m = manifest(prefix, [hub_rule(prefix)], images)
    gets = sandbox.emulator("stats")["manifest_gets"]
    with engine(m, f"sqlite:///{sandbox_env / 'audit.db'}") as mirror:
        ensure_rules(m, mirror.target)
        rows = mirror_run(mirror)

    subset = rows[f"{prefix}/library/{multi}:1"]
    assert (subset.status, subset.cached_digest_after) == ("pulled", seeded.digest)
    assert json.loads(subset.platform_digests) == {
        "linux/arm64": seeded.children["linux/arm64"],
        "linux/arm/v7": seeded.children["linux/arm/v7"],
    }
    listed = aws(sandbox, "ecr").describe_images(repositoryName=f"{prefix}/library/{entire}")["imageDetails"]
    assert {d["imageDigest"] for d in listed} == {whole.digest, *whole.children.values()}
    whole_row = rows[f"{prefix}/library/{entire}:1"]
    assert (whole_row.status, whole_row.platform_digests) == ("pulled", None)

    odd = rows[f"{prefix}/library/{odd_name}:1"]
    assert (odd.status, odd.cached_digest_after) == ("failed", odd_index.digest)  # ECR holds the index
    assert odd.error == (
        f"platform linux/s390x is not in the upstream index of docker.io/library/{odd_name}:1 "
        "(available: linux/amd64, linux/arm64)"
    )
    # tag pulls for the three images, then the two selected platforms by digest
    assert sandbox.emulator("stats")["manifest_gets"] == gets + 5


@pytest.mark.parametrize("emulator_profile", ["documented", "strict"], indirect=True)
def test_a_platform_missing_upstream_fails_every_run_and_plan_says_so(
    sandbox, sandbox_env, emulator_profile, request, capsys
):
    hub = sandbox.upstreams["registry-1.docker.io"]
    name = per_profile("p-riscv", request)
    index = seed_image(hub, f"library/{name}", "1")
    key, audit = f"{name}/library/{name}:1", f"sqlite:///{sandbox_env / 'audit.db'}"
    available = "available: linux/amd64, linux/arm64"

    def run(platforms: list[str]):
        m = manifest(name, [hub_rule(name)], [{"image": name, "tags": ["1"], "platforms": platforms}])
        with engine(m, audit) as mirror:
            ensure_rules(m, mirror.target)
            return mirror_run(mirror)[key]

    first = run(["linux/riscv64"])
    assert (first.action, first.status, first.cached_digest_after) == ("missing", "failed", index.digest)
    assert available in first.error
    assert json.loads(first.platform_digests) == index.children  # what ECR holds: the whole index

    stats = sandbox.emulator("stats")
    for _ in range(2):  # every later run fails the same way, without pulling anything
        again = run(["linux/riscv64"])
        assert (again.action, again.status, again.cached_digest_after) == ("failed", "failed", index.digest)
        assert again.error == first.error
    after = sandbox.emulator("stats")
    assert after["manifest_gets"] == stats["manifest_gets"]
    assert after["upstream_manifest_fetches"] == stats["upstream_manifest_fetches"]

    # ecr-mirror plan predicts it
    path = sandbox_env / f"{name}.yaml"
    doc = manifest(name, [hub_rule(name)], [{"image": name, "tags": ["1"], "platforms": ["linux/riscv64"]}])
    path.write_text(yaml.safe_dump(doc.model_dump(mode="json", exclude_defaults=True)))
    assert main(["plan", str(path), "--json"]) == 1
    [row] = json.loads(capsys.readouterr().out)["tags"]
    assert (row["action"], row["cached_digest"], row["error"]) == ("failed", index.digest, first.error)

    # the manifest changes to a platform the index has: ok, from what the failed row recorded
    fixed = run(["linux/arm64"])
    assert (fixed.action, fixed.status) == ("up_to_date", "ok")
    assert json.loads(fixed.platform_digests) == {"linux/arm64": index.children["linux/arm64"]}
    assert sandbox.emulator("stats")["manifest_gets"] == stats["manifest_gets"]
    # a selection the audit cannot answer reads the cached index from ECR, once
    amd = run(["linux/amd64"])
    assert (amd.status, json.loads(amd.platform_digests)) == (
        "ok",
        {"linux/amd64": index.children["linux/amd64"]},
    )
    assert run(["linux/amd64"]).status == "ok"
    assert sandbox.emulator("stats")["manifest_gets"] == stats["manifest_gets"] + 1
    assert sandbox.emulator("stats")["upstream_manifest_fetches"] == stats["upstream_manifest_fetches"]


@pytest.mark.parametrize("policy", ["repull", "report"])
def test_a_drifted_subset_that_is_not_pulled_keeps_showing_what_ecr_holds(sandbox, sandbox_env, policy):
    """Stale (repull inside ECR's 24 h wait) and drift_reported rows name the platform digests of
    the index ECR still serves: the audit view shows them while the tag waits."""
    hub = sandbox.upstreams["registry-1.docker.io"]
    name = f"p-drift-{policy}"
    old = seed_image(hub, f"library/{name}", "1", platforms=PLATFORMS)
    m = manifest(
        name,
        [hub_rule(name)],
        [{"image": name, "tags": ["1"], "platforms": ["linux/arm64"], "on_drift": policy}],
    )
    key, audit = f"{name}/library/{name}:1", f"sqlite:///{sandbox_env / 'audit.db'}"
    with engine(m, audit) as mirror:
        ensure_rules(m, mirror.target)
        assert mirror_run(mirror)[key].status == "pulled"
    seed_image(hub, f"library/{name}", "1", platforms=PLATFORMS, variant="rebuilt")
    gets = sandbox.emulator("stats")["manifest_gets"]

    with engine(m, audit) as mirror:
        row = mirror_run(mirror)[key]

    assert (row.action, row.status) == ("drifted", "stale" if policy == "repull" else "drift_reported")
    assert row.cached_digest_after == old.digest
    assert json.loads(row.platform_digests) == {"linux/arm64": old.children["linux/arm64"]}
    assert sandbox.emulator("stats")["manifest_gets"] == gets  # from the audit: nothing pulled or read
