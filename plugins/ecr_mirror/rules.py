"""Pull through cache rules and repository creation templates, kept in ECR as the manifest says.

``ensure_rules`` reconciles each rule of a manifest with ECR (create, update the credential,
replace only when allowed), checks its credential secret, makes the rule's creation template
match, and runs ECR's own validation. Facts it relies on (docs/ecr-facts.md):
``update_pull_through_cache_rule`` changes only ``credentialArn`` and ``customRoleArn``, so a
changed upstream URL or upstream prefix means delete + create; a template applies only to
repositories ECR creates after it exists.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from ecr_mirror.aws_errors import explain
from ecr_mirror.credentials import CredentialError, read_credentials, secret_name
from ecr_mirror.manifest import FieldError, Manifest, ManifestError, PolicySource, Rule, TemplateSpec
from ecr_mirror.protocols import RuleTarget
from ecr_mirror.refs import UpstreamKind

log = logging.getLogger(__name__)

#: what ensure_rules did to a rule (or would do, in a dry run)
RuleAction = Literal["unchanged", "created", "updated", "replaced"]


class RuleError(Exception):
    """One or more rules are missing, conflicting or invalid; the message names each."""


@dataclass
class RuleCheck:
    """What ``ensure_rules`` found and did (or, in a dry run, would do) for one rule."""

    prefix: str
    action: RuleAction
    valid: bool | None  # None: not validated (a dry run of a rule ECR does not have yet)
    failure: str | None = None
    changes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dry_run: bool = False


def existing_rules(client: Any, registry_id: str | None) -> dict[str, dict[str, Any]]:
    ids = {"registryId": registry_id} if registry_id else {}
    pages = client.get_paginator("describe_pull_through_cache_rules").paginate(**ids)
    return {r["ecrRepositoryPrefix"]: r for page in pages for r in page.get("pullThroughCacheRules", [])}


def existing_templates(client: Any, prefixes: Sequence[str]) -> dict[str, dict[str, Any]]:
    if not prefixes:
        return {}
    pages = client.get_paginator("describe_repository_creation_templates").paginate(prefixes=list(prefixes))
    return {t["prefix"]: t for page in pages for t in page.get("repositoryCreationTemplates", [])}


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


def _policy_text(source: PolicySource, manifest_dir: Path | None, what: str) -> str:
    """A policy as compact JSON text: inline mapping, or a JSON file relative to the manifest."""
    if isinstance(source, dict):
        return json.dumps(source, separators=(",", ":"))
    path = Path(source)
    if not path.is_absolute():
        path = (manifest_dir or Path.cwd()) / path
    try:
        return json.dumps(json.loads(path.read_text(encoding="utf-8")), separators=(",", ":"))
    except OSError as exc:
        raise RuleError(f"{what} file {path} cannot be read: {exc.strerror}") from None
    except ValueError as exc:
        raise RuleError(f"{what} file {path} is not JSON: {exc}") from None


def template_request(prefix: str, spec: TemplateSpec, manifest_dir: Path | None) -> dict[str, Any]:
    """The create/update_repository_creation_template request a TemplateSpec stands for."""
    encryption: dict[str, str] = {"encryptionType": spec.encryption_type}
    if spec.kms_key:
        encryption["kmsKey"] = spec.kms_key
    request: dict[str, Any] = {
        "prefix": prefix,
        "appliedFor": ["PULL_THROUGH_CACHE"],
        "imageTagMutability": spec.tag_mutability,
        "encryptionConfiguration": encryption,
        "resourceTags": [{"Key": k, "Value": v} for k, v in sorted(spec.resource_tags.items())],
    }
    if spec.tag_mutability_exclusions:
        request["imageTagMutabilityExclusionFilters"] = [
            {"filterType": "WILDCARD", "filter": f} for f in spec.tag_mutability_exclusions
        ]
    if spec.description:
        request["description"] = spec.description
    if spec.custom_role_arn:
        # the role ECR assumes to apply resource tags or KMS (TemplateSpec's docstring)
        request["customRoleArn"] = spec.custom_role_arn
    if spec.lifecycle_policy is not None:
        request["lifecyclePolicy"] = _policy_text(spec.lifecycle_policy, manifest_dir, "lifecycle_policy")
    if spec.repository_policy is not None:
        request["repositoryPolicy"] = _policy_text(spec.repository_policy, manifest_dir, "repository_policy")
    return request


def _comparable(doc: dict[str, Any], key: str) -> Any:
    value = doc.get(key)
    if key in ("lifecyclePolicy", "repositoryPolicy") and value:
        return json.loads(value)
    if key == "resourceTags":
        return sorted((t["Key"], t["Value"]) for t in value or [])
    if key == "encryptionConfiguration":
        return value or {"encryptionType": "AES256"}
    if key == "imageTagMutability":
        return value or "MUTABLE"
    return value or None


_TEMPLATE_KEYS = (
    "description",
    "encryptionConfiguration",
    "resourceTags",
    "imageTagMutability",
    "imageTagMutabilityExclusionFilters",
    "repositoryPolicy",
    "lifecyclePolicy",
    "customRoleArn",
)


def _reconcile_template(
    client: Any, have: dict[str, Any] | None, want: dict[str, Any], dry_run: bool
) -> list[str]:
    """Create or update the template to match ``want``; returns the changes (made or planned)."""
    prefix = want["prefix"]
    if have is None:
        if not dry_run:
            client.create_repository_creation_template(**want)
        return [f"create repository creation template '{prefix}'"]
    # Keep what else the template is applied for (e.g. REPLICATION set up by someone else).
    want = {**want, "appliedFor": sorted({*have.get("appliedFor", []), "PULL_THROUGH_CACHE"})}
    differing = [k for k in _TEMPLATE_KEYS if _comparable(have, k) != _comparable(want, k)]
    if "PULL_THROUGH_CACHE" not in have.get("appliedFor", []):
        differing.append("appliedFor")
    if not differing:
        return []
    # An update cannot take a member away (e.g. a lifecycle policy the manifest dropped): recreate.
    # That is harmless: templates only act when ECR creates a repository.
    dropped = [k for k in differing if k not in want]
    if not dry_run:
        if dropped:
            client.delete_repository_creation_template(prefix=prefix)
            client.create_repository_creation_template(**want)
        else:
            client.update_repository_creation_template(**want)
    verb = "recreate" if dropped else "update"
    return [f"{verb} repository creation template '{prefix}': {', '.join(differing)}"]


def _immutability_warning(rule: Rule) -> str | None:
    template = rule.template
    if template is None or not template.makes_immutable:
        return None
    return (
        f"the creation template of '{rule.prefix}' makes tags {template.tag_mutability}: ECR cannot refresh "
        "an immutable cached tag (containers-roadmap #2275), so drift on such a tag is recorded "
        "blocked_immutable and never evicted"
    )


def ensure_rules(
    manifest: Manifest, target: RuleTarget, *, dry_run: bool = False, manifest_dir: Path | None = None
) -> list[RuleCheck]:
    """Make the manifest's rules and templates true in ECR, then validate every rule.

    ``dry_run`` changes nothing and returns (and logs) what would change. ``manifest_dir`` anchors
    relative policy file paths. Raises :class:`RuleError` naming every rule that is missing,
    refused, has an unusable secret, or that ECR reports invalid, after checking all of them.
    """
    client, registry_id = target.client, manifest.target.registry_id
    try:
        actual = existing_rules(client, registry_id)
        templates = existing_templates(client, [r.prefix for r in manifest.rules if r.template and r.manage])
    except (ClientError, BotoCoreError) as exc:
        registry = f"the registry {registry_id or 'of the connection'} in {manifest.target.region}"
        if isinstance(exc, BotoCoreError):  # no answer at all: the connection itself (AwsError)
            raise explain(exc, registry) from None
        raise RuleError(str(explain(exc, registry))) from None
    checks: list[RuleCheck] = []
    problems: list[str] = []
    for rule in manifest.rules:
        where = f"rule '{rule.prefix}' ({rule.upstream} -> {rule.url}) in {manifest.target.region}"
        try:
            check = _reconcile_rule(target, rule, actual.get(rule.prefix), registry_id, dry_run)
            if rule.template and rule.manage:
                want = template_request(rule.prefix, rule.template, manifest_dir)
                check.changes += _reconcile_template(client, templates.get(rule.prefix), want, dry_run)
            valid = _validate(client, rule, check, registry_id)
        except (RuleError, CredentialError) as exc:
            problems.append(f"{where}: {exc}")
            continue
        except (ClientError, BotoCoreError) as exc:
            problems.append(f"{where}: {explain(exc, '')}")
            continue
        if warning := _immutability_warning(rule):
            check.warnings.append(warning)
        if not valid:
            problems.append(f"{where} is not valid according to ECR: {check.failure}")
        _log(check)
        checks.append(check)
    if problems:
        raise RuleError("; ".join(problems))
    return checks


def _validate(client: Any, rule: Rule, check: RuleCheck, registry_id: str | None) -> bool:
    """ECR's validate_pull_through_cache_rule, recorded on ``check``; False when ECR says invalid.

    A dry run does not validate a rule it would create or replace (ECR does not have it yet). AWS
    describes the validation for upstreams that require authentication only (docs/ecr-facts.md,
    "Secrets"): for a rule without credentials a refusal (ValidationException) is recorded as
    "not validated", with ECR's message among the warnings; an ``isValid`` false still fails."""
    if check.dry_run and check.action in ("created", "replaced"):
        return True
    ids = {"registryId": registry_id} if registry_id else {}
    try:
        result = client.validate_pull_through_cache_rule(ecrRepositoryPrefix=check.prefix, **ids)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        unauthenticated = rule.credential_secret is None and rule.upstream is not UpstreamKind.ECR
        if not (unauthenticated and error.get("Code") == "ValidationException"):
            raise
        check.valid = None
        check.warnings.append(
            f"rule '{rule.prefix}' was not validated: its upstream ({rule.upstream}) takes no credentials "
            f"and ECR refused to validate it ({error.get('Message', 'ValidationException')}); "
            "ECR documents the validation for upstreams that require authentication only"
        )
        return True
    check.valid, check.failure = bool(result.get("isValid")), result.get("failure")
    return check.valid


