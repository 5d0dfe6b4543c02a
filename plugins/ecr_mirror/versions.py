"""The version a container tag names, and version ranges.

Ranges are evaluated by ``semantic_version`` (npm/cargo style ``^2.50 || ^3`` with NpmSpec, PEP
440 style ``>=3.11,<3.14`` with SimpleSpec). Reading a version out of a Docker tag is written
here: ``Version.coerce`` and ``packaging`` both read ``1.27-alpine`` as a prerelease, while on a
registry ``-alpine`` is a variant of the 1.27 release, and only ``rc``/``beta``/... mark a
prerelease.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeAlias

from semantic_version import NpmSpec, SimpleSpec, Version

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

VersionRange: TypeAlias = NpmSpec | SimpleSpec


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


def parse_range(text: str) -> VersionRange:
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


def in_range(spec: VersionRange, version: TagVersion, prerelease: bool) -> bool:
    """A prerelease matches only with `prerelease: true`, and then as its release (3.14.0rc1 as 3.14.0)."""
    if version.is_prerelease:
        return prerelease and bool(spec.match(version.release))
    return bool(spec.match(version.version))
