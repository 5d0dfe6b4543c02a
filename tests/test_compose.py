"""docker-compose.yaml, parsed by Debian's docker-compose (no Docker engine needed for ``config``).

Checks the official Airflow 3 layout, the Celery wiring, the sandbox profile, and that every file the
compose file and the Dockerfile refer to exists in the repository.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.ecr_emulator.__main__ import parse_upstream

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
    "airflow-init",
}
SANDBOX = {"upstream-docker-hub", "upstream-quay", "moto", "ecr-emulator", "sandbox-seed"}


def command(service: dict[str, Any]) -> str:
    value = service.get("command") or ""
    return value if isinstance(value, str) else " ".join(value)


def mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each volume, from the short (docker-compose 1.x) or long (v2) syntax."""
    out = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source", ""), volume["target"]
        out.append((source, target))
    return out


def compose_config(*args: str) -> dict[str, Any]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose not found: ./dev setup installs Debian's docker-compose")
    done = subprocess.run(
        [binary, "--project-directory", str(ROOT), *args, "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},  # no AWS_* or AIRFLOW_* of the caller leaks into the result
    )
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


@pytest.fixture(scope="module")
def plain() -> dict[str, Any]:
    return compose_config()


@pytest.fixture(scope="module")
def sandboxed() -> dict[str, Any]:
    return compose_config("--env-file", "sandbox/compose.env")


def test_the_official_airflow_3_layout_with_celery(plain):
    services = plain["services"]
    assert set(services) == {"postgres", "redis", *AIRFLOW, *SANDBOX}
    for name in AIRFLOW:
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg2://")
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
        assert env["AIRFLOW_CONN_AWS_DEFAULT"] == "aws://" and not env["ECR_MIRROR_UPSTREAM_ENDPOINTS"]
    commands = {name: command(services[name]) for name in AIRFLOW - {"airflow-init"}}
    assert commands == {
        "airflow-apiserver": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-worker": "celery worker",
        "airflow-triggerer": "triggerer",
    }
    assert "ecr-mirror-pools" in command(services["airflow-init"])
    assert "ecr-mirror-pools" in (ROOT / "pyproject.toml").read_text()
    assert all(services[name]["profiles"] == ["sandbox"] for name in SANDBOX)
    assert not any(services[name].get("profiles") for name in AIRFLOW | {"postgres", "redis"})


def test_the_sandbox_env_file_points_airflow_at_the_sandbox(sandboxed):
    env = sandboxed["services"]["airflow-worker"]["environment"]
    connection = yaml.safe_load(env["AIRFLOW_CONN_AWS_DEFAULT"])
    assert connection["extra"]["service_config"]["ecr"]["endpoint_url"] == "http://ecr-emulator:4599"
    upstreams = yaml.safe_load(env["ECR_MIRROR_UPSTREAM_ENDPOINTS"])
    emulator = sandboxed["services"]["ecr-emulator"]["entrypoint"]
    served = dict(parse_upstream(a.split("=", 1)[1]) for a in emulator if a.startswith("--upstream="))
    assert (
        served
        == upstreams
        == {
            "registry-1.docker.io": "http://upstream-docker-hub:5000",
            "quay.io": "http://upstream-quay:5000",
        }
    )
    assert "COMPOSE_PROFILES=sandbox" in (ROOT / "sandbox" / "compose.env").read_text()
    # the blob host the emulator redirects layer GETs to answers under another name on its network
    blob_url = next(a.split("=", 1)[1] for a in emulator if a.startswith("--blob-url="))
    aliases = sandboxed["services"]["ecr-emulator"]["networks"]["default"]["aliases"]
    assert blob_url == "http://ecr-emulator-blobs:4600" and "ecr-emulator-blobs" in aliases
    assert "--blob-port=4600" in emulator


def test_every_mounted_path_and_referenced_file_exists(plain):
    for name, service in plain["services"].items():
        for source, _ in mounts(service):
            if source.startswith("/"):  # a bind mount (named volumes have no path)
                assert Path(source).exists(), f"{name} mounts {source}"
        if "build" in service:
            context = Path(service["build"]["context"])
            assert (context / service["build"].get("dockerfile", "Dockerfile")).is_file()
        entrypoint = service.get("entrypoint") or []
        if entrypoint[:2] == ["python", "-m"]:
            module = ROOT / Path(*entrypoint[2].split("."))
            assert module.with_suffix(".py").is_file() or (module / "__main__.py").is_file(), entrypoint
    mounted = {target: source for source, target in mounts(plain["services"]["airflow-scheduler"])}
    assert {mounted[f"/opt/airflow/{d}"] for d in ("dags", "plugins", "config")} == {
        str(ROOT / d) for d in ("dags", "plugins", "config")
    }
    env = plain["services"]["airflow-scheduler"]["environment"]
    for variable in ("ECR_MIRROR_MANIFEST_DIR", "ECR_MIRROR_BACKFILL_DIR"):
        assert (ROOT / Path(env[variable]).relative_to("/opt/airflow")).is_dir()


def test_the_dockerfile_copies_existing_files_and_pins_what_the_tests_ran():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.startswith("COPY"):
            sources = [part for part in line.split()[1:-1] if not part.startswith("--")]
            assert all((ROOT / source).exists() for source in sources), line
    from importlib.metadata import version

    assert f"apache/airflow:{version('apache-airflow')}-python3.11" in dockerfile
    pins = (ROOT / "constraints.txt").read_text().splitlines()
    for package in ("apache-airflow", "apache-airflow-providers-amazon", "apache-airflow-providers-celery"):
        assert f"{package}=={version(package)}" in pins
