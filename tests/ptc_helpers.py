"""Helpers for the issue-4 tests: manifests in code, the engine against the sandbox, AWS clients."""

from __future__ import annotations

import json
import re
import uuid
from contextlib import AbstractContextManager
from typing import Any

import boto3
import yaml

from ecr_mirror.audit import AuditRecord
from ecr_mirror.manifest import Manifest
from ecr_mirror.mirror import Mirror, RunInfo, RunOptions, open_mirror

REGION = "eu-west-1"


def aws(sandbox: Any, service: str) -> Any:
    url = sandbox.ecr_url if service == "ecr" else sandbox.secrets_url
    return boto3.client(
        service, endpoint_url=url, region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y"
    )


def put_secret(sandbox: Any, name: str, value: Any) -> None:
    client = aws(sandbox, "secretsmanager")
    text = value if isinstance(value, str) else json.dumps(value)
    try:
        client.create_secret(Name=name, SecretString=text)
    except client.exceptions.ResourceExistsException:
        client.put_secret_value(SecretId=name, SecretString=text)


def manifest(
    name: str, rules: list[dict[str, Any]], images: list[dict[str, Any]], **defaults: Any
) -> Manifest:
    doc = {
        "name": name,
        "target": {"region": REGION},
        "defaults": {"concurrency": 4, "retries": 0, **defaults},
        "rules": rules,
        "images": images,
    }
    return Manifest.model_validate(yaml.safe_load(yaml.safe_dump(doc)))


def hub_rule(prefix: str, **extra: Any) -> dict[str, Any]:
    return {
        "prefix": prefix,
        "upstream": "docker-hub",
        "credential_secret": "ecr-pullthroughcache/docker-hub",
        **extra,
    }


def engine(m: Manifest, audit_url: str) -> AbstractContextManager[Mirror]:
    return open_mirror(m, audit_url)


def mirror_run(mirror: Mirror, options: RunOptions | None = None) -> dict[str, AuditRecord]:
    """compare + pull of every tag, as the DAG does; the rows by ``repository:tag``."""
    options = options or RunOptions()
    run = RunInfo(f"run-{uuid.uuid4().hex[:8]}", mirror.manifest.dag_id, mirror.manifest.name)
    plan = mirror.compare(mirror.resolve(options).tags, options)
    return {f"{r.ecr_repository}:{r.tag}": r for r in mirror.pull(plan, run, options)}


def per_profile(base: str, request: Any) -> str:
    """``base`` suffixed with the test's parameter id (e.g. the emulator profile), so that the runs of
    one test under several profiles use repositories of their own in the session's sandbox."""
    suffix = re.sub(r"[^a-z0-9]+", "-", request.node.callspec.id.lower()).strip("-")
    return f"{base}-{suffix}"
