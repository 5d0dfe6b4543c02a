"""``./dev airflow`` from a fresh state folder: the UI comes up on the sandbox, the printed login
works through the REST API, the example DAGs are unpaused and their pools exist, a triggered run
succeeds, and Ctrl-C (SIGINT) stops every process it started.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandbox.airflow_stack import ROOT, wait_for
from sandbox.local_airflow import database_name

pytestmark = pytest.mark.slow

EXAMPLE_DAGS = {"ecr_mirror__monitoring", "ecr_mirror__platform_base", "ecr_mirror__backfill"}


def _processes_of(state: Path) -> list[str]:
    """Command lines of the processes that run with ``state`` in their environment or arguments."""
    found = []
    marker = str(state).encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if marker in environ or marker in cmdline:
            command = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{pid}: {command[:200]}")
    return found


def _drop_databases(state: Path) -> None:
    import psycopg2

    name = database_name(state)
    try:
        conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    except psycopg2.Error:
        return  # no PostgreSQL: the stack used SQLite under the state folder
    conn.autocommit = True
    with conn.cursor() as cur:
        for database in (name, f"{name}_audit"):
            cur.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    conn.close()


@pytest.fixture
def dev_airflow(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], queue.Queue[str], Path]]:
    state = tmp_path / "airflow-local"
    process = subprocess.Popen(
        [str(ROOT / "dev"), "airflow", "--state", str(state), "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # like a terminal's foreground job: Ctrl-C reaches only its group
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in process.stdout or ():
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        yield process, lines, state
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        _drop_databases(state)


def _read_until(lines: queue.Queue[str], pattern: str, seen: list[str], timeout: float) -> re.Match[str]:
    def probe() -> re.Match[str] | None:
        while not lines.empty():
            seen.append(lines.get())
            if match := re.search(pattern, seen[-1]):
                return match
        return None

    try:
        return wait_for(f"{pattern!r} in the output of ./dev airflow", probe, timeout, every=0.5)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}:\n{''.join(seen)}") from None


def test_dev_airflow_brings_up_a_working_ui_and_stops_cleanly(dev_airflow):
    process, lines, state = dev_airflow
    seen: list[str] = []
    url = _read_until(lines, r"Airflow is up: (http://127\.0\.0\.1:\d+)", seen, timeout=600)[1]
    user, password = _read_until(lines, r"login: (\S+)  password: (\S+)", seen, timeout=10).groups()
    _read_until(lines, r"Ctrl-C stops everything", seen, timeout=10)

    # the login printed is the login that works; a wrong password does not
    assert httpx.post(f"{url}/auth/token", json={"username": user, "password": "wrong"}).status_code == 401
    response = httpx.post(f"{url}/auth/token", json={"username": user, "password": password})
    assert response.status_code == 201, response.text
    token = response.json()["access_token"]
    api = httpx.Client(base_url=f"{url}/api/v2", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert httpx.get(f"{url}/api/v2/dags", timeout=30).status_code == 401
    assert httpx.get(url, timeout=30).status_code == 200  # the UI's page

    dags = {d["dag_id"]: d for d in api.get("/dags", params={"tags": "ecr-mirror"}).json()["dags"]}
    assert set(dags) == EXAMPLE_DAGS
    assert not any(d["is_paused"] for d in dags.values())
    pools = {p["name"]: p["slots"] for p in api.get("/pools").json()["pools"]}
    assert pools["ecr_mirror__registry_1_docker_io"] == 4 and pools["ecr_mirror__quay_io"] == 4

    dag_id = "ecr_mirror__platform_base"
    # the plugin is loaded: a typo in the conf is refused for the user, Airflow refuses a stranger
    typo = {"logical_date": None, "conf": {"dryrun": True}}
    response = api.post(f"/dags/{dag_id}/dagRuns", json=typo)
    assert response.status_code == 400 and "did you mean 'dry_run'?" in response.text, response.text
    assert httpx.post(f"{url}/api/v2/dags/{dag_id}/dagRuns", json=typo, timeout=30).status_code == 401
    response = api.post(f"/dags/{dag_id}/dagRuns", json={"logical_date": None})
    assert response.status_code == 200, response.text
    run_id = response.json()["dag_run_id"]

    def finished() -> str | None:
        run_state = api.get(f"/dags/{dag_id}/dagRuns/{run_id}").json()["state"]
        return run_state if run_state in ("success", "failed") else None

    # the run unpausing scheduled may go first (one active run per manifest)
    assert wait_for(f"run {run_id} (logs in {state}/home)", finished, timeout=420) == "success"

    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C
    assert process.wait(timeout=120) == 0
    _read_until(lines, r"^stopped$", seen, timeout=10)
    left: list[str] = []

    def ended() -> bool | None:
        left[:] = _processes_of(state)
        return not left or None

    try:
        wait_for("every process of the stack to end", ended, timeout=15)
    except TimeoutError:
        pytest.fail("left running after Ctrl-C:\n" + "\n".join(left))