def _log(check: RuleCheck) -> None:
    for change in check.changes:
        log.info("%s%s: %s", "dry run, would " if check.dry_run else "", check.prefix, change)
    for warning in check.warnings:
        log.warning("%s", warning)


def _reconcile_rule(
    target: RuleTarget,
    rule: Rule,
    have: dict[str, Any] | None,
    registry_id: str | None,
    dry_run: bool,
) -> RuleCheck:
    """Create, update or replace one rule (or say so in a dry run); RuleError when refused."""
    check = RuleCheck(rule.prefix, "unchanged", None, dry_run=dry_run)
    secret = read_credentials(target, rule.credential_secret, registry_id) if rule.credential_secret else None
    arn = secret.arn if secret else None
    if have is None:
        if not rule.manage:
            raise RuleError("does not exist in ECR and the manifest sets manage: false")
        check.action, check.changes = "created", [f"create the rule ({rule.upstream} -> {rule.url})"]
        if not dry_run:
            target.client.create_pull_through_cache_rule(**_create_request(rule, registry_id, arn))
        return check
    if moved := _moved(rule, have):
        return _replace_rule(target.client, rule, check, moved, registry_id, arn)
    return _update_rule(target.client, rule, check, have, registry_id, arn)


def _moved(rule: Rule, have: dict[str, Any]) -> list[str]:
    """What of the rule ECR cannot update (its upstream URL, its upstream prefix) and differs."""
    return [
        f"{what} {old!r} -> {new!r}"
        for what, old, new in (
            ("upstream URL", have.get("upstreamRegistryUrl"), rule.url),
            (
                "upstream repository prefix",
                have.get("upstreamRepositoryPrefix") or "ROOT",
                rule.upstream_repository_prefix or "ROOT",
            ),
        )
        if old != new
    ]


