"""The manifest: a typed model of one YAML file, and loading that reports every error with its line.

Every section forbids unknown keys. Checks that span sections (rules vs images, duplicates) are
raised as pydantic errors located at the offending field, so `Manifest.model_validate` and
`load_manifest` report the same things; `load_manifest` adds the file and the YAML line.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from ecr_mirror.refs import (
    DEFAULT_UPSTREAM_URL,
    ImageRef,
    InvalidReference,
    UpstreamKind,
    parse_image,
    tag_problem,
    upstream_kind,
)
from ecr_mirror.refs import cache_repository as _cache_repository
from ecr_mirror.tags import parse_range

PTC_UNAVAILABLE_REGIONS = frozenset({"cn-north-1", "cn-northwest-1", "us-gov-east-1", "us-gov-west-1"})
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

_REGION_RE = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-[0-9]+$")
_ACCOUNT_RE = re.compile(r"^[0-9]{12}$")
# CreatePullThroughCacheRule's ecrRepositoryPrefix pattern, less the trailing "/" (refused apart)
_PREFIX_RE = re.compile(r"^(?:(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*|ROOT)$")
_SNS_ARN_RE = re.compile(r"^arn:aws(?:-[a-z]+)*:sns:[a-z0-9-]+:[0-9]{12}:[\w-]{1,256}$")
_SECRET_RE = re.compile(r"^ecr-pullthroughcache/[a-zA-Z0-9/_+=.@-]+$")
_ROLE_ARN_RE = re.compile(r"^arn:aws(?:-[a-z]+)*:iam::[0-9]{12}:role/[\w+=,.@/-]+$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_PLATFORM_RE = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?$")
_DURATION_RE = re.compile(r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")

DriftPolicy = Literal["report", "repull", "evict-and-repull"]
"""What a run does with a tag whose cached digest differs from upstream (see pull.py)."""


_Problem = tuple[tuple[str | int, ...], str, Any]
"""Where (a pydantic loc relative to the validating model), what, and the offending input."""


def _invalid(message: str) -> PydanticCustomError:
    # The message travels as context so that braces in user input are never taken as placeholders.
    return PydanticCustomError("manifest", "{reason}", {"reason": message})


def _raise_at(title: str, problems: list[_Problem]) -> None:
    """Raise one pydantic error per (loc, message, input); pydantic prefixes the caller's location."""
    if problems:
        raise ValidationError.from_exception_data(
            title,
            [InitErrorDetails(type=_invalid(msg), loc=loc, input=value) for loc, msg, value in problems],
        )


