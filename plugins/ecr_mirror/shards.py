"""A run's tags split into shards: the unit one task instance (or one CLI worker) compares and pulls.

Every tag of an ECR repository lands in the same shard, so each repository is listed once per run
(the comparison's listing is the only one; see plan.py and pull.py), however many tags it has. The
number of shards does not grow with the tags: at most the upstream host's pool slots (pools.py),
at most ``MAX_TASKS_PER_HOST``, at most one per ``defaults.batch_size`` tags and one per repository. A DAG
run therefore has a fixed number of task instances per upstream host, each building its clients once.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from ecr_mirror.tags import TagRef

#: the most task instances one upstream host has in a DAG run (its shards and their hand-over)
MAX_TASKS_PER_HOST = 12


def shard_count(tags: int, repositories: int, slots: int, batch_size: int) -> int:
    """How many shards ``tags`` tags in ``repositories`` repositories get (0 when there are none)."""
    if tags == 0:
        return 0
    by_size = -(-tags // batch_size)  # ceil: a shard is worth it once it has batch_size tags
    return max(1, min(slots, MAX_TASKS_PER_HOST, repositories, by_size))


def shard_tags(tags: Sequence[TagRef], count: int) -> list[list[TagRef]]:
    """``tags`` in ``count`` shards (fewer when there are fewer repositories), every repository's
    tags in one shard, the shards as even in tags as whole repositories allow (largest first onto
    the lightest shard). Each shard keeps the tags in their given order; empty shards are dropped."""
    positions: dict[str, list[int]] = {}
    for position, tag in enumerate(tags):
        positions.setdefault(tag.cache_repository, []).append(position)
    if count <= 0 or not positions:
        return []
    heap = [(0, shard) for shard in range(min(count, len(positions)))]
    members: list[list[int]] = [[] for _ in heap]
    for group in sorted(positions.values(), key=len, reverse=True):
        load, shard = heapq.heappop(heap)
        members[shard].extend(group)
        heapq.heappush(heap, (load + len(group), shard))
    return [[tags[p] for p in sorted(shard)] for shard in members if shard]


def shards_for(tags: Sequence[TagRef], slots: int, batch_size: int) -> list[list[TagRef]]:
    """The shards of one upstream host's tags (see shard_count)."""
    repositories = len({tag.cache_repository for tag in tags})
    return shard_tags(tags, shard_count(len(tags), repositories, slots, batch_size))
