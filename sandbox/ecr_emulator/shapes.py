"""Checks of ECR JSON answers: the botocore output shapes, and the members clients rely on.

The botocore model marks almost no output member ``required`` (the ECR model: none), so a shape
check alone cannot notice an answer that omits ``imageDigest`` or ``isValid``. ``RELIED_ON`` lists,
per operation, the members that ecr-mirror (and its probe) read and that AWS sends; an answer
without one is a violation. Input constraints are not all output constraints: a list's ``min``
(``BatchDeleteImage.imageIds`` has ``min: 1`` because a request must name an image) says nothing
about an answer, which may list nothing; string lengths, patterns and enums describe the values
themselves and are checked.

The emulator checks every answer it sends (``api.handle``) and records violations for
``/_emulator/violations``; the tests check raw answers on the client side with the same functions.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.model import Shape

from .validation import service_model

#: operation -> members an answer must carry (``a[].b``: member ``b`` of every item of list ``a``)
RELIED_ON: dict[str, tuple[str, ...]] = {
    "DescribeImages": ("imageDetails", "imageDetails[].imageDigest", "imageDetails[].imagePushedAt"),
    "DescribeRepositories": (
        "repositories",
        "repositories[].repositoryName",
        "repositories[].imageTagMutability",
    ),
    "DescribePullThroughCacheRules": (
        "pullThroughCacheRules",
        "pullThroughCacheRules[].ecrRepositoryPrefix",
        "pullThroughCacheRules[].upstreamRegistryUrl",
    ),
    "DescribeRepositoryCreationTemplates": (
        "repositoryCreationTemplates",
        "repositoryCreationTemplates[].prefix",
        "repositoryCreationTemplates[].appliedFor",
        "repositoryCreationTemplates[].imageTagMutability",
        "repositoryCreationTemplates[].encryptionConfiguration",
    ),
    "ValidatePullThroughCacheRule": ("ecrRepositoryPrefix", "isValid"),
    "GetAuthorizationToken": (
        "authorizationData",
        "authorizationData[].authorizationToken",
        "authorizationData[].expiresAt",
        "authorizationData[].proxyEndpoint",
    ),
    "BatchDeleteImage": ("imageIds", "failures", "failures[].failureCode", "failures[].failureReason"),
    "ListTagsForResource": ("tags",),
    "GetDownloadUrlForLayer": ("downloadUrl", "layerDigest"),
    "CreatePullThroughCacheRule": ("ecrRepositoryPrefix", "upstreamRegistryUrl"),
    "CreateRepositoryCreationTemplate": ("repositoryCreationTemplate",),
}


def _conditional(operation: str, body: dict[str, Any]) -> list[str]:
    """Members that must be there when others have certain values."""
    problems = []
    if (
        operation == "ValidatePullThroughCacheRule"
        and body.get("isValid") is False
        and not body.get("failure")
    ):
        problems.append("isValid is false but no failure says why")
    if operation == "DescribeRepositories":
        for index, repo in enumerate(body.get("repositories") or []):
            setting = str(repo.get("imageTagMutability", ""))
            if setting.endswith("_WITH_EXCLUSION") and not repo.get("imageTagMutabilityExclusionFilters"):
                problems.append(f"repositories[{index}]: {setting} without its exclusion filters")
    return problems


@dataclass(frozen=True)
class Facts:
    """What the emulator knows about an answer that the answer itself cannot show."""

    more_pages: bool = False


class ShapeError(AssertionError):
    pass


def _paths(value: Any, parts: list[str], where: str) -> list[str]:
    """The places along ``parts`` (``a[]``, ``b``) where a member is missing."""
    if not parts:
        return []
    head, rest = parts[0], parts[1:]
    name = head.removesuffix("[]")
    if not isinstance(value, dict) or name not in value:
        return [f"{where}{name}" if not where else f"{where}.{name}"]
    item = value[name]
    here = f"{where}.{name}" if where else name
    if head.endswith("[]"):
        missing = []
        for index, element in enumerate(item if isinstance(item, list) else []):
            missing += _paths(element, rest, f"{here}[{index}]")
        return missing
    return _paths(item, rest, here)


def _check(shape: Shape, value: Any, path: str, problems: list[str]) -> None:
    kind, meta = shape.type_name, shape.metadata
    if kind == "structure":
        if not isinstance(value, dict):
            problems.append(f"{path}: expected an object for {shape.name}, got {type(value).__name__}")
            return
        unknown = set(value) - set(shape.members)
        if unknown:
            problems.append(f"{path}: unknown members {sorted(unknown)} in {shape.name}")
        missing = [name for name in shape.required_members if name not in value]
        if missing:
            problems.append(f"{path}: missing required members {missing} of {shape.name}")
        for name, item in value.items():
            if name in shape.members:
                _check(shape.members[name], item, f"{path}.{name}", problems)
    elif kind in ("list", "map"):
        expected = list if kind == "list" else dict
        if not isinstance(value, expected):
            problems.append(f"{path}: expected a {kind} for {shape.name}, got {type(value).__name__}")
            return
        # Only the maximum: a list minimum constrains requests (see the module docstring).
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{path}: {len(value)} items, above the model maximum {meta['max']}")
        if kind == "list":
            for index, item in enumerate(value):
                _check(shape.member, item, f"{path}[{index}]", problems)
        else:
            for key, item in value.items():
                _check(shape.key, key, f"{path}<key>", problems)
                _check(shape.value, item, f"{path}[{key}]", problems)
    elif kind == "string":
        if not isinstance(value, str):
            problems.append(f"{path}: expected a string for {shape.name}, got {type(value).__name__}")
            return
        if shape.enum and value not in shape.enum:
            problems.append(f"{path}: {value!r} is not in the {shape.name} enum {shape.enum}")
        if "min" in meta and len(value) < meta["min"]:
            problems.append(f"{path}: length {len(value)} below the model minimum {meta['min']}")
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{path}: length {len(value)} above the model maximum {meta['max']}")
        if meta.get("pattern") and not re.fullmatch(meta["pattern"], value):
            problems.append(f"{path}: {value!r} does not match the {shape.name} pattern {meta['pattern']}")
    elif kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{path}: expected an integer for {shape.name}, got {value!r}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            problems.append(f"{path}: expected a boolean for {shape.name}, got {value!r}")
    elif kind == "timestamp":
        # AWS JSON 1.1 sends timestamps as epoch seconds (a JSON number).
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"{path}: expected epoch seconds for {shape.name}, got {value!r}")
    elif kind in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"{path}: expected a number for {shape.name}, got {value!r}")
    elif kind != "blob":
        problems.append(f"{path}: unhandled shape type {kind}")


def output_problems(operation: str, body: dict[str, Any], facts: Facts | None = None) -> list[str]:
    """Everything wrong with the body of a successful ``operation`` answer (empty: nothing)."""
    model = service_model()
    if operation not in model.operation_names:
        return [f"{operation} is not an operation of the ECR model"]
    shape = model.operation_model(operation).output_shape
    if shape is None:
        return [f"{operation} has no output shape but returned {body!r}"] if body else []
    problems: list[str] = []
    _check(shape, body, operation, problems)
    for path in RELIED_ON.get(operation, ()):
        problems += [f"{operation}: {where} is missing" for where in _paths(body, path.split("."), "")]
    problems += [f"{operation}: {problem}" for problem in _conditional(operation, body)]
    if facts and facts.more_pages and not body.get("nextToken"):
        problems.append(f"{operation}: more results exist but the answer has no nextToken")
    return problems


#: errors every AWS JSON service may answer besides the operation's own (not in the model's list);
#: ThrottlingException: https://docs.aws.amazon.com/AmazonECR/latest/APIReference/CommonErrors.html
COMMON_ERRORS = frozenset(
    {
        "ValidationException",
        "AccessDeniedException",
        "UnknownOperationException",
        "SerializationException",
        "ThrottlingException",
    }
)


def error_problems(operation: str, body: dict[str, Any]) -> list[str]:
    """Everything wrong with an error answer: ``{__type, message}`` naming an error the operation has."""
    if set(body) - {"__type", "message"} or not isinstance(body.get("message"), str):
        return [f"{operation}: error body {body!r} is not {{__type, message}}"]
    model = service_model()
    code = body.get("__type")
    if operation not in model.operation_names:
        return [] if code in COMMON_ERRORS else [f"{operation}: unknown operation answered {code}"]
    errors = {shape.name for shape in model.operation_model(operation).error_shapes}
    if code not in errors | COMMON_ERRORS:
        return [f"{operation}: error {code} is not one the model lists ({sorted(errors)})"]
    return []


def _parse(raw: dict[str, Any] | bytes | str) -> dict[str, Any]:
    return json.loads(raw) if isinstance(raw, bytes | str) else raw


def validate_output(operation: str, raw: dict[str, Any] | bytes | str) -> dict[str, Any]:
    """Raise ShapeError for the problems of a raw successful answer; returns the parsed body."""
    body = _parse(raw)
    if problems := output_problems(operation, body):
        raise ShapeError("; ".join(problems))
    return body


def validate_error(operation: str, raw: dict[str, Any] | bytes | str) -> str:
    """Raise ShapeError for a malformed error answer; returns its error code."""
    body = _parse(raw)
    if problems := error_problems(operation, body):
        raise ShapeError("; ".join(problems))
    return body["__type"]


class Violations:
    """Problems the emulator found in its own answers (and credentials sent where they must not go)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._items: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._clock = clock

    def record(self, kind: str, operation: str, problems: list[str]) -> None:
        with self._lock:
            for problem in problems:
                self._items.append(
                    {"kind": kind, "operation": operation, "problem": problem, "at": self._clock()}
                )

    def items(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._items)

    def reset(self) -> list[dict[str, Any]]:
        with self._lock:
            items, self._items = self._items, []
            return items
