"""End to end: a generated DAG mirrors a manifest through the ECR emulator with ``dag.test()``.

Real components only: Distribution registries as upstreams, moto Secrets Manager, the ECR
emulator with pull through cache semantics, a migrated Airflow metadata database and skopeo.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path

import pytest

from ecr_mirror.audit import AuditStore
from ecr_mirror.dag_factory import build_dag
from ecr_mirror.manifest import load_manifest
from sandbox.upstream import seed_image
from tests.ptc_helpers import aws

pytestmark = pytest.mark.slow

HUB = "registry-1.docker.io"

MANIFEST = """
name: e2e-{name}
target: {{region: eu-west-1}}
defaults: {{batch_size: 2, concurrency: 4, retries: 0}}
rules:
  - prefix: e2e-{name}
    upstream: docker-hub
    credential_secret: ecr-pullthroughcache/docker-hub
images:
{images}
"""


def write_manifest(tmp_path: Path, name: str, images: str) -> Path:
    """Write a manifest where the DAG file finds it (dag.test() syncs the DAG folder first)."""
    path = tmp_path / "manifests" / f"{name}.yaml"
    path.write_text(MANIFEST.format(name=name, images=images))
    return path


def run(path: Path):
    manifest = load_manifest(path)
    return build_dag(manifest, path).test()


def audit_store(tmp_path: Path) -> AuditStore:
    return AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")


def rows(tmp_path: Path, run_id: str) -> dict[str, object]:
    return {f"{r.ecr_repository}:{r.tag}": r for r in audit_store(tmp_path).records(run_id=run_id)}


def skopeo_digest(sandbox, repository: str, tag: str) -> str:
    """The digest skopeo reads through the emulator's registry endpoint (sha256 of the raw manifest)."""
    client = aws(sandbox, "ecr")
    auth = client.get_authorization_token()["authorizationData"][0]
    creds = base64.b64decode(auth["authorizationToken"]).decode()
    host = auth["proxyEndpoint"].split("://", 1)[1]
    raw = subprocess.run(
        [
            "skopeo",
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            creds,
            f"docker://{host}/{repository}:{tag}",
        ],
        check=True,
        capture_output=True,
    ).stdout
    return "sha256:" + hashlib.sha256(raw).hexdigest()


@pytest.mark.own_clock
@pytest.mark.parametrize("emulator_profile", ["documented", "strict"], indirect=True)
def test_mirror_then_up_to_date_then_drift(airflow_db, sandbox, emulator_profile, sandbox_env, tmp_path):
    hub = sandbox.upstreams[HUB]
    alpine = [seed_image(hub, "library/alpine", tag) for tag in ("3.20", "3.21")]
    tool = seed_image(hub, "acme/tool", "1.0", platforms=(), oci=False)
    path = write_manifest(
        sandbox_env,
        "drift",
        '  - image: alpine\n    tags: ["3.20", "3.21"]\n  - image: acme/tool\n    tags: ["1.0"]\n',
    )

    # first run: every tag is missing, pulled through the cache and verified
    first = run(path)
    assert first.state == "success"
    audit = rows(sandbox_env, first.run_id)
    assert {key: (r.action, r.status) for key, r in audit.items()} == {
        "e2e-drift/library/alpine:3.20": ("missing", "pulled"),
        "e2e-drift/library/alpine:3.21": ("missing", "pulled"),
        "e2e-drift/acme/tool:1.0": ("missing", "pulled"),
    }
    for image in [*alpine, tool]:
        record = audit[f"e2e-drift/{image.repository}:{image.tag}"]
        assert record.upstream_digest == record.cached_digest_after == image.digest
        assert record.cached_digest_before is None
    assert skopeo_digest(sandbox, "e2e-drift/library/alpine", "3.21") == alpine[1].digest

    # second run: all up to date, and not one manifest GET reaches the registry endpoint
    gets = sandbox.emulator("stats")["manifest_gets"]
    second = run(path)
    assert second.state == "success"
    assert {(r.action, r.status) for r in rows(sandbox_env, second.run_id).values()} == {("up_to_date", "ok")}
    assert sandbox.emulator("stats")["manifest_gets"] == gets

    # upstream re-push: within ECR's 24 h window the pull still serves the old digest (stale)
    repushed = seed_image(hub, "library/alpine", "3.20", variant="rebuilt")
    assert repushed.digest != alpine[0].digest
    third = run(path)
    record = rows(sandbox_env, third.run_id)["e2e-drift/library/alpine:3.20"]
    assert (record.action, record.status) == ("drifted", "stale")
    assert record.cached_digest_after == alpine[0].digest
    assert "24 h" in record.error

    # after the window, the next run pulls the new digest
    sandbox.emulator("clock", {"advance_seconds": 25 * 3600})
    fourth = run(path)
    assert fourth.state == "success"
    record = rows(sandbox_env, fourth.run_id)["e2e-drift/library/alpine:3.20"]
    assert (record.action, record.status) == ("drifted", "pulled")
    assert record.cached_digest_after == repushed.digest
    assert skopeo_digest(sandbox, "e2e-drift/library/alpine", "3.20") == repushed.digest


