"""A real Airflow 3 stack from the project's venv: api-server, scheduler, dag-processor, triggerer
and (with the CeleryExecutor) a Celery worker, each a subprocess of one AIRFLOW_HOME, on 127.0.0.1.

Shared by ``./dev airflow`` (sandbox/local_airflow.py) and the scheduler tests
(tests/airflow_stack.py): the environment every component gets, starting and stopping the
components, and the REST API calls both make (the same endpoints the UI calls).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from sandbox.upstream import free_port

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
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


def airflow_environment(
    home: Path,
    *,
    port: int,
    db_url: str,
    audit_url: str,
    celery: tuple[str, str, str] | None,
    secrets: Mapping[str, str],
) -> dict[str, str]:
    """The configuration every component of one stack shares (on top of ``os.environ``).

    ``celery`` is (broker URL, result backend URL, queue) for the CeleryExecutor, None for the
    LocalExecutor. ``secrets`` holds ``jwt_secret``, ``api_secret_key`` and ``fernet_key``: every
    component must sign and read the same tokens and decrypt the same connections.
    """
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__FERNET_KEY": secrets["fernet_key"],
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets["jwt_secret"],
        "AIRFLOW__API__SECRET_KEY": secrets["api_secret_key"],
        # other Airflow installations on this machine may hold the default log server ports
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "120",
        "ECR_MIRROR_AUDIT_URL": audit_url,
    }
    if celery is None:
        env["AIRFLOW__CORE__EXECUTOR"] = "LocalExecutor"
    else:
        broker, backend, queue = celery
        env |= {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": broker,
            "AIRFLOW__CELERY__RESULT_BACKEND": backend,
            # a queue of this stack's own: other users of the Redis server do not take its tasks
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
        }
    return env


@dataclass
class AirflowStack:
    home: Path
    env: dict[str, str]
    url: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    token: str = ""

    @property
    def queue(self) -> str | None:
        """The Celery queue of this stack's worker (None with the LocalExecutor: no worker)."""
        return self.env.get("AIRFLOW__OPERATORS__DEFAULT_QUEUE")

    def run(self, command: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a command of the venv (``airflow``, ``ecr-mirror-pools``) with the stack's environment."""
        done = subprocess.run(
            [str(BIN / command), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode:
            raise RuntimeError(f"{command} {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.request(method, f"{self.url}/api/v2{path}", headers=headers, timeout=60, **kwargs)

    def login(self, username: str | None = None, password: str | None = None) -> str:
        """A token from ``/auth/token``: with credentials, or without in the all-admins mode."""
        if username is None:
            response = httpx.get(f"{self.url}/auth/token", timeout=10)
        else:
            body = {"username": username, "password": password}
            response = httpx.post(f"{self.url}/auth/token", json=body, timeout=10)
        response.raise_for_status()
        return str(response.json()["access_token"])

    def wait_for_dags(self, dag_ids: list[str], timeout: float = 120) -> None:
        def parsed() -> bool | None:
            return all(self.api("GET", f"/dags/{d}").status_code == 200 for d in dag_ids) or None

        wait_for(f"the dag-processor to parse {dag_ids} (log in {self.home})", parsed, timeout)

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 180) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            run = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}").json()
            return run if run["state"] in ("success", "failed") else None

        return wait_for(f"run {run_id} of {dag_id} to finish (logs in {self.home})", finished, timeout)

    def start(self, username: str | None = None, password: str | None = None) -> None:
        """Start every component, wait for the api-server and log in (see ``login``)."""
        port = self.url.rsplit(":", 1)[1]
        for name, argv in COMPONENTS.items():
            if name == "worker" and self.queue is None:
                continue
            args = [a.format(port=port, queue=self.queue) for a in argv]
            log = (self.home / f"{name}.log").open("ab")
            self.processes[name] = subprocess.Popen(
                [str(BIN / "airflow"), *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stop() ends the component's children
            )
            log.close()
        wait_for("the api-server", self._version, timeout=120)
        self.token = self.login(username, password)

    def check(self) -> None:
        """Raise naming the first component that exited, and where its log is."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}: see {self.home}/{name}.log")

    def _version(self) -> bool | None:
        self.check()
        try:
            return httpx.get(f"{self.url}/api/v2/version", timeout=2).status_code < 500 or None
        except httpx.HTTPError:
            return None

    def stop(self) -> None:
        """SIGTERM every component's process group, SIGKILL what is left after 20 s."""
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        # a component's children (task runners, gunicorn/uvicorn workers) may outlive it briefly
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
