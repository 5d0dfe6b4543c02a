"""Drift policies with the emulator's clock, under each emulator profile: report, repull (stale
without a pull until ECR's refresh window has passed, then pulled once), evict-and-repull (and
never on a HEAD that lies), immutable repositories, dry run and force. The engine runs against
the sandbox."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from ecr_mirror.audit import AuditStore
from ecr_mirror.ecr import EcrTarget
from ecr_mirror.mirror import RunOptions
from ecr_mirror.rules import ensure_rules
from ecr_mirror.settings import get_settings
from sandbox.upstream import seed_image
from tests.faults import upstream_proxy
from tests.ptc_helpers import REGION, aws, engine, hub_rule, manifest, mirror_run, per_profile

HUB = "registry-1.docker.io"
PROFILES = pytest.mark.parametrize("emulator_profile", ["documented", "strict"], indirect=True)
#: the readings of ECR's refresh timer and of lastRecordedPullTime the emulator offers
READINGS = {
    "documented": "documented",
    "strict": "strict",
    "last-check": {"profile": "strict", "switches": {"refresh_timer": "last-check"}},
    "exact-time": {"profile": "strict", "switches": {"last_recorded_pull_time": "exact"}},
}


@pytest.fixture
def drifted(sandbox, sandbox_env, request):
    """A tag mirrored, then re-pushed upstream: (manifest, audit URL, key, old digest, new digest).
    Request ``emulator_profile`` before it, so that the first pull runs under that profile."""
    name = f"d-{request.node.originalname.removeprefix('test_')[:14].replace('_', '-')}".rstrip("-")
    if hasattr(request.node, "callspec"):
        name = per_profile(name, request)
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


def advance(sandbox, hours: float) -> None:
    sandbox.emulator("clock", {"advance_seconds": hours * 3600})


def due_time(note: str) -> datetime:
    """The time a stale note says the refresh can come (ECR's clock, to the minute)."""
    found = re.search(r"first (?:run|pull) after (\d{4}-\d\d-\d\d \d\d:\d\d) UTC", note)
    assert found, note
    return datetime.strptime(found.group(1), "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


def pulls(audit: str, key: str) -> list[datetime]:
    """When the runs pulled the tag through ECR, as the audit recorded it."""
    repository, tag = key.rsplit(":", 1)
    rows = AuditStore(audit).records()
    return sorted(r.pulled_at for r in rows if (r.ecr_repository, r.tag) == (repository, tag) and r.pulled_at)


def image_detail(sandbox, key: str) -> dict:
    repository, tag = key.rsplit(":", 1)
    ids = [{"imageTag": tag}]
    return aws(sandbox, "ecr").describe_images(repositoryName=repository, imageIds=ids)["imageDetails"][0]


def cached(sandbox, key: str) -> str:
    return image_detail(sandbox, key)["imageDigest"]


@PROFILES
def test_report_records_the_drift_and_pulls_nothing(sandbox, emulator_profile, drifted):
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
@pytest.mark.parametrize("emulator_profile", list(READINGS.values()), ids=list(READINGS), indirect=True)
def test_repull_waits_for_ecrs_refresh_window_then_pulls_once(sandbox, emulator_profile, drifted):
    """A schedule shorter than 24 h: each run's pull would restart ECR's wait (the last-pull
    timer), so the runs before the window has passed record stale and pull nothing."""
    m, audit, key, old, new = drifted
    [first_pull] = pulls(audit, key)
    for hours in (0, 12, 11):  # runs at +0 h, +12 h and +23 h
        advance(sandbox, hours)
        gets = sandbox.emulator("stats")["manifest_gets"]
        with engine(m, audit) as mirror:  # a new login: the emulated clock expires the last one
            row = mirror_run(mirror)[key]
        assert (row.action, row.status, row.cached_digest_after, row.pulled_at) == (
            "drifted",
            "stale",
            old,
            None,
        )
        assert "not pulled" in row.error and "evict-and-repull" in row.error
        assert abs(due_time(row.error) - (first_pull + timedelta(hours=24))) < timedelta(minutes=2)
        assert sandbox.emulator("stats")["manifest_gets"] == gets

    advance(sandbox, 2)  # +25 h: the first run after the window pulls, and ECR refreshes the tag
    with engine(m, audit) as mirror:
        row = mirror_run(mirror)[key]
    assert (row.status, row.cached_digest_before, row.cached_digest_after) == ("pulled", old, new)
    assert row.error.startswith("ECR refreshed the tag on this pull, 24 h after the last pull known")
    assert row.pulled_at - first_pull > timedelta(hours=24)
    assert cached(sandbox, key) == new


@pytest.mark.own_clock
@PROFILES
def test_a_forced_pull_restarts_ecrs_wait_and_the_audit_remembers_it(sandbox, emulator_profile, drifted):
    """ECR's lastRecordedPullTime lags (it moves once a day at most): only the audit knows of the
    forced pull, and the next runs wait 24 h from it rather than from the first pull."""
    m, audit, key, old, new = drifted
    advance(sandbox, 2)
    with engine(m, audit) as mirror:
        forced = mirror_run(mirror, RunOptions(force=True))[key]
    assert (forced.status, forced.cached_digest_after) == ("stale", old)
    assert "(forced)" in forced.error and forced.pulled_at is not None

    advance(sandbox, 23)  # 25 h after the first pull, 23 h after the forced one
    gets = sandbox.emulator("stats")["manifest_gets"]
    with engine(m, audit) as mirror:
        row = mirror_run(mirror)[key]
    assert (row.status, row.pulled_at) == ("stale", None)
    assert abs(due_time(row.error) - (forced.pulled_at + timedelta(hours=24))) < timedelta(minutes=2)
    assert "this project's pull" in row.error
    assert sandbox.emulator("stats")["manifest_gets"] == gets

    advance(sandbox, 2)
    with engine(m, audit) as mirror:
        row = mirror_run(mirror)[key]
    assert (row.status, row.cached_digest_after) == ("pulled", new)


@PROFILES
def test_evict_and_repull_refreshes_at_once(sandbox, emulator_profile, drifted):
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


@PROFILES
def test_evict_and_repull_never_deletes_a_tag_upstream_still_serves(
    sandbox, sandbox_env, emulator_profile, request, monkeypatch
):
    """An upstream (or a cache in front of it) whose HEAD answers a wrong digest: the eviction goes
    by the sha256 of the manifest upstream serves."""
    hub, name = sandbox.upstreams[HUB], per_profile("d-liar", request)
    seeded = seed_image(hub, f"library/{name}", "1", platforms=())
    images = [{"image": name, "tags": ["1"], "on_drift": "evict-and-repull"}]
    m, key = manifest(name, [hub_rule(name)], images), f"{name}/library/{name}:1"
    audit = f"sqlite:///{sandbox_env / 'audit.db'}"
    with engine(m, audit) as mirror:
        ensure_rules(m, mirror.target)
        assert mirror_run(mirror)[key].status == "pulled"
    pushed = image_detail(sandbox, key)["imagePushedAt"]

    with upstream_proxy(hub) as liar:
        liar.head_digest = "sha256:" + "0" * 64
        monkeypatch.setenv("ECR_MIRROR_UPSTREAM_ENDPOINTS", json.dumps({**sandbox.upstreams, HUB: liar.url}))
        get_settings.cache_clear()
        with engine(m, audit) as mirror:
            kept = mirror_run(mirror)[key]
        assert (kept.action, kept.status, kept.upstream_digest, kept.cached_digest_after) == (
            "drifted",
            "ok",
            liar.head_digest,
            seeded.digest,
        )
        assert kept.error == (
            f"upstream's HEAD answered {liar.head_digest}, but the manifest it serves is {seeded.digest}, "
            "which ECR holds: nothing deleted, nothing pulled"
        )
        assert image_detail(sandbox, key)["imagePushedAt"] == pushed  # never deleted and pulled again

        # upstream really moves, the HEAD still lies: evicted and verified against what upstream serves
        moved = seed_image(hub, f"library/{name}", "1", platforms=(), variant="rebuilt")
        with engine(m, audit) as mirror:
            row = mirror_run(mirror)[key]
    assert (row.status, row.upstream_digest, row.cached_digest_after) == (
        "pulled",
        moved.digest,
        moved.digest,
    )
    assert cached(sandbox, key) == moved.digest


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
