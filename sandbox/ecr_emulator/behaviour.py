"""Behaviours AWS leaves open, as named switches with their plausible variants, and two profiles.

AWS documents pull through cache in prose; where the prose (or its absence) admits more than one
reading, or users report something the documentation does not say, the emulator does not pick the
kindest answer silently: each such point is a :class:`Switch` whose variants are the readings.
Two profiles choose one variant per switch:

- ``documented``: what AWS documents, then what users most commonly report;
- ``strict``: for each point, the variant that is hardest for a client.

A process starts with a profile (``--profile``) plus per-switch overrides (``--<switch> <variant>``)
and can be switched at runtime through ``POST /_emulator/behaviour``. The sources of every variant
are in ``SWITCHES`` and, as one table, in docs/emulator.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class Switch:
    name: str
    summary: str
    variants: Mapping[str, str]  # variant -> what the emulator does under it
    documented: str
    strict: str
    sources: tuple[str, ...]


PTC_GUIDE = "https://docs.aws.amazon.com/AmazonECR/latest/userguide/pull-through-cache.html"

SWITCHES: tuple[Switch, ...] = (
    Switch(
        "digest_first_pull",
        "a manifest GET by digest of an image the cache does not hold yet",
        {
            "imports": "fetches the manifest upstream by digest and caches it (untagged)",
            "not-found": "answers 404 MANIFEST_UNKNOWN; the image is cached only after a pull by tag",
        },
        documented="imports",
        strict="not-found",
        sources=(
            f"{PTC_GUIDE} (a specific architecture can be pulled through the cache by its digest)",
            "aws/containers-roadmap#2837 (first pull by digest reported as not found, open)",
        ),
    ),
    Switch(
        "refresh_timer",
        "what the 24 h window before a cached tag is re-checked upstream counts from",
        {
            "last-check": "the last upstream check of the tag (a tag pulled hourly is re-checked daily)",
            "last-pull": "the last pull of the cached image (a tag pulled more often than daily is "
            "never re-checked)",
        },
        documented="last-pull",
        strict="last-pull",
        sources=(
            f'{PTC_GUIDE} (Considerations: "This timer is based off the last pull of the cached image")',
        ),
    ),
    Switch(
        "refresh_bound",
        "whether a cached tag may be re-checked upstream before its 24 h window has passed",
        {
            "up-to-once": 'never before the window has passed ("up to once per 24 hours")',
            "at-least-once": 'on any pull ("at least once every 24 hours" read as a minimum: '
            "the emulator re-checks on every pull of a mutable cached tag)",
        },
        documented="up-to-once",
        strict="up-to-once",
        sources=(
            f'{PTC_GUIDE} (now: "at least once every 24 hours"; earlier editions: "up to once per 24 hours")',
            "awsdocs/amazon-ecr-user-guide doc_source/pull-through-cache.md (the earlier wording)",
        ),
    ),
    Switch(
        "blob_delivery",
        "how the registry endpoint answers a blob (layer or config) GET",
        {
            "direct": "200 with the bytes",
            "presigned-redirect": "307 to a pre-signed URL on the blob host (ECR keeps layers in S3)",
            "upstream-redirect-first-pull": "a blob ECR does not hold yet: 307 to the upstream "
            "registry's storage (ECR fetches it meanwhile); a blob it holds: as presigned-redirect",
        },
        documented="presigned-redirect",
        strict="upstream-redirect-first-pull",
        sources=(
            "https://docs.aws.amazon.com/AmazonECR/latest/userguide/vpc-endpoints.html (layers are "
            "downloaded from Amazon S3, bucket prod-<region>-starport-layer-bucket)",
            "https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_GetDownloadUrlForLayer.html",
            "aws/containers-roadmap#2304 (first pulls redirected to the upstream's storage)",
        ),
    ),
    Switch(
        "template_custom_role",
        "a creation template with resourceTags or KMS encryption and no customRoleArn",
        {
            "applied": "applied as if a role were given",
            "pull-fails": "accepted, but the pull that would create a repository from it fails "
            "(404, no repository)",
            "skipped": "the repository is created without the tags and with AES256",
            "refused": "Create/UpdateRepositoryCreationTemplate answer InvalidParameterException",
        },
        documented="pull-fails",
        strict="pull-fails",
        sources=(
            "https://docs.aws.amazon.com/AmazonECR/latest/userguide/"
            "repository-creation-templates-create.html (KMS keys or resource tags need a custom role)",
            "https://docs.aws.amazon.com/AmazonECR/latest/userguide/slr-rct.html (the service-linked "
            "role may only call ecr:CreateRepository)",
            "aws/containers-roadmap#2398 (templates with resource tags break pull through cache)",
        ),
    ),
    Switch(
        "hub_missing_repository",
        "an import from Docker Hub of a repository that does not exist there",
        {
            "not-found": "404 NAME_UNKNOWN",
            "auth-failed": '403 DENIED "The authentication to the upstream registry failed..." '
            "(Docker Hub answers 401 for a missing repository and ECR relays it)",
        },
        documented="auth-failed",
        strict="auth-failed",
        sources=(
            "aws/containers-roadmap#2211 (official image without library/)",
            "aws/containers-roadmap#2354 (repository that does not exist)",
        ),
    ),
    Switch(
        "validate_unauthenticated",
        "ValidatePullThroughCacheRule on a rule whose upstream needs no credentials",
        {
            "answers": "checks the upstream anonymously and answers isValid",
            "refuses": "answers ValidationException (validation is documented for upstreams that "
            "require authentication only)",
        },
        documented="answers",
        strict="refuses",
        sources=(
            "https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_ValidatePullThroughCacheRule.html",
        ),
    ),
    Switch(
        "last_recorded_pull_time",
        "DescribeImages' lastRecordedPullTime",
        {
            "exact": "the time of the last manifest GET of the image",
            "lagging": "refreshed only when the recorded time is 24 h old or older (the most lag AWS allows)",
        },
        documented="lagging",
        strict="lagging",
        sources=(
            "https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_ImageDetail.html "
            '("refreshes the last image pull timestamp at least once every 24 hours")',
        ),
    ),
    Switch(
        "ptc_referrers_sync",
        "a referrers API request on a pull through cache repository",
        {
            "referrers-api": "fetches the upstream's referrers of the digest and caches them, "
            "then lists them",
            "none": "lists only what the repository holds (ECR before April 2026)",
        },
        documented="referrers-api",
        strict="none",
        sources=(
            "https://aws.amazon.com/about-aws/whats-new/2026/04/amazon-ecr-pull-through-cache-referrers/ "
            '("will now reach upstream during referrers API requests")',
        ),
    ),
    Switch(
        "ptc_referrers_upstream",
        "referrers of an upstream without the referrers API (tag schema only, e.g. Distribution 2.8)",
        {
            "tag-schema": "the upstream's referrers tag schema index (sha256-<hex>) is read",
            "api-only": "only the upstream's referrers API is asked: nothing is found",
        },
        documented="tag-schema",
        strict="api-only",
        sources=("silent; OCI distribution-spec v1.1 asks clients to fall back to the tag schema",),
    ),
    Switch(
        "ptc_pulled_referrers_listed",
        "a manifest with a subject that a plain pull (by digest or through an index) imported",
        {
            "listed": "listed by the referrers API of its subject, like a pushed one",
            "not-listed": "held, but listed only once a referrers request synced it",
        },
        documented="listed",
        strict="not-listed",
        sources=(
            "https://aws.amazon.com/blogs/opensource/"
            "diving-into-oci-image-and-distribution-1-1-support-in-amazon-ecr "
            "(pushed referrers are listed; imported ones: silent)",
        ),
    ),
)
BY_NAME: Mapping[str, Switch] = MappingProxyType({switch.name: switch for switch in SWITCHES})
PROFILES: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "documented": MappingProxyType({s.name: s.documented for s in SWITCHES}),
        "strict": MappingProxyType({s.name: s.strict for s in SWITCHES}),
    }
)
DEFAULT_PROFILE = "documented"


class BehaviourError(ValueError):
    """An unknown profile, switch or variant; the message lists the valid ones."""


@dataclass(frozen=True)
class Behaviour:
    """One variant per switch; ``profile`` names the profile it started from."""

    profile: str
    variants: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, profile: str = DEFAULT_PROFILE, overrides: Mapping[str, str] | None = None) -> Behaviour:
        if profile not in PROFILES:
            raise BehaviourError(f"unknown profile {profile!r}; profiles: {', '.join(PROFILES)}")
        variants = dict(PROFILES[profile])
        for name, variant in (overrides or {}).items():
            switch = BY_NAME.get(name)
            if switch is None:
                raise BehaviourError(f"unknown switch {name!r}; switches: {', '.join(BY_NAME)}")
            if variant not in switch.variants:
                raise BehaviourError(
                    f"unknown variant {variant!r} of {name}; variants: {', '.join(switch.variants)}"
                )
            variants[name] = variant
        return cls(profile, MappingProxyType(variants))

    def __getitem__(self, name: str) -> str:
        return self.variants[name]

    @property
    def overrides(self) -> dict[str, str]:
        """The switches that differ from the profile."""
        base = PROFILES[self.profile]
        return {name: v for name, v in self.variants.items() if base[name] != v}

    def doc(self) -> dict[str, object]:
        """The answer of ``/_emulator/behaviour``."""
        return {
            "profile": self.profile,
            "switches": dict(self.variants),
            "overrides": self.overrides,
            "profiles": {name: dict(p) for name, p in PROFILES.items()},
            "variants": {s.name: list(s.variants) for s in SWITCHES},
        }
