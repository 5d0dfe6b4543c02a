"""Tag selection: which (repository, tag or digest) pairs a manifest asks to mirror.

For now a selector lists exact tags and an image may be pinned by digest. Selectors that need the
upstream tag list (regex, semver, latest N) will add an input here; the output type stays TagRef.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from ecr_mirror.manifest import Manifest


@dataclass(frozen=True)
class TagRef:
    """One tag (or digest pin) to mirror. Plain strings only, so it round-trips through JSON / XCom.

    A pin may carry the tag it was written with ("nginx:1.27@sha256:..."); the digest is still what
    is mirrored, and the tag is a hint for the first pull (a first pull by digest is reported to fail).
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
        """What to ask the registry for: the digest of a pin, else the tag."""
        reference = self.digest or self.tag
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


def select_tags(manifest: Manifest) -> list[TagRef]:
    """Every tag the manifest selects, in manifest order; a tag selected twice appears once."""
    selected: dict[tuple[str, str, str], TagRef] = {}
    for index, spec in enumerate(manifest.images):
        ref = spec.ref
        rule = manifest.rule_for(ref)
        cache = manifest.cache_repository(ref)
        pairs: list[tuple[str | None, str | None]]
        if ref.digest:
            pairs = [(ref.tag, ref.digest)]
        else:
            assert spec.tags is not None  # validation: an image without a digest pin has tags
            pairs = [(tag, None) for tag in spec.tags.exact]
        for tag, digest in pairs:
            tag_ref = TagRef(
                image=ref.name,
                registry=ref.registry,
                repository=ref.repository,
                tag=tag,
                digest=digest,
                cache_repository=cache,
                rule_prefix=rule.prefix,
                image_index=index,
            )
            selected.setdefault((tag_ref.registry, tag_ref.repository, tag_ref.reference), tag_ref)
    return list(selected.values())
