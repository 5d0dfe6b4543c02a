"""The DAG file and the factory: parsing, task layout, retries; no network at parse time."""

from __future__ import annotations

import socket
from datetime import timedelta
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from ecr_mirror.dag_factory import build_dag
from ecr_mirror.manifest import load_manifest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "config" / "manifests"


def dagbag(folder: Path, monkeypatch: pytest.MonkeyPatch):
    from airflow.dag_processing.dagbag import DagBag

    from ecr_mirror.settings import get_settings

    monkeypatch.setenv("ECR_MIRROR_MANIFEST_DIR", str(folder))
    get_settings.cache_clear()
    try:
        return DagBag(dag_folder=str(ROOT / "dags"))
    finally:
        get_settings.cache_clear()


def test_every_example_manifest_becomes_a_dag_without_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the DAG file opened a connection at parse time")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    bag = dagbag(EXAMPLES, monkeypatch)
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {"ecr_mirror__platform_base", "ecr_mirror__monitoring", "ecr_mirror__backfill"}


BASE = """
name: platform-base
schedule: "0 */6 * * *"
target: {region: eu-west-1}
defaults: {retries: 2, batch_size: 2}
rules:
  - {prefix: docker-hub, upstream: docker-hub, credential_secret: ecr-pullthroughcache/docker-hub}
images:
  - {image: nginx, tags: ["1.27", "1.27-alpine"]}
  - {image: bitnami/redis, tags: ["7.4"]}
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def test_a_broken_manifest_does_not_stop_the_others_and_shows_as_a_failing_dag(tmp_path, monkeypatch, caplog):
    write(tmp_path, "platform-base", BASE)
    (tmp_path / "broken.yaml").write_text("name: broken\ntarget: {region: eu-west-1}\nimages: [}\n")
    (tmp_path / "no-rules.yaml").write_text("name: no-rules\ntarget: {region: eu-west-1}\nimages: []\n")
    bag = dagbag(tmp_path, monkeypatch)
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {
        "ecr_mirror__platform_base",
        "ecr_mirror__backfill",
        "ecr_mirror__invalid__broken",  # no name can be read from YAML that does not parse
        "ecr_mirror__no_rules",  # the name is read: the DAG keeps its id
    }
    assert "broken.yaml" in caplog.text
    invalid = bag.dags["ecr_mirror__no_rules"]
    assert invalid.task_ids == ["report_manifest_error"] and invalid.schedule is None
    assert "no-rules.yaml:3: images: must list at least one entry" in invalid.doc_md
    with pytest.raises(AirflowFailException, match=r"no-rules\.yaml:\d+: rules: required key is missing"):
        invalid.get_task("report_manifest_error").python_callable()


@pytest.mark.slow
def test_a_broken_scheduled_manifest_keeps_its_dag_and_schedule_and_each_run_fails_naming_the_field(
    airflow_db, tmp_path, monkeypatch, capfd
):
    """On a00658c its DAG disappeared, and ecr_mirror__invalid__platform_base was unscheduled,
    never ran and never turned red: the mirroring stopped unseen."""
    path = write(tmp_path, "platform-base", BASE.replace("batch_size: 2", "batch_size: two"))
    bag = dagbag(tmp_path, monkeypatch)
    assert bag.import_errors == {} and "ecr_mirror__invalid__platform_base" not in bag.dag_ids
    dag = bag.dags["ecr_mirror__platform_base"]
    assert dag.schedule == "0 */6 * * *" and dag.task_ids == ["report_manifest_error"]
    assert dag.get_task("report_manifest_error").retries == 0
    monkeypatch.setenv("ECR_MIRROR_MANIFEST_DIR", str(tmp_path))  # dag.test() parses the DAG file too
    from ecr_mirror.settings import get_settings

    get_settings.cache_clear()
    capfd.readouterr()
    run = dag.test()
    assert run.state == "failed"
    [ti] = run.get_task_instances()
    assert (ti.task_id, ti.state, ti.try_number) == ("report_manifest_error", "failed", 1)
    out, err = capfd.readouterr()  # the task's log, as dag.test() prints it
    expected = f"AirflowFailException: {path}:5: defaults.batch_size: must be a whole number (got 'two')"
    assert expected in out + err


def test_a_manifest_that_wants_a_shared_rule_differently_is_refused_by_name(tmp_path, monkeypatch):
    rule = "rules: [{{prefix: hub, upstream: docker-hub, credential_secret: ecr-pullthroughcache/{}}}]\n"
    for name, secret in (("a-first", "team-a"), ("b-second", "team-b"), ("c-agrees", "team-a")):
        text = f"name: {name}\ntarget: {{region: eu-west-1}}\n" + rule.format(secret)
        (tmp_path / f"{name}.yaml").write_text(text + "images: [{image: nginx, tags: ['1']}]\n")
    bag = dagbag(tmp_path, monkeypatch)
    assert {"ecr_mirror__a_first", "ecr_mirror__c_agrees", "ecr_mirror__b_second"} <= set(bag.dag_ids)
    refused = bag.dags["ecr_mirror__b_second"]  # keeps its id, and fails each run with the reason
    assert refused.task_ids == ["report_manifest_error"] and "invalid" in refused.tags
    assert "conflicts with the same rule in a-first.yaml (credential_secret differ)" in refused.doc_md


def test_task_layout_retries_pools_timeouts_and_schedule(tmp_path):
    path = write(tmp_path, "platform-base", BASE)
    dag = build_dag(load_manifest(path), path)
    assert dag.dag_id == "ecr_mirror__platform_base"
    hub = "registry_1_docker_io"
    assert set(dag.task_ids) == {
        "ensure_rules",
        "resolve_tags",
        f"{hub}.shards",
        f"{hub}.mirror",
        "record_audit",
    }
    assert dag.max_active_runs == 1 and dag.catchup is False and dag.schedule == "0 */6 * * *"
    assert dag.get_task("record_audit").trigger_rule == "all_done"
    assert dag.get_task(f"{hub}.mirror").upstream_task_ids == {f"{hub}.shards"}
    assert dag.get_task(f"{hub}.shards").upstream_task_ids == {"resolve_tags"}
    assert dag.get_task("resolve_tags").upstream_task_ids == {"ensure_rules"}
    assert dag.get_task("record_audit").upstream_task_ids == {"resolve_tags", f"{hub}.mirror"}
    pull = dag.get_task(f"{hub}.mirror")
    assert pull.retries == 2 and pull.retry_exponential_backoff and pull.retry_delay == timedelta(seconds=30)
    assert pull.pool == "ecr_mirror__registry_1_docker_io"
    assert pull.execution_timeout == timedelta(hours=1)
    assert set(dag.params) == {
        "images",
        "extra_tags",
        "dry_run",
        "force",
        "on_drift",
        "warm_layers",
        "retry_failed",
    }
    assert dag.deadline is None  # no sla in this manifest


def test_an_image_that_overrides_retries_gets_its_own_lane(tmp_path):
    path = tmp_path / "lanes.yaml"
    path.write_text(
        "name: lanes\ntarget: {region: eu-west-1}\ndefaults: {retries: 3}\n"
        "rules: [{prefix: hub, upstream: docker-hub, credential_secret: ecr-pullthroughcache/docker-hub}]\n"
        "images:\n  - {image: nginx, tags: ['1']}\n  - {image: redis, tags: ['7'], retries: 0}\n"
    )
    dag = build_dag(load_manifest(path), path)
    hub = "registry_1_docker_io"
    for lane, retries in ((hub, 3), (f"{hub}_retries_0", 0)):
        task = dag.get_task(f"{lane}.mirror")
        assert (task.retries, task.pool) == (retries, f"ecr_mirror__{hub}")


MULTI = """
name: multi
target: {region: eu-west-1}
defaults: {execution_timeout: 20m}
sla: {within: 45m, notify: [log, "arn:aws:sns:eu-west-1:123456789012:mirror-alerts"]}
rules:
  - {prefix: hub, upstream: docker-hub, credential_secret: ecr-pullthroughcache/docker-hub}
  - {prefix: quay, upstream: quay}
