"""Pull through cache rules and repository creation templates, kept in ECR as the manifest says.

``ensure_rules`` reconciles each rule of a manifest with ECR (create, update the credential,
replace only when allowed), checks its credential secret, makes the rule's creation template
match, and runs ECR's own validation. Facts it relies on (shared/reference/ECR_PULL_THROUGH_CACHE.md):
``update_pull_through_cache_rule`` changes only ``credentialArn`` and ``customRoleArn``, so a
changed upstream URL or upstream prefix means delete + create; a template applies only to
repositories ECR creates after it exists.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from ecr_mirror.manifest import FieldError, Manifest, ManifestError, PolicySource, Rule, TemplateSpec

log = logging.getLogger(__name__)

#: the JSON keys ECR reads from a pull through cache secret
SECRET_KEYS = ("username", "accessToken")
# Secrets Manager appends "-" and 6 random characters to a secret's name in its ARN.
_SECRET_ARN_RE = re.compile(
    r"^arn:aws[\w-]*:secretsmanager:(?P<region>[a-z0-9-]+):(?P<account>[0-9]{12}):secret:(?P<name>.+)-[A-Za-z0-9]{6}$"
)


class RuleError(Exception):
    """One or more rules are missing, conflicting or invalid; the message names each."""


class CredentialError(Exception):
    """A credential secret that cannot be used; the message names the secret, never its value."""


@dataclass
class RuleCheck:
    """What ``ensure_rules`` found and did (or, in a dry run, would do) for one rule."""

    prefix: str
    action: str  # "unchanged" | "created" | "updated" | "replaced"
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


def secret_name(arn: str | None) -> str | None:
    """The secret name inside an ARN (without Secrets Manager's random suffix)."""
    if not arn:
        return None
    match = _SECRET_ARN_RE.fullmatch(arn)
    return match["name"] if match else arn


@dataclass(frozen=True)
class Credential:
    """A PTC secret as read: its ARN (what a rule takes) and the upstream login (never printed)."""

    arn: str
    username: str = field(repr=False)
    access_token: str = field(repr=False)

    @property
    def login(self) -> tuple[str, str]:
        return self.username, self.access_token


def read_credentials(target: Any, name: str, registry_id: str | None = None) -> Credential:
    """A PTC secret, checked and read through the provider's SecretsManagerHook.

    The hook uses the target's connection and region, so the secret is in the rule's account and
    region unless the manifest names another registry (``registry_id``): that is checked on the ARN.
    """
    hook = target.secrets
    try:
        arn = hook.conn.describe_secret(SecretId=name)["ARN"]
        value = hook.get_secret_as_dict(name)
    except ClientError as exc:
        code = exc.response["Error"].get("Code", "error")
        if code == "ResourceNotFoundException":
            raise CredentialError(f"secret '{name}' does not exist in {target.region}") from None
        raise CredentialError(f"secret '{name}' cannot be read ({code})") from None
    except ValueError:
        raise CredentialError(
            f"secret '{name}' is not a JSON object with {' and '.join(SECRET_KEYS)}"
        ) from None
    match = _SECRET_ARN_RE.fullmatch(arn)
    if match and (match["region"] != target.region or (registry_id and match["account"] != registry_id)):
        raise CredentialError(
            f"secret '{name}' is in {match['region']}/{match['account']}: ECR needs it in the rule's "
            f"region {target.region}" + (f" and account {registry_id}" if registry_id else "")
        )
    if not isinstance(value, dict):
        raise CredentialError(f"secret '{name}' is not a JSON object with {' and '.join(SECRET_KEYS)}")
    missing = [key for key in SECRET_KEYS if not isinstance(value.get(key), str) or not value[key]]
    if missing:
        raise CredentialError(
            f"secret '{name}' has no {' and no '.join(repr(k) for k in missing)} key "
            f"(ECR needs {' and '.join(SECRET_KEYS)})"
        )
    return Credential(arn, value["username"], value["accessToken"])


def upstream_credentials(manifest: Manifest, target: Any, host: str) -> tuple[str, str] | None:
    """The credentials of the manifest's rule for upstream ``host``, so that the project's own
    digest checks authenticate with the very secret ECR uses; None when that rule has no secret."""
    rule = next((r for r in manifest.rules if r.url == host and r.credential_secret), None)
    if rule is None or rule.credential_secret is None:
        return None
    return read_credentials(target, rule.credential_secret, manifest.target.registry_id).login


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
    encryption = {"encryptionType": spec.encryption_type}
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
    manifest: Manifest, target: Any, *, dry_run: bool = False, manifest_dir: Path | None = None
) -> list[RuleCheck]:
    """Make the manifest's rules and templates true in ECR, then validate every rule.

    ``target`` is an :class:`ecr_mirror.ecr.EcrTarget`. ``dry_run`` changes nothing and returns
    (and logs) what would change. ``manifest_dir`` anchors relative policy file paths. Raises
    :class:`RuleError` naming every rule that is missing, refused, has an unusable secret, or that
    ECR reports invalid, after checking all of them.
    """
    client, registry_id = target.client, manifest.target.registry_id
    ids = {"registryId": registry_id} if registry_id else {}
    actual = existing_rules(client, registry_id)
    templates = existing_templates(client, [r.prefix for r in manifest.rules if r.template and r.manage])
    checks: list[RuleCheck] = []
    problems: list[str] = []
    for rule in manifest.rules:
        where = f"rule '{rule.prefix}' ({rule.upstream} -> {rule.url}) in {manifest.target.region}"
        try:
            check = _reconcile_rule(client, target, rule, actual.get(rule.prefix), registry_id, dry_run)
            if rule.template and rule.manage:
                want = template_request(rule.prefix, rule.template, manifest_dir)
                check.changes += _reconcile_template(client, templates.get(rule.prefix), want, dry_run)
        except (RuleError, CredentialError) as exc:
            problems.append(f"{where}: {exc}")
            continue
        except ClientError as exc:
            problems.append(f"{where}: {exc.response['Error'].get('Message', exc)}")
            continue
        if warning := _immutability_warning(rule):
            check.warnings.append(warning)
        if not (dry_run and check.action in ("created", "replaced")):
            result = client.validate_pull_through_cache_rule(ecrRepositoryPrefix=rule.prefix, **ids)
            check.valid, check.failure = bool(result.get("isValid")), result.get("failure")
            if not check.valid:
                problems.append(f"{where} is not valid according to ECR: {check.failure}")
        for change in check.changes:
            log.info("%s%s: %s", "dry run, would " if dry_run else "", rule.prefix, change)
        for warning in check.warnings:
            log.warning("%s", warning)
        checks.append(check)
    if problems:
        raise RuleError("; ".join(problems))
    return checks