def _replace_rule(
    client: Any, rule: Rule, check: RuleCheck, moved: list[str], registry_id: str | None, arn: str | None
) -> RuleCheck:
    """Delete and create the rule again, where the manifest allows it; RuleError where not."""
    if not (rule.manage and rule.allow_replace):
        raise RuleError(
            f"ECR has this prefix with a different {' and '.join(moved)}; ECR cannot update a rule's "
            "upstream URL or upstream prefix: set allow_replace: true on the rule to delete and "
            "recreate it (images already cached stay), or change it in ECR yourself"
        )
    check.action, check.changes = "replaced", [f"replace the rule: {', '.join(moved)}"]
    if not check.dry_run:
        ids = {"registryId": registry_id} if registry_id else {}
        client.delete_pull_through_cache_rule(ecrRepositoryPrefix=rule.prefix, **ids)
        client.create_pull_through_cache_rule(**_create_request(rule, registry_id, arn))
    return check


def _update_rule(
    client: Any,
    rule: Rule,
    check: RuleCheck,
    have: dict[str, Any],
    registry_id: str | None,
    arn: str | None,
) -> RuleCheck:
    """Update the credential and the custom role, the two things ECR can update on a rule
    (a rule with ``manage: false`` is left as is, with a warning)."""
    update: dict[str, Any] = {}
    # Compared by full ARN: a secret deleted and created again keeps its name but not its ARN,
    # and a rule still pointing at the old ARN cannot read it.
    if arn and have.get("credentialArn") != arn:
        update["credentialArn"] = arn
        old_name = secret_name(have.get("credentialArn"))
        check.changes.append(
            f"credential {old_name!r} -> {rule.credential_secret!r}"
            if old_name != rule.credential_secret
            else f"credential {rule.credential_secret!r} was recreated: its ARN changed"
        )
    if have.get("customRoleArn") != rule.custom_role_arn and rule.custom_role_arn:
        update["customRoleArn"] = rule.custom_role_arn
        check.changes.append(f"custom role {have.get('customRoleArn')!r} -> {rule.custom_role_arn!r}")
    if update and not rule.manage:
        check.warnings.append(
            f"rule '{rule.prefix}' differs from the manifest (manage: false, left as is): "
            + "; ".join(check.changes)
        )
        check.changes = []
    elif update:
        check.action = "updated"
        if not check.dry_run:
            ids = {"registryId": registry_id} if registry_id else {}
            client.update_pull_through_cache_rule(ecrRepositoryPrefix=rule.prefix, **update, **ids)
    return check


