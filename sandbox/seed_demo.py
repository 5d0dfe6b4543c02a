"""Seed the demo upstreams (stand-ins for Docker Hub and Quay) with a small, fixed image set.

    python -m sandbox.seed_demo --registry registry-1.docker.io=http://127.0.0.1:5000 \\
                                --registry quay.io=http://127.0.0.1:5001
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from sandbox.upstream import SeededImage, seed_image

MULTI_ARCH = ("linux/amd64", "linux/arm64", "linux/arm/v7")
TWO_ARCH = ("linux/amd64", "linux/arm64")
HUB, QUAY = "registry-1.docker.io", "quay.io"
DemoImage = tuple[str, str, str, tuple[str, ...], bool]


def _single(host: str, repository: str, *tags: str) -> tuple[DemoImage, ...]:
    """Single-platform OCI images: the tags that selectors choose from (cheap to seed)."""
    return tuple((host, repository, tag, (), True) for tag in tags)


# (upstream host, repository, tag, platforms, oci). Besides what the manifests mirror, each
# selector's repository holds tags it must leave out: older versions, prereleases, variants and
# tags that are no version at all. The pins in config/manifests/monitoring.yaml are the digests of
# node-exporter:v1.8.2 and blackbox-exporter:v0.25.0 as seeded here (seeding is deterministic).
DEMO_IMAGES: tuple[DemoImage, ...] = (
    (HUB, "library/nginx", "1.27", MULTI_ARCH, True),
    (HUB, "library/nginx", "1.27-alpine", MULTI_ARCH, True),
    (HUB, "library/python", "3.12-slim", TWO_ARCH, False),
    (HUB, "bitnami/redis", "7.4", (), False),
    (QUAY, "prometheus/prometheus", "v3.1.0", TWO_ARCH, True),
    (QUAY, "prometheus/prometheus", "v2.55.1", TWO_ARCH, True),
    *_single(QUAY, "prometheus/prometheus", "v3.0.0", "v3.2.0-rc.0", "v2.50.0", "v2.49.1", "main", "latest"),
    *_single(QUAY, "prometheus/alertmanager", "v0.28.1", "v0.28.0", "v0.28.0-rc.0", "v0.27.0", "main"),
    *_single(QUAY, "prometheus/node-exporter", "v1.8.2", "v1.8.1"),
    *_single(QUAY, "prometheus/blackbox-exporter", "v0.25.0"),
    *_single(HUB, "grafana/grafana", "latest", "12.0.0-beta1", "11.4.0", "11.4.0-ubuntu", "11.3.1"),
    *_single(HUB, "grafana/grafana", "11.3.0", "11.2.0", "main"),
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
