"""Run every manifest's DAG once from a shell (``airflow dags test``) and print each run's audit.

``python -m scripts.run_dags`` runs the manifests of config/manifests (or ``--manifests DIR``)
against the AWS connection of your environment (``AIRFLOW_CONN_AWS_DEFAULT``): real ECR, real
upstream registries. The demo (``python -m sandbox.demo``) runs the same against the sandbox.
Airflow's state and the run logs go to .sandbox/ (``airflow/``, ``logs/``); the audit to
``ECR_MIRROR_AUDIT_URL`` or a SQLite file there.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from ecr_mirror.manifest import load_manifests

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / ".sandbox"
BIN = Path(sys.executable).parent


def airflow_environment(manifest_dir: Path) -> dict[str, str]:
    """The environment of the ``airflow`` commands: a local Airflow home and this project's DAGs."""
    home = STATE / "airflow"
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "ECR_MIRROR_MANIFEST_DIR": str(manifest_dir),
        # `airflow dags test` crashes on DAGs with a deadline (Airflow 3.3.2) and never fires one:
        # SLAs need a scheduler and a triggerer, so these runs build the DAGs without them.
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
    parser.add_argument("--manifests", type=Path, default=ROOT / "config" / "manifests")
    args = parser.parse_args(argv)
    env = {**os.environ, **airflow_environment(args.manifests.resolve())}
    return 0 if run_dags(args.manifests, env) else 1


if __name__ == "__main__":
    sys.exit(main())
