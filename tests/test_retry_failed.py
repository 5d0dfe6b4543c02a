"""Re-run only the tags that failed in an earlier run: ``ecr-mirror sync --retry-failed RUN_ID`` and
the trigger form's ``retry_failed``, through the ECR emulator, the failures read from the audit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ecr_mirror.audit import AuditStore
from ecr_mirror.cli import main
from ecr_mirror.conf_guard import unknown_keys
from ecr_mirror.dag_factory import build_dag
from ecr_mirror.manifest import load_manifest
from sandbox.upstream import seed_image
from tests.test_end_to_end import HUB

MANIFEST = """
name: retry-{name}
target: {{region: eu-west-1}}
defaults: {{batch_size: 2, retries: 0}}
rules:
  - prefix: retry-{name}
    upstream: docker-hub
    credential_secret: ecr-pullthroughcache/docker-hub
images:
  - image: busybox
    tags: ["1.36", "1.37", "late"]
"""


def write(folder: Path, name: str) -> Path:
    path = folder / "manifests" / f"{name}.yaml"
    path.write_text(MANIFEST.format(name=name))
    return path


def sync(capsys, *args: str) -> tuple[int, dict]:
    code = main(["sync", *args, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out else {}


def test_sync_retry_failed_mirrors_only_the_tags_that_failed_in_that_run(sandbox, sandbox_env, capsys):
    hub = sandbox.upstreams[HUB]
    seed_image(hub, "library/busybox", "1.36")
    seed_image(hub, "library/busybox", "1.37")
    path = write(sandbox_env, "cli")
    code, first = sync(capsys, str(path))
    assert code == 1
    assert {r["tag"]: r["status"] for r in first["tags"]} == {
        "1.36": "pulled",
        "1.37": "pulled",
        "late": "failed",
    }

    late = seed_image(hub, "library/busybox", "late")  # the upstream catches up
    gets = sandbox.emulator("stats")["manifest_gets"]
    code, retry = sync(capsys, str(path), "--retry-failed", first["run_id"])

    assert code == 0
    assert [(r["tag"], r["action"], r["status"]) for r in retry["tags"]] == [("late", "missing", "pulled")]
    assert retry["tags"][0]["cached_digest_after"] == late.digest
    assert sandbox.emulator("stats")["manifest_gets"] > gets


def test_sync_retry_failed_of_an_unknown_run_or_one_without_failures_exits_2(sandbox, sandbox_env, capsys):
    seed_image(sandbox.upstreams[HUB], "library/busybox", "1.36")
    path = write(sandbox_env, "unknown")
    path.write_text(path.read_text().replace('"1.36", "1.37", "late"', '"1.36"'))

    assert main(["sync", str(path), "--retry-failed", "manual__nope"]) == 2
    assert "the audit has no run 'manual__nope' of ecr_mirror__retry_unknown" in capsys.readouterr().err

    code, done = sync(capsys, str(path))
    assert code == 0
    assert main(["sync", str(path), "--retry-failed", done["run_id"]]) == 2
    assert "no tag failed in run" in capsys.readouterr().err


@pytest.mark.slow
def test_the_trigger_forms_retry_failed_runs_only_the_failed_tags(airflow_db, sandbox, sandbox_env):
    hub = sandbox.upstreams[HUB]
    seed_image(hub, "library/busybox", "1.36")
    path = write(sandbox_env, "dag")
    path.write_text(path.read_text().replace('"1.36", "1.37", "late"', '"1.36", "late-dag"'))
    dag = build_dag(load_manifest(path), path)
    assert unknown_keys({"retry_failed": "x"}, dag.params.keys()) == []  # the conf guard lets it in

    first = dag.test()
    assert first.state == "failed"
    seed_image(hub, "library/busybox", "late-dag")  # not yet upstream when the first run failed
    retry = dag.test(run_conf={"retry_failed": first.run_id})

    assert retry.state == "success"
    rows = AuditStore(f"sqlite:///{sandbox_env / 'audit.db'}").records(run_id=retry.run_id)
    assert [(r.tag, r.status) for r in rows] == [("late-dag", "pulled")]
