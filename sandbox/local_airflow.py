"""``./dev airflow``: the real Airflow 3 stack from the project's venv, on the sandbox, no Docker.

Starts the sandbox (upstream registries seeded with the demo images, Secrets Manager, the ECR
emulator), then Airflow's api-server, scheduler, dag-processor and triggerer on the project's
``dags/`` and ``plugins/`` folders: with PostgreSQL and Redis listening on 127.0.0.1, a Celery
worker too (metadata and audit in PostgreSQL databases of their own); otherwise SQLite and the
LocalExecutor. Creates the pools, unpauses the example DAGs, prints the UI's URL and login, and
stops everything on Ctrl-C. State (Airflow home, logs, secrets, the sandbox's registries) lives in
``.sandbox/airflow-local/``; delete it to start over.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx
from cryptography.fernet import Fernet

from ecr_mirror.manifest import load_manifests
from sandbox.airflow_stack import ROOT, AirflowStack, airflow_environment
from sandbox.seed_demo import seed_demo
from sandbox.services import start_sandbox
from sandbox.upstream import free_port

STATE = ROOT / ".sandbox" / "airflow-local"
USER = "admin"
PG_HOST, PG_PORT, REDIS_PORT = "127.0.0.1", 5432, 6379


@dataclass(frozen=True)
class Backend:
    """Where the metadata and the audit live, and which executor runs the tasks."""

    db_url: str
    audit_url: str
    celery: tuple[str, str, str] | None  # broker, result backend, queue
    description: str


def _listening(port: int) -> bool:
    try:
        socket.create_connection((PG_HOST, port), timeout=2).close()
    except OSError:
        return False
    return True


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def database_name(state: Path) -> str:
    """The PostgreSQL database of the stack whose state is ``state`` (one per state folder)."""
    return "ecr_mirror_local_" + hashlib.sha256(str(state.resolve()).encode()).hexdigest()[:10]


def _prepare_databases(names: list[str], fresh: bool) -> None:
    """Create the databases that are missing; a fresh state folder starts from empty ones, as
    deleting the folder promises."""
    import psycopg2

    conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user="postgres", dbname="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for name in names:
                if fresh:
                    cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()


def choose_backend(state: Path, fresh: bool, sqlite: bool) -> Backend:
    """PostgreSQL + Redis + Celery when both listen on 127.0.0.1 (and PostgreSQL lets the
    ``postgres`` user in without a password), else SQLite + LocalExecutor under ``state``. The
    choice of the first start is kept in ``state/backend``."""
    chosen = state / "backend"
    if not fresh and chosen.exists():
        sqlite = sqlite or chosen.read_text().strip() == "sqlite"
    home = state / "home"
    backend = Backend(
        db_url=f"sqlite:///{home / 'airflow.db'}",
        audit_url=f"sqlite:///{home / 'ecr_mirror_audit.db'}",
        celery=None,
        description=f"SQLite in {home}, LocalExecutor",
    )
    if not sqlite and _listening(PG_PORT) and _listening(REDIS_PORT):
        name = database_name(state)
        try:
            _prepare_databases([name, f"{name}_audit"], fresh)
        except Exception as exc:  # psycopg2.Error and OSError alike: fall back, saying why
            print(f"PostgreSQL on {PG_HOST}:{PG_PORT} is not usable ({exc}); using SQLite", flush=True)
        else:
            pg = f"postgres@{PG_HOST}:{PG_PORT}"
            backend = Backend(
                db_url=f"postgresql+psycopg2://{pg}/{name}",
                audit_url=f"postgresql+psycopg2://{pg}/{name}_audit",
                celery=(f"redis://{PG_HOST}:{REDIS_PORT}/0", f"db+postgresql+psycopg2://{pg}/{name}", name),
                description=f"PostgreSQL databases {name} (metadata) and {name}_audit (audit), "
                f"Redis broker, CeleryExecutor (queue {name})",
            )
    chosen.write_text("sqlite\n" if backend.celery is None else "postgres\n")
    return backend


def stack_secrets(state: Path) -> dict[str, str]:
    """The stack's secrets, generated on the first start and kept in ``state/secrets.json`` (0600)."""
    path = state / "secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    values = {
        "jwt_secret": secrets.token_urlsafe(32),
        "api_secret_key": secrets.token_urlsafe(32),
        "fernet_key": Fernet.generate_key().decode(),
        "admin_password": secrets.token_urlsafe(12),
    }
    path.touch(mode=0o600)
    path.write_text(json.dumps(values, indent=2) + "\n")
    return values