images:
  - {image: nginx, tags: ["1.27"]}
  - {image: quay.io/prometheus/prometheus, tags: ["v3.1.0"]}
"""


def test_each_upstream_gets_its_pool_and_the_sla_becomes_a_deadline_alert(tmp_path):
    from airflow.sdk import DeadlineReference

    from ecr_mirror.sla import on_sla_miss

    path = tmp_path / "multi.yaml"
    path.write_text(MULTI)
    dag = build_dag(load_manifest(path), path)
    pools = {t.task_id: t.pool for t in dag.tasks if t.task_id.endswith(".mirror")}
    assert pools == {
        "quay_io.mirror": "ecr_mirror__quay_io",
        "registry_1_docker_io.mirror": "ecr_mirror__registry_1_docker_io",
    }
    assert all(t.execution_timeout == timedelta(minutes=20) for t in dag.tasks)
    deadline = dag.deadline[0] if isinstance(dag.deadline, list) else dag.deadline
    assert deadline.reference == DeadlineReference.DAGRUN_QUEUED_AT
    assert deadline.interval == timedelta(minutes=45)
    assert deadline.callback.path == f"{on_sla_miss.__module__}.{on_sla_miss.__name__}"
    assert deadline.callback.kwargs["notify"][1].endswith(":mirror-alerts")
    # dag.test() crashes on a deadline in Airflow 3.3.2: in-process runs build without it
    assert build_dag(load_manifest(path), path, with_deadline=False).deadline in (None, [])


def test_the_form_refuses_bad_values(tmp_path):
    from airflow.sdk.exceptions import ParamValidationError

    path = write(tmp_path, "platform-base", BASE)
    params = build_dag(load_manifest(path), path).params
    assert params.get_param("on_drift").resolve("report") == "report"
    assert params.get_param("images").resolve(["quay.io/*"]) == ["quay.io/*"]
    for name, bad in (("on_drift", "maybe"), ("extra_tags", ["a b"]), ("images", "x"), ("force", "yes")):
        with pytest.raises(ParamValidationError):
            params.get_param(name).resolve(bad)
