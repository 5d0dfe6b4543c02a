"""Tag selection: which (repository, tag or digest) pairs a manifest asks to mirror.

An image's selector (manifest.TagSelector) has exact tags, which need nothing from upstream, and
optionally a filter over the upstream tag list, evaluated in one fixed order (docs/manifest.md):

    upstream tags -> semver -> include -> exclude -> latest N, then exact tags are added

Version ranges are evaluated by ``semantic_version`` (npm/cargo style ``^2.50 || ^3`` with
NpmSpec, PEP 440 style ``>=3.11,<3.14`` with SimpleSpec). Reading a version out of a Docker tag is
written here: ``Version.coerce`` and ``packaging`` both read ``1.27-alpine`` as a prerelease,
while on a registry ``-alpine`` is a variant of the 1.27 release, and only ``rc``/``beta``/...
mark a prerelease.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from semantic_version import NpmSpec, SimpleSpec, Version

if TYPE_CHECKING:
    from ecr_mirror.manifest import Manifest, TagSelector

#: the `tag` column of the audit row reporting a selector that could not be resolved
SELECTOR_ROW_TAG = "(selector)"

_VERSION_RE = re.compile(
    r"""
    v?(?P<major>\d+)(?:\.(?P<minor>\d+))?(?:\.(?P<patch>\d+))?
    (?P<pre>[-.]?(?:alpha|beta|rc|pre|preview|dev)(?:[.-]?\d+)?|(?:a|b)\d+)?
    (?:-(?P<variant>[A-Za-z0-9][A-Za-z0-9_.-]*))?
    """,
    re.VERBOSE | re.IGNORECASE,
)
_PRE_PART_RE = re.compile(r"[A-Za-z]+|\d+")
_PEP440_OPERATORS = (",", "~=", "==", "!=")
_RANGE_V_RE = re.compile(r"(?<![A-Za-z0-9])v(?=\d)")


@dataclass(frozen=True)
class TagVersion:
    """The version a tag names: ``v3.1.0``, ``3.12-slim`` (3.12.0, variant ``slim``), ``3.14.0rc1``.

    A partial version counts as its ``.0`` release (``3.12`` is 3.12.0).
    """

    version: Version
    variant: str | None

    @property
    def is_prerelease(self) -> bool:
        return bool(self.version.prerelease)

    @property
    def release(self) -> Version:
        """The version without its prerelease part (3.14.0rc1 -> 3.14.0)."""
        return Version(major=self.version.major, minor=self.version.minor, patch=self.version.patch)


def tag_version(tag: str) -> TagVersion | None:
    """The version of a tag, or None for tags such as ``latest``, ``mainline`` or ``sha-1a2b3c``."""
    match = _VERSION_RE.fullmatch(tag)
    if match is None:
        return None
    pre = tuple(part.lower() for part in _PRE_PART_RE.findall(match["pre"] or ""))
    version = Version(
        major=int(match["major"]),
        minor=int(match["minor"] or 0),
        patch=int(match["patch"] or 0),
        prerelease=pre,
    )
    return TagVersion(version, match["variant"])


def parse_range(text: str) -> NpmSpec | SimpleSpec:
    """A version range: PEP 440 style when it has a comma or ``~=``, ``==``, ``!=``, else npm style.

    Raises ValueError saying what is wrong. A ``v`` before a version is accepted (``^v2``).
    """
    cleaned = _RANGE_V_RE.sub("", text.strip())
    if not cleaned:
        raise ValueError("is empty: write a range such as '^2.50 || ^3' or '>=3.11,<3.14'")
    pep440 = any(operator in cleaned for operator in _PEP440_OPERATORS)
    try:
        return SimpleSpec(cleaned) if pep440 else NpmSpec(cleaned)
    except ValueError:
        style = "a PEP 440 style range (>=3.11,<3.14)" if pep440 else "an npm style range (^2.50 || ^3)"
        raise ValueError(f"{text!r} is not {style}") from None


def _in_range(spec: NpmSpec | SimpleSpec, version: TagVersion, prerelease: bool) -> bool:
    """A prerelease matches only with `prerelease: true`, and then as its release (3.14.0rc1 as 3.14.0)."""
    if version.is_prerelease:
        return prerelease and spec.match(version.release)
    return spec.match(version.version)


def filter_tags(selector: TagSelector, upstream_tags: Iterable[str]) -> list[str]:
    """The upstream tags a selector's filter keeps, highest version first, then other tags by name.

    Exact tags are not added here (see select_tags). Order: semver, include, exclude, latest N.
    """
    versions = {tag: tag_version(tag) for tag in set(upstream_tags)}
    kept = sorted(versions)
    if selector.semver is not None:
        spec = parse_range(selector.semver)
        kept = [t for t in kept if (v := versions[t]) is not None and _in_range(spec, v, selector.prerelease)]
    if selector.include:
        kept = [t for t in kept if any(re.search(pattern, t) for pattern in selector.include)]
    if selector.exclude:
        kept = [t for t in kept if not any(re.search(pattern, t) for pattern in selector.exclude)]
    if selector.latest is not None:
        ranked = {t: v for t in kept if (v := versions[t]) and (selector.prerelease or not v.is_prerelease)}
        top = sorted({v.version for v in ranked.values()}, reverse=True)[: selector.latest]
        kept = [t for t, v in ranked.items() if v.version in top]
    # `kept` is sorted by name, and a stable sort keeps that order among equal versions
    known = {t: v for t in kept if (v := versions[t])}
    with_version = sorted(known, key=lambda t: known[t].version, reverse=True)
    return with_version + [t for t in kept if versions[t] is None]


@dataclass(frozen=True)
class TagRef:
    """One tag (or digest pin) to mirror. Plain strings only, so it round-trips through JSON / XCom.

    A pin written with a tag ("nginx:1.27@sha256:...") mirrors that tag, but only while upstream's
    tag still points at the digest (checked by Mirror.resolve); a pin without a tag mirrors the digest.
    """

    image: str
    registry: str
    repository: str
    tag: str | None
    digest: str | None
    cache_repository: str
    rule_prefix: str
    #: position of the image in the manifest (its per-image settings: Manifest.image_settings)
    image_index: int = 0

    def __post_init__(self) -> None:
        if self.tag is None and self.digest is None:
            raise ValueError(f"TagRef for {self.image} needs a tag or a digest")

    @property
    def reference(self) -> str:
        """What to ask the registry for: the tag, or the digest of a pin written without a tag."""
        reference = self.tag or self.digest
        assert reference is not None  # guaranteed by __post_init__
        return reference

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TagRef:
        """Inverse of to_dict; unknown or missing keys raise ValueError instead of being guessed."""
        names = {field.name for field in fields(cls)}
        if set(data) != names:
            missing, unknown = sorted(names - set(data)), sorted(set(data) - names)
            raise ValueError(f"TagRef keys differ: missing {missing}, unknown {unknown}")
        return cls(**data)

    def __str__(self) -> str:
        text = self.image
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


@dataclass(frozen=True)
class Unresolved:
    """An image (or pinned tag) that yields nothing this run; the run reports it as one failed row.

    `action` is "no_match" (the filter kept no upstream tag), "failed" (the tag list could not be
    read) or "pin_mismatch" (a pinned tag now points at another digest).
    """

    image_index: int
    image: str
    cache_repository: str
    action: str
    error: str
    tag: str = SELECTOR_ROW_TAG


@dataclass
class Selection:
    tags: list[TagRef]
    unresolved: list[Unresolved]


def tag_ref(manifest: Manifest, index: int, tag: str | None, digest: str | None = None) -> TagRef:
    """The TagRef of `tag` (and/or `digest`) of images[index]."""
    ref = manifest.images[index].ref
    return TagRef(
        image=ref.name,
        registry=ref.registry,
        repository=ref.repository,
        tag=tag,
        digest=digest,
        cache_repository=manifest.cache_repository(ref),
        rule_prefix=manifest.rule_for(ref).prefix,
        image_index=index,
    )


def select_tags(
    manifest: Manifest,
    listings: Mapping[str, Sequence[str] | Exception] | None = None,
    only: Collection[int] | None = None,
) -> Selection:
    """Every tag the manifest selects, in manifest order; a tag selected twice appears once.

    `listings` maps an image name (ImageRef.name) to its upstream tag list, or to the error that
    listing raised; it is needed for every image whose selector has a filter. `only` narrows the
    selection to some image indexes.
    """
    listings = listings or {}
    selected: dict[tuple[str, str, str], TagRef] = {}
    unresolved: list[Unresolved] = []
    for index, spec in enumerate(manifest.images):
        if only is not None and index not in only:
            continue
        ref = spec.ref
        refs: list[TagRef] = []
        if ref.digest:
            refs.append(tag_ref(manifest, index, ref.tag, ref.digest))
        else:
            selector = spec.tags
            assert selector is not None  # validation: an image without a digest pin has tags
            refs += [tag_ref(manifest, index, tag) for tag in selector.exact]
            if selector.needs_listing:
                listing = listings.get(ref.name)
                if listing is None:
                    raise KeyError(f"no upstream tag list for {ref.name}")
                if isinstance(listing, Exception):
                    error = f"{ref.name}: selector {selector.describe()}: listing upstream tags failed "
                    error += f"(0 upstream tags seen): {listing}"
                    unresolved.append(
                        Unresolved(index, ref.name, manifest.cache_repository(ref), "failed", error)
                    )
                elif matched := filter_tags(selector, listing):
                    refs += [tag_ref(manifest, index, tag) for tag in matched]
                else:
                    error = f"{ref.name}: selector {selector.describe()} matched none of the "
                    error += f"{len(listing)} upstream tags"
                    unresolved.append(
                        Unresolved(index, ref.name, manifest.cache_repository(ref), "no_match", error)
                    )
        for tag in refs:
            selected.setdefault((tag.registry, tag.repository, tag.reference), tag)
    return Selection(list(selected.values()), unresolved)
