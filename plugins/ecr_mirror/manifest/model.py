"""The manifest model: one YAML file's sections, each a pydantic model that forbids unknown keys.

Checks that span sections (rules vs images, duplicates) are raised as pydantic errors located at
the offending field, so ``Manifest.model_validate`` and the loader report the same things.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from ecr_mirror.manifest.checks import (
    ACCOUNT_RE,
    NAME_RE,
    PTC_UNAVAILABLE_REGIONS,
    REGION_RE,
    SNS_ARN_RE,
    Duration,
    Platforms,
    Problem,
    StrictModel,
    invalid,
    quote_hint,
    raise_at,
)
from ecr_mirror.manifest.notify import NotifyTarget
from ecr_mirror.manifest.routing import Rule, cache_repository, rule_for, rule_problems, secret_problems
from ecr_mirror.manifest.selector import TagSelector
from ecr_mirror.manifest.supply import ArtifactsSpec, PruneSpec, VerifySpec
from ecr_mirror.refs import ImageRef, InvalidReference, parse_image
from ecr_mirror.states import DriftPolicy

#: the validation context key under which the loader passes each images[] entry's line
IMAGE_LINES = "image_lines"


class Target(StrictModel):
    """The ECR registry that receives the mirrored images."""

    region: str
    registry_id: str | None = None
    aws_conn_id: str = Field(default="aws_default", min_length=1)

    @field_validator("region")
    @classmethod
    def _check_region(cls, value: str) -> str:
        if not REGION_RE.fullmatch(value):
            raise invalid(f"{value!r} is not an AWS region name such as eu-west-1")
        if value in PTC_UNAVAILABLE_REGIONS:
            raise invalid(f"ECR pull through cache is not available in {value}")
        return value

    @field_validator("registry_id", mode="before")
    @classmethod
    def _check_registry_id(cls, value: object) -> object:
        if value is not None and not (isinstance(value, str) and ACCOUNT_RE.fullmatch(value)):
            raise invalid(f"must be a 12-digit AWS account id string{quote_hint(value)}")
        return value


class ImageSpec(StrictModel):
    """One upstream image: `tags` selects what to mirror, or `image` carries a digest pin."""

    image: str
    tags: TagSelector | None = None
    # per-image overrides of `defaults` (None: inherit)
    platforms: Platforms = None
    on_drift: DriftPolicy | None = None
    warm_layers: bool | None = None
    retries: int | None = Field(default=None, ge=0, le=10)
    concurrency: int | None = Field(default=None, ge=1, le=64)
    artifacts: ArtifactsSpec | None = None
    #: the signature gate of this image (over its rule's)
    verify: VerifySpec | None = None
    #: the entry's line in its file (set by the loader), for messages that name two entries
    _line: int | None = PrivateAttr(default=None)

    @field_validator("image")
    @classmethod
    def _check_image(cls, value: str) -> str:
        try:
            ref = parse_image(value)
        except InvalidReference as exc:
            raise invalid(str(exc)) from None
        if ref.tag is not None and ref.digest is None:
            bare = value[: -len(ref.tag) - 1]
            raise invalid(f"{value!r} carries a tag: write image: {bare} and list {ref.tag!r} under tags:")
        return value

    @field_validator("tags", mode="before")
    @classmethod
    def _expand_shorthand(cls, value: object) -> object:
        if isinstance(value, list):
            return {"exact": value}
        if value is not None and not isinstance(value, dict):
            written = value if isinstance(value, str) else repr(value)
            raise invalid(
                f"must be a list of tags, e.g. tags: [{written!r}] (quote version-like tags: YAML reads "
                "1.20 as the number 1.2), or a selector mapping, e.g. tags: {semver: '^1.27', latest: 2}"
            )
        return value

    @model_validator(mode="after")
    def _check_selection(self) -> ImageSpec:
        pinned = self.ref.digest is not None
        if pinned and self.tags is not None:
            raise_at(
                "ImageSpec", [(("tags",), "a digest pin mirrors exactly that digest: remove tags", None)]
            )
        if not pinned and self.tags is None:
            raise_at("ImageSpec", [(("tags",), f"{self.image!r} has no digest pin, so it needs tags", None)])
        return self

    @property
    def ref(self) -> ImageRef:
        return parse_image(self.image)

    @property
    def written_tags(self) -> list[str]:
        """The tags this entry names as written: its exact tags, or the tag of a tag pin."""
        if self.tags is not None:
            return self.tags.exact
        return [] if self.ref.tag is None else [self.ref.tag]


class ImageSettings(StrictModel):
    """Settings every image inherits from `defaults` and may override one by one."""

    platforms: Platforms = None  # None: the whole index, keeping the upstream digest
    on_drift: DriftPolicy = "repull"
    warm_layers: bool = False
    #: signatures, attestations, SBOMs and referrers mirrored with the image (None: none)
    artifacts: ArtifactsSpec | None = None


class Defaults(ImageSettings):
    retries: int = Field(default=3, ge=0, le=10)
    retry_delay_seconds: int = Field(default=30, ge=1)
    max_retry_delay_seconds: int = Field(default=600, ge=1)
    concurrency: int = Field(default=8, ge=1, le=64)
    batch_size: int = Field(default=50, ge=1, le=1000)
    #: execution_timeout of every task (a shard task that runs longer fails and retries)
    execution_timeout: Duration = Field(default=timedelta(hours=1), json_schema_extra={"default": "1h"})

    @model_validator(mode="after")
    def _check_delays(self) -> Defaults:
        if self.max_retry_delay_seconds < self.retry_delay_seconds:
            raise_at(
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


class Sla(StrictModel):
    """A run should finish within `within` of being queued; a miss is recorded and notified."""

    within: Duration
    #: "log" and/or SNS topic ARNs
    notify: list[str] = Field(default_factory=lambda: ["log"])

    @field_validator("notify")
    @classmethod
    def _check_notify(cls, value: list[str]) -> list[str]:
        problems: list[Problem] = [
            ((i,), f"{target!r} is neither 'log' nor an SNS topic ARN", target)
            for i, target in enumerate(value)
            if target != "log" and not SNS_ARN_RE.fullmatch(target)
        ]
        raise_at("Sla", problems)
        return value


class Assets(StrictModel):
    """The Airflow assets a run updates: always the manifest's; with ``images``, one per image too."""

    images: bool = Field(default=False, description="an asset event per image as well")


