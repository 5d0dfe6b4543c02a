"""The DAG file and the factory: parsing, task layout, retries; no network at parse time."""

from __future__ import annotations

import shutil
import socket
from datetime import timedelta
from pathlib import Path

import pytest

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
    assert set(bag.dag_ids) == {"ecr_mirror__platform_base", "ecr_mirror__monitoring"}


def test_a_broken_manifest_does_not_stop_the_others(tmp_path, monkeypatch, caplog):
    shutil.copy(EXAMPLES / "monitoring.yaml", tmp_path)
    (tmp_path / "broken.yaml").write_text("name: broken\ntarget: {region: eu-west-1}\nimages: [}\n")
    bag = dagbag(tmp_path, monkeypatch)
    assert set(bag.dag_ids) == {"ecr_mirror__monitoring"}
    assert "broken.yaml" in caplog.text


def test_task_layout_retries_and_schedule():
    path = EXAMPLES / "platform-base.yaml"
    dag = build_dag(load_manifest(path), path)
    assert dag.dag_id == "ecr_mirror__platform_base"
    assert set(dag.task_ids) == {
        "ensure_rules",
        "resolve_tags",
        "compare_digests",
        "pull_through",
        "record_audit",
    }
    assert dag.max_active_runs == 1 and dag.catchup is False
    assert dag.get_task("record_audit").trigger_rule == "all_done"
    assert dag.get_task("compare_digests").upstream_task_ids == {"resolve_tags"}
    assert dag.get_task("resolve_tags").upstream_task_ids == {"ensure_rules"}
    pull = dag.get_task("pull_through")
    assert pull.retries == 2 and pull.retry_exponential_backoff and pull.retry_delay == timedelta(seconds=30)
