"""Image references: parsing, upstream kinds and the names ECR pull through cache gives them.

Parsing follows the docker/distribution reference rules (a first path component is a host when it
contains "." or ":" or is "localhost"; Docker Hub official images live under "library/"), but only
hosts that an ECR pull through cache rule can point at are accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import lru_cache


class UpstreamKind(StrEnum):
    """The `upstreamRegistry` enum of the ECR API (botocore model `UpstreamRegistry`)."""

    DOCKER_HUB = "docker-hub"
    ECR_PUBLIC = "ecr-public"
    K8S = "k8s"
    QUAY = "quay"
    GHCR = "github-container-registry"
    GITLAB = "gitlab-container-registry"
    AZURE = "azure-container-registry"
    ECR = "ecr"
    CHAINGUARD = "chainguard"


DEFAULT_UPSTREAM_URL: dict[UpstreamKind, str] = {
    UpstreamKind.DOCKER_HUB: "registry-1.docker.io",
    UpstreamKind.ECR_PUBLIC: "public.ecr.aws",
    UpstreamKind.K8S: "registry.k8s.io",
    UpstreamKind.QUAY: "quay.io",
    UpstreamKind.GHCR: "ghcr.io",
    UpstreamKind.GITLAB: "registry.gitlab.com",
    UpstreamKind.CHAINGUARD: "cgr.dev",
}
"""Upstream registry URL of each hosted upstream. Azure and private ECR have one URL per registry."""

_DOCKER_HUB_HOST = DEFAULT_UPSTREAM_URL[UpstreamKind.DOCKER_HUB]
_DOCKER_HUB_DISPLAY = "docker.io"
_DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", _DOCKER_HUB_HOST})
_HOSTED_KINDS = {url: kind for kind, url in DEFAULT_UPSTREAM_URL.items()}

# Azure login servers are <name>.azurecr.io; newer ones carry a "-<hash>" domain name label suffix.
_AZURE_HOST_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*\.azurecr\.io$")
_ECR_HOST_RE = re.compile(r"^[0-9]{12}\.dkr\.ecr\.[a-z]{2}(?:-[a-z]+)+-[0-9]+\.amazonaws\.com$")

_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_NAME_MAX = 255  # docker/distribution NameTotalLengthMax
_ECR_REPOSITORY_MAX = 256  # botocore RepositoryName max length

SUPPORTED_HOSTS = (
    "docker.io",
    *[url for kind, url in DEFAULT_UPSTREAM_URL.items() if kind is not UpstreamKind.DOCKER_HUB],
    "<name>.azurecr.io",
    "<account>.dkr.ecr.<region>.amazonaws.com",
)


class InvalidReference(ValueError):
    """An image reference that cannot be mirrored; the message names the text and the reason."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(text, reason)
        self.text = text
        self.reason = reason

    def __str__(self) -> str:
        return f"invalid image reference {self.text!r}: {self.reason}"


def tag_problem(tag: str) -> str | None:
    """Why `tag` is not a valid image tag, or None when it is."""
    if _TAG_RE.fullmatch(tag):
        return None
    return f"tag {tag!r} is invalid: 1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"


def upstream_kind(host: str) -> UpstreamKind | None:
    """The upstream kind of a registry host, or None when no ECR pull through cache rule can use it."""
    host = host.lower()
    if host in _DOCKER_HUB_ALIASES:
        return UpstreamKind.DOCKER_HUB
    if host in _HOSTED_KINDS:
        return _HOSTED_KINDS[host]
    if _AZURE_HOST_RE.fullmatch(host):
        return UpstreamKind.AZURE
    if _ECR_HOST_RE.fullmatch(host):
        return UpstreamKind.ECR
    return None


