"""Loading YAML files into the manifest model, reporting every error with its file and line.

libyaml (PyYAML's CSafeLoader, about 10x faster than the pure-Python loader) builds a node tree
first, which keeps line numbers and shows keys written twice (the constructor keeps the last one
silently); pydantic then validates the constructed data, and each error's location is mapped back
to the nearest node. The file is held to limits.py's limits before and while it is composed.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ecr_mirror.manifest.checks import NAME_RE, manifest_words
from ecr_mirror.manifest.errors import FieldError, Identity, ManifestError
from ecr_mirror.manifest.limits import (
    NESTING_ERROR,
    SAFE_C_DEPTH,
    Limits,
    NotPlain,
    Walk,
    check_events,
    libyaml_caps_nesting,
    may_nest_deeper_than,
    read_text,
    too_deep,
)
from ecr_mirror.manifest.model import IMAGE_LINES, Manifest, Target
from ecr_mirror.manifest.notify import NotifyTarget
from ecr_mirror.manifest.supply import MANIFEST_DIR

M = TypeVar("M", bound=BaseModel)

#: what a manifest file holds at its top level (the error for a file that holds something else)
MANIFEST_KEYS = "name, target, rules and images"


@dataclass
class Document:
    """A YAML file read as a mapping: its data, its node tree (for lines) and its keys written twice."""

    path: Path
    data: dict[str, Any]
    root: yaml.Node
    errors: list[FieldError] = field(default_factory=list)

    def error(self, loc: tuple[str | int, ...], message: str) -> FieldError:
        """An error at ``loc`` (a pydantic location), with the line of the nearest node."""
        text, line = _locate(self.root, loc)
        return FieldError(text, message, line)

    def validate(self, model: type[M], data: Mapping[str, Any] | None = None) -> M:
        """``data`` (default: the file's) as ``model``; ManifestError listing every problem by line,
        keys written twice included."""
        errors = list(self.errors)
        try:
            context = {IMAGE_LINES: _item_lines(self.root, "images"), MANIFEST_DIR: self.path.parent}
            result = model.model_validate(self.data if data is None else data, context=context)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                loc, line = _locate(self.root, err["loc"])
                errors.append(FieldError(loc, _message(model, err), line))
        if errors:
            errors.sort(key=lambda error: (error.line is None, error.line or 0))
            raise ManifestError(self.path, errors, self.identity())
        return result

    def identity(self) -> Identity | None:
        """The DAG id and schedule the raw YAML gives, when its name is valid and its schedule a
        string or absent (dag_factory keeps them for the DAG of a file that does not load)."""
        name, schedule = self.data.get("name"), self.data.get("schedule")
        if not (isinstance(name, str) and NAME_RE.fullmatch(name)) or not isinstance(schedule, str | None):
            return None
        target = self.data.get("target")
        conn = target.get("aws_conn_id") if isinstance(target, dict) else None
        if not (isinstance(conn, str) and conn):
            conn = Target.model_fields["aws_conn_id"].default  # the model's default connection
        return Identity(
            "ecr_mirror__" + name.replace("-", "_"),
            schedule,
            conn,
            notify=_valid_targets(self.data.get("notify")),
        )


def read_document(path: Path, expected: str = MANIFEST_KEYS) -> Document:
    """Read a YAML mapping held to the limits (limits.py); ManifestError for a file that cannot be
    read, breaks a limit, is not YAML or holds something else than a mapping (``expected`` says
    of which keys)."""
    limits = Limits.from_settings()
    text = read_text(path, limits)
    try:
        root, data, errors = _compose(path, text, limits)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = ", ".join(part for part in (exc.context, exc.problem) if part)
        message = too_deep(limits) if NESTING_ERROR in reason else f"invalid YAML: {reason}"
        raise ManifestError(path, [FieldError("", message, mark.line + 1 if mark else None)]) from None
    except yaml.YAMLError as exc:
        raise ManifestError(path, [FieldError("", f"invalid YAML: {exc}")]) from None
    if root is None or not isinstance(data, dict):
        found = "nothing" if root is None else f"a {type(data).__name__}"
        raise ManifestError(path, [FieldError("", f"expected a mapping with {expected}, found {found}", 1)])
    return Document(path, data, root, errors)


def _compose(path: Path, text: str, limits: Limits) -> tuple[yaml.Node | None, Any, list[FieldError]]:
    """The node tree (held to the limits), the data built from it and the keys written twice."""
    if not libyaml_caps_nesting() and may_nest_deeper_than(text, SAFE_C_DEPTH):
        check_events(path, text, limits)
    loader = yaml.CSafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None, []
        walk = Walk(path, limits, _repeated_keys, anchored="&" in text)
        if not walk.anchored:
            try:
                return root, walk.build(root, loader.construct_object), walk.errors
            except NotPlain:
                walk = Walk(path, limits, _repeated_keys)
        # Before construction, which flattens "<<" merges into the nodes.
        errors = walk.run(root)
        return root, loader.construct_document(root), errors
    finally:
        loader.dispose()


def load_manifest(path: Path) -> Manifest:
    """Load and validate one manifest file; every problem is reported at once in a ManifestError."""
    return read_document(path).validate(Manifest)


def load_manifests(directory: Path) -> tuple[list[tuple[Path, Manifest]], list[ManifestError]]:
    """Load every *.yaml / *.yml in `directory` (by file name; dot files skipped).

    A bad file never stops the others. Two manifests that give the same DAG id (names equal after
    "-" -> "_") make the later file an error; the first one stays loaded.
    """
    if not directory.is_dir():
        return [], [ManifestError(directory, [FieldError("", "not a directory")])]
    return load_paths(manifest_files(directory))


def manifest_files(directory: Path) -> list[Path]:
    """The manifest files of a folder: *.yaml and *.yml by name, dot files left out."""
    return sorted(
        (p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and not p.name.startswith(".")),
        key=lambda p: p.name,
    )


def load_paths(paths: Iterable[Path]) -> tuple[list[tuple[Path, Manifest]], list[ManifestError]]:
    """Load manifest files in the order given; a bad file never stops the others, and a manifest
    whose DAG id an earlier file already has is an error."""
    loaded: list[tuple[Path, Manifest]] = []
    failed: list[ManifestError] = []
    owners: dict[str, Path] = {}
    for path in paths:
        try:
            document = read_document(path)
            manifest = document.validate(Manifest)
        except ManifestError as exc:
            failed.append(exc)
            continue
        first = owners.get(manifest.dag_id)
        if first is not None:
            owner = first.name if first.parent == path.parent else str(first)
            message = f"{manifest.name!r} gives DAG id {manifest.dag_id}, already used by {owner}"
            failed.append(ManifestError(path, [document.error(("name",), message)]))
            continue
        owners[manifest.dag_id] = path
        loaded.append((path, manifest))
    return loaded, failed


def _repeated_keys(node: yaml.MappingNode, loc: str) -> list[FieldError]:
    """PyYAML keeps the last of two equal keys silently; a manifest author means one of them."""
    errors: list[FieldError] = []
    first_lines: dict[str, int] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.value == "<<":
            continue
        line = key.start_mark.line + 1
        if key.value in first_lines:
            child = f"{loc}.{key.value}" if loc else key.value
            errors.append(FieldError(child, f"key repeated (first on line {first_lines[key.value]})", line))
        first_lines.setdefault(key.value, line)
    return errors


def _item_lines(root: yaml.Node, key: str) -> list[int]:
    """The line of each item of the top-level list ``key`` (messages that name two items use it)."""
    node, _ = _child(root, key)
    return [item.start_mark.line + 1 for item in node.value] if isinstance(node, yaml.SequenceNode) else []


def _locate(root: yaml.Node, loc: tuple[str | int, ...]) -> tuple[str, int | None]:
    """The dotted path of a pydantic `loc` as the user wrote it, and the YAML line nearest to it.

    A missing key gets the line of the closest enclosing node. A string key met on a YAML list is
    the `tags: [...]` shorthand for `{exact: [...]}`, so it is left out of the path.
    """
    text = ""
    line: int | None = root.start_mark.line + 1
    node: yaml.Node | None = root
    for part in loc:
        if isinstance(part, str) and (part == "[key]" or isinstance(node, yaml.SequenceNode)):
            continue
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
        node, found = _child(node, part)
        line = found or line
    return text, line


def _child(node: yaml.Node | None, part: str | int) -> tuple[yaml.Node | None, int | None]:
    """The node at ``part`` under ``node`` and the line to report for it (of the key, for a
    mapping), or (None, None) when the file has no such node."""
    if isinstance(part, int):
        if isinstance(node, yaml.SequenceNode) and 0 <= part < len(node.value):
            item: yaml.Node = node.value[part]
            return item, item.start_mark.line + 1
        return None, None
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == part:
                return value, key.start_mark.line + 1
    return None, None


def _message(model: type[BaseModel], err: ErrorDetails) -> str:
    kind = err["type"]
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, err["loc"][:-1])
        return "unknown key" + (f"; allowed keys: {', '.join(allowed)}" if allowed else "")
    value = err.get("input")
    keys = _allowed_keys(model, err["loc"]) if kind in ("model_type", "dict_type") else []
    message = manifest_words(kind, dict(err.get("ctx") or {}), value, keys) or err["msg"]
    if kind != "manifest" and isinstance(value, str | int | float | bool) and repr(value) not in message:
        message += f" (got {value!r})"
    return message


def _allowed_keys(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """Field names of the model at `loc`, found by walking the type annotations from ``model``."""
    annotation: Any = model
    for part in loc:
        annotation = _strip_optional(annotation)
        if isinstance(part, int):
            if typing.get_origin(annotation) is not list:
                return []
            annotation = typing.get_args(annotation)[0]
        elif (
            isinstance(annotation, type)
            and issubclass(annotation, BaseModel)
            and part in annotation.model_fields
        ):
            annotation = annotation.model_fields[part].annotation
        else:
            return []
    annotation = _strip_optional(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _valid_targets(raw: object) -> tuple[NotifyTarget, ...]:
    """The ``notify`` entries of a file that does not load that are valid on their own: its
    owners still hear that its runs fail."""
    if not isinstance(raw, list):
        return ()
    targets = []
    for entry in raw:
        try:
            targets.append(NotifyTarget.model_validate(entry))
        except ValidationError:
            continue  # the file's error list names it
    return tuple(targets)
