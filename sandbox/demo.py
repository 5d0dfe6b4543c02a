"""The demo: every example manifest mirrored by its generated DAG, then the audit of each run.

``python -m sandbox.demo`` starts the sandbox (local upstream registries seeded with multi-arch
images, Secrets Manager, the ECR emulator), runs ``airflow dags test`` for each manifest in
config/manifests, prints each run's audit and how many pull through requests reached ECR.
State lives in .sandbox/, so a second run finds everything cached and pulls nothing.
``--real`` skips the sandbox and uses your own AIRFLOW_CONN_AWS_DEFAULT and manifests.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from ecr_mirror.manifest import load_manifests
from sandbox.seed_demo import seed_demo
from sandbox.services import start_sandbox

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / ".sandbox"
BIN = Path(sys.executable).parent


def airflow_environment(manifest_dir: Path) -> dict[str, str]:
    home = STATE / "airflow"
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "ECR_MIRROR_MANIFEST_DIR": str(manifest_dir),
        # `airflow dags test` crashes on DAGs with a deadline (Airflow 3.3.2) and never fires one:
        # SLAs need a scheduler and a triggerer, so the demo builds the DAGs without them.
        "ECR_MIRROR_DEADLINES": "false",
        "ECR_MIRROR_AUDIT_URL": os.environ.get(
            "ECR_MIRROR_AUDIT_URL", f"sqlite:///{home / 'ecr_mirror_audit.db'}"
        ),
    }


def run_dags(manifest_dir: Path, env: dict[str, str]) -> bool:
    """``airflow dags test`` each manifest's DAG; print its audit; True when every run succeeded."""
    loaded, errors = load_manifests(manifest_dir)
    for error in errors:
        print(f"skipped, invalid manifest: {error}")
    logs = STATE / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    subprocess.run([BIN / "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    ok = not errors
    for _, manifest in loaded:
        log_file = logs / f"{manifest.dag_id}.log"
        with log_file.open("w") as out:
            result = subprocess.run(
                [BIN / "airflow", "dags", "test", manifest.dag_id],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        verdict = "succeeded" if result.returncode == 0 else f"FAILED (log: {log_file})"
        print(f"\n== {manifest.dag_id}: run {verdict}")
        subprocess.run([BIN / "ecr-mirror", "audit", "--dag-id", manifest.dag_id], env=env, check=False)
        ok = ok and result.returncode == 0
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--real", action="store_true", help="use your AWS connection, not the sandbox")
    parser.add_argument("--manifests", type=Path, default=ROOT / "config" / "manifests")
    args = parser.parse_args(argv)
    env = {**os.environ, **airflow_environment(args.manifests.resolve())}
    if args.real:
        return 0 if run_dags(args.manifests, env) else 1
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
