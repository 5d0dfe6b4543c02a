"""An image's ``concurrency`` caps its own requests in flight inside a batch task, while the
other images of the batch keep the task's full concurrency."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import cast

from ecr_mirror.audit import AuditStore
from ecr_mirror.ecr import CachedImages
from ecr_mirror.manifest import load_manifest
from ecr_mirror.mirror import Mirror, RunOptions
from ecr_mirror.plan import PlanItem
from ecr_mirror.protocols import MirrorTarget, UpstreamRegistries

MANIFEST = """
name: caps
target: {region: eu-west-1}
defaults: {concurrency: 8}
rules: [{prefix: quay, upstream: quay}]
images:
  - {image: quay.io/big/image, tags: [a, b, c, d, e, f], concurrency: 2}
  - {image: quay.io/small/image, tags: [a, b, c, d, e, f]}
"""


class HeldUpstream:
    """Holds every digest request until released, counting the requests in flight per image."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.now: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.released = False

    def client(self, host: str) -> object:
        raise AssertionError("exact tags need no upstream tag list")

    def digest(self, tag) -> str:
        with self.changed:
            self.now[tag.repository] += 1
            self.peak[tag.repository] = max(self.peak[tag.repository], self.now[tag.repository])
            self.changed.notify_all()
            self.changed.wait_for(lambda: self.released, timeout=60)
            self.now[tag.repository] -= 1
        return "sha256:" + "0" * 64

    def wait_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(condition, timeout)

    def release(self) -> None:
        with self.changed:
            self.released = True
            self.changed.notify_all()


class EmptyTarget:
    def cached_images(self, repository: str, *, tagged_only: bool = False) -> CachedImages:
        return CachedImages(exists=False)


def test_an_image_concurrency_caps_only_that_image(tmp_path: Path):
    path = tmp_path / "caps.yaml"
    path.write_text(MANIFEST)
    manifest = load_manifest(path)
    upstream = HeldUpstream()
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    # a comparison reads only cached_images of the target and digest of the upstreams
    mirror = Mirror(manifest, cast(MirrorTarget, EmptyTarget()), store, cast(UpstreamRegistries, upstream))
    tags = mirror.resolve(RunOptions()).tags
    plan: list[PlanItem] = []
    comparing = threading.Thread(target=lambda: plan.extend(mirror.compare(tags)))
    comparing.start()

    # While every request is held, the task's 8 threads are: 2 requests of the capped image,
    # 2 threads waiting for its slots, and 4 requests of the other image (taken in turn with it).
    small_gets_its_threads = upstream.wait_until(lambda: upstream.now["small/image"] >= 4, timeout=30)
    upstream.release()
    comparing.join(timeout=60)

    assert small_gets_its_threads, f"in flight while held: {dict(upstream.now)}"
    assert len(plan) == 12 and {str(item.action) for item in plan} == {"missing"}
    assert upstream.peak["big/image"] == 2
