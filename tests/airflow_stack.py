"""A real Airflow 3 stack for tests: api-server, scheduler, dag-processor, triggerer and a Celery
worker, each a subprocess with one AIRFLOW_HOME, on 127.0.0.1 only.

Metadata database, Celery result backend and audit store: a fresh PostgreSQL database (dropped by
``stop``); Celery broker: Redis, on a queue of this stack's own so other users of the Redis server
do not take its tasks. The REST API is reached with a token of the SimpleAuthManager's all-admins
mode, the same endpoints the UI calls.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg2
import pytest

from sandbox.upstream import free_port

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
PG = "postgres@127.0.0.1:5432"
REDIS = "redis://127.0.0.1:6379/0"
COMPONENTS = {
    "api-server": ["api-server", "--host", "127.0.0.1", "--port", "{port}"],
    "scheduler": ["scheduler"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer"],
    "worker": ["celery", "worker", "--queues", "{queue}", "--concurrency", "4", "--without-gossip"],
}
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 1.0) -> T:
    """Call ``probe`` until it returns something other than None; fail naming ``what`` after ``timeout``.

    A probe that cannot reach the api-server (a transport error, a reply slower than its timeout,
    as a loaded machine gives) is tried again until the deadline; the last such error is named.
    """
    deadline = time.monotonic() + timeout
    failure: httpx.TransportError | None = None
    while True:
        try:
            value = probe()
        except httpx.TransportError as exc:  # timeouts included
            failure, value = exc, None
        if value is not None:
            return value
        if time.monotonic() > deadline:
            last = f" (last error: {type(failure).__name__}: {failure})" if failure else ""
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}{last}")
        time.sleep(every)


def _admin(sql: str) -> None:
    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


@dataclass
class AirflowStack:
    home: Path
    database: str
    env: dict[str, str]
    url: str
    queue: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    token: str = ""

    @property
    def db_url(self) -> str:
        return f"postgresql+psycopg2://{PG}/{self.database}"

    def run(self, command: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a command of the venv (``airflow``, ``ecr-mirror-pools``) with the stack's environment."""
        done = subprocess.run(
            [str(BIN / command), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode:
            raise AssertionError(f"{command} {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.request(method, f"{self.url}/api/v2{path}", headers=headers, timeout=60, **kwargs)

    def wait_for_dags(self, dag_ids: list[str], timeout: float = 120) -> None:
        def parsed() -> bool | None:
            return all(self.api("GET", f"/dags/{d}").status_code == 200 for d in dag_ids) or None

        wait_for(f"the dag-processor to parse {dag_ids}", parsed, timeout)

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 180) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            run = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}").json()
            return run if run["state"] in ("success", "failed") else None

        return wait_for(f"run {run_id} of {dag_id} to finish (logs in {self.home})", finished, timeout)

    def start(self) -> None:
        for name, argv in COMPONENTS.items():
            args = [a.format(port=self.url.rsplit(":", 1)[1], queue=self.queue) for a in argv]
            log = (self.home / f"{name}.log").open("wb")
            self.processes[name] = subprocess.Popen(
                [str(BIN / "airflow"), *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends the component's children
            )
        wait_for("the api-server", self._version, timeout=90)
        response = httpx.get(f"{self.url}/auth/token", timeout=10)
        response.raise_for_status()
        self.token = response.json()["access_token"]

    def _version(self) -> bool | None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}: see {self.home}/{name}.log")
        try:
            return httpx.get(f"{self.url}/api/v2/version", timeout=2).status_code < 500 or None
        except httpx.HTTPError:
            return None

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
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
    port, queue = free_port(), f"ecr-mirror-test-{database}"
    db_url = f"postgresql+psycopg2://{PG}/{database}"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
        "AIRFLOW__CELERY__BROKER_URL": REDIS,
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg2://{PG}/{database}",
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "120",
        "ECR_MIRROR_AUDIT_URL": db_url,
        **extra_env,
    }
    stack = AirflowStack(home, database, env, f"http://127.0.0.1:{port}", queue)
    try:
        stack.run("airflow", "db", "migrate", timeout=300)
    except BaseException:
        _admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        raise
    return stack
