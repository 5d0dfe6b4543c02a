"""The shape of a run at scale: one ECR listing per repository per run, whatever the number of tags,
and a fixed number of task instances per upstream host (shards.py), counted by the ECR emulator
(its ``describe_images`` stat) and by Airflow's own task instances of real ``dag.test()`` runs.

Measured before shards (issue 12, on a00658c): a 2,000-tag repository made 80 DescribeImages
calls in a no-change run (each batch of 50 listed every page), a first mirror listed it again in
every pull, and a run had 2 task instances per 50 tags.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ecr_mirror.audit import AuditStore
from ecr_mirror.dag_factory import build_dag
from ecr_mirror.manifest import load_manifest
from ecr_mirror.shards import MAX_TASKS_PER_HOST, shard_tags, shards_for
from ecr_mirror.tags import TagRef
from sandbox.bulk_seed import seed_tags

HUB = "registry-1.docker.io"


def tag(repository: str, name: str) -> TagRef:
    return TagRef(f"docker.io/{repository}", HUB, repository, name, None, f"hub/{repository}", "hub")


def test_every_repository_is_in_one_shard_and_the_shards_are_balanced():
    tags = [tag(f"acme/r{r}", str(t)) for r in range(7) for t in range(r + 1)]  # 1..7 tags per repository
    shards = shard_tags(tags, 3)
    assert len(shards) == 3
    owners = {t.cache_repository: i for i, shard in enumerate(shards) for t in shard}
    assert all(owners[t.cache_repository] == i for i, shard in enumerate(shards) for t in shard)
    assert sorted(len(shard) for shard in shards) == [9, 9, 10]  # 28 tags, whole repositories
    assert sorted((t for shard in shards for t in shard), key=tags.index) == tags  # each tag once
    assert all(shard == sorted(shard, key=tags.index) for shard in shards)  # the given order kept


def test_the_number_of_shards_does_not_grow_with_the_tags():
    many = [tag(f"acme/r{r}", str(t)) for r in range(500) for t in range(20)]  # 10,000 tags
    assert len(shards_for(many, slots=64, batch_size=50)) == MAX_TASKS_PER_HOST
    assert len(shards_for(many, slots=4, batch_size=50)) == 4  # the pool's slots
    assert len(shards_for(many[:60], slots=4, batch_size=50)) == 2  # one per batch_size tags
    assert len(shards_for([tag("acme/one", str(t)) for t in range(2000)], slots=4, batch_size=50)) == 1
    assert shards_for([], slots=4, batch_size=50) == []


MANIFEST = """
name: {name}
target: {{region: eu-west-1}}
defaults: {{concurrency: 16, retries: 0{extra}}}
rules:
  - prefix: {name}
    upstream: docker-hub
    credential_secret: ecr-pullthroughcache/docker-hub
images:
{images}
"""


def write(folder: Path, name: str, images: dict[str, list[str]], extra: str = "") -> Path:
    lines = "\n".join(f"  - {{image: {image}, tags: {json.dumps(tags)}}}" for image, tags in images.items())
    path = folder / "manifests" / f"{name}.yaml"
    path.write_text(MANIFEST.format(name=name, images=lines, extra=extra))
    return path


def counted_run(sandbox, path: Path):
    """One dag.test() run of the manifest, and the emulator's counts of it."""
    sandbox.emulator("stats/reset", {})
    run = build_dag(load_manifest(path), path, with_deadline=False).test()
    return run, sandbox.emulator("stats")


