"""docker-compose.yaml, parsed by Debian's docker-compose (no Docker engine needed for ``config``).

Checks the official Airflow 3 layout, the Celery wiring, the sandbox profile, that every file the
compose file and the Dockerfile refer to exists in the repository, and what makes the stack fit for
production: no secret with a default value (they are generated once, and Airflow reads them from
files), the FAB auth manager, the audit in a database of its own, and an Airflow image without the
sandbox.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.fernet import Fernet
from sqlalchemy.engine import make_url

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
SECRETS_DIR = "/opt/airflow/secrets"
#: Airflow settings that are secrets, read through their ``_CMD`` variant from the secrets volume
SECRET_SETTINGS = {
    "AIRFLOW__CORE__FERNET_KEY": "fernet_key",
    "AIRFLOW__API_AUTH__JWT_SECRET": "jwt_secret",
    "AIRFLOW__API__SECRET_KEY": "api_secret_key",
}
FAB = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"


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
    assert set(services) == {"postgres", "redis", "airflow-secrets", *AIRFLOW, *SANDBOX}
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
    init = services["airflow-init"]["entrypoint"]
    assert init[-1] == "/opt/ecr-mirror/deploy/compose-init.sh"
    assert "ecr-mirror-pools" in (ROOT / "deploy" / "compose-init.sh").read_text()
    assert "ecr-mirror-pools" in (ROOT / "pyproject.toml").read_text()
    assert all(services[name]["profiles"] == ["sandbox"] for name in SANDBOX)
    assert not any(
        services[name].get("profiles") for name in AIRFLOW | {"postgres", "redis", "airflow-secrets"}
    )


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
        for script in (a for a in entrypoint if a.startswith("/opt/ecr-mirror/")):
            assert (ROOT / script.removeprefix("/opt/ecr-mirror/")).is_file(), f"{name}: {script}"
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
    for package in (
        "apache-airflow",
        "apache-airflow-providers-amazon",
        "apache-airflow-providers-celery",
        "apache-airflow-providers-fab",
    ):
        assert f"{package}=={version(package)}" in pins


def _secret_files(env: dict[str, str]) -> dict[str, str]:
    """setting -> secret file its ``_CMD`` reads (``cat /opt/airflow/secrets/<file>``)."""
    files = {}
    for setting in SECRET_SETTINGS:
        match = re.fullmatch(rf"cat {SECRETS_DIR}/(\w+)", env.get(f"{setting}_CMD", ""))
        files[setting] = match[1] if match else ""
    return files


def test_no_secret_has_a_default_value(plain):
    text = (ROOT / "docker-compose.yaml").read_text()
    assert "change-me" not in text and "airflow:airflow" not in text
    for name, service in plain["services"].items():
        env = service.get("environment") or {}
        for key, value in env.items():
            # a URL with a password in it (``user:password@``); Redis' ``redis://:@`` has none
            assert not re.search(r"://[^/:@]+:[^/@]+@", str(value)), f"{name}: {key}"
        assert "POSTGRES_PASSWORD" not in env and not any(k.startswith("AIRFLOW__CORE__SIMPLE") for k in env)
        if name not in AIRFLOW:
            continue
        assert not set(SECRET_SETTINGS) & set(env), name  # never a value, only a file to read
        assert _secret_files(env) == SECRET_SETTINGS, name
        assert env["PGPASSFILE"] == f"{SECRETS_DIR}/pgpass"
        assert ("airflow-secrets", SECRETS_DIR) in mounts(service), name
        assert env["AIRFLOW__CORE__AUTH_MANAGER"] == FAB
    postgres = plain["services"]["postgres"]
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/airflow-secrets/postgres_password"
    assert ("airflow-secrets", "/run/airflow-secrets") in mounts(postgres)
    secrets_service = plain["services"]["airflow-secrets"]
    assert secrets_service["entrypoint"][-2:] == ["/opt/ecr-mirror/deploy/generate-secrets.sh", SECRETS_DIR]
    for name in AIRFLOW | {"postgres"}:  # nothing starts before the secrets exist
        assert (
            plain["services"][name]["depends_on"].get("airflow-secrets", {}).get("condition")
            == "service_completed_successfully"
            or "postgres" in plain["services"][name]["depends_on"]
        ), name


def test_the_secrets_are_generated_once_and_airflow_reads_them(plain, tmp_path):
    secrets_dir = tmp_path / "secrets"
    script = ROOT / "deploy" / "generate-secrets.sh"
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    first = subprocess.run(
        ["bash", str(script), str(secrets_dir), str(os.getuid())], env=env, capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr
    values = {path.name: path.read_text() for path in secrets_dir.iterdir()}
    assert set(values) == {
        *SECRET_SETTINGS.values(),
        "admin_password",
        "postgres_password",
        "audit_password",
        "pgpass",
    }
    assert len({values[f] for f in values if f != "pgpass"}) == len(values) - 1  # all different
    Fernet(values["fernet_key"].encode())  # a valid Fernet key
    assert all(len(v) >= 24 and "\n" not in v for f, v in values.items() if f != "pgpass")
    for path in secrets_dir.iterdir():  # the postgres container's user reads its password file
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o444 if path.name == "postgres_password" else 0o400), (path.name, oct(mode))
    # libpq's format: host:port:database:user:password, one line per role of the stack's URLs
    env_of = plain["services"]["airflow-worker"]["environment"]
    pgpass = [line.split(":") for line in values["pgpass"].splitlines()]
    for url in (env_of["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], env_of["ECR_MIRROR_AUDIT_URL"]):
        parsed = make_url(url)
        assert any(
            (h, d, u) == (parsed.host, d if d == "*" else parsed.database, parsed.username)
            for h, _, d, u, _ in pgpass
        ), url
    assert {line[4] for line in pgpass} == {values["postgres_password"], values["audit_password"]}

    again = subprocess.run(
        ["bash", str(script), str(secrets_dir), str(os.getuid())], env=env, capture_output=True, text=True
    )
    assert again.returncode == 0 and "generated" not in again.stdout, again.stdout + again.stderr
    assert {path.name: path.read_text() for path in secrets_dir.iterdir()} == values

    # Airflow itself reads each secret through the compose file's ``_CMD`` settings
    for setting, file in SECRET_SETTINGS.items():
        section, key = setting.removeprefix("AIRFLOW__").lower().split("__")
        command = env_of[f"{setting}_CMD"].replace(SECRETS_DIR, str(secrets_dir))
        airflow_env = {**os.environ, f"{setting}_CMD": command}
        airflow_env.pop(setting, None)
        done = subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), "config", "get-value", section, key],
            env=airflow_env,
            capture_output=True,
            text=True,
        )
        assert done.stdout.strip() == values[file], (setting, done.stderr[-500:])


def test_the_audit_has_a_database_and_a_role_of_its_own(plain):
    env = plain["services"]["airflow-worker"]["environment"]
    metadata, audit = (
        make_url(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]),
        make_url(env["ECR_MIRROR_AUDIT_URL"]),
    )
    assert (audit.host, audit.database, audit.username) == (
        "postgres",
        "ecr_mirror_audit",
        "ecr_mirror_audit",
    )
    assert audit.database != metadata.database and audit.username != metadata.username
    init = (ROOT / "deploy" / "compose-init.sh").read_text()
    assert "CREATE DATABASE ecr_mirror_audit OWNER ecr_mirror_audit" in init
    assert "\necr-mirror audit migrate\n" in init  # its tables, before any worker starts


def _stages(dockerfile: str) -> dict[str, str]:
    """Build stage name -> its instructions (``FROM ... AS name`` up to the next ``FROM``)."""
    parts = re.split(r"^FROM ", dockerfile, flags=re.MULTILINE)[1:]
    return {part.split()[2]: "FROM " + part for part in parts}


def test_airflow_runs_a_production_image_without_the_sandbox(plain):
    services = plain["services"]
    for name in AIRFLOW | {"airflow-secrets"}:
        assert services[name]["build"]["target"] == "production", name
        assert services[name]["image"] == "ecr-mirror-airflow:3.3.2", name
    for name in SANDBOX:
        assert services[name]["build"]["target"] == "sandbox", name
        assert services[name]["image"] == "ecr-mirror-sandbox:3.3.2", name
    stages = _stages((ROOT / "Dockerfile").read_text())
    assert set(stages) == {"production", "sandbox"}
    production = stages["production"]
    for word in ("moto", "docker-registry", "sandbox"):
        assert word not in production, word
    assert stages["sandbox"].startswith("FROM production AS sandbox")
    # what `pip install /opt/ecr-mirror` installs: moto only comes with the [sandbox] extra
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(d.startswith("moto") for d in project["dependencies"])
    assert any(d.startswith("moto") for d in project["optional-dependencies"]["sandbox"])
