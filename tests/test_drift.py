"""Drift policies with the emulator's clock: report, repull (stale, then refreshed after 24 h),
evict-and-repull, immutable repositories, dry run and force. The engine runs against the sandbox."""

from __future__ import annotations

import pytest

from ecr_mirror.ecr import EcrTarget
from ecr_mirror.mirror import RunOptions
from ecr_mirror.rules import ensure_rules
from sandbox.upstream import seed_image
from tests.ptc_helpers import REGION, aws, engine, hub_rule, manifest, mirror_run

HUB = "registry-1.docker.io"


@pytest.fixture
def drifted(sandbox, sandbox_env, request):
    """A tag mirrored, then re-pushed upstream: (manifest, audit URL, key, old digest, new digest)."""
    name = f"d-{request.node.name.removeprefix('test_')[:20].replace('_', '-')}".rstrip("-")
    hub = sandbox.upstreams[HUB]
    repository = f"library/{name}"
    old = seed_image(hub, repository, "1", platforms=())
    m = manifest(name, [hub_rule(name)], [{"image": name, "tags": ["1"]}])
    audit = f"sqlite:///{sandbox_env / 'audit.db'}"
    with engine(m, audit) as mirror:
        ensure_rules(m, mirror.target)
        assert mirror_run(mirror)[f"{name}/{repository}:1"].status == "pulled"
    new = seed_image(hub, repository, "1", platforms=(), variant="rebuilt")
    return m, audit, f"{name}/{repository}:1", old.digest, new.digest


def cached(sandbox, key: str) -> str:
    repository, tag = key.rsplit(":", 1)
    ids = [{"imageTag": tag}]
    return aws(sandbox, "ecr").describe_images(repositoryName=repository, imageIds=ids)["imageDetails"][0][
        "imageDigest"
    ]


def test_report_records_the_drift_and_pulls_nothing(sandbox, drifted):
    m, audit, key, old, new = drifted
    gets = sandbox.emulator("stats")["manifest_gets"]
    with engine(m, audit) as mirror:
        row = mirror_run(mirror, RunOptions(on_drift="report"))[key]
    assert (row.action, row.status, row.upstream_digest, row.cached_digest_after) == (
        "drifted",
        "drift_reported",
        new,
        old,
    )
    assert "on_drift: report" in row.error
    assert sandbox.emulator("stats")["manifest_gets"] == gets


@pytest.mark.own_clock
def test_repull_is_stale_within_24_hours_and_refreshed_after(sandbox, drifted):
    m, audit, key, old, new = drifted
    with engine(m, audit) as mirror:
        row = mirror_run(mirror)[key]  # on_drift defaults to repull
        assert (row.status, row.cached_digest_after) == ("stale", old)
        assert "at most once per 24 h" in row.error and "24 h after ECR cached this image" in row.error
    sandbox.emulator("clock", {"advance_seconds": 25 * 3600})
    with engine(m, audit) as mirror:  # a new login: the emulated clock expired the last one
        row = mirror_run(mirror)[key]
    assert (row.status, row.cached_digest_before, row.cached_digest_after) == ("pulled", old, new)


def test_evict_and_repull_refreshes_at_once(sandbox, drifted):
    m, audit, key, old, new = drifted
    with engine(m, audit) as mirror:
        row = mirror_run(mirror, RunOptions(on_drift="evict-and-repull"))[key]
    assert (row.action, row.status, row.cached_digest_before, row.cached_digest_after) == (
        "drifted",
        "pulled",
        old,
        new,
    )
    assert cached(sandbox, key) == new


def test_the_manifest_policy_applies_per_image(sandbox, drifted):
    m, audit, key, _, new = drifted
    evicting = m.model_copy(
        update={"images": [m.images[0].model_copy(update={"on_drift": "evict-and-repull"})]}
    )
    with engine(evicting, audit) as mirror:
        row = mirror_run(mirror)[key]
    assert (row.status, row.cached_digest_after) == ("pulled", new)


@pytest.mark.own_clock
def test_an_immutable_repository_is_never_touched(sandbox, sandbox_env):
    hub = sandbox.upstreams[HUB]
    old = seed_image(hub, "library/d-frozen", "1", platforms=())
    m = manifest(
        "d-frozen",
        [hub_rule("d-frozen", template={"tag_mutability": "IMMUTABLE"})],
        [{"image": "d-frozen", "tags": ["1"]}],
    )
    key = "d-frozen/library/d-frozen:1"
    with engine(m, f"sqlite:///{sandbox_env / 'audit.db'}") as mirror:
        [check] = ensure_rules(m, mirror.target)
        assert "IMMUTABLE" in check.warnings[0]
        assert mirror_run(mirror)[key].status == "pulled"
        new = seed_image(hub, "library/d-frozen", "1", platforms=(), variant="rebuilt")
    sandbox.emulator("clock", {"advance_seconds": 25 * 3600})
    with engine(m, f"sqlite:///{sandbox_env / 'audit.db'}") as mirror:
        gets = sandbox.emulator("stats")["manifest_gets"]
        for policy in ("evict-and-repull", "repull"):
            row = mirror_run(mirror, RunOptions(on_drift=policy))[key]
            assert (row.status, row.upstream_digest, row.cached_digest_after) == (
                "blocked_immutable",
                new.digest,
                old.digest,
            )
            assert "immutable" in row.error
    assert sandbox.emulator("stats")["manifest_gets"] == gets
    assert cached(sandbox, key) == old.digest


def test_a_dry_run_plans_and_touches_nothing(sandbox, drifted):
    m, audit, key, old, _ = drifted
    gets = sandbox.emulator("stats")["manifest_gets"]
    with engine(m, audit) as mirror:
        row = mirror_run(mirror, RunOptions(dry_run=True, on_drift="evict-and-repull"))[key]
    assert (row.status, row.cached_digest_after) == ("planned", old)
    assert row.error == "dry run: would delete the cached tag, then pull and verify (drifted)"
    assert sandbox.emulator("stats")["manifest_gets"] == gets and cached(sandbox, key) == old


def test_force_pulls_an_up_to_date_tag(sandbox, sandbox_env):
    seeded = seed_image(sandbox.upstreams[HUB], "library/d-force", "1", platforms=())
    m = manifest("d-force", [hub_rule("d-force")], [{"image": "d-force", "tags": ["1"]}])
    key = "d-force/library/d-force:1"
    with engine(m, f"sqlite:///{sandbox_env / 'audit.db'}") as mirror:
        ensure_rules(m, mirror.target)
        mirror_run(mirror)
        assert mirror_run(mirror)[key].status == "ok"
        gets = sandbox.emulator("stats")["manifest_gets"]
        row = mirror_run(mirror, RunOptions(force=True))[key]
    assert (row.action, row.status, row.cached_digest_after) == ("up_to_date", "pulled", seeded.digest)
    assert sandbox.emulator("stats")["manifest_gets"] == gets + 1


def test_the_target_reads_mutability_with_exclusions(sandbox, sandbox_env):
    ecr = aws(sandbox, "ecr")
    ecr.create_repository(
        repositoryName="d-manual/app",
        imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "latest*"}],
    )
    mutability = EcrTarget("aws_default", REGION).mutability("d-manual/app")
    assert mutability.immutable("1.0") and not mutability.immutable("latest-dev")
