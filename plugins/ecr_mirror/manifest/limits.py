"""Limits on one manifest file, so that a hostile or runaway file is refused within a second.

Every manifest is read by the DAG file, so one file that never finishes loading (a 1.3 KB
"billion laughs" alias bomb), crashes the parser (5,000-deep nesting) or is huge would take every
mirror DAG down. Each limit is a setting (settings.py, ``ECR_MIRROR_MANIFEST_MAX_*``) and its
error names it:

- bytes of the file, checked before reading it;
- control characters (NUL, ...), which YAML forbids, reported with line and column;
- nesting depth: libyaml composes nodes recursively in C, where a deep enough file overflows the
  stack and kills the process (PyYAML 6.0.3 built on Debian's libyaml crashed at 100,000 levels).
  The libyaml PyYAML 6.0.4's wheels bundle refuses nesting past 1,000 levels in its scanner;
  where that guard is missing (``libyaml_caps_nesting``), a file that might nest deeper than
  ``SAFE_C_DEPTH`` is first walked event by event (``check_events``). ``Walk`` then enforces the
  configured depth with the line where it is passed;
- aliases and the size of the tree once they are expanded (what validation would walk);
- entries of ``images``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import yaml

from ecr_mirror.manifest.errors import FieldError, ManifestError
from ecr_mirror.settings import get_settings

#: nesting libyaml's C composer is trusted with (it recursed 5,000 deep, crashed at 100,000)
SAFE_C_DEPTH = 1000
#: libyaml's own error for nesting past its limit (1,000 levels)
NESTING_ERROR = "exceeded maximum nesting depth"
#: characters YAML 1.1 does not allow in a stream (tab, LF and CR are allowed)
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ufffe\uffff\ud800-\udfff]")
#: the indentation and block indicators a line starts with: block nesting grows only with them
_LEAD = re.compile(r"^[ \t?:-]*", re.MULTILINE)
_STARTS = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_ENDS = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


@dataclass(frozen=True)
class Limits:
    """The limits one manifest file is held to (defaults and meaning: settings.py)."""

    max_bytes: int
    max_depth: int
    max_aliases: int
    max_nodes: int
    max_images: int

    @classmethod
    def from_settings(cls) -> Limits:
        settings = get_settings()
        return cls(
            settings.manifest_max_bytes,
            settings.manifest_max_depth,
            settings.manifest_max_aliases,
            settings.manifest_max_nodes,
            settings.manifest_max_images,
        )


def refuse(path: Path, message: str, line: int | None = None, loc: str = "") -> ManifestError:
    return ManifestError(path, [FieldError(loc, message, line)])


def read_text(path: Path, limits: Limits) -> str:
    """The file's text: its size checked before reading, UTF-8, no control character."""
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise refuse(path, f"the file is {size:,} bytes, over {_limit('bytes', limits.max_bytes)}")
        data = path.read_bytes()
    except OSError as exc:
        raise refuse(path, f"cannot read the file: {exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise refuse(path, f"not UTF-8: byte 0x{data[exc.start]:02x} cannot be decoded", line) from None
    if found := _CONTROL.search(text):
        line = text.count("\n", 0, found.start()) + 1
        column = found.start() - text.rfind("\n", 0, found.start())
        code = f"U+{ord(found.group()):04X}"
        raise refuse(path, f"control character {code} at column {column}: YAML does not allow it", line)
    return text


@cache
def libyaml_caps_nesting() -> bool:
    """Whether this libyaml refuses deep nesting itself (a scanner error, not a crash)."""
    loader = yaml.CSafeLoader("[" * (SAFE_C_DEPTH + 1))
    try:
        loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        return NESTING_ERROR in str(exc.problem)
    finally:
        loader.dispose()
    return False  # pragma: no cover - the unclosed brackets always raise


def may_nest_deeper_than(text: str, depth: int) -> bool:
    """Whether the text might nest deeper than ``depth`` (an upper bound, false positives allowed).

    Block nesting needs more indentation or another "- " / "? " on the line's lead (a sequence
    under a mapping key may share its indentation: hence twice the lead); flow nesting needs a
    bracket each.
    """
    lead = max(map(len, _LEAD.findall(text)), default=0)
    return 2 * (lead + 1) + text.count("[") + text.count("{") > depth


def check_events(path: Path, text: str, limits: Limits) -> None:
    """Walk the file's events (iteratively, in constant stack) and refuse it at the first place
    it nests deeper than ``limits.max_depth`` or uses more aliases than ``limits.max_aliases``."""
    parser = yaml.CSafeLoader(text)
    depth = aliases = 0
    try:
        while (event := parser.get_event()) is not None:
            if isinstance(event, _STARTS):
                depth += 1
                if depth > limits.max_depth:
                    raise _too_deep(path, _line(event.start_mark), limits)
            elif isinstance(event, _ENDS):
                depth -= 1
            elif isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > limits.max_aliases:
                    raise _too_many_aliases(path, _line(event.start_mark), limits)
    finally:
        parser.dispose()


class NotPlain(Exception):
    """A file whose data needs PyYAML's constructor (Walk.build)."""


_STR, _SEQ, _MAP = (f"tag:yaml.org,2002:{kind}" for kind in ("str", "seq", "map"))


@dataclass
class Walk:
    """One pass over a composed node tree: its depth, aliases and expanded size against the
    limits, and what ``visit`` reports for each mapping (keys written twice).

    A node reached again through an alias is not walked again: its expanded size is remembered,
    so an alias bomb costs what its text costs.
    """

    path: Path
    limits: Limits
    visit: Callable[[yaml.MappingNode, str], list[FieldError]]
    #: whether the file has anchors (``&name``); without, no node is reached twice and scalars
    #: need no visit (the walk costs a visit per collection only)
    anchored: bool = True
    errors: list[FieldError] = field(default_factory=list)
    aliases: int = 0
    sizes: dict[int, int] = field(default_factory=dict)

    def run(self, root: yaml.Node) -> list[FieldError]:
        self._check_images(root)
        self._node(root, "", 1)
        return self.errors

    def _node(self, node: yaml.Node, loc: str, depth: int) -> int:
        if (known := self.sizes.get(id(node))) is not None:
            self.aliases += 1
            if self.aliases > self.limits.max_aliases:
                raise _too_many_aliases(self.path, node.start_mark.line + 1, self.limits)
            return known
        if depth > self.limits.max_depth:
            raise _too_deep(self.path, node.start_mark.line + 1, self.limits)
        size = 1
        if isinstance(node, yaml.MappingNode):
            self.errors.extend(self.visit(node, loc))
            for key, value in node.value:
                child = f"{loc}.{key.value}" if loc else str(key.value)
                size += self._child(key, child, depth) + self._child(value, child, depth)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                size += self._child(item, f"{loc}[{i}]", depth)
        if size > self.limits.max_nodes:
            over = _limit("nodes", self.limits.max_nodes)
            message = f"expands to {size:,} YAML nodes through its aliases, over {over}"
            raise refuse(self.path, message, node.start_mark.line + 1, loc)
        if self.anchored:
            self.sizes[id(node)] = size
        return size

    def _child(self, node: yaml.Node, loc: str, depth: int) -> int:
        if not self.anchored and type(node) is yaml.ScalarNode:
            return 1
        return self._node(node, loc, depth + 1)

    def build(self, root: yaml.Node, scalar: Callable[[yaml.Node], Any]) -> Any:
        """``run`` for a file without anchors, building its data in the same pass (``scalar``
        constructs a scalar that is not a plain string); NotPlain for a file that needs PyYAML's
        constructor (merge keys, explicit collection tags, collections as keys).

        PyYAML's constructor, in Python, took a fifth of the time to load 100 manifests x 100
        images; every manifest in practice is plain."""
        self._check_images(root)
        return self._build(root, "", 1, scalar)

    def _build(self, node: yaml.Node, loc: str, depth: int, scalar: Callable[[yaml.Node], Any]) -> Any:
        if type(node) is yaml.ScalarNode:
            return node.value if node.tag == _STR else scalar(node)
        if depth > self.limits.max_depth:
            raise _too_deep(self.path, node.start_mark.line + 1, self.limits)
        if type(node) is yaml.SequenceNode and node.tag == _SEQ:
            return [self._build(item, f"{loc}[{i}]", depth + 1, scalar) for i, item in enumerate(node.value)]
        if type(node) is not yaml.MappingNode or node.tag != _MAP:
            raise NotPlain
        self.errors.extend(self.visit(node, loc))
        data: dict[Any, Any] = {}
        for key, value in node.value:
            if type(key) is not yaml.ScalarNode or key.value == "<<":
                raise NotPlain
            child = f"{loc}.{key.value}" if loc else str(key.value)
            data[self._build(key, child, depth + 1, scalar)] = self._build(value, child, depth + 1, scalar)
        return data

    def _check_images(self, root: yaml.Node) -> None:
        if not isinstance(root, yaml.MappingNode):
            return
        for key, value in root.value:
            count = len(value.value) if isinstance(value, yaml.SequenceNode) else 0
            if key.value == "images" and count > self.limits.max_images:
                message = f"lists {count:,} images, over {_limit('images', self.limits.max_images)}"
                raise refuse(self.path, message, key.start_mark.line + 1, "images")


class _Mark(Protocol):
    line: int


def _line(mark: _Mark | None) -> int | None:
    return mark.line + 1 if mark is not None else None


def _limit(name: str, value: int) -> str:
    return f"the limit of {value:,} (ECR_MIRROR_MANIFEST_MAX_{name.upper()})"


def _too_deep(path: Path, line: int | None, limits: Limits) -> ManifestError:
    return refuse(path, too_deep(limits), line)


def too_deep(limits: Limits) -> str:
    return f"nests deeper than {_limit('depth', limits.max_depth)}"


def _too_many_aliases(path: Path, line: int | None, limits: Limits) -> ManifestError:
    return refuse(path, f"uses more YAML aliases than {_limit('aliases', limits.max_aliases)}", line)
