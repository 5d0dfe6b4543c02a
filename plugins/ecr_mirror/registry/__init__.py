"""Talking to OCI registries: the client (``client``), the documents and digests they exchange
(``media``), OCI 1.1 referrers (``referrers``), the HTTP headers they answer with (``headers``)
and the errors (``errors``)."""

from ecr_mirror.registry.client import BlobAnswer, RegistryClient
from ecr_mirror.registry.errors import (
    AuthError,
    DigestMismatchError,
    NotFoundError,
    RateLimitedError,
    RegistryError,
    UnavailableError,
)
from ecr_mirror.registry.headers import Challenge, RateLimit, parse_rate_limit, parse_www_authenticate
from ecr_mirror.registry.media import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    INDEX_MEDIA_TYPES,
    MANIFEST_ACCEPT,
    OCI_INDEX,
    OCI_MANIFEST,
    FetchedManifest,
    ManifestInfo,
    compute_digest,
)
from ecr_mirror.registry.referrers import Referrer, Referrers, referrers_tag

__all__ = [
    "DOCKER_LIST",
    "DOCKER_MANIFEST",
    "INDEX_MEDIA_TYPES",
    "MANIFEST_ACCEPT",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "AuthError",
    "BlobAnswer",
    "Challenge",
    "DigestMismatchError",
    "FetchedManifest",
    "ManifestInfo",
    "NotFoundError",
    "RateLimit",
    "RateLimitedError",
    "Referrer",
    "Referrers",
    "RegistryClient",
    "RegistryError",
    "UnavailableError",
    "compute_digest",
    "parse_rate_limit",
    "parse_www_authenticate",
    "referrers_tag",
]
