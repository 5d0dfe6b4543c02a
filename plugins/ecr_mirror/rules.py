"""Pull through cache rules: the manifest's rules made true in ECR, then validated by ECR."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from ecr_mirror.manifest import Manifest, Rule


class RuleError(Exception):
    """One or more rules are missing, conflicting or invalid; the message names each."""


@dataclass
class RuleCheck:
    prefix: str
    action: str  # "exists" | "created"
    valid: bool
    failure: str | None = None


def existing_rules(client: Any, registry_id: str | None) -> dict[str, dict[str, Any]]:
    ids = {"registryId": registry_id} if registry_id else {}
    pages = client.get_paginator("describe_pull_through_cache_rules").paginate(**ids)
    return {r["ecrRepositoryPrefix"]: r for page in pages for r in page.get("pullThroughCacheRules", [])}


def _create_request(rule: Rule, registry_id: str | None, secret_arn: str | None) -> dict[str, Any]:
    request: dict[str, Any] = {
        "ecrRepositoryPrefix": rule.prefix,
        "upstreamRegistryUrl": rule.url,
        "upstreamRegistry": str(rule.upstream),
    }
    optional = {
        "registryId": registry_id,
        "credentialArn": secret_arn,
        "customRoleArn": rule.custom_role_arn,
        "upstreamRepositoryPrefix": rule.upstream_repository_prefix,
    }
    request.update({key: value for key, value in optional.items() if value})
    return request


def ensure_rules(manifest: Manifest, target: Any) -> list[RuleCheck]:
    """Create the manifest's missing rules (``manage: true``), then validate every rule.

    ``target`` is an :class:`ecr_mirror.ecr.EcrTarget` (its ``client`` and ``secret_arn``).
    Raises :class:`RuleError` naming every rule that is missing, points elsewhere, or that ECR
    reports invalid, after checking all of them.
    """
    client, registry_id = target.client, manifest.target.registry_id
    actual = existing_rules(client, registry_id)
    ids = {"registryId": registry_id} if registry_id else {}
    checks: list[RuleCheck] = []
    problems: list[str] = []
    for rule in manifest.rules:
        where = f"rule '{rule.prefix}' ({rule.upstream} -> {rule.url}) in {manifest.target.region}"
        have = actual.get(rule.prefix)
        action = "exists"
        if have is None:
            if not rule.manage:
                problems.append(f"{where} does not exist in ECR and the manifest sets manage: false")
                continue
            try:
                arn = target.secret_arn(rule.credential_secret) if rule.credential_secret else None
                client.create_pull_through_cache_rule(**_create_request(rule, registry_id, arn))
            except ClientError as exc:
                problems.append(f"{where} could not be created: {exc.response['Error'].get('Message', exc)}")
                continue
            action = "created"
        elif have.get("upstreamRegistryUrl") != rule.url:
            problems.append(
                f"{where}: ECR already has this prefix pointing at {have.get('upstreamRegistryUrl')}; "
                "ECR cannot change a rule's upstream URL (delete and recreate the rule)"
            )
            continue
        result = client.validate_pull_through_cache_rule(ecrRepositoryPrefix=rule.prefix, **ids)
        check = RuleCheck(rule.prefix, action, bool(result.get("isValid")), result.get("failure"))
        checks.append(check)
        if not check.valid:
            problems.append(f"{where} is not valid according to ECR: {check.failure}")
    if problems:
        raise RuleError("; ".join(problems))
    return checks
