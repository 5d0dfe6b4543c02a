"""A mirror run's asset events: recorded in the metadata database with the run's summary, and the
example downstream DAG (config/examples/downstream_scan.py) queued for a run on them. Real
``dag.test()`` runs through the ECR emulator; the downstream DAG processed by Airflow's own code."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from ecr_mirror.dag_factory import build_dag
from ecr_mirror.manifest import load_manifest
from sandbox.upstream import seed_image
from tests.test_end_to_end import HUB

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "config" / "examples"
DOWNSTREAM = "scan_after_mirror__monitoring"

MANIFEST = """
name: monitoring
target: {region: eu-west-1}
defaults: {retries: 0}
assets: {images: true}
rules:
  - prefix: assets-mon
    upstream: docker-hub
    credential_secret: ecr-pullthroughcache/docker-hub
images:
  - image: busybox
    tags: ["1.36"]
  - image: alpine
    tags: [%s]
"""


def deploy_downstream_example() -> None:
    """The example DAG as the dag processor writes it, unpaused (as a user does in the UI)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    DagBundlesManager().sync_bundles_to_db()
    bag = BundleDagBag(dag_folder=EXAMPLES, bundle_path=EXAMPLES, bundle_name="dags-folder")
    assert DOWNSTREAM in bag.dags, bag.import_errors
    sync_bag_to_db(bag, "dags-folder", None)
    with create_session() as session:
        downstream = session.get(DagModel, DOWNSTREAM)
        assert downstream is not None
        downstream.is_paused = False


def asset_events(uri: str, run_id: str) -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = (
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == uri, AssetEvent.source_run_id == run_id)
        )
        return [dict(event.extra) for event in session.scalars(query)]


def queued_for(dag_id: str) -> list[str]:
    """The assets whose events queued a run of ``dag_id`` (the scheduler creates it next loop)."""
    from airflow.models.asset import AssetDagRunQueue, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = (
            select(AssetModel.uri)
            .join(AssetDagRunQueue, AssetDagRunQueue.asset_id == AssetModel.id)
            .where(AssetDagRunQueue.target_dag_id == dag_id)
        )
        return list(session.scalars(query))


def test_a_run_emits_its_summary_as_asset_events_and_queues_the_downstream_dag(
    airflow_db, sandbox, sandbox_env
):
    hub = sandbox.upstreams[HUB]
    busybox = seed_image(hub, "library/busybox", "1.36")
    seed_image(hub, "library/alpine", "3.21")
    deploy_downstream_example()
    path = sandbox_env / "manifests" / "monitoring.yaml"
    path.write_text(MANIFEST % '"3.21"')

    done = build_dag(load_manifest(path), path).test()

    assert done.state == "success"
    (extra,) = asset_events("ecr-mirror://monitoring/", done.run_id)
    assert extra["run_id"] == done.run_id and extra["status"] == "success"
    assert (extra["total"], extra["counts"], extra["failed"]) == (2, {"pulled": 2}, [])
    assert extra["audit"].startswith("/ecr-mirror/dags/ecr_mirror__monitoring/runs/")
    (image,) = asset_events("ecr-mirror://monitoring/docker.io/library/busybox", done.run_id)
    assert image["tags"] == {"1.36": {"status": "pulled", "digest": busybox.digest}}
    assert queued_for(DOWNSTREAM) == ["ecr-mirror://monitoring/"]


def test_a_failed_run_emits_no_asset_event(airflow_db, sandbox, sandbox_env):
    seed_image(sandbox.upstreams[HUB], "library/busybox", "1.36")
    path = sandbox_env / "manifests" / "monitoring.yaml"
    path.write_text(MANIFEST % '"no-such-tag"')

    failed = build_dag(load_manifest(path), path).test()

    assert failed.state == "failed"
    assert asset_events("ecr-mirror://monitoring/", failed.run_id) == []
