"""The steady-state digest check reads ECR with as little as it needs: tagged images only, unless a
digest pin needs the untagged ones too (bench/check_cost.py measures the whole run)."""

from __future__ import annotations

from ecr_mirror.mirror import RunOptions
from ecr_mirror.rules import ensure_rules
from sandbox.upstream import seed_image
from tests.ptc_helpers import engine, hub_rule, manifest, mirror_run


def test_compare_lists_only_tagged_images_unless_a_digest_pin_needs_more(sandbox, sandbox_env):
    hub = sandbox.upstreams["registry-1.docker.io"]
    tagged = seed_image(hub, "library/c-cost", "1", platforms=("linux/amd64", "linux/arm64"))
    pinned = seed_image(hub, "library/c-pin", "1", platforms=("linux/amd64", "linux/arm64"))
    images = [
        {"image": "c-cost", "tags": ["1"]},
        {"image": f"c-pin@{pinned.children['linux/arm64']}"},
    ]
    m = manifest("c-cost", [hub_rule("c-cost")], images)
    with engine(m, f"sqlite:///{sandbox_env / 'audit.db'}") as mirror:
        ensure_rules(m, mirror.target)
        mirror_run(mirror)  # caches both indexes (children are untagged images in ECR)
        requests: list[dict] = []
        mirror.target.client.meta.events.register(
            "provide-client-params.ecr.DescribeImages", lambda params, **_: requests.append(dict(params))
        )
        plan = {item.tag.cache_repository: item for item in mirror.compare(mirror.resolve(RunOptions()).tags)}

    assert {repo: str(item.action) for repo, item in plan.items()} == {
        "c-cost/library/c-cost": "up_to_date",
        "c-cost/library/c-pin": "up_to_date",
    }
    assert plan["c-cost/library/c-cost"].cached_digest == tagged.digest
    filters = {r["repositoryName"]: r.get("filter") for r in requests}
    assert filters == {"c-cost/library/c-cost": {"tagStatus": "TAGGED"}, "c-cost/library/c-pin": None}
