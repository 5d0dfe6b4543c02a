"""What listing a large cache repository costs in the ECR emulator: DescribeImages page by page.

Run: ``.venv/bin/python -m bench.describe_images --images 2000``. Prints figures; asserts only that
every image was listed exactly once (else the figures would not describe a full listing).

The emulator's store is filled directly (one repository, ``--images`` tagged image manifests), then
the emulator runs as a subprocess and boto3's paginator reads the repository with ``maxResults``
1000 and 100, as ecr-mirror's compare step does. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from pathlib import Path

import boto3

from sandbox.ecr_emulator.process import start_emulator
from sandbox.ecr_emulator.store import Image, Repository, Store

REPOSITORY = "bench/library/many"


def fill(state: Path, count: int) -> None:
    store = Store(state)
    store.insert_repository(Repository(REPOSITORY, created_at=0.0))
    for index in range(count):
        body = f'{{"schemaVersion":2,"n":{index}}}'.encode()
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        media_type = "application/vnd.oci.image.manifest.v1+json"
        store.put_image(Image(REPOSITORY, digest, media_type, None, 1, float(index), None, body), [])
        store.set_tag(REPOSITORY, f"t{index:05d}", digest, float(index))
    store.close()


def listing(url: str, page_size: int) -> tuple[float, int, int]:
    """(seconds, pages, images) of one full paginated listing."""
    client = boto3.client(
        "ecr", endpoint_url=url, region_name="us-east-1", aws_access_key_id="b", aws_secret_access_key="b"
    )
    started = time.perf_counter()
    pages = images = 0
    seen: set[str] = set()
    paginator = client.get_paginator("describe_images")
    for page in paginator.paginate(repositoryName=REPOSITORY, PaginationConfig={"PageSize": page_size}):
        pages += 1
        for detail in page["imageDetails"]:
            seen.add(detail["imageDigest"])
            images += 1
    elapsed = time.perf_counter() - started
    if images != len(seen):
        raise SystemExit(f"an image was listed twice: {images} details, {len(seen)} digests")
    return elapsed, pages, images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-describe-") as tmp:
        state = Path(tmp) / "ecr"
        state.mkdir()
        fill(state, args.images)
        with start_emulator(state, {}) as emulator:
            print(f"DescribeImages over {args.images} images in one repository (emulator at {emulator.url})")
            for page_size in (1000, 100):
                runs = [listing(emulator.url, page_size) for _ in range(args.repeat)]
                if any(images != args.images for _, _, images in runs):
                    raise SystemExit(f"listed {runs[0][2]} images, expected {args.images}")
                median = statistics.median(seconds for seconds, _, _ in runs)
                pages = runs[0][1]
                print(
                    f"  maxResults {page_size:>4}: {pages:>3} pages, median {median * 1000:8.1f} ms "
                    f"per listing, {median / pages * 1000:6.1f} ms per page"
                )


if __name__ == "__main__":
    main()