def _reconcile_rule(
    client: Any,
    target: Any,
    rule: Rule,
    have: dict[str, Any] | None,
    registry_id: str | None,
    dry_run: bool,
) -> RuleCheck:
    """Create, update or replace one rule (or say so in a dry run); RuleError when refused."""
    ids = {"registryId": registry_id} if registry_id else {}
    check = RuleCheck(rule.prefix, "unchanged", None, dry_run=dry_run)
    secret = read_credentials(target, rule.credential_secret, registry_id) if rule.credential_secret else None
    arn = secret.arn if secret else None

    if have is None:
        if not rule.manage:
            raise RuleError("does not exist in ECR and the manifest sets manage: false")
        check.action, check.changes = "created", [f"create the rule ({rule.upstream} -> {rule.url})"]
        if not dry_run:
            client.create_pull_through_cache_rule(**_create_request(rule, registry_id, arn))
        return check
    moved = [
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
    if moved:
        if not (rule.manage and rule.allow_replace):
            raise RuleError(
                f"ECR has this prefix with a different {' and '.join(moved)}; ECR cannot update a rule's "
                "upstream URL or upstream prefix: set allow_replace: true on the rule to delete and "
                "recreate it (images already cached stay), or change it in ECR yourself"
            )
        check.action, check.changes = "replaced", [f"replace the rule: {', '.join(moved)}"]
        if not dry_run:
            client.delete_pull_through_cache_rule(ecrRepositoryPrefix=rule.prefix, **ids)
            client.create_pull_through_cache_rule(**_create_request(rule, registry_id, arn))
        return check
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
        if not dry_run:
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
