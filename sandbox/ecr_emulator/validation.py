"""Request validation against the botocore ECR service model that is installed.

botocore checks required members, types and minimums on the client side; AWS checks the rest
(patterns, maximums, enums) on the server. Messages follow the shapes AWS uses:
``1 validation error detected: Value ... at '...' failed to satisfy constraint: Member must ...``
(ValidationException, the framework-level check) and ECR's own
``Invalid parameter at '...' failed to satisfy constraint: 'must satisfy regular expression ...'``
(InvalidParameterException) for pattern failures.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import botocore.session
from botocore.model import OperationModel, ServiceModel, Shape

from .errors import ApiError


@functools.cache
def service_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("ecr")


def operation_model(name: str) -> OperationModel | None:
    model = service_model()
    return model.operation_model(name) if name in model.operation_names else None


def _constraint(path: str, value: Any, rule: str) -> ApiError:
    return ApiError(
        "ValidationException",
        f"1 validation error detected: Value '{value}' at '{path}' failed to satisfy constraint: {rule}",
    )


def _check_size(shape: Shape, path: str, value: Any, size: int, what: str) -> None:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and size < low:
        raise _constraint(path, value, f"Member must have {what} greater than or equal to {low}")
    if high is not None and size > high:
        raise _constraint(path, value, f"Member must have {what} less than or equal to {high}")


def validate(shape: Shape | None, value: Any, path: str = "") -> None:
    """Raise ApiError for the first constraint of ``shape`` that ``value`` breaks."""
    if shape is None:
        return
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            raise _constraint(path, value, "Member must be a structure")
        for name in shape.required_members:
            if value.get(name) is None:
                where = f"{path}.{name}" if path else name
                raise _constraint(where, "null", "Member must not be null")
        for name, member in shape.members.items():
            if value.get(name) is not None:
                validate(member, value[name], f"{path}.{name}" if path else name)
    elif kind == "list":
        if not isinstance(value, list):
            raise _constraint(path, value, "Member must be a list")
        _check_size(shape, path, value, len(value), "length")
        for index, item in enumerate(value):
            validate(shape.member, item, f"{path}.{index + 1}.member")
    elif kind == "string":
        if not isinstance(value, str):
            raise _constraint(path, value, "Member must be a string")
        if shape.enum and value not in shape.enum:
            raise _constraint(path, value, f"Member must satisfy enum value set: [{', '.join(shape.enum)}]")
        _check_size(shape, path, value, len(value), "length")
        pattern = shape.metadata.get("pattern")
        if pattern and not re.fullmatch(pattern, value):
            raise ApiError(
                "InvalidParameterException",
                f"Invalid parameter at '{path}' failed to satisfy constraint: "
                f"'must satisfy regular expression '{pattern}''",
            )
    elif kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _constraint(path, value, "Member must be an integer")
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if low is not None and value < low:
            raise _constraint(path, value, f"Member must have value greater than or equal to {low}")
        if high is not None and value > high:
            raise _constraint(path, value, f"Member must have value less than or equal to {high}")
    elif kind == "boolean" and not isinstance(value, bool):
        raise _constraint(path, value, "Member must be a boolean")