def statuses(folder: Path, run_id: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in AuditStore(f"sqlite:///{folder / 'audit.db'}").records(run_id=run_id):
        counts[record.status] = counts.get(record.status, 0) + 1
    return counts


@pytest.mark.slow
def test_a_2000_tag_repository_is_listed_once_per_run(airflow_db, sandbox, sandbox_env):
    names = [f"1.{i}" for i in range(2000)]
    seed_tags(sandbox.upstreams[HUB], "acme/shape-big", names)
    path = write(sandbox_env, "shape-big", {"acme/shape-big": names})

    first, stats = counted_run(sandbox, path)
    assert first.state == "success"
    assert statuses(sandbox_env, first.run_id) == {"pulled": 2000}
    # the comparison finds no repository yet (1 call), the verification lists the 2,000 pulled
    # images once (2 pages of 1,000), never once per batch
    assert stats["describe_images"] <= 3
    mirrors = [ti for ti in first.get_task_instances() if ti.task_id.endswith(".mirror")]
    assert len(mirrors) == 1  # one repository: one shard

    second, stats = counted_run(sandbox, path)
    assert second.state == "success"
    assert statuses(sandbox_env, second.run_id) == {"ok": 2000}
    assert stats["describe_images"] <= 2  # 2,000 tagged images, 1,000 a page
    assert (stats["manifest_gets"], stats["upstream_manifest_fetches"]) == (0, 0)


@pytest.mark.slow
def test_many_small_repositories_run_in_a_few_shards_each_listed_once(
    airflow_db, sandbox, sandbox_env, monkeypatch
):
    from ecr_mirror.settings import get_settings

    monkeypatch.setenv("ECR_MIRROR_POOL_SLOTS", "3")
    get_settings.cache_clear()
    images = {f"acme/shape-small-{i}": ["1", "2"] for i in range(30)}
    for image, names in images.items():
        seed_tags(sandbox.upstreams[HUB], image, names, platforms=("linux/amd64", "linux/arm64"))
    path = write(sandbox_env, "shape-small", images, extra=", batch_size: 1")

    first, stats = counted_run(sandbox, path)
    assert first.state == "success"
    assert statuses(sandbox_env, first.run_id) == {"pulled": 60}
    assert stats["describe_images"] <= 60  # per repository: none there yet, then its pulled images by id

    second, stats = counted_run(sandbox, path)
    assert second.state == "success"
    assert stats["describe_images"] == 30  # each repository listed once (batches of 1 made 60)
    mirrors = [ti for ti in second.get_task_instances() if ti.task_id.endswith(".mirror")]
    assert len(mirrors) == 3  # the pool's slots, not 60 batches
    assert len(second.get_task_instances()) == 3 + 4  # ensure_rules, resolve_tags, shards, record_audit


def test_heads_start_while_other_repositories_are_still_listing(sandbox, sandbox_env, monkeypatch):
    """Measured on a00658c: every listing of a batch finished before its first upstream HEAD."""
    from ecr_mirror.mirror import RunOptions
    from ecr_mirror.rules import ensure_rules
    from ecr_mirror.settings import get_settings
    from tests.faults import upstream_proxy
    from tests.ptc_helpers import engine, hub_rule, manifest

    images = {f"acme/shape-pipe-{i}": ["1", "2"] for i in range(12)}
    for image, names in images.items():
        seed_tags(sandbox.upstreams[HUB], image, names)
    m = manifest("shape-pipe", [hub_rule("shape-pipe")], [{"image": i, "tags": t} for i, t in images.items()])
    m = m.model_copy(update={"defaults": m.defaults.model_copy(update={"concurrency": 2})})
    with upstream_proxy(sandbox.upstreams[HUB]) as hub:
        monkeypatch.setenv("ECR_MIRROR_UPSTREAM_ENDPOINTS", json.dumps({**sandbox.upstreams, HUB: hub.url}))
        get_settings.cache_clear()
        with engine(m, f"sqlite:///{sandbox_env / 'audit.db'}") as mirror:
            ensure_rules(m, mirror.target)
            tags = mirror.resolve(RunOptions()).tags
            listed: list[float] = []
            mirror.target.client.meta.events.register(
                "before-call.ecr.DescribeImages", lambda **_: listed.append(time.monotonic())
            )
            hub.times.clear()
            hub.requests.clear()
            plan = mirror.compare(tags)

    assert {str(item.action) for item in plan} == {"missing"} and len(plan) == 24
    heads = [at for at, (method, _) in zip(hub.times, hub.requests, strict=True) if method == "HEAD"]
    assert len(heads) == 24 and len(listed) == 12  # one HEAD per tag, one listing per repository
    assert min(heads) < max(listed)  # the first HEAD did not wait for the last listing
