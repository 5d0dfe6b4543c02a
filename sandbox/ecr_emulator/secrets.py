"""Pull through cache credentials read from Secrets Manager (moto in the sandbox).

AWS: a rule's ``credentialArn`` names a secret ``ecr-pullthroughcache/...`` with the JSON keys
``username`` and ``accessToken`` (userguide/pull-through-cache-creating-rule.html). Create and
update fail with ``SecretNotFoundException``, ``UnableToAccessSecretException`` or
``UnableToDecryptSecretValueException`` (the errors of CreatePullThroughCacheRule and
UpdatePullThroughCacheRule in the botocore model); ValidatePullThroughCacheRule reports a secret
it cannot use as ``isValid: false`` with a ``failure`` text (API_ValidatePullThroughCacheRule.html).
"""

from __future__ import annotations

import json
import threading
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from .errors import ApiError

#: Secrets Manager error code -> the ECR error CreatePullThroughCacheRule answers
_ECR_ERRORS = {
    "ResourceNotFoundException": "SecretNotFoundException",
    "DecryptionFailure": "UnableToDecryptSecretValueException",
}


class SecretReader:
    """Reads PTC credentials from a Secrets Manager endpoint, as ECR's service role would."""

    def __init__(self, endpoint: str, region: str) -> None:
        self._client: Any = boto3.client(
            "secretsmanager",
            endpoint_url=endpoint,
            region_name=region,
            aws_access_key_id="ecr-emulator",
            aws_secret_access_key="ecr-emulator",
        )
        self._lock = threading.Lock()

    def value(self, arn: str) -> str:
        """The secret string; ApiError with the ECR error code when it cannot be read."""
        try:
            with self._lock:
                return self._client.get_secret_value(SecretId=arn)["SecretString"]
        except ClientError as exc:
            code = _ECR_ERRORS.get(exc.response["Error"]["Code"], "UnableToAccessSecretException")
            raise ApiError(
                code, f"Unable to access the secret '{arn}': {exc.response['Error']['Code']}"
            ) from exc
        except BotoCoreError as exc:
            raise ApiError("UnableToAccessSecretException", f"Unable to access the secret '{arn}'") from exc

    def credentials(self, arn: str) -> tuple[str, str]:
        """(username, accessToken) of a secret; ApiError when it is unreadable or lacks a key."""
        try:
            doc = json.loads(self.value(arn))
        except ValueError as exc:
            raise ApiError(
                "UnableToAccessSecretException", f"The secret '{arn}' is not a JSON object"
            ) from exc
        missing = [
            key for key in ("username", "accessToken") if not isinstance(doc, dict) or not doc.get(key)
        ]
        if missing:
            raise ApiError(
                "UnableToAccessSecretException", f"The secret '{arn}' has no {' and no '.join(missing)}"
            )
        return doc["username"], doc["accessToken"]