def _quote_hint(value: object) -> str:
    """YAML turns 3.10 into the float 3.1 and 012 into an int; tell the user to quote."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f" (YAML read {value!r} as a number: quote it)"
    return ""


def _prefix_problem(value: str) -> str | None:
    if value.endswith("/"):
        return f"{value!r} must not end with '/': ECR always adds one"
    if not 2 <= len(value) <= 30 or not _PREFIX_RE.fullmatch(value):
        return (
            f"{value!r} does not match ECR's prefix pattern: 2-30 characters, lowercase path components "
            "of letters and digits separated by single '.', '_' or '-', joined by '/', or ROOT"
        )
    return None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _parse_duration(value: object) -> object:
    """``45m``, ``2h``, ``1h30m``, ``1d``, ``90s`` or a number of seconds -> timedelta.

    Written here because pydantic's timedelta takes ISO 8601 (``PT45M``) and seconds, not the
    short form the manifest format uses.
    """
    if isinstance(value, bool):
        raise _invalid("must be a duration such as 45m, 2h or 1h30m")
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    if isinstance(value, str) and value and (match := _DURATION_RE.fullmatch(value.strip())):
        parts = {key: int(number) for key, number in match.groupdict(default="0").items()}
        return timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"])
    if isinstance(value, timedelta):
        return value
    raise _invalid(f"{value!r} is not a duration such as 45m, 2h or 1h30m")


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise _invalid("must be longer than zero")
    return value


_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "string", "pattern": r"^(\d+d)?(\d+h)?(\d+m)?(\d+s)?$", "examples": ["45m", "1h30m"]},
        {"type": "number", "description": "seconds"},
    ]
}
Duration = Annotated[
    timedelta,
    BeforeValidator(_parse_duration),
    AfterValidator(_positive),
    WithJsonSchema(_DURATION_SCHEMA),
]


def _check_platforms(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    if not value:
        raise _invalid("lists no platform: omit platforms to mirror the whole index")
    problems: list[_Problem] = []
    for i, platform in enumerate(value):
        if not _PLATFORM_RE.fullmatch(platform):
            problems.append(
                ((i,), f"{platform!r} is not os/architecture[/variant], e.g. linux/arm64/v8", platform)
            )
        elif platform in value[:i]:
            problems.append(((i,), f"{platform!r} is listed twice", platform))
    _raise_at("platforms", problems)
    return value


Platforms = Annotated[list[str] | None, AfterValidator(_check_platforms)]


class Target(_Model):
    """The ECR registry that receives the mirrored images."""

    region: str
    registry_id: str | None = None
    aws_conn_id: str = Field(default="aws_default", min_length=1)

    @field_validator("region")
    @classmethod
    def _check_region(cls, value: str) -> str:
        if not _REGION_RE.fullmatch(value):
            raise _invalid(f"{value!r} is not an AWS region name such as eu-west-1")
        if value in PTC_UNAVAILABLE_REGIONS:
            raise _invalid(f"ECR pull through cache is not available in {value}")
        return value

    @field_validator("registry_id", mode="before")
    @classmethod
    def _check_registry_id(cls, value: object) -> object:
        if value is not None and not (isinstance(value, str) and _ACCOUNT_RE.fullmatch(value)):
            raise _invalid(f"must be a 12-digit AWS account id string{_quote_hint(value)}")
        return value


TagMutability = Literal["MUTABLE", "IMMUTABLE", "MUTABLE_WITH_EXCLUSION", "IMMUTABLE_WITH_EXCLUSION"]

#: a JSON policy written inline (a mapping) or the path of a JSON file, relative to the manifest file
PolicySource = dict[str, Any] | str


class TemplateSpec(_Model):
    """Repository creation template for a rule's prefix; applies only to repositories ECR creates later.

    IMMUTABLE stops ECR from refreshing a cached tag (containers-roadmap #2275): use it for digest-style tags.
    The ``*_WITH_EXCLUSION`` settings take wildcard filters in ``tag_mutability_exclusions`` (tags
    matching them are the exception to the setting).
    """

    tag_mutability: TagMutability = "MUTABLE"
    tag_mutability_exclusions: list[str] = []
    encryption_type: Literal["AES256", "KMS"] = "AES256"
    kms_key: str | None = None
    lifecycle_policy: PolicySource | None = None
    repository_policy: PolicySource | None = None
    resource_tags: dict[str, str] = {}
    description: str | None = Field(default=None, max_length=256)

    @model_validator(mode="after")
    def _check_kms(self) -> TemplateSpec:
        problems: list[_Problem] = []
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
        _raise_at("TemplateSpec", problems)
        return self

    @property
    def makes_immutable(self) -> bool:
        """Some or all tags of the repositories it creates are immutable: ECR cannot refresh those."""
        return self.tag_mutability != "MUTABLE"


class Rule(_Model):
    """A pull through cache rule: ECR repositories under `prefix` cache images of one upstream."""

    prefix: str
    upstream: UpstreamKind
    upstream_url: str | None = None
    credential_secret: str | None = None
    upstream_repository_prefix: str | None = None
    custom_role_arn: str | None = None
    manage: bool = True
    #: a changed upstream URL or upstream prefix may delete and recreate the rule in ECR
    allow_replace: bool = False
    template: TemplateSpec | None = None

    @field_validator("prefix", "upstream_repository_prefix")
    @classmethod
    def _check_prefix(cls, value: str | None) -> str | None:
        if value is not None and (problem := _prefix_problem(value)):
            raise _invalid(problem)
        return value

    @field_validator("upstream_url")
    @classmethod
    def _lower_url(cls, value: str | None) -> str | None:
        return None if value is None else value.lower()

    @field_validator("credential_secret")
    @classmethod
    def _check_secret(cls, value: str | None) -> str | None:
        if value is not None and not _SECRET_RE.fullmatch(value):
            raise _invalid(
                f"{value!r} is not a usable secret name: it must start with 'ecr-pullthroughcache/' "
                "and use letters, digits and /_+=.@-"
            )
        return value

    @field_validator("custom_role_arn")
    @classmethod
    def _check_role(cls, value: str | None) -> str | None:
        if value is not None and not _ROLE_ARN_RE.fullmatch(value):
            raise _invalid(f"{value!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
        return value

    @model_validator(mode="after")
    def _check_upstream(self) -> Rule:
        kind = self.upstream
        problems: list[_Problem] = []
        default = DEFAULT_UPSTREAM_URL.get(kind)
        if default is not None:
            if self.upstream_url not in (None, default):
                problems.append(
                    (
                        ("upstream_url",),
                        f"{kind} is served from {default!r}: omit upstream_url",
                        self.upstream_url,
                    )
                )
        elif self.upstream_url is None or upstream_kind(self.upstream_url) is not kind:
            form = (
                "<name>.azurecr.io"
                if kind is UpstreamKind.AZURE
                else "<account>.dkr.ecr.<region>.amazonaws.com"
            )
            problems.append(
                (("upstream_url",), f"{kind} needs upstream_url: {form} (host only)", self.upstream_url)
            )
        if kind in SECRET_REQUIRED and self.credential_secret is None:
            problems.append(
                (
                    ("credential_secret",),
                    f"{kind} needs credential_secret: a Secrets Manager secret 'ecr-pullthroughcache/<name>' "
                    "with username and accessToken",
                    None,
                )
            )
        if kind not in SECRET_REQUIRED and self.credential_secret is not None:
            instead = ": ECR authenticates with IAM, see custom_role_arn" if kind is UpstreamKind.ECR else ""
            problems.append(
                (("credential_secret",), f"{kind} takes no credentials{instead}", self.credential_secret)
            )
        for field in ("upstream_repository_prefix", "custom_role_arn"):
            if kind is not UpstreamKind.ECR and getattr(self, field) is not None:
                problems.append(
                    ((field,), f"applies to an ecr upstream only, not {kind}", getattr(self, field))
                )
        if self.prefix == "ROOT" and kind is not UpstreamKind.ECR:
            problems.append((("prefix",), "ROOT is supported for an ecr upstream only", self.prefix))
        if self.prefix == "ROOT" and self.upstream_repository_prefix not in (None, "ROOT"):
            problems.append(
                (
                    ("upstream_repository_prefix",),
                    "ECR allows an upstream repository prefix only with a non-ROOT prefix",
                    self.upstream_repository_prefix,
                )
            )
        _raise_at("Rule", problems)
        return self

    @property
    def url(self) -> str:
        """The upstream registry host this rule points at (`upstreamRegistryUrl`)."""
        return self.upstream_url or DEFAULT_UPSTREAM_URL[self.upstream]

    @property
    def _upstream_prefix(self) -> str | None:
        return None if self.upstream_repository_prefix in (None, "ROOT") else self.upstream_repository_prefix

    def _routes(self, ref: ImageRef) -> bool:
        prefix = self._upstream_prefix
        return self.url == ref.registry and (prefix is None or ref.repository.startswith(f"{prefix}/"))


class TagSelector(_Model):
    """Which upstream tags of an image to mirror (docs/manifest.md). A YAML list under `tags:` means
    `{exact: [...]}`.

    `exact` tags are always mirrored and need no upstream tag list. `semver`, `include` and `latest`
    select from the upstream tag list, in this order: semver -> include -> exclude -> latest N.
    """

    exact: list[str] = Field(default=[], description="tags mirrored as written, whatever the filters say")
    semver: str | None = Field(
        default=None, description="version range: npm style '^2.50 || ^3' or PEP 440 style '>=3.11,<3.14'"
    )
    include: list[str] = Field(
        default=[], description="regular expressions (re.search, anchor with ^ and $): keep tags matching one"
    )
    exclude: list[str] = Field(
        default=[], description="regular expressions (re.search): drop tags matching one"
    )
    latest: int | None = Field(
        default=None, ge=1, description="keep the tags of the N highest versions left by the other filters"
    )
    prerelease: bool = Field(default=False, description="let semver and latest select rc, beta, alpha, ...")

    @field_validator("exact", mode="before")
    @classmethod
    def _check_types(cls, value: object) -> object:
        if isinstance(value, list):
            _raise_at(
                "TagSelector",
                [
                    ((i,), f"a tag must be a string{_quote_hint(tag)}", tag)
                    for i, tag in enumerate(value)
                    if _quote_hint(tag)
                ],
            )
        return value

    @field_validator("exact")
    @classmethod
    def _check_tags(cls, value: list[str]) -> list[str]:
        problems: list[_Problem] = []
        seen: set[str] = set()
        for i, tag in enumerate(value):
            if problem := tag_problem(tag):
                problems.append(((i,), problem, tag))
            elif tag in seen:
                problems.append(((i,), f"tag {tag!r} is listed twice", tag))
            seen.add(tag)
        _raise_at("TagSelector", problems)
        return value

    @field_validator("semver", mode="before")
    @classmethod
    def _check_semver_type(cls, value: object) -> object:
        if hint := _quote_hint(value):
            raise _invalid(f"must be a string{hint}")
        return value

    @field_validator("semver")
    @classmethod
    def _check_semver(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_range(value)
            except ValueError as exc:
                raise _invalid(str(exc)) from None
        return value

    @field_validator("include", "exclude")
    @classmethod
    def _check_patterns(cls, value: list[str]) -> list[str]:
        problems: list[_Problem] = []
        for i, pattern in enumerate(value):
            try:
                re.compile(pattern)
            except re.error as exc:
                problems.append(((i,), f"{pattern!r} is not a valid regular expression: {exc}", pattern))
        _raise_at("TagSelector", problems)
        return value

    @model_validator(mode="after")
    def _check_selects(self) -> TagSelector:
        problems: list[_Problem] = []
        if not self.exact and not self.needs_listing:
            if self.exclude:
                message = (
                    "exclude alone would mirror every other upstream tag (thousands on Docker Hub): "
                    "add semver, include or latest to say what to mirror"
                )
                problems.append((("exclude",), message, self.exclude))
            else:
                message = "selects no tag: list exact tags, or give semver, include or latest"
                problems.append((("exact",), message, self.exact))
        if self.prerelease and self.semver is None and self.latest is None:
            message = "applies to semver and latest only: add one of them or remove prerelease"
            problems.append((("prerelease",), message, self.prerelease))
        for i, tag in enumerate(self.exact):
            if hit := next((p for p in self.exclude if re.search(p, tag)), None):
                message = f"exact tag {tag!r} is also excluded by {hit!r}: remove one of them"
                problems.append((("exact", i), message, tag))
        _raise_at("TagSelector", problems)
        return self

    @property
    def needs_listing(self) -> bool:
        """Whether resolving this selector needs the upstream tag list (anything beyond exact tags)."""
        return self.semver is not None or bool(self.include) or self.latest is not None

    def describe(self) -> str:
        """The filter part as the manifest writes it, e.g. "semver '^3', exclude ['rc'], latest 2"."""
        parts = [
            f"semver {self.semver!r}" if self.semver is not None else "",
            f"include {self.include}" if self.include else "",
            f"exclude {self.exclude}" if self.exclude else "",
            f"latest {self.latest}" if self.latest is not None else "",
            "prerelease true" if self.prerelease else "",
        ]
        return ", ".join(part for part in parts if part) or "exact tags only"


class ImageSpec(_Model):
    """One upstream image: `tags` selects what to mirror, or `image` carries a digest pin."""

    image: str
    tags: TagSelector | None = None
    # per-image overrides of `defaults` (None: inherit)
    platforms: Platforms = None
    on_drift: DriftPolicy | None = None
    warm_layers: bool | None = None
    retries: int | None = Field(default=None, ge=0, le=10)
    concurrency: int | None = Field(default=None, ge=1, le=64)

    @field_validator("image")
    @classmethod
    def _check_image(cls, value: str) -> str:
        try:
            ref = parse_image(value)
        except InvalidReference as exc:
            raise _invalid(str(exc)) from None
        if ref.tag is not None and ref.digest is None:
            bare = value[: -len(ref.tag) - 1]
            raise _invalid(f"{value!r} carries a tag: write image: {bare} and list {ref.tag!r} under tags:")
        return value

    @field_validator("tags", mode="before")
    @classmethod
    def _expand_shorthand(cls, value: object) -> object:
        return {"exact": value} if isinstance(value, list) else value

    @model_validator(mode="after")
    def _check_selection(self) -> ImageSpec:
        pinned = self.ref.digest is not None
        if pinned and self.tags is not None:
            _raise_at(
                "ImageSpec", [(("tags",), "a digest pin mirrors exactly that digest: remove tags", None)]
            )
        if not pinned and self.tags is None:
            _raise_at("ImageSpec", [(("tags",), f"{self.image!r} has no digest pin, so it needs tags", None)])
        return self

    @property
    def ref(self) -> ImageRef:
        return parse_image(self.image)


class ImageSettings(_Model):
    """Settings every image inherits from `defaults` and may override one by one."""

    platforms: Platforms = None  # None: the whole index, keeping the upstream digest
    on_drift: DriftPolicy = "repull"
    warm_layers: bool = False


class Defaults(ImageSettings):
    retries: int = Field(default=3, ge=0, le=10)
    retry_delay_seconds: int = Field(default=30, ge=1)
    max_retry_delay_seconds: int = Field(default=600, ge=1)
    concurrency: int = Field(default=8, ge=1, le=64)
    batch_size: int = Field(default=50, ge=1, le=1000)
    #: execution_timeout of every task (a batch task that runs longer fails and retries)
    execution_timeout: Duration = Field(default=timedelta(hours=1), json_schema_extra={"default": "1h"})

    @model_validator(mode="after")
    def _check_delays(self) -> Defaults:
        if self.max_retry_delay_seconds < self.retry_delay_seconds:
            _raise_at(
                "Defaults",
                [
                    (
                        ("max_retry_delay_seconds",),
                        "must be at least retry_delay_seconds",
                        self.max_retry_delay_seconds,
                    )
                ],
            )
        return self


class Sla(_Model):
    """A run should finish within `within` of being queued; a miss is recorded and notified."""

    within: Duration
    #: "log" and/or SNS topic ARNs
    notify: list[str] = Field(default_factory=lambda: ["log"])

    @field_validator("notify")
    @classmethod
    def _check_notify(cls, value: list[str]) -> list[str]:
        problems: list[_Problem] = [
            ((i,), f"{target!r} is neither 'log' nor an SNS topic ARN", target)
            for i, target in enumerate(value)
            if target != "log" and not _SNS_ARN_RE.fullmatch(target)
        ]
        _raise_at("Sla", problems)
        return value


class Manifest(_Model):
    """One manifest file: the images a team depends on, the target registry and the rules they need."""

    name: str
    description: str = ""
    schedule: str | None = None
    owner: str = "ecr-mirror"
    sla: Sla | None = None
    target: Target
    defaults: Defaults = Field(default_factory=Defaults)
    rules: list[Rule]
    images: list[ImageSpec]

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME_RE.fullmatch(value):
            raise _invalid(
                f"{value!r} must be 1-63 lowercase letters, digits, '_' or '-', "
                "starting with a letter or digit"
            )
        return value

    @field_validator("rules", "images", mode="before")
    @classmethod
    def _not_empty(cls, value: object) -> object:
        if value is None or value == []:  # `images:` with nothing under it reads as None
            raise _invalid("must list at least one entry")
        return value

    @model_validator(mode="after")
    def _check_cross_references(self) -> Manifest:
        problems: list[_Problem] = []
        prefixes: dict[str, int] = {}
        routes: dict[tuple[str, str | None], int] = {}
        for i, rule in enumerate(self.rules):
            if rule.prefix in prefixes:
                problems.append(
                    (
                        ("rules", i, "prefix"),
                        f"{rule.prefix!r} is already used by rules[{prefixes[rule.prefix]}]",
                        rule.prefix,
                    )
                )
            route = (rule.url, rule._upstream_prefix)
            if route in routes:
                problems.append(
                    (
                        ("rules", i, "upstream"),
                        f"rules[{routes[route]}] already caches {rule.url}"
                        + (f" under upstream prefix {route[1]!r}" if route[1] else "")
                        + ": an image would match both",
                        rule.upstream,
                    )
                )
            prefixes.setdefault(rule.prefix, i)
            routes.setdefault(route, i)
            problems += self._ecr_role_problems(i, rule)
        seen: dict[tuple[str, str | None, str | None], int] = {}
        for i, spec in enumerate(self.images):
            ref = spec.ref
            try:
                self.cache_repository(ref)
            except (LookupError, InvalidReference) as exc:
                problems.append((("images", i, "image"), str(exc), spec.image))
                continue
            key = (ref.name, ref.digest, spec.tags.model_dump_json() if spec.tags else None)
            if key in seen:
                first = self.images[seen[key]].image
                problems.append(
                    (
                        ("images", i, "image"),
                        f"duplicate of images[{seen[key]}] ({first!r}): both are {ref.name} with the same "
                        + ("digest" if ref.digest else "tags"),
                        spec.image,
                    )
                )
            seen.setdefault(key, i)
        _raise_at("Manifest", problems)
        return self

    def _ecr_role_problems(self, index: int, rule: Rule) -> list[_Problem]:
        """ECR documents customRoleArn as a role in the caching account, needed across accounts."""
        account = self.target.registry_id
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

    def image_settings(self, index: int) -> ImageSettings:
        """The effective settings of images[index]: its overrides over `defaults`."""
        spec = self.images[index]
        overrides = {
            name: getattr(spec, name)
            for name in ImageSettings.model_fields
            if getattr(spec, name) is not None
        }
        inherited = {name: getattr(self.defaults, name) for name in ImageSettings.model_fields}
        return ImageSettings(**{**inherited, **overrides})

    def image_retries(self, index: int) -> int:
        spec = self.images[index]
        return self.defaults.retries if spec.retries is None else spec.retries

    def image_concurrency(self, index: int) -> int:
        spec = self.images[index]
        return self.defaults.concurrency if spec.concurrency is None else spec.concurrency

    @property
    def dag_id(self) -> str:
        return "ecr_mirror__" + self.name.replace("-", "_")

    def rule_for(self, ref: ImageRef) -> Rule:
        """The rule that caches `ref`: same upstream host, and the longest matching upstream prefix.

        Raises LookupError naming the image and the upstream it needs when no rule fits.
        """
        matches = [rule for rule in self.rules if rule._routes(ref)]
        if not matches:
            need = f"upstream: {ref.kind}"
            if ref.kind in (UpstreamKind.AZURE, UpstreamKind.ECR):
                need += f" and upstream_url: {ref.registry}"
            scoped = [f"{rule._upstream_prefix}/" for rule in self.rules if rule.url == ref.registry]
            if scoped:
                need += (
                    f" whose upstream_repository_prefix {ref.repository!r} starts with"
                    f" (rules cover {', '.join(scoped)})"
                )
            raise LookupError(f"no rule caches image {ref.name!r}: add a rule with {need}")
        return max(matches, key=lambda rule: len(rule._upstream_prefix or ""))

    def cache_repository(self, ref: ImageRef) -> str:
        """The ECR repository (without registry host) that caches `ref`."""
        rule = self.rule_for(ref)
        return _cache_repository(ref, rule.prefix, rule.upstream_repository_prefix)


def manifest_json_schema() -> dict[str, Any]:
    """The JSON Schema of a manifest file (config/manifest.schema.json), generated from the model.

    Editors use it through `# yaml-language-server: $schema=...`; the loader stays the authority
    (cross-field checks such as rules vs images are not in the schema).
    """
    schema = Manifest.model_json_schema()
    selector = {"$ref": "#/$defs/TagSelector"}
    shorthand = {"type": "array", "items": {"type": "string"}, "description": "shorthand for {exact: [...]}"}
    schema["$defs"]["ImageSpec"]["properties"]["tags"] = {
        "anyOf": [shorthand, selector, {"type": "null"}],
        "description": "the tags to mirror: a list of exact tags, or a selector",
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
    }


@dataclass(frozen=True)
class FieldError:
    """One problem in a manifest file. `loc` is a path such as "images[2].tags.exact[0]" ("" for the file)."""

    loc: str
    message: str
    line: int | None = None

    def format(self, path: Path) -> str:
        where = f"{path}:{self.line}" if self.line is not None else str(path)
        return f"{where}: {self.loc}: {self.message}" if self.loc else f"{where}: {self.message}"


class ManifestError(Exception):
    """A manifest file that cannot be used.

    `str()` gives one "<path>:<line>: <loc>: <message>" line per error.
    """

    def __init__(self, path: Path, errors: list[FieldError]) -> None:
        super().__init__(path, errors)
        self.path = path
        self.errors = errors

    def __str__(self) -> str:
        return "\n".join(error.format(self.path) for error in self.errors)


def load_manifest(path: Path) -> Manifest:
    """Load and validate one manifest file; every problem is reported at once in a ManifestError."""
    return _load(path)[0]


def load_manifests(directory: Path) -> tuple[list[tuple[Path, Manifest]], list[ManifestError]]:
    """Load every *.yaml / *.yml in `directory` (by file name; dot files skipped).

    A bad file never stops the others. Two manifests that give the same DAG id (names equal after
    "-" -> "_") make the later file an error; the first one stays loaded.
    """
    if not directory.is_dir():
        return [], [ManifestError(directory, [FieldError("", "not a directory")])]
    return load_paths(manifest_files(directory))


def manifest_files(directory: Path) -> list[Path]:
    """The manifest files of a folder: *.yaml and *.yml by name, dot files left out."""
    return sorted(
        (p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and not p.name.startswith(".")),
        key=lambda p: p.name,
    )


def load_paths(paths: Iterable[Path]) -> tuple[list[tuple[Path, Manifest]], list[ManifestError]]:
    """Load manifest files in the order given; a bad file never stops the others, and a manifest
    whose DAG id an earlier file already has is an error."""
    loaded: list[tuple[Path, Manifest]] = []
    failed: list[ManifestError] = []
    owners: dict[str, Path] = {}
    for path in paths:
        try:
            manifest, root = _load(path)
        except ManifestError as exc:
            failed.append(exc)
            continue
        first = owners.get(manifest.dag_id)
        if first is not None:
            owner = first.name if first.parent == path.parent else str(first)
            message = f"{manifest.name!r} gives DAG id {manifest.dag_id}, already used by {owner}"
            failed.append(ManifestError(path, [FieldError("name", message, _locate(root, ("name",))[1])]))
            continue
        owners[manifest.dag_id] = path
        loaded.append((path, manifest))
    return loaded, failed


def _load(path: Path) -> tuple[Manifest, yaml.Node]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(path, [FieldError("", f"cannot read the file: {exc}")]) from None
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        # Before construction, which flattens "<<" merges into the nodes.
        errors = _duplicate_keys(root, "") if root is not None else []
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = ", ".join(part for part in (exc.context, exc.problem) if part)
        raise ManifestError(
            path, [FieldError("", f"invalid YAML: {reason}", mark.line + 1 if mark else None)]
        ) from None
    except yaml.YAMLError as exc:
        raise ManifestError(path, [FieldError("", f"invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    if root is None or not isinstance(data, dict):
        found = "nothing" if root is None else f"a {type(data).__name__}"
        raise ManifestError(
            path,
            [FieldError("", f"expected a mapping with name, target, rules and images, found {found}", 1)],
        )
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc, line = _locate(root, err["loc"])
            errors.append(FieldError(loc, _message(err), line))
    if errors:
        errors.sort(key=lambda error: (error.line is None, error.line or 0))
        raise ManifestError(path, errors)
    return manifest, root


def _duplicate_keys(node: yaml.Node, loc: str) -> list[FieldError]:
    """PyYAML keeps the last of two equal keys silently; a manifest author means one of them."""
    errors: list[FieldError] = []
    if isinstance(node, yaml.MappingNode):
        first_lines: dict[str, int] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.value == "<<":
                continue
            line = key.start_mark.line + 1
            child = f"{loc}.{key.value}" if loc else key.value
            if key.value in first_lines:
                errors.append(
                    FieldError(child, f"key repeated (first on line {first_lines[key.value]})", line)
                )
            first_lines.setdefault(key.value, line)
            errors.extend(_duplicate_keys(value, child))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            errors.extend(_duplicate_keys(item, f"{loc}[{i}]"))
    return errors


def _locate(root: yaml.Node, loc: tuple[str | int, ...]) -> tuple[str, int | None]:
    """The dotted path of a pydantic `loc` as the user wrote it, and the YAML line nearest to it.

    A missing key gets the line of the closest enclosing node. A string key met on a YAML list is
    the `tags: [...]` shorthand for `{exact: [...]}`, so it is left out of the path.
    """
    text = ""
    line: int | None = root.start_mark.line + 1
    node: yaml.Node | None = root
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
            if isinstance(node, yaml.SequenceNode) and 0 <= part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                node = None
            continue
        if part == "[key]" or isinstance(node, yaml.SequenceNode):
            continue
        text += f".{part}" if text else part
        if isinstance(node, yaml.MappingNode):
            pair = next((pair for pair in node.value if pair[0].value == part), None)
            if pair is not None:
                line = pair[0].start_mark.line + 1
            node = pair[1] if pair is not None else None
        else:
            node = None
    return text, line


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(err["loc"][:-1])
        return "unknown key" + (f"; allowed keys: {', '.join(allowed)}" if allowed else "")
    message: str = err["msg"]
    value = err.get("input")
    if kind != "manifest" and isinstance(value, str | int | float | bool):
        message += f" (got {value!r})"
    return message


def _allowed_keys(loc: tuple[str | int, ...]) -> list[str]:
    """Field names of the model at `loc`, found by walking the type annotations from Manifest."""
    annotation: Any = Manifest
    for part in loc:
        annotation = _strip_optional(annotation)
        if isinstance(part, int):
            if typing.get_origin(annotation) is not list:
                return []
            annotation = typing.get_args(annotation)[0]
        elif (
            isinstance(annotation, type)
            and issubclass(annotation, BaseModel)
            and part in annotation.model_fields
        ):
            annotation = annotation.model_fields[part].annotation
        else:
            return []
    annotation = _strip_optional(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation
