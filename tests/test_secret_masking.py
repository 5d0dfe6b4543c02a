"""Credentials stay out of the task logs at DEBUG: a real ``dag.test()`` run whose rule reads a
pull through cache secret from Secrets Manager (moto, in the sandbox), with every logger at DEBUG.

botocore logs each response body at DEBUG, GetSecretValue's included; a00658c wrote the secret's
accessToken into the task log that way."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from ecr_mirror.dag_factory import build_dag
from ecr_mirror.manifest import load_manifest
from sandbox.upstream import seed_image
from tests.ptc_helpers import put_secret

pytestmark = pytest.mark.slow


@contextmanager
def debug_logging() -> Iterator[None]:
    saved = {name: logging.getLogger(name).level for name in ("", "botocore", "airflow", "ecr_mirror")}
    for name in saved:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def test_the_ptc_secret_is_not_in_the_task_logs_at_debug(
    airflow_db, sandbox, sandbox_env, capfd: pytest.CaptureFixture[str], caplog
) -> None:
    token = f"dckr_pat_{uuid.uuid4().hex}"
    put_secret(sandbox, "ecr-pullthroughcache/masked", {"username": "masked-user", "accessToken": token})
    image = seed_image(sandbox.upstreams["registry-1.docker.io"], "acme/masked", "1.0", platforms=())
    path = sandbox_env / "manifests" / "masked.yaml"
    path.write_text(
        "name: masked\ntarget: {region: eu-west-1}\ndefaults: {retries: 0}\n"
        "rules:\n  - {prefix: masked, upstream: docker-hub, credential_secret: ecr-pullthroughcache/masked}\n"
        f"images:\n  - {{image: {image.repository}, tags: ['1.0']}}\n"
    )
    dag = build_dag(load_manifest(path), path, with_deadline=False)
    capfd.readouterr()  # the test's own set-up wrote the secret: only the run's logs count
    caplog.clear()
    with caplog.at_level(logging.DEBUG), debug_logging():
        run = dag.test()
    assert run.state == "success"
    out, err = capfd.readouterr()
    logs = out + err + caplog.text
    assert "GetSecretValue" in logs or "secretsmanager" in logs  # DEBUG lines were written
    assert token not in logs
