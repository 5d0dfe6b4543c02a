"""An image's ``concurrency`` caps its own requests in flight inside a batch task, while the
other images of the batch keep the task's full concurrency."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

from ecr_mirror.ecr import CachedImages
from ecr_mirror.manifest import load_manifest
from ecr_mirror.mirror import Mirror, RunOptions

MANIFEST = """
name: caps
target: {region: eu-west-1}
defaults: {concurrency: 8}
rules: [{prefix: quay, upstream: quay}]
images:
  - {image: quay.io/big/image, tags: [a, b, c, d, e, f], concurrency: 2}
  - {image: quay.io/small/image, tags: [a, b, c, d, e, f]}
"""


class SlowUpstream:
    """Answers each digest request after a pause, counting the requests in flight per image."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()

    def use_credentials(self, lookup: object) -> None:
        pass

    def digest(self, tag) -> str:
        with self.lock:
            self.now[tag.repository] += 1
            self.peak[tag.repository] = max(self.peak[tag.repository], self.now[tag.repository])
        time.sleep(0.05)
        with self.lock:
            self.now[tag.repository] -= 1
        return "sha256:" + "0" * 64


class EmptyTarget:
    def cached_images(self, repository: str, *, tagged_only: bool = False) -> CachedImages:
        return CachedImages(exists=False)


def test_an_image_concurrency_caps_only_that_image(tmp_path: Path):
    path = tmp_path / "caps.yaml"
    path.write_text(MANIFEST)
    manifest = load_manifest(path)
    upstream = SlowUpstream()
    mirror = Mirror(manifest, EmptyTarget(), store=None, upstreams=upstream)

    plan = mirror.compare(mirror.resolve(RunOptions()))

    assert len(plan) == 12 and {str(item.action) for item in plan} == {"missing"}
    assert upstream.peak["big/image"] == 2
    # the other image is taken in turn with the capped one, so it is not starved of threads
    assert upstream.peak["small/image"] >= 4
