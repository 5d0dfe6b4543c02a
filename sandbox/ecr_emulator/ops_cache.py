"""Pull through cache rules and repository creation templates.

Behaviour sources: API_CreatePullThroughCacheRule.html, API_UpdatePullThroughCacheRule.html,
API_ValidatePullThroughCacheRule.html, API_CreateRepositoryCreationTemplate.html and the user
guide pages pull-through-cache-creating-rule.html and repository-creation-templates.html.
"""

from __future__ import annotations

import re
from typing import Any

from .api import Context, Handler, paginate
from .errors import ApiError, UpstreamError
from .pullthrough import needs_custom_role
from .store import Rule

# Regions where neither pull through cache rules (userguide/pull-through-cache.html, Considerations)
# nor repository creation templates (userguide/repository-creation-templates.html) are offered.
UNSUPPORTED_REGIONS = frozenset({"cn-north-1", "cn-northwest-1", "us-gov-east-1", "us-gov-west-1"})
# upstreamRegistry -> URL syntax (model: CreatePullThroughCacheRuleRequest.upstreamRegistryUrl).
UPSTREAM_URLS: dict[str, str] = {
    "ecr": r"[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com",
    "ecr-public": r"public\.ecr\.aws",
    "docker-hub": r"registry-1\.docker\.io",
    "github-container-registry": r"ghcr\.io",
    "gitlab-container-registry": r"registry\.gitlab\.com",
    "k8s": r"registry\.k8s\.io",
    "azure-container-registry": r"[a-z0-9-]+\.azurecr\.io",
    "quay": r"quay\.io",
    "chainguard": r"cgr\.dev",
}
# Upstreams that need a Secrets Manager secret (userguide/pull-through-cache.html: "Docker Hub,
# Microsoft Azure Container Registry, GitHub Container Registry, GitLab Container Registry and
# Chainguard Registry (requires authentication with AWS Secrets Manager secret)").
NEEDS_SECRET = frozenset(
    {
        "docker-hub",
        "github-container-registry",
        "gitlab-container-registry",
        "azure-container-registry",
        "chainguard",
    }
)
RULE_LIMIT = 50  # the per-registry quota of PTC rules (userguide/service-quotas.html)
SECRET_ARN = re.compile(
    r"arn:aws[\w-]*:secretsmanager:(?P<region>[a-z0-9-]+):(?P<account>[0-9]{12}):secret:.+"
)


def _rule_doc(ctx: Context, rule: Rule) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "ecrRepositoryPrefix": rule.prefix,
        "upstreamRegistryUrl": rule.upstream_url,
        "createdAt": rule.created_at,
        "updatedAt": rule.updated_at,
        "registryId": ctx.account,
        "upstreamRegistry": rule.upstream_registry,
        "credentialArn": rule.credential_arn,
        "customRoleArn": rule.custom_role_arn,
    }
    if rule.upstream_registry == "ecr":
        doc["upstreamRepositoryPrefix"] = rule.upstream_prefix
    return doc


def _get_rule(ctx: Context, prefix: str) -> Rule:
    rule = ctx.store.get_rule(prefix)
    if rule is None:
        raise ApiError(
            "PullThroughCacheRuleNotFoundException",
            f"The pull through cache rule with prefix '{prefix}' does not exist in the registry with id "
            f"'{ctx.account}'",
        )
    return rule


def _invalid(message: str) -> ApiError:
    return ApiError("InvalidParameterException", message)


def _upstream_registry(params: dict[str, Any]) -> str:
    host = params["upstreamRegistryUrl"].split("://", 1)[-1].rstrip("/").lower()
    named = params.get("upstreamRegistry")
    found = next((name for name, pattern in UPSTREAM_URLS.items() if re.fullmatch(pattern, host)), None)
    if found is None:
        raise ApiError(
            "UnsupportedUpstreamRegistryException",
            f"The upstream registry URL '{params['upstreamRegistryUrl']}' is not supported.",
        )
    if named and named != found:
        raise _invalid(f"upstreamRegistry '{named}' does not match upstreamRegistryUrl '{host}'")
    return found


def _check_credentials(ctx: Context, upstream: str, credential_arn: str | None) -> None:
    if upstream in NEEDS_SECRET and not credential_arn:
        raise _invalid(f"A credentialArn is required for upstream registry '{upstream}'")
    if credential_arn:
        match = SECRET_ARN.fullmatch(credential_arn)
        # The secret must be in the rule's account and Region (pull-through-cache-creating-rule.html).
        if not match or match["region"] != ctx.region or match["account"] != ctx.account:
            raise _invalid("The credentialArn secret must be in the same account and Region as the rule")
        if ctx.cache.secrets is not None:
            # Create and update read the secret: SecretNotFoundException, UnableToAccessSecretException
            # and UnableToDecryptSecretValueException are their documented errors.
            ctx.cache.secrets.value(credential_arn)