class Manifest(StrictModel):
    """One manifest file: the images a team depends on, the target registry and the rules they need."""

    name: str
    description: str = ""
    schedule: str | None = None
    owner: str = "ecr-mirror"
    sla: Sla | None = None
    target: Target
    defaults: Defaults = Field(default_factory=Defaults)
    prune: PruneSpec = Field(default_factory=PruneSpec)
    rules: list[Rule]
    images: list[ImageSpec]
    #: who hears about failed runs, drift and SLA misses (ecr_mirror/notify.py)
    notify: list[NotifyTarget] = Field(default=[])
    #: the asset events each run emits, for downstream DAGs (ecr_mirror/assets.py)
    assets: Assets = Field(default_factory=Assets)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not NAME_RE.fullmatch(value):
            raise invalid(
                f"{value!r} must be 1-63 lowercase letters, digits, '_' or '-', "
                "starting with a letter or digit"
            )
        return value

    @field_validator("rules", "images", mode="before")
    @classmethod
    def _not_empty(cls, value: object) -> object:
        if value is None or value == []:  # `images:` with nothing under it reads as None
            raise invalid("must list at least one entry")
        return value

    @model_validator(mode="after")
    def _check_cross_references(self, info: ValidationInfo) -> Manifest:
        lines = (info.context or {}).get(IMAGE_LINES) or []
        for spec, line in zip(self.images, lines, strict=False):
            spec._line = line
        problems = rule_problems(self.rules, self.target.registry_id) + secret_problems(
            self.rules, self.target.region, self.target.registry_id
        )
        raise_at("Manifest", problems + self._image_problems())
        return self

    def entry(self, index: int) -> str:
        """images[index] as a message names it: ``images[3] (line 20)`` when the file is known."""
        line = self.images[index]._line
        return f"images[{index}]" + (f" (line {line})" if line is not None else "")

    def _image_problems(self) -> list[Problem]:
        """Images no rule caches, images listed twice with the same digest or selector, and a tag
        that two entries of one image both name (which entry's settings would apply?)."""
        problems: list[Problem] = []
        seen: dict[tuple[str, str | None, str | None], int] = {}
        named: dict[tuple[str, str], int] = {}
        for i, spec in enumerate(self.images):
            ref = spec.ref
            try:
                self.cache_repository(ref)
            except (LookupError, InvalidReference) as exc:
                problems.append((("images", i, "image"), str(exc), spec.image))
                continue
            key = (ref.name, ref.digest, spec.tags.model_dump_json() if spec.tags else None)
            if key in seen:
                problems.append(
                    (
                        ("images", i, "image"),
                        f"duplicate of {self.entry(seen[key])} ({self.images[seen[key]].image!r}): both are "
                        f"{ref.name} with the same " + ("digest" if ref.digest else "tags"),
                        spec.image,
                    )
                )
                continue
            seen[key] = i
            problems += self._tags_named_twice(i, named)
        return problems

    def _tags_named_twice(self, index: int, named: dict[tuple[str, str], int]) -> list[Problem]:
        """The tags images[index] names that an earlier entry of the same image names too."""
        spec = self.images[index]
        problems: list[Problem] = []
        for k, tag in enumerate(spec.written_tags):
            first = named.setdefault((spec.ref.name, tag), index)
            if first != index:
                where = ("images", index, "tags", "exact", k) if spec.tags else ("images", index, "image")
                message = (
                    f"tag {tag!r} of {spec.ref.name} is also selected by {self.entry(first)}: "
                    "remove it from one entry (a tag comes from one entry, so its settings are known)"
                )
                problems.append((where, message, tag))
        return problems

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

    def image_verify(self, index: int) -> VerifySpec | None:
        """The signature gate of images[index]: its own ``verify``, else its rule's (None: no gate)."""
        spec = self.images[index]
        return spec.verify if spec.verify is not None else self.rule_for(spec.ref).verify

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
        """The rule that caches `ref` (routing.rule_for); LookupError naming what is missing."""
        return rule_for(self.rules, ref)

    def cache_repository(self, ref: ImageRef) -> str:
        """The ECR repository (without registry host) that caches `ref`."""
        return cache_repository(self.rules, ref)
