"""Tag selection: which (repository, tag or digest) pairs a manifest asks to mirror.

An image's selector (manifest.TagSelector) has exact tags, which need nothing from upstream, and
optionally a filter over the upstream tag list, evaluated in one fixed order (docs/manifest.md):

    upstream tags -> semver -> include -> exclude -> latest N, then exact tags are added

Versions and ranges are read by versions.py.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from fnmatch import fnmatchcase
from typing import Any

from ecr_mirror import patterns
from ecr_mirror.failures import error_kind
from ecr_mirror.manifest import Manifest, TagSelector
from ecr_mirror.states import Action, ErrorKind
from ecr_mirror.versions import ANY_VARIANT, aliases, in_range, parse_range, tag_version, variant_matches

#: the `tag` column of the audit row reporting a selector that could not be resolved
SELECTOR_ROW_TAG = "(selector)"


class SelectionError(ValueError):
    """What a run asks for does not exist in its manifest (an image glob that matches nothing):
    the run fails with this message instead of mirroring less than was asked."""


def wanted_images(manifest: Manifest, globs: Sequence[str]) -> list[int]:
    """The indexes of the images a run's globs select (every image without globs).

    A glob matches an image's name as written in the manifest or in full (``nginx``,
    ``docker.io/library/nginx``, ``quay.io/prometheus/*``). Raises SelectionError naming each glob
    that matches nothing, with the closest image name: a typo (``ngnix``) must not be a green run
    that mirrored nothing.
    """
    names = [(spec.image, spec.ref.name) for spec in manifest.images]
    if not globs:
        return list(range(len(names)))
    unmatched = [g for g in globs if not any(fnmatchcase(w, g) or fnmatchcase(n, g) for w, n in names)]
    if unmatched:
        raise SelectionError("; ".join(_unmatched_glob(manifest, glob) for glob in unmatched))
    return [i for i, (w, n) in enumerate(names) if any(fnmatchcase(w, g) or fnmatchcase(n, g) for g in globs)]


def _unmatched_glob(manifest: Manifest, glob: str) -> str:
    """The error for a glob that matches no image, with the closest image name (difflib) on the
    names as written, in full and by their last component (``pyhton`` finds
    ``docker.io/library/python``)."""
    written = list(dict.fromkeys(spec.image for spec in manifest.images))
    names: dict[str, str] = {}
    for spec in manifest.images:
        for name in (spec.ref.repository.rsplit("/", 1)[-1], spec.ref.name, spec.image):
            names[name] = spec.image
    close = difflib.get_close_matches(glob, list(names), n=1, cutoff=0.6)
    message = f"image glob {glob!r} matches no image of manifest {manifest.name!r}"
    if close:
        return message + f" (did you mean {names[close[0]]!r}?)"
    more = ", ..." if len(written) > 5 else ""
    return message + f" (its images: {', '.join(written[:5])}{more})"


def filter_tags(selector: TagSelector, upstream_tags: Iterable[str]) -> list[str]:
    """The upstream tags a selector's filter keeps, highest version first, then other tags by name.

    Exact tags are not added here (see select_tags). Order: semver, include, exclude, latest N.
    `semver` and `latest` consider only the releases of the selector's variant (versions.py:
    no variant unless `variant` says which, no floating alias such as ``7.4`` beside ``7.4.1``).
    """
    versions = {tag: tag_version(tag) for tag in set(upstream_tags)}
    floating = aliases(v for v in versions.values() if v is not None)
    releases = {
        tag: v
        for tag, v in versions.items()
        if v is not None and v not in floating and variant_matches(selector.variant, v.variant)
    }
    kept = sorted(versions)
    if selector.semver is not None:
        spec = parse_range(selector.semver)
        kept = [
            t for t in kept if (v := releases.get(t)) is not None and in_range(spec, v, selector.prerelease)
        ]
    if selector.include:
        kept = [t for t in kept if any(patterns.search(pattern, t) for pattern in selector.include)]
    if selector.exclude:
        kept = [t for t in kept if not any(patterns.search(pattern, t) for pattern in selector.exclude)]
    if selector.latest is not None:
        ranked = {
            t: v for t in kept if (v := releases.get(t)) and (selector.prerelease or not v.is_prerelease)
        }
        top = sorted({v.version for v in ranked.values()}, reverse=True)[: selector.latest]
        kept = [t for t, v in ranked.items() if v.version in top]
    # `kept` is sorted by name, and a stable sort keeps that order among equal versions, so a
    # version's tag without a variant comes before its variants (1.27.2, 1.27.2-alpine)
    known = {t: v for t in kept if (v := versions[t])}
    with_version = sorted(known, key=lambda t: known[t].version, reverse=True)
    return with_version + [t for t in kept if versions[t] is None]


def variant_hint(selector: TagSelector, upstream_tags: Sequence[str]) -> str:
    """Why a selector that matched nothing might have: the tags it would keep with any variant.

    "" when the variant is not the reason.
    """
    if selector.variant == ANY_VARIANT or not (selector.semver is not None or selector.latest is not None):
        return ""
    others = filter_tags(selector.model_copy(update={"variant": ANY_VARIANT}), upstream_tags)
    if not others:
        return ""
    variants = sorted({v.variant or "" for t in others if (v := tag_version(t)) is not None})
    shown = ", ".join(repr(v) if v else "none" for v in variants[:5]) + (", ..." if len(variants) > 5 else "")
    return (
        f"; {len(others)} tags would match with another variant (e.g. {others[0]}; variants {shown}): "
        f"name one with variant: <name>, or write variant: {ANY_VARIANT}"
    )


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

    `action` is NO_MATCH (the filter kept no upstream tag), FAILED (the tag list could not be read)
    or PIN_MISMATCH (a pinned tag now points at another digest).
    """

    image_index: int
    image: str
    cache_repository: str
    action: Action
    error: str
    tag: str = SELECTOR_ROW_TAG
    kind: ErrorKind = ErrorKind.PERMANENT


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
    """Every tag the manifest selects, in manifest order.

    `listings` maps an image name (ImageRef.name) to its upstream tag list, or to the error that
    listing raised; it is needed for every image whose selector has a filter. `only` narrows the
    selection to some image indexes. A tag that two entries of one image select (filters can
    overlap; tags written twice are refused when the manifest loads) is mirrored by neither: it
    is reported as an overlap naming both entries, as which entry's settings apply is unknown.
    """
    listings = listings or {}
    selected: dict[tuple[str, str, str], TagRef] = {}
    owners: dict[tuple[str, str, str], list[int]] = {}
    unresolved: list[Unresolved] = []
    for index in range(len(manifest.images)):
        if only is not None and index not in only:
            continue
        refs, problem = _image_tags(manifest, index, listings)
        if problem is not None:
            unresolved.append(problem)
        for tag in refs:
            key = (tag.registry, tag.repository, tag.reference)
            selected.setdefault(key, tag)
            if index not in owners.setdefault(key, []):
                owners[key].append(index)
    for key, indexes in owners.items():
        if len(indexes) > 1:
            unresolved.append(_overlap(manifest, selected.pop(key), indexes))
    return Selection(list(selected.values()), unresolved)


def _overlap(manifest: Manifest, tag: TagRef, indexes: Sequence[int]) -> Unresolved:
    entries = " and ".join(manifest.entry(i) for i in indexes)
    error = (
        f"{tag.image}:{tag.reference} is selected by {entries}: not mirrored, as a tag comes from one "
        "entry (its settings); narrow one selector (e.g. exclude the tag) or merge the entries"
    )
    return Unresolved(indexes[-1], tag.image, tag.cache_repository, Action.OVERLAP, error, tag.reference)


def _image_tags(
    manifest: Manifest, index: int, listings: Mapping[str, Sequence[str] | Exception]
) -> tuple[list[TagRef], Unresolved | None]:
    """The tags images[index] selects, and why its filter yields nothing (or None)."""
    ref = manifest.images[index].ref
    if ref.digest:
        return [tag_ref(manifest, index, ref.tag, ref.digest)], None
    selector = manifest.images[index].tags
    assert selector is not None  # validation: an image without a digest pin has tags
    refs = [tag_ref(manifest, index, tag) for tag in selector.exact]
    if not selector.needs_listing:
        return refs, None
    listing = listings.get(ref.name)
    if listing is None:
        raise KeyError(f"no upstream tag list for {ref.name}")
    repository = manifest.cache_repository(ref)
    if isinstance(listing, Exception):
        error = f"{ref.name}: selector {selector.describe()}: listing upstream tags failed "
        error += f"(0 upstream tags seen): {listing}"
        return refs, Unresolved(index, ref.name, repository, Action.FAILED, error, kind=error_kind(listing))
    try:
        matched = filter_tags(selector, listing)
    except patterns.PatternTimeout as exc:  # cut off: the other images go on
        error = f"{ref.name}: selector {selector.describe()}: {exc}"
        return refs, Unresolved(index, ref.name, repository, Action.FAILED, error, kind=ErrorKind.PERMANENT)
    if not matched:
        error = f"{ref.name}: selector {selector.describe()} matched none of the {len(listing)} upstream tags"
        error += variant_hint(selector, listing)
        return refs, Unresolved(index, ref.name, repository, Action.NO_MATCH, error)
    return refs + [tag_ref(manifest, index, tag) for tag in matched], None
