"""A manifest change makes a new DAG version, and the DAG's doc shows the manifest: the project's
DAG file parsed and written to a real metadata database by Airflow's own DAG processing code."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from ecr_mirror.provenance import manifest_hash

ROOT = Path(__file__).resolve().parents[1]
DAG_ID = "ecr_mirror__versioned"

MANIFEST = """\
name: versioned
schedule: "@daily"
sla: {within: 2h}
target: {region: eu-west-1}
images:
  - image: nginx
    tags: [%s]
  - image: redis
    tags: {semver: "^7.4", variant: alpine, latest: 2}
rules:
  - prefix: versioned
    upstream: docker-hub
    credential_secret: ecr-pullthroughcache/docker-hub
"""


@pytest.fixture
def manifests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    from ecr_mirror.settings import get_settings

    folder = tmp_path / "manifests"
    folder.mkdir()
    monkeypatch.setenv("ECR_MIRROR_MANIFEST_DIR", str(folder))
    # the dag processor writes a DAG at most every 30 s by default: this test parses sooner
    monkeypatch.setenv("AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL", "0")
    get_settings.cache_clear()
    yield folder
    get_settings.cache_clear()


def process_dag_file() -> None:
    """What the dag processor does with the DAG file: parse it, write each DAG's serialized form."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    bag = BundleDagBag(dag_folder=ROOT / "dags", bundle_path=ROOT / "dags", bundle_name="dags-folder")
    assert DAG_ID in bag.dags, bag.import_errors
    sync_bag_to_db(bag, "dags-folder", None)


def versions() -> list[int]:
    from airflow.models.dag_version import DagVersion
    from airflow.utils.session import create_session

    with create_session() as session:
        query = select(DagVersion.version_number).where(DagVersion.dag_id == DAG_ID)
        return sorted(session.scalars(query))


def trigger() -> None:
    """A manual run of the latest version (a version with runs is kept; a new one is made beside it)."""
    from airflow.models.dagbag import DBDagBag
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    with create_session() as session:
        dag = DBDagBag().get_latest_version_of_dag(DAG_ID, session=session)
        assert dag is not None
        now = datetime.now(UTC)
        dag.create_dagrun(
            run_id=f"manual__{now.isoformat()}",
            run_after=now,
            run_type=DagRunType.MANUAL,
            triggered_by=DagRunTriggeredByType.TEST,
            state=DagRunState.QUEUED,
            session=session,
        )


def doc_md() -> str:
    from airflow.models.dagbag import DBDagBag
    from airflow.utils.session import create_session

    with create_session() as session:
        dag = DBDagBag().get_latest_version_of_dag(DAG_ID, session=session)
        assert dag is not None
        return str(dag.doc_md)


def test_adding_a_tag_makes_a_new_dag_version_and_the_doc_shows_the_manifest(airflow_db, manifests):
    path = manifests / "versioned.yaml"
    path.write_text(MANIFEST % '"1.27"')
    process_dag_file()
    trigger()
    process_dag_file()  # parsed again, unchanged: no new version
    assert versions() == [1]

    path.write_text(MANIFEST % '"1.27", "1.28"')
    process_dag_file()

    assert versions() == [1, 2]
    doc = doc_md()
    assert "| `nginx` | `1.27`, `1.28` |" in doc
    assert "| `redis` | semver '^7.4', latest 2, variant 'alpine' |" in doc
    assert "| `versioned` | docker-hub | `ecr-pullthroughcache/docker-hub` | yes |" in doc
    assert "- **Schedule**: `@daily`" in doc and "- **SLA**: done within 2:00:00 of queueing" in doc
    assert f"(/ecr-mirror/dags/{DAG_ID})" in doc
    assert f"sha256 `{manifest_hash(path.read_text())}`" in doc
    assert 'tags: ["1.27", "1.28"]' in doc  # the file itself
