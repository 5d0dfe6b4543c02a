"""Run-level retries in a real ``dag.test()`` run: a batch whose tag failed for a transient reason
fails its task, Airflow retries it on that tag only, and the run converges in the same run; a
permanent failure fails the run without a retry (issue #8: "Transient errors are final for the
run": on a00658c the batch task succeeded and its ``retries`` were never used)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ecr_mirror.audit import AuditStore
from ecr_mirror.dag_factory import build_dag
from ecr_mirror.manifest import load_manifest
from ecr_mirror.settings import get_settings
from sandbox.upstream import seed_image
from tests.faults import FaultPlan, fault_proxy, hub_manifest

pytestmark = pytest.mark.slow

HUB = "registry-1.docker.io"

DEFAULTS = "{batch_size: 3, concurrency: 3, retries: 2, retry_delay_seconds: 1, max_retry_delay_seconds: 1}"


def write_manifest(folder: Path, name: str) -> Path:
    return hub_manifest(folder, f"retry-{name}", name, ["1", "2", "3"], DEFAULTS)


def pull_tries(dag_run) -> list[tuple[str, int]]:
    return sorted(
        (ti.state, ti.try_number) for ti in dag_run.get_task_instances() if ti.task_id.endswith(".mirror")
    )


def test_a_tag_that_fails_for_a_transient_reason_is_retried_by_airflow_and_the_run_converges(
    airflow_db, sandbox, sandbox_env, monkeypatch
):
    hub = sandbox.upstreams[HUB]
    for tag in ("1", "2", "3"):
        seed_image(hub, "acme/flaky", tag, platforms=())
    path = write_manifest(sandbox_env, "flaky")
    store = AuditStore(f"sqlite:///{sandbox_env / 'audit.db'}")

    def failed_once() -> bool:  # the upstream answers 503 for tag 2 until the first try gave up on it
        return any(r.tag == "2" and r.status == "failed" for r in store.records())

    plan = FaultPlan(kinds=("503",), match="/acme/flaky/manifests/2", until=failed_once, retry_after="0")
    with fault_proxy(hub, plan) as proxy:
        monkeypatch.setenv("ECR_MIRROR_UPSTREAM_ENDPOINTS", json.dumps({**sandbox.upstreams, HUB: proxy.url}))
        get_settings.cache_clear()
        gets = sandbox.emulator("stats")["manifest_gets"]
        dag_run = build_dag(load_manifest(path), path).test()

    assert dag_run.state == "success"
    assert pull_tries(dag_run) == [("success", 2)]  # failed once, retried by Airflow
    rows = store.records(run_id=dag_run.run_id)
    assert sorted((r.tag, r.status, r.error_kind, r.attempt) for r in rows) == [
        ("1", "pulled", None, 1),
        ("2", "pulled", None, 2),  # the row says which try pulled it
        ("3", "pulled", None, 1),
    ]
    # the tags pulled on the first try were neither compared nor pulled again
    assert (
        proxy.count("HEAD", "/acme/flaky/manifests/1") == proxy.count("HEAD", "/acme/flaky/manifests/3") == 1
    )
    assert sandbox.emulator("stats")["manifest_gets"] - gets == 3
    assert proxy.faulted_total >= 1
    [summary] = store.summaries(dag_id="ecr_mirror__retry_flaky")
    assert (summary.status, summary.counts) == ("success", {"pulled": 3})


def test_a_tag_that_fails_for_a_permanent_reason_fails_the_run_without_a_retry(
    airflow_db, sandbox, sandbox_env
):
    hub = sandbox.upstreams[HUB]
    for tag in ("1", "3"):  # 2 is not upstream: not found is permanent
        seed_image(hub, "acme/gone", tag, platforms=())
    path = write_manifest(sandbox_env, "gone")

    dag_run = build_dag(load_manifest(path), path).test()

    assert dag_run.state == "failed"
    assert pull_tries(dag_run) == [("failed", 1)]  # AirflowFailException: no retry spent on it
    store = AuditStore(f"sqlite:///{sandbox_env / 'audit.db'}")
    rows = {r.tag: (r.status, r.error_kind) for r in store.records(run_id=dag_run.run_id)}
    assert rows == {"1": ("pulled", None), "2": ("failed", "permanent"), "3": ("pulled", None)}
