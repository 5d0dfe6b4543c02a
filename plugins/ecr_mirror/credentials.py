"""Pull through cache credentials: the Secrets Manager secrets ECR reads upstream logins from.

A rule that needs a login names a secret ``ecr-pullthroughcache/<name>`` holding a JSON object
with ``username`` and ``accessToken``, in the rule's account and region (docs/ecr-facts.md). The
project reads the same secret for its own digest checks, so they authenticate as ECR does.
Values never appear in logs, reprs or exceptions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError

from ecr_mirror.aws_errors import explain
from ecr_mirror.manifest import Manifest
from ecr_mirror.protocols import SecretStore
from ecr_mirror.secret_sink import register_secret

#: the JSON keys ECR reads from a pull through cache secret
SECRET_KEYS = ("username", "accessToken")
# Secrets Manager appends "-" and 6 random characters to a secret's name in its ARN.
_SECRET_ARN_RE = re.compile(
    r"^arn:aws[\w-]*:secretsmanager:(?P<region>[a-z0-9-]+):(?P<account>[0-9]{12}):secret:(?P<name>.+)-[A-Za-z0-9]{6}$"
)


class CredentialError(Exception):
    """A credential secret that cannot be used; the message names the secret, never its value."""


@dataclass(frozen=True)
class Credential:
    """A PTC secret as read: its ARN (what a rule takes) and the upstream login (never printed)."""

    arn: str
    username: str = field(repr=False)
    access_token: str = field(repr=False)

    @property
    def login(self) -> tuple[str, str]:
        return self.username, self.access_token


def secret_name(arn: str | None) -> str | None:
    """The secret name inside an ARN (without Secrets Manager's random suffix)."""
    if not arn:
        return None
    match = _SECRET_ARN_RE.fullmatch(arn)
    return match["name"] if match else arn


def read_credentials(target: SecretStore, name: str, registry_id: str | None = None) -> Credential:
    """A PTC secret, checked and read in the target's region.

    The secret must be in the rule's account and region unless the manifest names another
    registry (``registry_id``): that is checked on the ARN.
    """
    not_an_object = f"secret '{name}' is not a JSON object with {' and '.join(SECRET_KEYS)}"
    try:
        arn, value = target.read_secret(name)
    except (ClientError, BotoCoreError) as exc:
        if isinstance(exc, ClientError) and exc.response["Error"].get("Code") == "ResourceNotFoundException":
            raise CredentialError(f"secret '{name}' does not exist in {target.region}") from None
        raise CredentialError(str(explain(exc, f"secret '{name}'", "secretsmanager"))) from None
    except ValueError:
        raise CredentialError(not_an_object) from None
    match = _SECRET_ARN_RE.fullmatch(arn)
    if match and (match["region"] != target.region or (registry_id and match["account"] != registry_id)):
        raise CredentialError(
            f"secret '{name}' is in {match['region']}/{match['account']}: ECR needs it in the rule's "
            f"region {target.region}" + (f" and account {registry_id}" if registry_id else "")
        )
    if not isinstance(value, dict):
        raise CredentialError(not_an_object)
    missing = [key for key in SECRET_KEYS if not isinstance(value.get(key), str) or not value[key]]
    if missing:
        raise CredentialError(
            f"secret '{name}' has no {' and no '.join(repr(k) for k in missing)} key "
            f"(ECR needs {' and '.join(SECRET_KEYS)})"
        )
    register_secret(value["accessToken"])
    return Credential(arn, value["username"], value["accessToken"])


def upstream_credentials(manifest: Manifest, target: SecretStore, host: str) -> tuple[str, str] | None:
    """The credentials of the manifest's rule for upstream ``host``, so that the project's own
    digest checks authenticate with the very secret ECR uses; None when that rule has no secret."""
    rule = next((r for r in manifest.rules if r.url == host and r.credential_secret), None)
    if rule is None or rule.credential_secret is None:
        return None
    return read_credentials(target, rule.credential_secret, manifest.target.registry_id).login
