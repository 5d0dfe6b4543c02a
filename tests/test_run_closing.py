"""What closes a run: record_audit's body (tasks.py), run as a plain function against the sandbox,
and the post-pull check that an index's manifests are all in ECR."""

from __future__ import annotations

from typing import Any

import pytest

from ecr_mirror import tasks
from ecr_mirror.audit import AuditStore
from ecr_mirror.ecr import CachedImages
from ecr_mirror.mirror import NO_RESULT, RunInfo, RunOptions
from ecr_mirror.pull import Puller
from ecr_mirror.rules import ensure_rules
from ecr_mirror.sources import ManifestSource
from sandbox.upstream import seed_image
from tests.ptc_helpers import engine, hub_rule, manifest

HUB = "registry-1.docker.io"
LANE = "registry_1_docker_io"


def test_a_tag_whose_batch_never_reported_gets_a_failed_row_and_fails_the_run(sandbox, sandbox_env):
    for tag in ("1.0", "2.0"):
        seed_image(sandbox.upstreams[HUB], "acme/closing", tag, platforms=())
    m = manifest("closing", [hub_rule("closing")], [{"image": "acme/closing", "tags": ["1.0", "2.0"]}])
    m = m.model_copy(update={"defaults": m.defaults.model_copy(update={"batch_size": 1})})
    run = RunInfo("manual__closing", m.dag_id, m.name)
    source = ManifestSource(m, sandbox_env)
    options = RunOptions()

    checks = tasks.ensure_rules(source, options)
    resolved = tasks.resolve_tags(source, run, options, {})
    first, second = resolved[LANE]
    assert [t["tag"] for t in first + second] == ["1.0", "2.0"]
    tasks.pull_through(m, tasks.compare_digests(m, first, options), run, options)
    # the second batch never reports: its tasks failed all their tries

    lost = r"^1 of 2 tags failed: docker\.io/acme/closing:2\.0: no result"
    with pytest.raises(tasks.RunFailed, match=lost):
        tasks.record_audit(m, run, checks, resolved)

    store = AuditStore(f"sqlite:///{sandbox_env / 'audit.db'}")
    rows = {r.tag: (r.action, r.status, r.error) for r in store.records(run_id=run.run_id)}
    assert rows == {"1.0": ("missing", "pulled", None), "2.0": ("failed", "failed", NO_RESULT)}
    (summary,) = store.summaries(dag_id=m.dag_id)
    assert (summary.status, summary.total, summary.counts) == ("failed", 2, {"failed": 1, "pulled": 1})


class ListingWithout:
    """The sandbox's ECR target, except that its listings leave out one manifest digest: what ECR
    would show had it cached an index without one of its manifests."""

    def __init__(self, target: Any, hidden: str) -> None:
        self.target, self.hidden = target, hidden

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)

    def cached_images(self, repository: str, *, tagged_only: bool = False) -> CachedImages:
        images = self.target.cached_images(repository, tagged_only=tagged_only)
        images.digests.discard(self.hidden)
        return images


def test_a_pulled_index_whose_manifest_is_not_in_ecr_is_failed_naming_it(sandbox, sandbox_env):
    seeded = seed_image(sandbox.upstreams[HUB], "library/c-index", "1")
    m = manifest("c-index", [hub_rule("c-index")], [{"image": "c-index", "tags": ["1"]}])
    missing = seeded.children["linux/arm64"]
    with engine(m, f"sqlite:///{sandbox_env / 'audit.db'}") as mirror:
        ensure_rules(m, mirror.target)
        plan = mirror.compare(mirror.resolve(RunOptions()).tags)
        [outcome] = Puller(ListingWithout(mirror.target, missing), mirror.store, 2).run(plan)

    assert (outcome.status, outcome.cached_digest_after) == ("failed", seeded.digest)
    assert outcome.error == f"ECR has the index {seeded.digest} but not its manifests {missing}"


def test_a_dag_run_stopped_before_record_audit_is_closed_by_the_next_run_of_its_dag(sandbox, sandbox_env):
    for tag in ("1.0", "2.0"):
        seed_image(sandbox.upstreams[HUB], "acme/stopped", tag, platforms=())
    m = manifest("stopped", [hub_rule("stopped")], [{"image": "acme/stopped", "tags": ["1.0", "2.0"]}])
    m = m.model_copy(update={"defaults": m.defaults.model_copy(update={"batch_size": 1})})
    source, options = ManifestSource(m, sandbox_env), RunOptions()
    tasks.ensure_rules(source, options)
    stopped = RunInfo("scheduled__stopped", m.dag_id, m.name)
    first, _ = tasks.resolve_tags(source, stopped, options, {})[LANE]
    tasks.pull_through(m, tasks.compare_digests(m, first, options), stopped, options)
    # the run is marked failed in the UI here: its second batch and record_audit never run

    tasks.resolve_tags(source, RunInfo("scheduled__next", m.dag_id, m.name), options, {})

    store = AuditStore(f"sqlite:///{sandbox_env / 'audit.db'}")
    rows = {r.tag: (r.status, r.error_kind) for r in store.records(run_id=stopped.run_id)}
    assert rows == {"1.0": ("pulled", None), "2.0": ("failed", "transient")}
    [row] = [r for r in store.records(run_id=stopped.run_id) if r.tag == "2.0"]
    assert row.error.startswith("interrupted: the run stopped") and "scheduled__next" in row.error
    [summary] = store.summaries(dag_id=m.dag_id)
    assert (summary.run_id, summary.status, summary.counts) == (
        stopped.run_id,
        "failed",
        {"failed": 1, "pulled": 1},
    )
    assert summary.note == "interrupted: closed by run scheduled__next; 1 tag(s) had no result"