def create_rule(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    if ctx.region in UNSUPPORTED_REGIONS:
        raise ApiError("ValidationException", f"Pull through cache rules are not supported in {ctx.region}")
    prefix = params["ecrRepositoryPrefix"]
    upstream = _upstream_registry(params)
    upstream_prefix = params.get("upstreamRepositoryPrefix")
    if upstream != "ecr" and (prefix == "ROOT" or upstream_prefix):
        # ROOT and upstreamRepositoryPrefix are documented for ECR to ECR rules only
        # (pull-through-cache-private-wildcards.html).
        raise _invalid("ROOT and upstreamRepositoryPrefix are supported only for an ecr upstream registry")
    if prefix == "ROOT" and upstream_prefix not in (None, "ROOT"):
        # "You can set the upstream repository prefix only when the Amazon ECR repository prefix has
        # a non-ROOT value." (pull-through-cache-private-wildcards.html)
        raise _invalid("upstreamRepositoryPrefix can be set only when ecrRepositoryPrefix is not ROOT")
    _check_credentials(ctx, upstream, params.get("credentialArn"))
    if ctx.store.get_rule(prefix):
        raise ApiError(
            "PullThroughCacheRuleAlreadyExistsException",
            f"A pull through cache rule with prefix '{prefix}' already exists in the registry with id "
            f"'{ctx.account}'",
        )
    if len(ctx.store.rules()) >= RULE_LIMIT:
        raise ApiError("LimitExceededException", "The pull through cache rule limit has been reached")
    now = ctx.clock.now()
    rule = Rule(
        prefix=prefix,
        upstream_registry=upstream,
        upstream_url=params["upstreamRegistryUrl"],
        credential_arn=params.get("credentialArn"),
        custom_role_arn=params.get("customRoleArn"),
        upstream_prefix=upstream_prefix or "ROOT",
        created_at=now,
        updated_at=now,
    )
    ctx.store.put_rule(rule)
    return _rule_doc(ctx, rule)


def describe_rules(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    rules = ctx.store.rules()
    wanted = params.get("ecrRepositoryPrefixes")
    if wanted:
        rules = [_get_rule(ctx, prefix) for prefix in wanted]
    page, token = paginate(ctx, rules, params)
    return {"pullThroughCacheRules": [_rule_doc(ctx, rule) for rule in page], **token}


def update_rule(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    rule = _get_rule(ctx, params["ecrRepositoryPrefix"])
    rule.credential_arn = params.get("credentialArn", rule.credential_arn)
    rule.custom_role_arn = params.get("customRoleArn", rule.custom_role_arn)
    _check_credentials(ctx, rule.upstream_registry, rule.credential_arn)
    rule.updated_at = ctx.clock.now()
    ctx.store.put_rule(rule)
    return _rule_doc(ctx, rule)


def delete_rule(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    # Cached repositories stay (API_DeletePullThroughCacheRule.html).
    rule = _get_rule(ctx, params["ecrRepositoryPrefix"])
    ctx.store.delete_rule(rule.prefix)
    return _rule_doc(ctx, rule)


def validate_rule(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Really calls the upstream's ``/v2/`` through the emulator's upstream mapping, authenticated
    with the rule's secret (read from Secrets Manager with ``--secrets-endpoint``): a missing,
    unreadable or incomplete secret, or credentials the upstream refuses, make ``isValid`` false.

    AWS documents the operation "for an upstream registry that requires authentication"; a rule
    without credentials is answered as ``validate_unauthenticated`` says."""
    rule = _get_rule(ctx, params["ecrRepositoryPrefix"])
    doc = _rule_doc(ctx, rule)
    unauthenticated = not rule.credential_arn and rule.upstream_registry != "ecr"
    if unauthenticated and ctx.behaviour["validate_unauthenticated"] == "refuses":
        raise ApiError(
            "ValidationException",
            f"The pull through cache rule with prefix '{rule.prefix}' has an upstream registry "
            f"({rule.upstream_registry}) that does not require authentication: there is nothing to validate",
        )
    try:
        ctx.cache.client(rule).ping()
    except UpstreamError as exc:
        return {**doc, "isValid": False, "failure": exc.message}
    return {**doc, "isValid": True}


def check_mutability(params: dict[str, Any]) -> None:
    """``*_WITH_EXCLUSION`` needs exclusion filters and the plain settings take none."""
    mutability = params.get("imageTagMutability", "MUTABLE")
    filters = params.get("imageTagMutabilityExclusionFilters")
    if mutability.endswith("_WITH_EXCLUSION") and not filters:
        raise _invalid(f"imageTagMutabilityExclusionFilters are required with {mutability}")
    if filters and not mutability.endswith("_WITH_EXCLUSION"):
        raise _invalid(f"imageTagMutabilityExclusionFilters are not allowed with {mutability}")


def check_encryption(config: dict[str, Any] | None) -> None:
    if config and config.get("kmsKey") and config["encryptionType"] == "AES256":
        raise _invalid("kmsKey can only be specified with a KMS encryption type")


TEMPLATE_FIELDS = (
    "description",
    "encryptionConfiguration",
    "resourceTags",
    "imageTagMutability",
    "imageTagMutabilityExclusionFilters",
    "repositoryPolicy",
    "lifecyclePolicy",
    "appliedFor",
    "customRoleArn",
)


def _not_found_template(ctx: Context, prefix: str) -> ApiError:
    return ApiError(
        "TemplateNotFoundException",
        f"The repository creation template with prefix '{prefix}' does not exist in the registry with id "
        f"'{ctx.account}'",
    )


def _check_template(ctx: Context, doc: dict[str, Any]) -> None:
    check_mutability(doc)
    check_encryption(doc.get("encryptionConfiguration"))
    if not doc.get("appliedFor"):
        raise _invalid("appliedFor must list at least one of REPLICATION, PULL_THROUGH_CACHE, CREATE_ON_PUSH")
    refused = ctx.behaviour["template_custom_role"] == "refused"
    if refused and needs_custom_role(doc) and not doc.get("customRoleArn"):
        raise _invalid(
            "A customRoleArn is required for a repository creation template with resourceTags or KMS "
            "encryption"
        )


def _check_region(ctx: Context) -> None:
    if ctx.region in UNSUPPORTED_REGIONS:
        raise ApiError(
            "ValidationException", f"Repository creation templates are not supported in {ctx.region}"
        )


def create_template(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    _check_region(ctx)
    prefix = params["prefix"]
    if ctx.store.get_template(prefix):
        raise ApiError(
            "TemplateAlreadyExistsException",
            f"The repository creation template with prefix '{prefix}' already exists in the registry with id "
            f"'{ctx.account}'",
        )
    now = ctx.clock.now()
    doc: dict[str, Any] = {
        "prefix": prefix,
        "imageTagMutability": "MUTABLE",
        "encryptionConfiguration": {"encryptionType": "AES256"},
        **{key: params[key] for key in TEMPLATE_FIELDS if key in params},
        "createdAt": now,
        "updatedAt": now,
    }
    _check_template(ctx, doc)
    ctx.store.put_template(doc)
    return {"registryId": ctx.account, "repositoryCreationTemplate": doc}


def describe_templates(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    templates = ctx.store.templates()
    if params.get("prefixes"):
        templates = [t for t in templates if t["prefix"] in params["prefixes"]]
    page, token = paginate(ctx, templates, params)
    return {"registryId": ctx.account, "repositoryCreationTemplates": page, **token}


def update_template(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    _check_region(ctx)
    doc = ctx.store.get_template(params["prefix"])
    if doc is None:
        raise _not_found_template(ctx, params["prefix"])
    doc.update({key: params[key] for key in TEMPLATE_FIELDS if key in params})
    if "imageTagMutability" in params and "imageTagMutabilityExclusionFilters" not in params:
        doc.pop("imageTagMutabilityExclusionFilters", None)
    doc["updatedAt"] = ctx.clock.now()
    _check_template(ctx, doc)
    ctx.store.put_template(doc)
    return {"registryId": ctx.account, "repositoryCreationTemplate": doc}


def delete_template(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    doc = ctx.store.get_template(params["prefix"])
    if doc is None:
        raise _not_found_template(ctx, params["prefix"])
    ctx.store.delete_template(params["prefix"])
    return {"registryId": ctx.account, "repositoryCreationTemplate": doc}


HANDLERS: dict[str, Handler] = {
    "CreatePullThroughCacheRule": create_rule,
    "DescribePullThroughCacheRules": describe_rules,
    "UpdatePullThroughCacheRule": update_rule,
    "DeletePullThroughCacheRule": delete_rule,
    "ValidatePullThroughCacheRule": validate_rule,
    "CreateRepositoryCreationTemplate": create_template,
    "DescribeRepositoryCreationTemplates": describe_templates,
    "UpdateRepositoryCreationTemplate": update_template,
    "DeleteRepositoryCreationTemplate": delete_template,
}