@dataclass(frozen=True)
class ImageRef:
    """A normalised upstream image reference.

    `registry` is the host an ECR rule points at ("registry-1.docker.io" for every Docker Hub
    spelling) and `repository` the upstream path ("library/nginx"). Construction normalises
    Docker Hub aliases and the implicit "library/" and rejects anything ECR cannot mirror.
    """

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    def __post_init__(self) -> None:
        registry = self.registry.lower()
        if registry in _DOCKER_HUB_ALIASES:
            registry = _DOCKER_HUB_HOST
            if "/" not in self.repository:
                object.__setattr__(self, "repository", f"library/{self.repository}")
        object.__setattr__(self, "registry", registry)
        reason = self._problem()
        if reason:
            raise InvalidReference(str(self), reason)

    def _problem(self) -> str | None:
        if upstream_kind(self.registry) is None:
            return (
                f"registry host {self.registry!r} is not an upstream ECR pull through cache supports "
                f"(supported: {', '.join(SUPPORTED_HOSTS)})"
            )
        if not self.repository:
            return "repository is empty"
        for component in self.repository.split("/"):
            if not component:
                return f"repository {self.repository!r} has an empty path component"
            if component != component.lower():
                return f"repository {self.repository!r} must be lowercase"
            if not _COMPONENT_RE.fullmatch(component):
                return (
                    f"repository component {component!r} is invalid: use lowercase letters and digits "
                    "separated by '.', '_', '__' or '-'"
                )
        if len(self.name) > _NAME_MAX:
            return f"name is longer than {_NAME_MAX} characters"
        if self.tag is not None and (reason := tag_problem(self.tag)):
            return reason
        if self.digest is not None and not _DIGEST_RE.fullmatch(self.digest):
            return f"digest {self.digest!r} is invalid: expected 'sha256:' and 64 lowercase hex digits"
        return None

    @property
    def kind(self) -> UpstreamKind:
        kind = upstream_kind(self.registry)
        assert kind is not None  # guaranteed by __post_init__
        return kind

    @property
    def name(self) -> str:
        """Registry (as people write it) and repository, e.g. "docker.io/library/nginx"."""
        host = _DOCKER_HUB_DISPLAY if self.registry == _DOCKER_HUB_HOST else self.registry
        return f"{host}/{self.repository}"

    def with_tag(self, tag: str) -> ImageRef:
        """The same repository at `tag`, without a digest (a digest would pin something else)."""
        return replace(self, tag=tag, digest=None)

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


@lru_cache(maxsize=65536)
def parse_image(text: str) -> ImageRef:
    """Parse an image reference as docker does ("nginx", "quay.io/org/x:tag", "ghcr.io/o/r@sha256:...").

    Cached (an ImageRef is immutable): validating a manifest reads each entry's reference several
    times, about 4 per image, which was a fifth of loading 100 manifests of 100 images."""
    if not text or text != text.strip():
        raise InvalidReference(text, "empty or surrounded by whitespace")
    name, _, digest = text.partition("@")
    tag: str | None = None
    last_slash = name.rfind("/")
    if ":" in name[last_slash + 1 :]:
        name, _, tag = name.rpartition(":")
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        host, repository = first, rest
    else:
        host, repository = _DOCKER_HUB_DISPLAY, name
    try:
        return ImageRef(host, repository, tag, digest if "@" in text else None)
    except InvalidReference as exc:
        raise InvalidReference(text, exc.reason) from None


def cache_repository(ref: ImageRef, ecr_prefix: str, upstream_repository_prefix: str | None = None) -> str:
    """The ECR repository that a pull through cache rule with `ecr_prefix` caches `ref` in.

    For an ECR upstream with an upstream repository prefix P, ECR maps "<ecr_prefix>/x" to "P/x",
    so the upstream repository must start with "P/" and only the rest follows the ECR prefix.
    """
    repository = ref.repository
    upstream_prefix = (upstream_repository_prefix or "ROOT").rstrip("/")
    if upstream_prefix != "ROOT":
        if ref.kind is not UpstreamKind.ECR:
            raise ValueError(f"an upstream repository prefix applies to ECR upstreams only, not {ref.kind}")
        if not repository.startswith(f"{upstream_prefix}/"):
            raise InvalidReference(
                str(ref),
                f"repository does not start with the rule's upstream repository prefix {upstream_prefix!r}",
            )
        repository = repository[len(upstream_prefix) + 1 :]
    prefix = ecr_prefix.rstrip("/")
    result = repository if prefix == "ROOT" else f"{prefix}/{repository}"
    if len(result) > _ECR_REPOSITORY_MAX:
        raise InvalidReference(
            str(ref), f"ECR repository name {result!r} is longer than {_ECR_REPOSITORY_MAX} characters"
        )
    return result
