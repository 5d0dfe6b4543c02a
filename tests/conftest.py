"""Shared fixtures. Airflow reads its configuration at import, so it is set here, first."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from sandbox.services import Sandbox

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="ecr-mirror-airflow-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    }
)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A real, migrated Airflow metadata database (SQLite under a temporary AIRFLOW_HOME)."""
    airflow = Path(sys.executable).parent / "airflow"
    subprocess.run([airflow, "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())
    return AIRFLOW_HOME


@pytest.fixture(scope="session")
def shared_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """Upstream Distribution registries, Secrets Manager (moto) and the ECR emulator on loopback,
    started once for the session.

    The emulator runs the behaviour profile ``ECR_MIRROR_EMULATOR_PROFILE`` names (``documented``
    unless set; ``strict`` runs the whole suite under the readings hardest for the engine, see
    docs/emulator.md)."""
    from sandbox.services import start_sandbox

    profile = os.environ.get("ECR_MIRROR_EMULATOR_PROFILE", "documented")
    running = start_sandbox(tmp_path_factory.mktemp("sandbox"), profile=profile)
    yield running
    running.stop()


@pytest.fixture
def sandbox(
    request: pytest.FixtureRequest, shared_sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Sandbox]:
    """The session's sandbox. A test marked ``own_clock`` gets an ECR emulator of its own (same
    upstream registries and Secrets Manager), so the clock it moves is no other test's."""
    if request.node.get_closest_marker("own_clock") is None:
        rules = shared_sandbox.rule_prefixes()
        yield shared_sandbox
        shared_sandbox.delete_rules_except(rules)  # the rules this test created
        return
    from sandbox.ecr_emulator.process import start_emulator
    from sandbox.services import ACCOUNT, REGION

    emulator = start_emulator(
        tmp_path_factory.mktemp("ecr"),
        shared_sandbox.upstreams,
        account=ACCOUNT,
        region=REGION,
        secrets_endpoint=shared_sandbox.secrets_url,
        profile=shared_sandbox.profile,
    )
    try:
        yield dataclasses.replace(shared_sandbox, ecr_url=emulator.url)
    finally:
        emulator.stop()


@pytest.fixture
def emulator_profile(sandbox: Sandbox, request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The sandbox's ECR emulator switched for one test, then back to the session's profile.

    Parametrize indirectly with a profile name or ``{"profile": ..., "switches": {...}}``, e.g.
    ``@pytest.mark.parametrize("emulator_profile", ["documented", "strict"], indirect=True)``;
    the fixture's value is the switches in force (switch -> variant).
    """
    wanted = request.param if isinstance(request.param, dict) else {"profile": request.param}
    state = sandbox.emulator("behaviour", wanted)
    yield state["switches"]
    sandbox.emulator("behaviour", {"profile": sandbox.profile, "switches": {}})


@pytest.fixture(autouse=True)
def ecr_answers_are_checked(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that uses the sandbox when the ECR emulator found a problem in one of the
    answers it sent during the test (the botocore shapes, the members clients rely on, a missing
    nextToken), or when a client sent its ECR credentials to the emulator's blob host."""
    if "sandbox" not in request.fixturenames:
        yield
        return
    from sandbox.services import Sandbox

    sandbox = request.getfixturevalue("sandbox")
    if not isinstance(sandbox, Sandbox):  # a test module's own fixture of that name
        yield
        return
    sandbox.violations()  # what earlier tests left is theirs
    yield
    found = sandbox.violations()
    if found:
        pytest.fail(
            "the ECR emulator recorded violations:\n"
            + "\n".join(f"  {v['kind']} {v['operation']}: {v['problem']}" for v in found),
            pytrace=False,
        )


@pytest.fixture
def sandbox_env(sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point the project at the sandbox (connection, upstreams), a fresh audit database
    (``<tmp>/audit.db``) and a manifest folder for the DAG file (``<tmp>/manifests``)."""
    from ecr_mirror.settings import get_settings

    for key, value in sandbox.environment().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ECR_MIRROR_AUDIT_URL", f"sqlite:///{tmp_path / 'audit.db'}")
    (tmp_path / "manifests").mkdir()
    monkeypatch.setenv("ECR_MIRROR_MANIFEST_DIR", str(tmp_path / "manifests"))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()
