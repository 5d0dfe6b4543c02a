"""The version a container tag names, its variant, and version ranges.

Ranges are evaluated by ``semantic_version`` (npm/cargo style ``^2.50 || ^3`` with NpmSpec, PEP
440 style ``>=3.11,<3.14`` with SimpleSpec). Reading a version out of a Docker tag is written
here: ``Version.coerce`` and ``packaging`` both read ``1.27-alpine`` as a prerelease, while on a
registry ``-alpine`` is a variant of the 1.27 release (Renovate calls it the tag's
"compatibility", Docker Official Images a variant), and only ``rc``/``beta``/... mark a prerelease.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeAlias

from semantic_version import NpmSpec, SimpleSpec, Version

from ecr_mirror import patterns

_VERSION_RE = re.compile(
    r"""
    v?(?P<major>\d+)(?:\.(?P<minor>\d+))?(?:\.(?P<patch>\d+))?
    (?P<pre>[-.]?(?:alpha|beta|rc|pre|preview|dev)(?:[.-]?\d+)?|(?:a|b)\d+)?
    (?:-(?P<variant>[A-Za-z0-9][A-Za-z0-9_.-]*))?
    """,
    re.VERBOSE | re.IGNORECASE,
)
# A build date (20240101), alone or as the start of a tag: a timestamp, not a release number.
_DATE_RE = re.compile(r"(?:19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])")
_PRE_PART_RE = re.compile(r"[A-Za-z]+|\d+")
_PEP440_OPERATORS = (",", "~=", "==", "!=")
_RANGE_V_RE = re.compile(r"(?<![A-Za-z0-9])v(?=\d)")

VersionRange: TypeAlias = NpmSpec | SimpleSpec

#: the selector's `variant` value that accepts every variant, and tags without one
ANY_VARIANT = "any"


@dataclass(frozen=True)
class TagVersion:
    """The version a tag names: ``v3.1.0``, ``3.12-slim`` (3.12.0, variant ``slim``), ``3.14.0rc1``.

    A partial version counts as its ``.0`` release (``3.12`` is 3.12.0); ``numbers`` keeps what
    was written (``(3, 12)``), which tells a floating alias from a release (see ``aliases``).
    """

    version: Version
    variant: str | None
    numbers: tuple[int, ...] = ()

    @property
    def is_prerelease(self) -> bool:
        return bool(self.version.prerelease)

    @property
    def release(self) -> Version:
        """The version without its prerelease part (3.14.0rc1 -> 3.14.0)."""
        return Version(major=self.version.major, minor=self.version.minor, patch=self.version.patch)


def tag_version(tag: str) -> TagVersion | None:
    """The version of a tag, or None for tags such as ``latest``, ``mainline``, ``sha-1a2b3c`` or
    a build date ``20240101``."""
    match = _VERSION_RE.fullmatch(tag)
    if match is None or _DATE_RE.fullmatch(match["major"]):
        return None
    pre = tuple(part.lower() for part in _PRE_PART_RE.findall(match["pre"] or ""))
    numbers = tuple(int(n) for n in (match["major"], match["minor"], match["patch"]) if n is not None)
    version = Version(
        major=numbers[0],
        minor=numbers[1] if len(numbers) > 1 else 0,
        patch=numbers[2] if len(numbers) > 2 else 0,
        prerelease=pre,
    )
    return TagVersion(version, match["variant"], numbers)


def aliases(versions: Iterable[TagVersion]) -> set[TagVersion]:
    """The floating aliases among ``versions``: a shorter version of which the list has a longer
    one in the same variant (``7.4`` beside ``7.4.1``, ``17-alpine`` beside ``17.2-alpine``).
    A numbered prerelease (``17rc1`` beside ``17.2``) is no alias; ``3.14-rc`` is one.

    An alias moves to each new patch release, so it does not name the version it reads as:
    ``7.4`` reads as 7.4.0 but points at 7.4.1. Ranges and ``latest`` leave aliases out.
    """
    listed = list(versions)
    longer = {(v.variant, v.numbers[:size]) for v in listed for size in range(1, len(v.numbers))}
    return {v for v in listed if (v.variant, v.numbers) in longer and not _numbered(v.version.prerelease)}


def _numbered(prerelease: tuple[str, ...]) -> bool:
    """A prerelease with a number (rc1, beta.3) names one build; ``3.14-rc`` follows the newest."""
    return any(part.isdigit() for part in prerelease)


def variant_matches(wanted: str | None, variant: str | None) -> bool:
    """Whether a tag's variant is the one a selector wants.

    ``None`` wants tags without a variant; ``any`` every tag; anything else is a regular expression
    that must match the whole variant (``alpine`` is exactly ``-alpine``, ``alpine3\\.\\d+`` any
    ``-alpine3.N``); a tag without a variant is tested as the empty string.
    """
    if wanted is None:
        return variant is None
    if wanted == ANY_VARIANT:
        return True
    return patterns.fullmatch(wanted, variant or "")


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
