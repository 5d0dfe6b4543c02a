"""Seed the demo upstreams (stand-ins for Docker Hub and Quay) with a small, fixed image set.

    python -m sandbox.seed_demo --registry registry-1.docker.io=http://127.0.0.1:5000 \\
                                --registry quay.io=http://127.0.0.1:5001
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from sandbox.upstream import SeededImage, seed_image

MULTI_ARCH = ("linux/amd64", "linux/arm64", "linux/arm/v7")

# (upstream host, repository, tag, platforms, oci)
DEMO_IMAGES: tuple[tuple[str, str, str, tuple[str, ...], bool], ...] = (
    ("registry-1.docker.io", "library/nginx", "1.27", MULTI_ARCH, True),
    ("registry-1.docker.io", "library/nginx", "1.27-alpine", MULTI_ARCH, True),
    ("registry-1.docker.io", "library/python", "3.12-slim", ("linux/amd64", "linux/arm64"), False),
    ("registry-1.docker.io", "bitnami/redis", "7.4", (), False),
    ("quay.io", "prometheus/prometheus", "v3.1.0", ("linux/amd64", "linux/arm64"), True),
    ("quay.io", "prometheus/prometheus", "v2.55.1", ("linux/amd64", "linux/arm64"), True),
)


def seed_demo(registries: dict[str, str]) -> list[SeededImage]:
    """Push the demo set; ``registries`` maps an upstream host to the sandbox URL standing in for it."""
    missing = {host for host, *_ in DEMO_IMAGES} - registries.keys()
    if missing:
        raise ValueError(f"no sandbox URL for upstream(s): {', '.join(sorted(missing))}")
    return [
        seed_image(registries[host], repository, tag, platforms=platforms, oci=oci)
        for host, repository, tag, platforms, oci in DEMO_IMAGES
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.seed_demo", description=__doc__)
    parser.add_argument(
        "--registry",
        action="append",
        required=True,
        metavar="HOST=URL",
        help="upstream host and the sandbox registry URL that stands in for it (repeat)",
    )
    args = parser.parse_args(argv)
    registries = {}
    for item in args.registry:
        host, sep, url = item.partition("=")
        if not sep or not url:
            parser.error(f"--registry expects HOST=URL, got {item!r}")
        registries[host] = url
    try:
        images = seed_demo(registries)
    except ValueError as exc:
        parser.error(str(exc))
    for (host, *_), image in zip(DEMO_IMAGES, images, strict=True):
        print(f"{host}/{image.ref} {image.digest}")


if __name__ == "__main__":
    main()
