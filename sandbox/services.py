"""The whole sandbox on loopback: upstream registries, Secrets Manager (moto) and the ECR emulator.

Used by the demo and by the end-to-end tests, so both run the very same stand-ins for AWS.
"""

from __future__ import annotations

import json
import logging
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from sandbox.ecr_emulator.process import start_emulator
from sandbox.upstream import free_port, start_registry

#: the upstream hosts the sandbox stands in for, and the folder name of each local registry
UPSTREAM_HOSTS = {"registry-1.docker.io": "docker-hub", "quay.io": "quay"}
ACCOUNT = "123456789012"
REGION = "eu-west-1"
#: the PTC credential the Docker Hub rule names (the sandbox upstream accepts anyone)
DOCKER_HUB_SECRET = "ecr-pullthroughcache/docker-hub"


@dataclass
class Sandbox:
    upstreams: dict[str, str]  # upstream host -> local registry URL
    ecr_url: str
    secrets_url: str
    _stack: ExitStack = field(repr=False)
    profile: str = "documented"

    def connection(self) -> dict[str, Any]:
        """The Airflow AWS connection that points the Amazon provider's hooks at the sandbox."""
        return {
            "conn_type": "aws",
            "login": "sandbox",
            "password": "sandbox-secret",
            "extra": {
                "region_name": REGION,
                "service_config": {
                    "ecr": {"endpoint_url": self.ecr_url},
                    "secretsmanager": {"endpoint_url": self.secrets_url},
                    "sns": {"endpoint_url": self.secrets_url},  # moto: a manifest's notify targets
                },
            },
        }

    def environment(self) -> dict[str, str]:
        """Environment for Airflow processes: the connection and the upstream overrides."""
        return {
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(self.connection()),
            "ECR_MIRROR_UPSTREAM_ENDPOINTS": json.dumps(self.upstreams),
        }

    def emulator(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call an emulator admin endpoint (``/_emulator/...``): GET, or POST when a body is given."""
        import httpx

        url = f"{self.ecr_url}/_emulator/{path}"
        response = httpx.post(url, json=body) if body is not None else httpx.get(url)
        response.raise_for_status()
        return response.json()

    def violations(self) -> list[dict[str, Any]]:
        """What the emulator found wrong in the ECR answers it sent (and credentials sent to its
        blob host) since the last call: each call returns and clears them."""
        return self.emulator("violations/reset", {})["violations"]

    def rule_prefixes(self) -> set[str]:
        """The ECR repository prefixes of the emulator's pull through cache rules."""
        rules = self._ecr().get_paginator("describe_pull_through_cache_rules").paginate()
        return {r["ecrRepositoryPrefix"] for page in rules for r in page["pullThroughCacheRules"]}

    def delete_rules_except(self, keep: set[str]) -> None:
        """Delete every pull through cache rule whose prefix is not in ``keep``: a session's
        sandbox outlives its tests, and ECR allows 50 rules per registry (the emulator too)."""
        ecr = self._ecr()
        for prefix in self.rule_prefixes() - keep:
            ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix=prefix)

    def _ecr(self) -> Any:
        return boto3.client(
            "ecr",
            endpoint_url=self.ecr_url,
            region_name=REGION,
            aws_access_key_id="sandbox",
            aws_secret_access_key="sandbox-secret",
        )

    def stop(self) -> None:
        self._stack.close()


def create_secret(secrets_url: str) -> None:
    """The Docker Hub rule's PTC credential in the sandbox's Secrets Manager (once)."""
    client = boto3.client(
        "secretsmanager",
        endpoint_url=secrets_url,
        region_name=REGION,
        aws_access_key_id="sandbox",
        aws_secret_access_key="sandbox-secret",
    )
    if DOCKER_HUB_SECRET in {s["Name"] for s in client.list_secrets()["SecretList"]}:
        return
    value = json.dumps({"username": "sandbox", "accessToken": "sandbox-token"})
    client.create_secret(Name=DOCKER_HUB_SECRET, SecretString=value)


def start_sandbox(
    state: Path, profile: str = "documented", behaviour: dict[str, str] | None = None
) -> Sandbox:
    """Start every stand-in with its state under ``state`` (kept between starts).

    ``profile`` (``documented`` or ``strict``) and ``behaviour`` (switch -> variant) choose how the
    ECR emulator answers where AWS leaves it open (sandbox/ecr_emulator/behaviour.py); a running
    sandbox is switched with ``sandbox.emulator("behaviour", {"profile": ..., "switches": ...})``.
    """
    stack = ExitStack()
    try:
        upstreams = {}
        for host, name in UPSTREAM_HOSTS.items():
            registry = start_registry(state / "upstreams" / name)
            stack.callback(registry.stop)
            upstreams[host] = registry.url
        port = free_port()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        moto.start()
        stack.callback(moto.stop)
        secrets_url = f"http://127.0.0.1:{port}"
        create_secret(secrets_url)
        emulator = start_emulator(
            state / "ecr",
            upstreams,
            account=ACCOUNT,
            region=REGION,
            secrets_endpoint=secrets_url,
            profile=profile,
            behaviour=behaviour,
        )
        stack.callback(emulator.stop)
    except BaseException:
        stack.close()
        raise
    return Sandbox(upstreams, emulator.url, secrets_url, stack, profile)
