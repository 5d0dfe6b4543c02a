"""The emulator reads rule credentials from Secrets Manager (moto) with ``--secrets-endpoint``:
the documented create errors, validation with those credentials, imports that use them."""

from __future__ import annotations

import base64
from typing import Any

import boto3
import httpx
import pytest

from sandbox.ecr_emulator.process import start_emulator
from sandbox.ecr_emulator.shapes import validate_error, validate_output
from sandbox.upstream import seed_image, start_registry
from tests.ptc_helpers import REGION, put_secret


def test_rules_use_the_credentials_of_their_secret(sandbox, tmp_path):
    private = start_registry(tmp_path / "ghcr", htpasswd={"bot": "s3cret"})
    seeded = seed_image(private.url, "org/app", "1.0", platforms=(), auth=("bot", "s3cret"))
    secrets = boto3.client(
        "secretsmanager", endpoint_url=sandbox.secrets_url, region_name=REGION,
        aws_access_key_id="x", aws_secret_access_key="y",
    )  # fmt: skip
    put_secret(sandbox, "ecr-pullthroughcache/emu-good", {"username": "bot", "accessToken": "s3cret"})
    put_secret(sandbox, "ecr-pullthroughcache/emu-bad", {"username": "bot", "accessToken": "nope"})
    put_secret(sandbox, "ecr-pullthroughcache/emu-gone", {"username": "bot", "accessToken": "s3cret"})
    arn = {
        n: secrets.describe_secret(SecretId=f"ecr-pullthroughcache/emu-{n}")["ARN"]
        for n in ("good", "bad", "gone")
    }
    emulator = start_emulator(
        tmp_path / "ecr", {"ghcr.io": private.url}, region=REGION, secrets_endpoint=sandbox.secrets_url
    )
    try:
        ecr = boto3.client(
            "ecr",
            endpoint_url=emulator.url,
            region_name=REGION,
            aws_access_key_id="x",
            aws_secret_access_key="y",
        )

        def check(http_response: Any, model: Any, **_: Any) -> None:
            (validate_output if http_response.status_code == 200 else validate_error)(
                model.name, http_response.content
            )

        ecr.meta.events.register("after-call.ecr", check)
        missing = arn["good"].replace("emu-good", "emu-never")
        with pytest.raises(ecr.exceptions.SecretNotFoundException):
            ecr.create_pull_through_cache_rule(
                ecrRepositoryPrefix="never", upstreamRegistryUrl="ghcr.io", credentialArn=missing
            )
        for name in ("good", "bad", "gone"):
            ecr.create_pull_through_cache_rule(
                ecrRepositoryPrefix=name, upstreamRegistryUrl="ghcr.io", credentialArn=arn[name]
            )
        with pytest.raises(ecr.exceptions.SecretNotFoundException):
            ecr.update_pull_through_cache_rule(ecrRepositoryPrefix="good", credentialArn=missing)
        secrets.delete_secret(SecretId=arn["gone"], ForceDeleteWithoutRecovery=True)

        assert ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="good")["isValid"] is True
        bad = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="bad")
        assert (bad["isValid"], bad["failure"]) == (False, "GET /v2/ answered 401")
        gone = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="gone")
        assert gone["isValid"] is False and "Unable to access the secret" in gone["failure"]

        token = base64.b64decode(ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"])
        auth = tuple(token.decode().split(":", 1))
        good = httpx.get(f"{emulator.url}/v2/good/org/app/manifests/1.0", auth=auth)
        assert (good.status_code, good.headers["docker-content-digest"]) == (200, seeded.digest)
        refused = httpx.get(f"{emulator.url}/v2/bad/org/app/manifests/1.0", auth=auth)
        assert (refused.status_code, refused.json()["errors"][0]["code"]) == (403, "DENIED")
    finally:
        emulator.stop()
        private.stop()
