"""Digest-only pins (``image: name@sha256:...``): the upstream tag to pull one through.

A first pull by digest through a pull through cache rule is reported to answer "not found" until
the image has been pulled by a tag (containers-roadmap #2837; docs/ecr-facts.md). When ECR answers
so, the pin is pulled through an upstream tag that carries its digest, either as the tag's own
manifest or as a platform manifest of the tag's index (ECR caches every manifest of an index it
pulls). Finding that tag stays cheap and bounded: the tag that carried the digest last time (the
audit remembers it) is tried first, then the newest versions of the upstream tag list; a tag is
checked with a HEAD (which Docker Hub does not count as a pull), and only a few indexes are read
to look inside (each read counts as one pull).
"""

from __future__ import annotations

from dataclasses import dataclass

from ecr_mirror.protocols import UpstreamRegistry
from ecr_mirror.registry import INDEX_MEDIA_TYPES
from ecr_mirror.versions import tag_version

#: upstream tags checked with a HEAD per pin
MAX_HEADS = 50
#: upstream indexes read per pin, looking for a platform manifest (each GET counts as a pull)
MAX_INDEX_READS = 3


@dataclass(frozen=True)
class Carrier:
    """An upstream tag that carries a pinned digest; ``index``: the tag's index when the digest is
    one of its platform manifests."""

    tag: str
    index: str | None = None


@dataclass(frozen=True)
class Search:
    """What looking for a carrier found, and what it cost (for the error when nothing carries it)."""

    carrier: Carrier | None
    tags: int  # upstream tags listed
    heads: int
    index_reads: int


def newest_first(tags: list[str]) -> list[str]:
    """Tags that name a version, highest first, then the other tags by name."""
    versions = {tag: version for tag in tags if (version := tag_version(tag)) is not None}
    ranked = sorted(sorted(versions), key=lambda tag: versions[tag].version, reverse=True)
    return ranked + sorted(tag for tag in tags if tag not in versions)


class _Looker:
    """One search: HEADs each candidate once per digest seen, reads a bounded number of indexes."""

    def __init__(self, client: UpstreamRegistry, repository: str, digest: str, look_inside: bool) -> None:
        self.client, self.repository, self.digest = client, repository, digest
        self.look_inside = look_inside
        self.seen: set[str] = set()
        self.heads = 0
        self.index_reads = 0

    def carries(self, tag: str) -> Carrier | None:
        self.heads += 1
        info = self.client.head_manifest(self.repository, tag)
        if info is None or info.digest in self.seen:
            return None
        self.seen.add(info.digest)
        if info.digest == self.digest:
            return Carrier(tag)
        if not (self.look_inside and info.media_type in INDEX_MEDIA_TYPES):
            return None
        if self.index_reads >= MAX_INDEX_READS:
            return None
        self.index_reads += 1
        index = self.client.get_manifest(self.repository, info.digest)
        if any(child == self.digest for _, child in index.children()):
            return Carrier(tag, index.digest)
        return None


def find_carrier(
    client: UpstreamRegistry, repository: str, digest: str, remembered: str | None = None
) -> Search:
    """An upstream tag of ``repository`` that carries ``digest``: ``remembered`` first, then the
    newest tags, at most MAX_HEADS HEADs and MAX_INDEX_READS index reads. Registry errors propagate."""
    pinned = client.head_manifest(repository, digest)
    look_inside = pinned is not None and pinned.media_type not in INDEX_MEDIA_TYPES
    looker = _Looker(client, repository, digest, look_inside)
    if remembered and (carrier := looker.carries(remembered)):
        return Search(carrier, 0, looker.heads, looker.index_reads)
    tags = client.list_tags(repository)
    for tag in newest_first(tags):
        if looker.heads >= MAX_HEADS:
            break
        if tag != remembered and (carrier := looker.carries(tag)):
            return Search(carrier, len(tags), looker.heads, looker.index_reads)
    return Search(None, len(tags), looker.heads, looker.index_reads)
