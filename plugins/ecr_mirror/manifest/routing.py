"""The manifest's pull through cache rules: their model, their creation templates, and routing,
i.e. which rule caches an image and under which ECR repository."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    field_validator,
    model_validator,
)

from ecr_mirror.manifest.checks import (
    ROLE_ARN_RE,
    SECRET_ARN_RE,
    SECRET_RE,
    Problem,
    StrictModel,
    invalid,
    prefix_problem,
    raise_at,
)
from ecr_mirror.manifest.supply import VerifySpec
from ecr_mirror.refs import DEFAULT_UPSTREAM_URL, ImageRef, UpstreamKind, upstream_kind
from ecr_mirror.refs import cache_repository as _cache_repository

SECRET_REQUIRED = frozenset(
    {
        UpstreamKind.DOCKER_HUB,
        UpstreamKind.GHCR,
        UpstreamKind.GITLAB,
        UpstreamKind.AZURE,
        UpstreamKind.CHAINGUARD,
    }
)
"""Upstreams that ECR reaches with a Secrets Manager secret. ECR Public, k8s and Quay take no
credentials and a private ECR upstream uses IAM (custom_role_arn), so a secret on those is an error."""

TagMutability = Literal["MUTABLE", "IMMUTABLE", "MUTABLE_WITH_EXCLUSION", "IMMUTABLE_WITH_EXCLUSION"]

#: a JSON policy written inline (a mapping) or the path of a JSON file, relative to the manifest file
PolicySource = dict[str, Any] | str


#: why a template with resource tags or KMS needs a role (docs/ecr-facts.md, "Creation templates")
TEMPLATE_ROLE_DOCS = (
    "https://docs.aws.amazon.com/AmazonECR/latest/userguide/repository-creation-templates-create.html"
)


def _role_arn(value: str) -> str:
    if not ROLE_ARN_RE.fullmatch(value):
        raise invalid(f"{value!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
    return value


#: ``custom_role_arn`` of templates and rules: the IAM role ECR assumes for them
RoleArn = Annotated[str, AfterValidator(_role_arn)]


class TemplateSpec(StrictModel):
    """Repository creation template for a rule's prefix; applies only to repositories ECR creates later.

    IMMUTABLE stops ECR from refreshing a cached tag (containers-roadmap #2275): use it for digest-style tags.
    The ``*_WITH_EXCLUSION`` settings take wildcard filters in ``tag_mutability_exclusions`` (tags
    matching them are the exception to the setting). ``resource_tags`` or KMS encryption need
    ``custom_role_arn``, the IAM role ECR assumes to create the repository: its service-linked role
    may only call ecr:CreateRepository.
    """

    tag_mutability: TagMutability = "MUTABLE"
    tag_mutability_exclusions: list[str] = []
    encryption_type: Literal["AES256", "KMS"] = "AES256"
    kms_key: str | None = None
    lifecycle_policy: PolicySource | None = None
    repository_policy: PolicySource | None = None
    resource_tags: dict[str, str] = {}
    description: str | None = Field(default=None, max_length=256)
    custom_role_arn: RoleArn | None = None

    @model_validator(mode="after")
    def _check_settings(self) -> TemplateSpec:
        problems = self._role_problems()
        if self.kms_key is not None and self.encryption_type != "KMS":
            problems.append((("kms_key",), "kms_key needs encryption_type: KMS", self.kms_key))
        excluding = self.tag_mutability.endswith("_WITH_EXCLUSION")
        if excluding and not self.tag_mutability_exclusions:
            problems.append(
                (("tag_mutability_exclusions",), f"{self.tag_mutability} needs at least one filter", None)
            )
        if not excluding and self.tag_mutability_exclusions:
            problems.append(
                (
                    ("tag_mutability_exclusions",),
                    "applies to MUTABLE_WITH_EXCLUSION or IMMUTABLE_WITH_EXCLUSION only",
                    self.tag_mutability_exclusions,
                )
            )
        raise_at("TemplateSpec", problems)
        return self

    def _role_problems(self) -> list[Problem]:
        if not self.needs_role or self.custom_role_arn is not None:
            return []
        what = " and ".join(
            word
            for word, used in (("resource_tags", self.resource_tags), ("KMS", self.encryption_type == "KMS"))
            if used
        )
        message = (
            f"a template with {what} needs custom_role_arn, an IAM role of the target account that ECR "
            "assumes to create the repository: ECR's service-linked role for templates may only create "
            f"repositories, and pulls through such a template fail without a role ({TEMPLATE_ROLE_DOCS})"
        )
        return [(("custom_role_arn",), message, None)]

    @property
    def needs_role(self) -> bool:
        """Sets what ECR applies only with a custom role: resource tags or KMS encryption."""
        return bool(self.resource_tags) or self.encryption_type == "KMS"

    @property
    def makes_immutable(self) -> bool:
        """Some or all tags of the repositories it creates are immutable: ECR cannot refresh those."""
        return self.tag_mutability != "MUTABLE"


class Rule(StrictModel):
    """A pull through cache rule: ECR repositories under `prefix` cache images of one upstream."""

    prefix: str
    upstream: UpstreamKind
    upstream_url: str | None = None
    credential_secret: str | None = None
    upstream_repository_prefix: str | None = None
    custom_role_arn: RoleArn | None = None
    manage: bool = True
    #: a changed upstream URL or upstream prefix may delete and recreate the rule in ECR
    allow_replace: bool = False
    template: TemplateSpec | None = None
    #: the signature gate of every image this rule caches (an image's own ``verify`` wins)
    verify: VerifySpec | None = None
    #: (region, account) of a credential_secret written as an ARN: checked against the target
    _secret_location: tuple[str, str] | None = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _secret_arn_to_name(cls, data: Any, handler: ModelWrapValidatorHandler[Rule]) -> Rule:
        """A secret's ARN, as the console shows it, stands for its name: ECR reads the secret in
        the registry's own account and region (checked against the target by the manifest)."""
        match = None
        if isinstance(data, dict) and isinstance(data.get("credential_secret"), str):
            match = SECRET_ARN_RE.fullmatch(data["credential_secret"])
            if match:
                data = {**data, "credential_secret": match["name"]}
        rule = handler(data)
        if match:
            rule._secret_location = (match["region"], match["account"])
        return rule

    @field_validator("prefix", "upstream_repository_prefix")
    @classmethod
    def _check_prefix(cls, value: str | None) -> str | None:
        if value is not None and (problem := prefix_problem(value)):
            raise invalid(problem)
        return value

    @field_validator("upstream_url")
    @classmethod
    def _lower_url(cls, value: str | None) -> str | None:
        return None if value is None else value.lower()

    @field_validator("credential_secret")
    @classmethod
    def _check_secret(cls, value: str | None) -> str | None:
        if value is not None and not SECRET_RE.fullmatch(value):
            raise invalid(
                f"{value!r} is not a usable secret: write its name, which must start with "
                "'ecr-pullthroughcache/' and use letters, digits and /_+=.@-, or its ARN as the "
                "console shows it "
                "(arn:aws:secretsmanager:<region>:<account>:secret:ecr-pullthroughcache/<name>-<suffix>)"
            )
        return value

    @model_validator(mode="after")
    def _check_upstream(self) -> Rule:
        raise_at("Rule", _url_problems(self) + _secret_problems(self) + _ecr_only_problems(self))
        return self

    @property
    def url(self) -> str:
        """The upstream registry host this rule points at (`upstreamRegistryUrl`)."""
        return self.upstream_url or DEFAULT_UPSTREAM_URL[self.upstream]

    @property
    def upstream_prefix(self) -> str | None:
        """The upstream repository prefix that scopes this rule, None for the whole registry."""
        return None if self.upstream_repository_prefix in (None, "ROOT") else self.upstream_repository_prefix

    def routes(self, ref: ImageRef) -> bool:
        """Whether this rule can cache ``ref``: same upstream host, under its upstream prefix."""
        prefix = self.upstream_prefix
        return self.url == ref.registry and (prefix is None or ref.repository.startswith(f"{prefix}/"))


def _url_problems(rule: Rule) -> list[Problem]:
    kind = rule.upstream
    default = DEFAULT_UPSTREAM_URL.get(kind)
    if default is not None:
        if rule.upstream_url in (None, default):
            return []
        message = f"{kind} is served from {default!r}: omit upstream_url"
        return [(("upstream_url",), message, rule.upstream_url)]
    if rule.upstream_url is not None and upstream_kind(rule.upstream_url) is kind:
        return []
    form = "<name>.azurecr.io" if kind is UpstreamKind.AZURE else "<account>.dkr.ecr.<region>.amazonaws.com"
    return [(("upstream_url",), f"{kind} needs upstream_url: {form} (host only)", rule.upstream_url)]


def _secret_problems(rule: Rule) -> list[Problem]:
    kind = rule.upstream
    if kind in SECRET_REQUIRED and rule.credential_secret is None:
        message = (
            f"{kind} needs credential_secret: a Secrets Manager secret 'ecr-pullthroughcache/<name>' "
            "with username and accessToken"
        )
        return [(("credential_secret",), message, None)]
    if kind not in SECRET_REQUIRED and rule.credential_secret is not None:
        instead = ": ECR authenticates with IAM, see custom_role_arn" if kind is UpstreamKind.ECR else ""
        return [(("credential_secret",), f"{kind} takes no credentials{instead}", rule.credential_secret)]
    return []


def _ecr_only_problems(rule: Rule) -> list[Problem]:
    kind = rule.upstream
    problems: list[Problem] = [
        ((field,), f"applies to an ecr upstream only, not {kind}", getattr(rule, field))
        for field in ("upstream_repository_prefix", "custom_role_arn")
        if kind is not UpstreamKind.ECR and getattr(rule, field) is not None
    ]
    if rule.prefix == "ROOT" and kind is not UpstreamKind.ECR:
        problems.append((("prefix",), "ROOT is supported for an ecr upstream only", rule.prefix))
    if rule.prefix == "ROOT" and rule.upstream_repository_prefix not in (None, "ROOT"):
        problems.append(
            (
                ("upstream_repository_prefix",),
                "ECR allows an upstream repository prefix only with a non-ROOT prefix",
                rule.upstream_repository_prefix,
            )
        )
    return problems


def rule_for(rules: Sequence[Rule], ref: ImageRef) -> Rule:
    """The rule that caches `ref`: same upstream host, and the longest matching upstream prefix.

    Raises LookupError naming the image and the upstream it needs when no rule fits.
    """
    matches = [rule for rule in rules if rule.routes(ref)]
    if not matches:
        need = f"upstream: {ref.kind}"
        if ref.kind in (UpstreamKind.AZURE, UpstreamKind.ECR):
            need += f" and upstream_url: {ref.registry}"
        scoped = [f"{rule.upstream_prefix}/" for rule in rules if rule.url == ref.registry]
        if scoped:
            need += (
                f" whose upstream_repository_prefix {ref.repository!r} starts with"
                f" (rules cover {', '.join(scoped)})"
            )
        raise LookupError(f"no rule caches image {ref.name!r}: add a rule with {need}")
    return max(matches, key=lambda rule: len(rule.upstream_prefix or ""))


def cache_repository(rules: Sequence[Rule], ref: ImageRef) -> str:
    """The ECR repository (without registry host) that caches `ref`."""
    rule = rule_for(rules, ref)
    return _cache_repository(ref, rule.prefix, rule.upstream_repository_prefix)


def rule_problems(rules: Sequence[Rule], account: str | None) -> list[Problem]:
    """Rules that clash: a prefix used twice, two rules an image would match both, and ECR
    upstreams in another account than ``account`` (the target's) without a role of that account."""
    problems: list[Problem] = []
    prefixes: dict[str, int] = {}
    routes: dict[tuple[str, str | None], int] = {}
    for i, rule in enumerate(rules):
        if rule.prefix in prefixes:
            message = f"{rule.prefix!r} is already used by rules[{prefixes[rule.prefix]}]"
            problems.append((("rules", i, "prefix"), message, rule.prefix))
        route = (rule.url, rule.upstream_prefix)
        if route in routes:
            scope = f" under upstream prefix {route[1]!r}" if route[1] else ""
            message = f"rules[{routes[route]}] already caches {rule.url}{scope}: an image would match both"
            problems.append((("rules", i, "upstream"), message, rule.upstream))
        prefixes.setdefault(rule.prefix, i)
        routes.setdefault(route, i)
        problems += _ecr_role_problems(i, rule, account)
        problems += _template_role_problems(i, rule, account)
    return problems


def secret_problems(rules: Sequence[Rule], region: str, account: str | None) -> list[Problem]:
    """Secrets written as ARNs of another region or account than the target's: ECR reads a pull
    through cache secret in the registry's own account and region (docs/ecr-facts.md)."""
    problems: list[Problem] = []
    for i, rule in enumerate(rules):
        if rule._secret_location is None:
            continue
        arn_region, arn_account = rule._secret_location
        if arn_region != region or (account is not None and arn_account != account):
            where = f"{region}" + (f" and account {account}" if account else "")
            message = (
                f"the ARN of secret '{rule.credential_secret}' is in {arn_region}/{arn_account}: ECR reads "
                f"it in the target's region {where}"
            )
            problems.append((("rules", i, "credential_secret"), message, rule.credential_secret))
    return problems


def _template_role_problems(index: int, rule: Rule, account: str | None) -> list[Problem]:
    """ECR documents a template's customRoleArn as a role in the registry's own account."""
    role = rule.template.custom_role_arn if rule.template else None
    if role is None or account is None or role.split(":")[4] == account:
        return []
    message = f"the role must be in the target account {account} (target.registry_id)"
    return [(("rules", index, "template", "custom_role_arn"), message, role)]


def _ecr_role_problems(index: int, rule: Rule, account: str | None) -> list[Problem]:
    """ECR documents customRoleArn as a role in the caching account, needed across accounts."""
    if rule.upstream is not UpstreamKind.ECR or account is None:
        return []
    role = rule.custom_role_arn
    if role is not None and role.split(":")[4] != account:
        message = f"the role must be in the target account {account} (target.registry_id)"
        return [(("rules", index, "custom_role_arn"), message, role)]
    if role is None and rule.url.split(".")[0] != account:
        message = (
            f"the upstream registry is in another account than {account}: ECR needs custom_role_arn, "
            "a role in the target account that may pull from it"
        )
        return [(("rules", index, "custom_role_arn"), message, None)]
    return []
