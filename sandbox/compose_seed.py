"""The compose sandbox's one-shot seeding: the Docker Hub PTC secret in moto and the demo images.

    python -m sandbox.compose_seed --secrets http://moto:5000 \\
        --registry registry-1.docker.io=http://upstream-docker-hub:5000 --registry quay.io=http://upstream-quay:5000

Run again, it finds the secret and re-pushes the same deterministic images (same digests).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from sandbox.seed_demo import seed_demo
from sandbox.services import create_secret


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.compose_seed", description=__doc__)
    parser.add_argument("--secrets", required=True, metavar="URL", help="Secrets Manager (moto) endpoint")
    parser.add_argument("--registry", action="append", required=True, metavar="HOST=URL")
    args = parser.parse_args(argv)
    create_secret(args.secrets)
    registries = dict(item.split("=", 1) for item in args.registry)
    for image in seed_demo(registries):
        print(f"seeded {image.repository}:{image.tag} {image.digest}")


if __name__ == "__main__":
    main()
