"""Each run's audit summary says where it came from: the manifest's content hash and file, the
Airflow DAG version, the trigger conf, the dry-run flag, the run type and who triggered it; shown
by ``ecr-mirror audit runs`` and the audit view's run header. Real runs through the ECR emulator."""

from __future__ import annotations

import getpass
import hashlib
import json

import pytest
import sqlalchemy as sa

from ecr_mirror.cli import main
from ecr_mirror.dag_factory import build_dag
from ecr_mirror.manifest import load_manifest
from ecr_mirror.web import queries
from sandbox.upstream import seed_image
from tests.test_end_to_end import HUB, MANIFEST


def audit_runs(capsys, url: str, dag_id: str) -> list[dict]:
    main(["audit", "runs", "--url", url, "--dag-id", dag_id, "--json"])
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_a_dag_runs_summary_records_the_manifest_version_conf_and_dry_run(
    airflow_db, sandbox, sandbox_env, capsys
):
    seed_image(sandbox.upstreams[HUB], "library/busybox", "1.36")
    path = sandbox_env / "manifests" / "prov.yaml"
    path.write_text(MANIFEST.format(name="prov", images='  - image: busybox\n    tags: ["1.36"]\n'))
    conf = {"dry_run": True, "images": ["busybox"]}

    dag_run = build_dag(load_manifest(path), path).test(run_conf=conf)

    assert dag_run.state == "success"
    url = f"sqlite:///{sandbox_env / 'audit.db'}"
    (run,) = audit_runs(capsys, url, dag_run.dag_id)
    assert run["manifest_hash"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert run["manifest_path"] == str(path)
    assert run["dry_run"] is True and run["conf"] == conf
    assert (run["run_type"], run["triggered_by"]) == ("manual", "dag_test")  # dag.test()'s user
    ti = next(t for t in dag_run.get_task_instances() if t.task_id == "record_audit")
    assert run["dag_version"] == str(ti.dag_version_id)

    main(["audit", "runs", "--url", url, "--dag-id", dag_run.dag_id])
    table = capsys.readouterr().out
    assert "manual (dry run)" in table and run["manifest_hash"][:12] in table

    engine = sa.create_engine(url)
    with engine.connect() as conn:  # what the audit view's run header shows
        header = queries.run_overview(conn, dag_run.dag_id, dag_run.run_id)
    engine.dispose()
    assert header is not None
    assert header.provenance["manifest_hash"] == run["manifest_hash"]
    assert header.provenance["dag_version"] == run["dag_version"]
    assert json.loads(header.provenance["conf"]) == conf


def test_a_cli_sync_records_its_options_and_user(sandbox, sandbox_env, capsys):
    seed_image(sandbox.upstreams[HUB], "library/busybox", "1.36")
    path = sandbox_env / "manifests" / "provcli.yaml"
    path.write_text(MANIFEST.format(name="provcli", images='  - image: busybox\n    tags: ["1.36"]\n'))

    assert main(["sync", str(path), "--force", "--json"]) == 0
    capsys.readouterr()

    (run,) = audit_runs(capsys, f"sqlite:///{sandbox_env / 'audit.db'}", "ecr_mirror__e2e_provcli")
    assert (run["run_type"], run["triggered_by"], run["dry_run"]) == ("cli", getpass.getuser(), False)
    assert run["conf"] == {"force": True}
    assert run["manifest_hash"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert run["dag_version"] is None