def test_a_missing_tag_fails_the_run_but_not_the_other_tags(airflow_db, sandbox, sandbox_env, tmp_path):
    hub = sandbox.upstreams[HUB]
    good = seed_image(hub, "library/busybox", "1.36")
    path = write_manifest(sandbox_env, "partial", '  - image: busybox\n    tags: ["1.36", "no-such-tag"]\n')

    dag_run = run(path)

    assert dag_run.state == "failed"
    audit = rows(sandbox_env, dag_run.run_id)
    assert audit["e2e-partial/library/busybox:1.36"].status == "pulled"
    assert audit["e2e-partial/library/busybox:1.36"].cached_digest_after == good.digest
    missing = audit["e2e-partial/library/busybox:no-such-tag"]
    assert (missing.action, missing.status) == ("upstream_missing", "failed")
    assert "not found upstream" in missing.error
    summary = audit_store(sandbox_env).summaries(dag_id="ecr_mirror__e2e_partial")[0]
    assert summary.status == "failed" and summary.counts == {"failed": 1, "pulled": 1}


def test_a_thousand_tags_of_one_repository_are_one_mapped_task_instance_and_each_gets_a_row(
    airflow_db, sandbox, sandbox_env
):
    hub = sandbox.upstreams[HUB]
    seed_image(hub, "acme/many", "real", platforms=())
    tags = ["real", *(f"gone-{i}" for i in range(999))]
    path = write_manifest(sandbox_env, "many", f"  - image: acme/many\n    tags: {tags}\n")
    path.write_text(path.read_text().replace("batch_size: 2", "batch_size: 250"))

    dag_run = run(path)

    instances = dag_run.get_task_instances()
    # one repository is one shard (listed once), whatever batch_size says
    assert sum(ti.task_id.endswith(".mirror") for ti in instances) == 1
    assert len(instances) == 5  # ensure_rules, resolve_tags, shards, mirror, record_audit
    audit = rows(sandbox_env, dag_run.run_id)
    assert len(audit) == 1000
    assert audit["e2e-many/acme/many:real"].status == "pulled"
    assert sum(r.action == "upstream_missing" for r in audit.values()) == 999
    assert dag_run.state == "failed"


def test_an_image_with_its_own_retries_runs_in_its_own_lane(airflow_db, sandbox, sandbox_env):
    hub = sandbox.upstreams[HUB]
    seed_image(hub, "acme/lane-a", "1", platforms=())
    seed_image(hub, "acme/lane-b", "1", platforms=())
    path = write_manifest(
        sandbox_env,
        "lanes",
        '  - image: acme/lane-a\n    tags: ["1"]\n  - image: acme/lane-b\n    tags: ["1"]\n    retries: 1\n',
    )

    dag_run = run(path)

    assert dag_run.state == "success"
    ran = {
        (ti.task_id, ti.map_index) for ti in dag_run.get_task_instances() if ti.task_id.endswith(".mirror")
    }
    assert ran == {
        ("registry_1_docker_io.mirror", 0),
        ("registry_1_docker_io_retries_1.mirror", 0),
    }
    assert {key: r.status for key, r in rows(sandbox_env, dag_run.run_id).items()} == {
        "e2e-lanes/acme/lane-a:1": "pulled",
        "e2e-lanes/acme/lane-b:1": "pulled",
    }


