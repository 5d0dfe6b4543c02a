"""Check raw ECR JSON answers against the output shapes of the installed botocore model.

``validate_output(operation, raw)`` walks the operation's output shape and fails on unknown
keys, wrong JSON types, missing required members, enum values outside the model, and strings or
lists that break the model's length or pattern constraints.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import botocore.session
from botocore.model import ServiceModel, Shape


@functools.cache
def _model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("ecr")


class ShapeError(AssertionError):
    pass


def _check(shape: Shape, value: Any, path: str) -> None:
    kind = shape.type_name
    meta = shape.metadata
    if kind == "structure":
        if not isinstance(value, dict):
            raise ShapeError(f"{path}: expected an object for {shape.name}, got {type(value).__name__}")
        unknown = set(value) - set(shape.members)
        if unknown:
            raise ShapeError(f"{path}: unknown members {sorted(unknown)} in {shape.name}")
        missing = [name for name in shape.required_members if name not in value]
        if missing:
            raise ShapeError(f"{path}: missing required members {missing} of {shape.name}")
        for name, item in value.items():
            _check(shape.members[name], item, f"{path}.{name}")
    elif kind in ("list", "map"):
        expected = list if kind == "list" else dict
        if not isinstance(value, expected):
            raise ShapeError(f"{path}: expected a {kind} for {shape.name}, got {type(value).__name__}")
        _size(meta, len(value), path)
        if kind == "list":
            for index, item in enumerate(value):
                _check(shape.member, item, f"{path}[{index}]")
        elif isinstance(value, dict):
            for key, item in value.items():
                _check(shape.key, key, f"{path}<key>")
                _check(shape.value, item, f"{path}[{key}]")
    elif kind == "string":
        if not isinstance(value, str):
            raise ShapeError(f"{path}: expected a string for {shape.name}, got {type(value).__name__}")
        if shape.enum and value not in shape.enum:
            raise ShapeError(f"{path}: {value!r} is not in the {shape.name} enum {shape.enum}")
        _size(meta, len(value), path)
        if meta.get("pattern") and not re.fullmatch(meta["pattern"], value):
            raise ShapeError(f"{path}: {value!r} does not match the {shape.name} pattern {meta['pattern']}")
    elif kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ShapeError(f"{path}: expected an integer for {shape.name}, got {value!r}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise ShapeError(f"{path}: expected a boolean for {shape.name}, got {value!r}")
    elif kind == "timestamp":
        # AWS JSON 1.1 sends timestamps as epoch seconds (a JSON number).
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ShapeError(f"{path}: expected epoch seconds for {shape.name}, got {value!r}")
    elif kind in ("blob", "float", "double"):
        if kind != "blob" and not isinstance(value, int | float):
            raise ShapeError(f"{path}: expected a number for {shape.name}, got {value!r}")
    else:
        raise ShapeError(f"{path}: unhandled shape type {kind}")


def _size(meta: dict[str, Any], size: int, path: str) -> None:
    if "min" in meta and size < meta["min"]:
        raise ShapeError(f"{path}: size {size} below the model minimum {meta['min']}")
    if "max" in meta and size > meta["max"]:
        raise ShapeError(f"{path}: size {size} above the model maximum {meta['max']}")


def validate_output(operation_name: str, raw: dict[str, Any] | bytes | str) -> dict[str, Any]:
    """Validate the raw JSON body of a successful ``operation_name`` answer; returns the parsed body."""
    body = json.loads(raw) if isinstance(raw, bytes | str) else raw
    shape = _model().operation_model(operation_name).output_shape
    if shape is None:
        if body:
            raise ShapeError(f"{operation_name} has no output shape but returned {body!r}")
        return body
    _check(shape, body, operation_name)
    return body


def validate_error(operation_name: str, raw: dict[str, Any] | bytes | str) -> str:
    """Check an error body: ``__type`` names an error shape of the operation (or ValidationException)."""
    body = json.loads(raw) if isinstance(raw, bytes | str) else raw
    if set(body) - {"__type", "message"} or not isinstance(body.get("message"), str):
        raise ShapeError(f"{operation_name}: error body {body!r} is not {{__type, message}}")
    code = body["__type"]
    errors = {shape.name for shape in _model().operation_model(operation_name).error_shapes}
    if code not in errors | {"ValidationException"}:
        raise ShapeError(f"{operation_name}: error {code} is not one the model lists ({sorted(errors)})")
    return code
