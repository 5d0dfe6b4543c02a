"""The backfill DAG (image lists through the manifests' rules) and the SLA miss callback.

The backfill runs in-process with ``dag.test()`` against the sandbox (Distribution registry, moto,
ECR emulator); the callback is awaited directly, with SNS served by the sandbox's moto server.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest

from ecr_mirror.audit import AuditStore
from ecr_mirror.backfill import BackfillSource, load_backfill, read_lists, read_references, run_manifest
from ecr_mirror.dag_factory import dag_for
from ecr_mirror.manifest import ManifestError, load_manifest
from ecr_mirror.sla import on_sla_miss
from sandbox.upstream import seed_image
from tests.audit_databases import DIALECTS, throwaway_url
from tests.ptc_helpers import per_profile

HUB = "registry-1.docker.io"
MANIFEST = """
name: bf-rules
target: {region: eu-west-1}
rules:
  - {prefix: bf, upstream: docker-hub, credential_secret: ecr-pullthroughcache/docker-hub}
images:
  - {image: acme/unrelated, tags: ["1"]}
"""
CONFIG = "name: backfill\ntarget: {region: eu-west-1}\ndefaults: {batch_size: 1, retries: 0}\n"
LIST = """# images a team asked for
acme/bf:1.0       # the current release
acme/bf:2.0
ghcr.io/org/app:1 # no manifest has a rule for ghcr.io
"""


def backfill_dir(tmp_path: Path, image: str = "acme/bf") -> Path:
    folder = tmp_path / "backfill"
    folder.mkdir(exist_ok=True)
    (folder / "backfill.yaml").write_text(CONFIG)
    (folder / "team.txt").write_text(LIST.replace("acme/bf:", f"{image}:"))
    return folder


def rules_manifest(folder: Path, prefix: str = "bf"):
    path = folder / "bf-rules.yaml"
    path.write_text(MANIFEST.replace("{prefix: bf,", f"{{prefix: {prefix},"))
    return load_manifest(path)


def test_references_route_through_the_union_of_the_manifests_rules(tmp_path):
    folder = backfill_dir(tmp_path)
    base = load_backfill(folder, [rules_manifest(tmp_path)])
    assert base.dag_id == "ecr_mirror__backfill" and base.images == []
    assert read_references(folder) == ["acme/bf:1.0", "acme/bf:2.0", "ghcr.io/org/app:1"]
    manifest, unrouted = run_manifest(
        base, [*read_references(folder), "nginx", "acme/bf:1.0", "docker.io/acme/bf:2.0", "Bad:ref"]
    )
    assert [(spec.image, spec.tags.exact) for spec in manifest.images] == [("acme/bf", ["1.0", "2.0"])]
    problems = {u.reference: u.error for u in unrouted}
    assert "no rule caches image 'ghcr.io/org/app'" in problems["ghcr.io/org/app:1"]
    assert problems["nginx"] == "'nginx' names no tag or digest"
    assert "Bad:ref" in problems


LONG = "acme/bf:" + "1" * 600  # over the audit's 500-character image column


def bad_list(folder: Path, image: str = "acme/bf") -> None:
    """A list whose lines 2-5 are no reference (long, not UTF-8, two syntax errors), among good ones."""
    lines = [f"{image}:1.0".encode(), LONG.encode(), b"caf\xe9:1", b"acme/bf:1.0 extra", b"nginx"]
    (folder / "team.txt").write_bytes(b"\n".join(lines) + f"\n{image}:2.0  # good\n".encode())


def test_each_bad_list_line_is_named_by_file_and_line_and_the_others_are_read(tmp_path):
    folder = backfill_dir(tmp_path)
    bad_list(folder)
    lists = read_lists(folder)
    assert lists.references == ["acme/bf:1.0", "acme/bf:2.0"]
    path = folder / "team.txt"
    assert [(u.image, u.tag, u.error) for u in lists.bad_lines] == [
        ("team.txt", "line 2", f"{path}:2: 608 characters, over the limit of 500 for an image reference"),
        ("team.txt", "line 3", f"{path}:3: not UTF-8: byte 0xe9 at column 4 cannot be decoded"),
        ("team.txt", "line 4", f"{path}:4: " + lists.bad_lines[2].error.split(": ", 1)[1]),
        ("team.txt", "line 5", f"{path}:5: 'nginx' names no tag or digest"),
    ]
    assert "acme/bf:1.0 extra" in lists.bad_lines[2].error


def test_the_backfill_config_is_validated_like_a_manifest(tmp_path):
    folder = backfill_dir(tmp_path)
    (folder / "backfill.yaml").write_text("name: backfill\ntarget: {region: cn-north-1}\nrules: []\n")
    with pytest.raises(ManifestError, match="rules: not allowed here"):
        load_backfill(folder, [rules_manifest(tmp_path)])
    (folder / "backfill.yaml").write_text("name: backfill\ntarget: {region: cn-north-1}\n")
    with pytest.raises(ManifestError, match=r"target\.region: .*not available in cn-north-1"):
        load_backfill(folder, [rules_manifest(tmp_path)])
    (folder / "backfill.yaml").write_text(CONFIG)
    with pytest.raises(ManifestError, match="no manifest loaded"):
        load_backfill(folder, [])


def test_the_backfill_config_is_read_by_the_manifest_loader_with_lines(tmp_path):
    folder = backfill_dir(tmp_path)
    path = folder / "backfill.yaml"
    path.write_text("name: backfill\ntarget: {region: eu-west-1}\ndefaults: {retries: 0}\nname: again\n")
    with pytest.raises(ManifestError) as error:
        load_backfill(folder, [rules_manifest(tmp_path)])
    assert str(error.value) == f"{path}:4: name: key repeated (first on line 1)"
    path.write_text("name: backfill\ntarget: {region: eu-west-1}\ndefaults:\n  retries: -1\n")
    with pytest.raises(
        ManifestError, match=r"backfill\.yaml:4: defaults\.retries: must be at least 0 \(got -1\)"
    ):
        load_backfill(folder, [rules_manifest(tmp_path)])


@pytest.mark.slow
@pytest.mark.parametrize("emulator_profile", ["documented", "strict"], indirect=True)
def test_the_backfill_dag_mirrors_a_list_resumably_and_names_what_no_rule_caches(
    airflow_db, sandbox, sandbox_env, emulator_profile, request, monkeypatch
):
    from ecr_mirror.settings import get_settings

    name = per_profile("bf", request)
    image = f"acme/{name}"
    images = {tag: seed_image(sandbox.upstreams[HUB], image, tag) for tag in ("1.0", "2.0")}
    folder = backfill_dir(sandbox_env, image)
    monkeypatch.setenv("ECR_MIRROR_BACKFILL_DIR", str(folder))  # dag.test() parses the DAG file too
    get_settings.cache_clear()
    base = load_backfill(folder, [rules_manifest(sandbox_env / "manifests", name)])
    source = BackfillSource(base, folder, sandbox_env / "manifests")
    dag = dag_for(source, folder / "backfill.yaml", with_deadline=False)
    store = AuditStore(f"sqlite:///{sandbox_env / 'audit.db'}")

    first = dag.test()  # the list files
    rows = {f"{r.image}:{r.tag}": r for r in store.records(run_id=first.run_id)}
    assert {key: (r.action, r.status) for key, r in rows.items()} == {
        f"docker.io/{image}:1.0": ("missing", "pulled"),
        f"docker.io/{image}:2.0": ("missing", "pulled"),
        "ghcr.io/org/app:1": ("failed", "failed"),
    }
    assert rows[f"docker.io/{image}:2.0"].cached_digest_after == images["2.0"].digest
    assert "no rule caches image 'ghcr.io/org/app'" in rows["ghcr.io/org/app:1"].error
    assert first.state == "failed"  # the unroutable reference fails the run, by name
    compares = [ti for ti in first.get_task_instances() if ti.task_id.endswith("compare_digests")]
    assert len(compares) == 2  # batch_size 1

    # a rerun (here: the list from the trigger form) skips what is cached with the right digest
    second = dag.test(run_conf={"references": [f"{image}:1.0", f"{image}:2.0"]})
    assert second.state == "success"
    assert {(r.tag, r.action, r.status) for r in store.records(run_id=second.run_id)} == {
        ("1.0", "up_to_date", "ok"),
        ("2.0", "up_to_date", "ok"),
    }


def test_an_sla_miss_is_logged_published_to_sns_and_recorded(sandbox, sandbox_env, monkeypatch, caplog):
    aws = {"region_name": "eu-west-1", "aws_access_key_id": "x", "aws_secret_access_key": "y"}
    sns = boto3.client("sns", endpoint_url=sandbox.secrets_url, **aws)
    sqs = boto3.client("sqs", endpoint_url=sandbox.secrets_url, **aws)
    topic = sns.create_topic(Name="mirror-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="mirror-alerts")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn["QueueArn"])
    connection = {"conn_type": "aws", "login": "x", "password": "y"}
    connection["extra"] = {"region_name": "eu-west-1", "endpoint_url": sandbox.secrets_url}
    monkeypatch.setenv("AIRFLOW_CONN_SNS_SANDBOX", json.dumps(connection))
    deadline = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    before = datetime.now(UTC)
    asyncio.run(
        on_sla_miss(
            dag_id="ecr_mirror__late",
            manifest="late",
            within_seconds=60,
            notify=["log", topic],
            aws_conn_id="sns_sandbox",
            context={"dag_run": {"dag_run_id": "manual__1"}, "deadline": {"deadline_time": deadline}},
        )
    )
    after = datetime.now(UTC)

    assert "SLA missed: run manual__1 of ecr_mirror__late" in caplog.text
    message = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=5)["Messages"][0]["Body"]
    assert "run manual__1 of ecr_mirror__late" in json.loads(message)["Message"]
    (miss,) = AuditStore(f"sqlite:///{sandbox_env / 'audit.db'}").sla_misses(dag_id="ecr_mirror__late")
    assert (miss.run_id, miss.within_seconds, miss.deadline_at) == ("manual__1", 60, deadline)
    assert miss.notified == f"log; {topic}: sent"
    assert before <= miss.recorded_at <= after  # when the callback ran, not the deadline


@pytest.mark.slow
@pytest.mark.parametrize("dialect", DIALECTS)
def test_bad_list_lines_get_a_failed_row_each_and_the_valid_lines_are_mirrored(
    airflow_db, sandbox, sandbox_env, dialect, request, monkeypatch
):
    """On a00658c a line over 500 characters (PostgreSQL) or a list that is not UTF-8 aborted the
    whole backfill: no line was mirrored."""
    from ecr_mirror.settings import get_settings

    name = per_profile("bfbad", request)
    image = f"acme/{name}"
    for tag in ("1.0", "2.0"):
        seed_image(sandbox.upstreams[HUB], image, tag)
    folder = backfill_dir(sandbox_env, image)
    bad_list(folder, image)
    with throwaway_url(dialect, sandbox_env) as url:
        monkeypatch.setenv("ECR_MIRROR_AUDIT_URL", url)
        monkeypatch.setenv("ECR_MIRROR_BACKFILL_DIR", str(folder))  # dag.test() parses the DAG file too
        get_settings.cache_clear()
        base = load_backfill(folder, [rules_manifest(sandbox_env / "manifests", name)])
        dag = dag_for(
            BackfillSource(base, folder, sandbox_env / "manifests"),
            folder / "backfill.yaml",
            with_deadline=False,
        )
        run = dag.test()
        store = AuditStore(url)
        rows = {f"{r.image}:{r.tag}": r for r in store.records(run_id=run.run_id)}
    assert {key: (r.action, r.status) for key, r in rows.items()} == {
        f"docker.io/{image}:1.0": ("missing", "pulled"),
        f"docker.io/{image}:2.0": ("missing", "pulled"),
        "team.txt:line 2": ("failed", "failed"),
        "team.txt:line 3": ("failed", "failed"),
        "team.txt:line 4": ("failed", "failed"),
        "team.txt:line 5": ("failed", "failed"),
    }
    assert (
        rows["team.txt:line 2"].error
        == f"{folder / 'team.txt'}:2: 608 characters, over the limit of 500 for an image reference"
    )
    assert "not UTF-8" in rows["team.txt:line 3"].error
    assert run.state == "failed"  # the bad lines fail the run, by file and line
