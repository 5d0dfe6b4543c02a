"""What the engine asks of ECR and of the upstream registries.

``ecr.EcrTarget`` and ``upstream.Upstreams`` are the implementations; the engine's modules name
these Protocols instead, so each says which part of a target it uses.
"""

from __future__ import annotations

from typing import Any, Protocol

from ecr_mirror.ecr import CachedImages, ImageTimes, Mutability
from ecr_mirror.registry import BlobAnswer, FetchedManifest, ManifestInfo, Referrers
from ecr_mirror.tags import TagRef


class CachedImagesReader(Protocol):
    """Lists what an ECR repository holds (describe_images)."""

    def cached_images(self, repository: str, *, tagged_only: bool = False) -> CachedImages: ...


class RegistryEndpoint(Protocol):
    """ECR's registry endpoint: a manifest GET is the pull through trigger; blobs are warmed."""

    def get_manifest(self, repository: str, reference: str) -> FetchedManifest: ...

    def list_referrers(self, repository: str, digest: str, artifact_type: str | None = None) -> Referrers: ...

    def blob_answer(self, repository: str, digest: str, *, read: bool = True) -> BlobAnswer: ...

    def read_elsewhere(self, url: str, chunk_size: int = ...) -> int: ...


class PullTarget(CachedImagesReader, Protocol):
    """What pulling, verifying and warming a batch needs from ECR."""

    def registry(self) -> RegistryEndpoint: ...

    def mutability(self, repository: str) -> Mutability: ...

    def image_times(self, repository: str, tag: str) -> ImageTimes: ...

    def delete_tag(self, repository: str, tag: str) -> None: ...


class SecretStore(Protocol):
    """Secrets Manager in the target's account and region (the PTC credentials)."""

    @property
    def region(self) -> str: ...

    def read_secret(self, name: str) -> tuple[str, object]:
        """(ARN, JSON value) of a secret; botocore's ClientError, or ValueError when not JSON."""
        ...


class RuleTarget(SecretStore, Protocol):
    """What reconciling pull through cache rules and creation templates needs."""

    @property
    def client(self) -> Any:
        """The boto3 ECR client (its paginators and rule/template calls)."""
        ...


class MirrorTarget(PullTarget, RuleTarget, Protocol):
    """An ECR registry as a whole run uses it."""


class UpstreamRegistry(Protocol):
    """One upstream registry's client (registry.RegistryClient)."""

    #: the registry's host (and port), as messages name it
    registry: str

    def list_tags(self, repository: str, page_size: int | None = None) -> list[str]: ...

    def head_manifest(self, repository: str, reference: str) -> ManifestInfo | None: ...

    def get_manifest(self, repository: str, reference: str) -> FetchedManifest: ...

    def read_blob(self, repository: str, digest: str, max_bytes: int = ...) -> bytes: ...

    def list_referrers(self, repository: str, digest: str, artifact_type: str | None = None) -> Referrers: ...


class UpstreamRegistries(Protocol):
    """The upstream registries of a run, one client per host."""

    def client(self, host: str) -> UpstreamRegistry: ...

    def digest(self, tag: TagRef) -> str | None: ...
