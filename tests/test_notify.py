"""A manifest's ``notify`` targets hear about failed runs, drift and SLA misses: real ``dag.test()``
runs through the ECR emulator, SNS (moto) delivering to an SQS queue the test reads."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from urllib.parse import quote

import boto3
import pytest

from ecr_mirror.dag_factory import build_dag
from ecr_mirror.manifest import ManifestError, load_manifest
from ecr_mirror.sla import on_sla_miss
from sandbox.upstream import seed_image
from tests.test_end_to_end import HUB, MANIFEST

AWS = {"region_name": "eu-west-1", "aws_access_key_id": "x", "aws_secret_access_key": "y"}


def topic_queue(sandbox, name: str) -> tuple[str, str]:
    """An SNS topic delivering to an SQS queue (moto): (topic ARN, queue URL)."""
    sns = boto3.client("sns", endpoint_url=sandbox.secrets_url, **AWS)
    sqs = boto3.client("sqs", endpoint_url=sandbox.secrets_url, **AWS)
    topic = sns.create_topic(Name=name)["TopicArn"]
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return topic, queue


def received(sandbox, queue: str, wait: int = 5) -> list[dict[str, str]]:
    """The SNS notifications in the queue (Subject, Message), removed from it."""
    sqs = boto3.client("sqs", endpoint_url=sandbox.secrets_url, **AWS)
    found = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=wait, MaxNumberOfMessages=10).get(
        "Messages", []
    )
    for message in found:
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    return [json.loads(message["Body"]) for message in found]


def write(folder: Path, name: str, notify: str, images: str) -> Path:
    path = folder / "manifests" / f"{name}.yaml"
    path.write_text(MANIFEST.format(name=name, images=f"{images}\nnotify:\n{notify}"))
    return path


@pytest.mark.slow
def test_a_failed_runs_notification_names_the_failed_tags(airflow_db, sandbox, sandbox_env):
    topic, queue = topic_queue(sandbox, "mirror-failures")
    seed_image(sandbox.upstreams[HUB], "library/busybox", "1.36")
    path = write(
        sandbox_env,
        "notifyfailed",
        f"  - sns: {topic}\n    events: [failed]",
        '  - image: busybox\n    tags: ["1.36", "no-such-tag", "gone-too"]',
    )

    dag_run = build_dag(load_manifest(path), path).test()

    assert dag_run.state == "failed"
    (notification,) = received(sandbox, queue)
    assert notification["Subject"].startswith(f"ecr-mirror e2e-notifyfailed: run {dag_run.run_id} failed")
    text = notification["Message"]
    assert "3 tags: 2 failed, 1 pulled" in text.splitlines()[0]
    assert (
        "docker.io/library/busybox:no-such-tag: docker.io/library/busybox:no-such-tag was not found" in text
    )
    assert "docker.io/library/busybox:gone-too: " in text
    assert "busybox:1.36" not in text  # the tag that was mirrored is no news
    assert f"/ecr-mirror/dags/ecr_mirror__e2e_notifyfailed/runs/{quote(dag_run.run_id, safe='')}" in text


@pytest.mark.slow
@pytest.mark.own_clock
def test_drift_is_notified_to_the_targets_that_want_it_and_a_quiet_run_to_nobody(
    airflow_db, sandbox, sandbox_env
):
    topic, queue = topic_queue(sandbox, "mirror-drift")
    hub = sandbox.upstreams[HUB]
    seed_image(hub, "library/alpine", "3.21")
    path = write(
        sandbox_env,
        "notifydrift",
        f"  - sns: {topic}\n    events: [drift]",
        '  - image: alpine\n    tags: ["3.21"]\n    on_drift: report',
    )
    dag = build_dag(load_manifest(path), path)

    assert dag.test().state == "success"
    assert received(sandbox, queue, wait=2) == []  # mirrored, nothing drifted: no message

    seed_image(hub, "library/alpine", "3.21", variant="rebuilt")
    second = dag.test()

    assert second.state == "success"
    (notification,) = received(sandbox, queue)
    assert f"run {second.run_id} succeeded, 1 tags: 1 drift_reported" in notification["Message"]
    assert "docker.io/library/alpine:3.21: drift_reported" in notification["Message"]


@pytest.mark.slow
def test_the_owners_of_a_manifest_that_does_not_load_hear_that_its_runs_fail(
    airflow_db, sandbox, sandbox_env
):
    """The broken manifest keeps its DAG and its run fails (docs/operations.md); its valid
    ``notify`` targets are told, with the file, line and field to fix."""
    from ecr_mirror.dag_factory import invalid_dag

    topic, queue = topic_queue(sandbox, "mirror-broken")
    path = write(sandbox_env, "notifybroken", f"  - sns: {topic}\n    events: [failed]", "  - image: busybox")
    path.write_text(path.read_text().replace("batch_size: 2", "batch_size: two"))
    with pytest.raises(ManifestError) as error:
        load_manifest(path)

    dag_run = invalid_dag(error.value).test()

    assert dag_run.state == "failed"
    (notification,) = received(sandbox, queue)
    assert notification["Subject"].startswith("ecr-mirror ecr_mirror__e2e_notifybroken: run ")
    assert f"{path}:4: defaults.batch_size: must be a whole number (got 'two')" in notification["Message"]


def test_an_sla_miss_is_sent_to_the_notify_targets_with_the_tags_failed_so_far(sandbox, sandbox_env):
    from ecr_mirror.audit import AuditRecord, AuditStore
    from ecr_mirror.states import Action, Status

    topic, queue = topic_queue(sandbox, "mirror-sla")
    store = AuditStore(f"sqlite:///{sandbox_env / 'audit.db'}")
    store.write(
        [
            AuditRecord(
                "manual__7",
                "ecr_mirror__late",
                "late",
                "docker.io/library/nginx",
                "hub/library/nginx",
                "1.27",
                Action.UPSTREAM_MISSING,
                Status.FAILED,
                error="not found upstream",
            ),
        ]
    )
    target = {"sns": topic, "email": [], "slack": None, "events": ["sla_miss"], "conn_id": None}

    asyncio.run(
        on_sla_miss(
            dag_id="ecr_mirror__late",
            manifest="late",
            within_seconds=60,
            notify=["log"],
            aws_conn_id="aws_default",
            targets=[target],
            context={"dag_run": {"dag_run_id": "manual__7"}},
        )
    )

    (notification,) = received(sandbox, queue)
    assert notification["Subject"] == "ecr-mirror late: SLA missed"
    assert "run manual__7 of ecr_mirror__late" in notification["Message"]
    assert "docker.io/library/nginx:1.27: not found upstream" in notification["Message"]
    (miss,) = store.sla_misses(dag_id="ecr_mirror__late")
    assert miss.notified == f"log; sns {topic}: sent"


@pytest.mark.parametrize(
    ("notify", "error"),
    [
        ("  - events: [failed]", "name exactly one of sns, email, slack (found: none)"),
        ("  - sns: arn:aws:sns:eu-west-1:123456789012:a\n    email: [a@example.com]", "(found: sns, email)"),
        ("  - sns: mirror-alerts", "'mirror-alerts' is not an SNS topic ARN"),
        ("  - email: [ops]", "'ops' is not an e-mail address"),
        (
            "  - slack: '#mirror'\n    events: [failure]",
            "notify[0].events[0]: must be one of 'failed', 'drift'",
        ),
    ],
)
def test_a_bad_notify_target_is_refused_when_the_manifest_loads(tmp_path, notify, error):
    (tmp_path / "manifests").mkdir()
    path = write(tmp_path, "bad", notify, '  - image: busybox\n    tags: ["1.36"]')
    with pytest.raises(ManifestError) as raised:
        load_manifest(path)
    assert error in str(raised.value)