def _auth_environment(home: Path, password: str) -> dict[str, str]:
    """SimpleAuthManager with one admin user whose password this stack chose (not all-admins)."""
    passwords = home / "simple_auth_manager_passwords.json"
    passwords.touch(mode=0o600)
    passwords.write_text(json.dumps({USER: password}) + "\n")
    return {
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager."
        "SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
    }


def example_dag_ids(manifest_dir: Path, backfill_dir: Path) -> list[str]:
    """The DAG ids of the example manifests (and of the backfill DAG where it is configured)."""
    loaded, errors = load_manifests(manifest_dir)
    for error in errors:
        print(f"skipped, invalid manifest: {error}", flush=True)
    ids = [manifest.dag_id for _, manifest in loaded]
    return ids + (["ecr_mirror__backfill"] if (backfill_dir / "backfill.yaml").is_file() else [])


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--state", type=Path, default=STATE, help="state folder (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8080, help="UI/API port; 0: any free one")
    parser.add_argument("--sqlite", action="store_true", help="SQLite + LocalExecutor even with PostgreSQL")
    parser.add_argument("--manifests", type=Path, default=ROOT / "config" / "manifests")
    parser.add_argument("--backfill", type=Path, default=ROOT / "config" / "backfill")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)

    state: Path = args.state.resolve()
    home = state / "home"
    fresh = not home.exists()
    home.mkdir(parents=True, exist_ok=True)
    port = args.port if args.port and _free(args.port) else free_port()
    if args.port and port != args.port:
        print(f"port {args.port} is in use: using {port}", flush=True)
    backend = choose_backend(state, fresh, args.sqlite)
    keys = stack_secrets(state)
    dag_ids = example_dag_ids(args.manifests, args.backfill)

    sandbox = start_sandbox(state / "sandbox")
    stack: AirflowStack | None = None
    try:
        seed_demo(sandbox.upstreams)
        env = airflow_environment(
            home,
            port=port,
            db_url=backend.db_url,
            audit_url=backend.audit_url,
            celery=backend.celery,
            secrets=keys,
        )
        env |= sandbox.environment() | _auth_environment(home, keys["admin_password"])
        env |= {
            "ECR_MIRROR_MANIFEST_DIR": str(args.manifests.resolve()),
            "ECR_MIRROR_BACKFILL_DIR": str(args.backfill.resolve()),
        }
        stack = AirflowStack(home, env, f"http://127.0.0.1:{port}")
        print(f"migrating the metadata database ({backend.description})", flush=True)
        stack.run("airflow", "db", "migrate", timeout=600)
        pools = stack.run("ecr-mirror-pools").stdout.strip()
        print(
            "starting api-server, scheduler, dag-processor, triggerer"
            + (", celery worker" if backend.celery else ""),
            flush=True,
        )
        stack.start(USER, keys["admin_password"])
        stack.wait_for_dags(dag_ids, timeout=300)
        for dag_id in dag_ids:
            stack.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False}).raise_for_status()
        print(
            f"\nAirflow is up: {stack.url}\n"
            f"  login: {USER}  password: {keys['admin_password']}\n"
            f"  unpaused: {', '.join(dag_ids)}\n"
            + "".join(f"  {line}\n" for line in pools.splitlines())
            + f"  backend: {backend.description}\n"
            f"  logs: {home}/<component>.log, task logs in {home}/logs\n"
            f"  state: {state} (delete it to start over)\n"
            "Ctrl-C stops everything.",
            flush=True,
        )
        while True:
            stack.check()
            time.sleep(2)
    except KeyboardInterrupt:
        print("\nstopping", flush=True)
        return 0
    except (RuntimeError, TimeoutError, httpx.HTTPError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if stack is not None:
            stack.stop()
        sandbox.stop()
        print("stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
