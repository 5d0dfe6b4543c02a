"""For the audit view's tests: an Airflow api-server with the FAB auth manager on a migrated
PostgreSQL metadata database (``tests.airflow_stack``), real ``airflow dags test`` runs against the
sandbox, FAB users with DAG-level permissions, and headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by selenium; no browser is downloaded).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from sandbox.airflow_stack import BIN, COMPONENTS
from tests.airflow_stack import AirflowStack, wait_for

FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def start_api_server(stack: AirflowStack) -> None:
    """Start only the stack's api-server (the audit view needs no scheduler) and wait for it."""
    port = stack.url.rsplit(":", 1)[1]
    args = [a.format(port=port) for a in COMPONENTS["api-server"]]
    log = (stack.home / "api-server.log").open("wb")
    stack.processes["api-server"] = subprocess.Popen(
        [str(BIN / "airflow"), *args],
        env=stack.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stack.stop() ends its workers too
    )
    wait_for("the api-server", stack._version, timeout=180)


def dags_test(stack: AirflowStack, dag_id: str) -> str:
    """Run ``airflow dags test DAG_ID`` (a real run, in one process, on the stack's database) and
    return the run's final state; the output goes to ``<home>/<dag_id>.<n>.log``."""
    n = len(list(stack.home.glob(f"{dag_id}.*.log")))
    log = stack.home / f"{dag_id}.{n}.log"
    with log.open("w") as out:
        done = subprocess.run(
            [str(BIN / "airflow"), "dags", "test", dag_id],
            env=stack.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=300,
        )
    if done.returncode == 0:
        return "success"
    if "DagRun failed" in log.read_text():
        return "failed"
    raise AssertionError(f"airflow dags test {dag_id} exited with {done.returncode}: see {log}")


def fab_user(stack: AirflowStack, username: str, password: str, role: str) -> None:
    stack.run(
        "airflow",
        "users",
        "create",
        "--username",
        username,
        "--password",
        password,
        "--role",
        role,
        "--email",
        f"{username}@example.com",
        "--firstname",
        username,
        "--lastname",
        "test",
    )


def fab_token(stack: AirflowStack, username: str, password: str) -> str:
    """A JWT from the FAB auth manager's ``POST /auth/token`` (what API clients use)."""
    response = httpx.post(
        f"{stack.url}/auth/token", json={"username": username, "password": password}, timeout=30
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def chromium(output: Path):
    """A headless Chromium (selenium WebDriver) with a fresh profile under ``output``."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    assert not missing, f"{missing} missing: ./dev setup installs Debian's chromium and chromium-driver"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        "--window-size=1600,1300",
        f"--user-data-dir={output / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(output / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(60)
    return driver