def test_a_missing_rule_fails_the_run_with_a_failed_summary(airflow_db, sandbox, sandbox_env):
    path = sandbox_env / "manifests" / "no-rule.yaml"
    path.write_text(
        "name: e2e-no-rule\ntarget: {region: eu-west-1}\ndefaults: {retries: 0}\n"
        "rules: [{prefix: never-made, upstream: quay, manage: false}]\n"
        'images: [{image: quay.io/acme/x, tags: ["1"]}]\n'
    )

    dag_run = run(path)

    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert (dag_run.state, states["ensure_rules"], states["record_audit"]) == ("failed", "failed", "failed")
    [summary] = audit_store(sandbox_env).summaries(dag_id="ecr_mirror__e2e_no_rule")
    assert (summary.status, summary.total) == ("failed", 0)
    assert "ensure_rules or resolve_tags failed" in summary.note


def test_a_template_that_makes_tags_immutable_is_a_warning_in_the_run_summary(
    airflow_db, sandbox, sandbox_env
):
    seed_image(sandbox.upstreams[HUB], "acme/frozen", "1", platforms=())
    path = write_manifest(sandbox_env, "frozen", '  - image: acme/frozen\n    tags: ["1"]\n')
    path.write_text(
        path.read_text().replace(
            "credential_secret: ecr-pullthroughcache/docker-hub",
            "credential_secret: ecr-pullthroughcache/docker-hub\n    template: {tag_mutability: IMMUTABLE}",
        )
    )

    dag_run = run(path)

    assert dag_run.state == "success"
    [summary] = audit_store(sandbox_env).summaries(dag_id="ecr_mirror__e2e_frozen")
    assert "makes tags IMMUTABLE" in summary.note and summary.counts == {"pulled": 1}


def test_a_dry_run_trigger_changes_nothing_in_ecr(airflow_db, sandbox, sandbox_env):
    seed_image(sandbox.upstreams[HUB], "acme/dry", "1", platforms=())
    path = write_manifest(sandbox_env, "dry", '  - image: acme/dry\n    tags: ["1"]\n')
    gets = sandbox.emulator("stats")["manifest_gets"]

    dag_run = build_dag(load_manifest(path), path).test(run_conf={"dry_run": True})

    assert dag_run.state == "success"
    [record] = rows(sandbox_env, dag_run.run_id).values()
    assert (record.action, record.status) == ("missing", "planned")
    ecr = aws(sandbox, "ecr")
    prefixes = {
        r["ecrRepositoryPrefix"] for r in ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"]
    }
    assert "e2e-dry" not in prefixes
    assert sandbox.emulator("stats")["manifest_gets"] == gets


def test_a_trigger_whose_image_glob_matches_nothing_fails_the_run_without_retrying(
    airflow_db, sandbox, sandbox_env, capfd
):
    # issue #8/#11: `images: [ngnix]` (a typo) was a green run that mirrored nothing
    images = '  - image: nginx\n    tags: ["1.27"]\n  - image: acme/glob\n    tags: ["1"]\n'
    path = write_manifest(sandbox_env, "glob", images)
    path.write_text(path.read_text().replace("retries: 0", "retries: 2"))

    dag_run = build_dag(load_manifest(path), path).test(run_conf={"images": ["ngnix"]})

    assert dag_run.state == "failed"
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states["resolve_tags"] == "failed"  # AirflowFailException: not up_for_retry
    task_logs = "".join(capfd.readouterr())
    assert "image glob 'ngnix' matches no image of manifest 'e2e-glob' (did you mean 'nginx'?)" in task_logs
    [summary] = audit_store(sandbox_env).summaries(dag_id="ecr_mirror__e2e_glob")
    assert summary.status == "failed"
