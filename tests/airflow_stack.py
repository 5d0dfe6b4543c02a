"""A real Airflow 3 stack for tests (sandbox/airflow_stack.py): api-server, scheduler, dag-processor,
triggerer and a Celery worker, each a subprocess with one AIRFLOW_HOME, on 127.0.0.1 only.

Metadata database, Celery result backend and audit store: a fresh PostgreSQL database (dropped by
``stop``); Celery broker: Redis, on a queue of this stack's own so other users of the Redis server
do not take its tasks. The REST API is reached with a token of the SimpleAuthManager's all-admins
mode, the same endpoints the UI calls.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
from cryptography.fernet import Fernet

from sandbox import airflow_stack
from sandbox.airflow_stack import airflow_environment, wait_for
from sandbox.upstream import free_port

__all__ = ["AirflowStack", "create_stack", "require_services", "wait_for"]

PG = "postgres@127.0.0.1:5432"
REDIS = "redis://127.0.0.1:6379/0"


def _admin(sql: str) -> None:
    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


@dataclass
class AirflowStack(airflow_stack.AirflowStack):
    database: str = ""

    @property
    def db_url(self) -> str:
        return f"postgresql+psycopg2://{PG}/{self.database}"

    def stop(self) -> None:
        super().stop()
        _admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


def require_services() -> None:
    """Skip (naming what is missing) where the machine has no PostgreSQL or Redis on 127.0.0.1.

    Machines of this project's kind, CI included, run both; a developer's laptop may not.
    """
    for name, port in (("PostgreSQL", 5432), ("Redis", 6379)):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except OSError as exc:
            pytest.skip(f"{name} is not listening on 127.0.0.1:{port} ({exc}): the Airflow stack needs it")


def create_stack(home: Path, extra_env: Mapping[str, str]) -> AirflowStack:
    """Migrate a fresh database and set the stack up (``start`` launches the components)."""
    require_services()
    database = f"ecr_mirror_stack_{os.getpid()}_{secrets.token_hex(3)}"
    _admin(f'CREATE DATABASE "{database}"')
    port = free_port()
    db_url = f"postgresql+psycopg2://{PG}/{database}"
    env = airflow_environment(
        home,
        port=port,
        db_url=db_url,
        audit_url=db_url,
        celery=(REDIS, f"db+postgresql+psycopg2://{PG}/{database}", f"ecr-mirror-test-{database}"),
        secrets={
            "jwt_secret": secrets.token_hex(16),
            "api_secret_key": secrets.token_hex(16),
            "fernet_key": Fernet.generate_key().decode(),
        },
    )
    env |= {"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True", **extra_env}
    stack = AirflowStack(home, env, f"http://127.0.0.1:{port}", database=database)
    try:
        stack.run("airflow", "db", "migrate", timeout=300)
    except BaseException:
        _admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        raise
    return stack