def check_shared_rules(manifests: Sequence[tuple[Path, Manifest]]) -> list[ManifestError]:
    """Conflicts between manifests that manage the same rule prefix in the same registry.

    Several manifests may share a rule when they want the same state (upstream, credential,
    template...). The later manifest of each pair that wants a different state gets an error at
    the rule, naming the other manifest; the DAG file refuses it. Rules with ``manage: false``
    assert nothing and are skipped.
    """
    owners: dict[tuple[str, str, str], tuple[Path, dict[str, Any]]] = {}
    refused: list[ManifestError] = []
    for source, manifest in manifests:
        problems = []
        for index, rule in enumerate(manifest.rules):
            if not rule.manage:
                continue
            key = (manifest.target.region, manifest.target.registry_id or "", rule.prefix)
            state = rule.model_dump(exclude={"manage", "allow_replace"}, mode="json")
            first, wanted = owners.setdefault(key, (source, state))
            if wanted != state:
                fields = sorted(k for k in state if state[k] != wanted.get(k))
                problems.append(
                    FieldError(
                        f"rules[{index}]",
                        f"rule '{rule.prefix}' in {key[0]} conflicts with the same rule in {first.name} "
                        f"({', '.join(fields)} differ): manifests sharing a rule must agree on it",
                    )
                )
        if problems:
            refused.append(ManifestError(source, problems))
    return refused
