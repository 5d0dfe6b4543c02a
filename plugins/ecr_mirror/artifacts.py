"""Supply-chain artifacts of an image: cosign's signature, attestation and SBOM tags, and OCI 1.1
referrers, found per subject digest in the image's own upstream repository.

Engine module: no Airflow imports. Discovery only reads (manifest HEADs, which Docker Hub does not
count as pulls, and referrers lists); mirroring an artifact is pulling its tag or digest through
the same pull through cache rule as the image. Formats and sources: docs/supply-chain.md.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from .protocols import UpstreamRegistry
from .registry import FetchedManifest


class ArtifactKind(StrEnum):
    SIGNATURE = "signature"  # cosign `sha256-<hex>.sig`
    ATTESTATION = "attestation"  # cosign `sha256-<hex>.att` (DSSE in-toto statements)
    SBOM = "sbom"  # cosign `sha256-<hex>.sbom` (deprecated by cosign in favour of attestations)
    REFERRER = "referrer"  # an OCI 1.1 manifest whose `subject` is the digest


COSIGN_KINDS: tuple[ArtifactKind, ...] = (ArtifactKind.SIGNATURE, ArtifactKind.ATTESTATION, ArtifactKind.SBOM)
_SUFFIX = {ArtifactKind.SIGNATURE: "sig", ArtifactKind.ATTESTATION: "att", ArtifactKind.SBOM: "sbom"}


def cosign_tag(digest: str, kind: ArtifactKind = ArtifactKind.SIGNATURE) -> str:
    """cosign's tag for ``kind`` of manifest ``digest``: ``sha256:<hex>`` -> ``sha256-<hex>.sig``."""
    if kind not in _SUFFIX:
        raise ValueError(f"{kind} artifacts have no cosign tag")
    algorithm, sep, encoded = digest.partition(":")
    if not sep or not algorithm or not encoded:
        raise ValueError(f"not a digest: {digest!r}")
    return f"{algorithm}-{encoded}.{_SUFFIX[kind]}"


@dataclass(frozen=True)
class Artifact:
    """One artifact of ``subject``: where it is (``tag`` for cosign kinds, else only its digest),
    what it is, and how it was found (``cosign-tag``, ``api`` or ``tag-schema``)."""

    kind: ArtifactKind
    subject: str
    digest: str
    media_type: str
    artifact_type: str | None
    tag: str | None
    source: str
    size: int | None

    @property
    def reference(self) -> str:
        """What to pull: the cosign tag, or the referrer's digest."""
        return self.tag or self.digest


def subject_digests(manifest: FetchedManifest, platforms: Collection[str] | None = None) -> list[str]:
    """The digests whose artifacts belong with ``manifest``: itself and, for an index, the
    manifests it lists (only those of ``platforms`` when given, e.g. ``{"linux/amd64"}``)."""
    digests = [manifest.digest]
    for platform, child in manifest.children():
        if (platforms is None or platform in platforms) and child not in digests:
            digests.append(child)
    return digests


def discover_artifacts(
    client: UpstreamRegistry,
    repository: str,
    subjects: Iterable[str],
    *,
    kinds: Collection[ArtifactKind] = COSIGN_KINDS,
    referrers: bool = True,
    artifact_types: Sequence[str] | None = None,
    tags: Collection[str] | None = None,
) -> list[Artifact]:
    """The artifacts of each subject digest in ``repository``: the cosign tags of ``kinds`` that
    exist, then (with ``referrers``) the OCI referrers, only those of ``artifact_types`` if given.

    ``tags`` is the repository's tag list when the caller already has it (tag selectors list
    tags anyway): cosign tags missing from it are skipped without a request. Registry errors
    other than "not found" propagate, so a failed look-up is never mistaken for "no artifacts".
    """
    found: list[Artifact] = []
    for subject in subjects:
        for kind in (k for k in COSIGN_KINDS if k in kinds):
            tag = cosign_tag(subject, kind)
            if tags is not None and tag not in tags:
                continue
            info = client.head_manifest(repository, tag)
            if info is not None:
                found.append(
                    Artifact(kind, subject, info.digest, info.media_type, None, tag, "cosign-tag", info.size)
                )
        if referrers:
            seen: set[str] = set()
            wanted: Sequence[str | None] = artifact_types or [None]
            for artifact_type in wanted:
                listed = client.list_referrers(repository, subject, artifact_type)
                for ref in listed.referrers:
                    if ref.digest in seen:
                        continue
                    seen.add(ref.digest)
                    found.append(
                        Artifact(
                            ArtifactKind.REFERRER,
                            subject,
                            ref.digest,
                            ref.media_type,
                            ref.artifact_type,
                            None,
                            listed.source,
                            ref.size,
                        )
                    )
    return found
