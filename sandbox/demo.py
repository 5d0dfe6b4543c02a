"""The demo: every example manifest mirrored by its generated DAG, then the audit of each run.

``python -m sandbox.demo`` starts the sandbox (local upstream registries seeded with multi-arch
images, Secrets Manager, the ECR emulator), runs ``airflow dags test`` for each manifest in
config/manifests, prints each run's audit and how many pull through requests reached ECR.
State lives in .sandbox/, so a second run finds everything cached and pulls nothing.
Against real AWS, ``python -m scripts.run_dags`` runs the same DAGs with your own connection.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sandbox.seed_demo import seed_demo
from sandbox.services import start_sandbox
from scripts.run_dags import ROOT, STATE, airflow_environment, run_dags


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--manifests", type=Path, default=ROOT / "config" / "manifests")
    args = parser.parse_args(argv)
    env = {**os.environ, **airflow_environment(args.manifests.resolve())}
    sandbox = start_sandbox(STATE)
    try:
        for image in seed_demo(sandbox.upstreams):
            print(f"upstream {image.repository}:{image.tag} {image.digest}")
        env.update(sandbox.environment())
        before = sandbox.emulator("stats")["manifest_gets"]
        ok = run_dags(args.manifests, env)
        pulls = sandbox.emulator("stats")["manifest_gets"] - before
        print(f"\npull through requests (manifest GETs) that reached ECR in this demo: {pulls}")
    finally:
        sandbox.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
