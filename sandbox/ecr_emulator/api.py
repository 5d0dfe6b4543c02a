"""The ECR JSON API (AWS JSON 1.1): dispatch on ``X-Amz-Target``, validate, answer.

Requests are validated against the installed botocore model before a handler runs; answers are
trimmed to the members of the operation's output shape.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .clock import Clock
from .errors import ApiError
from .pullthrough import PullThroughCache
from .store import Store
from .validation import operation_model, validate

TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921."
T = TypeVar("T")


@dataclass
class Context:
    """What every operation handler gets."""

    store: Store
    clock: Clock
    cache: PullThroughCache
    account: str
    region: str
    endpoint: str

    @property
    def registry_host(self) -> str:
        return f"{self.account}.dkr.ecr.{self.region}.amazonaws.com"


Handler = Callable[[Context, dict[str, Any]], dict[str, Any]]


def paginate(
    items: Sequence[T], params: dict[str, Any], default: int = 100
) -> tuple[list[T], dict[str, Any]]:
    """Slice ``items`` by ``maxResults``/``nextToken``; returns the page and the ``nextToken`` member."""
    offset = 0
    if params.get("nextToken"):
        try:
            offset = int(json.loads(base64.urlsafe_b64decode(params["nextToken"]))["offset"])
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise ApiError("InvalidParameterException", "Invalid parameter at 'nextToken'") from exc
    limit = params.get("maxResults") or default
    page = list(items[offset : offset + limit])
    if offset + limit < len(items):
        token = base64.urlsafe_b64encode(json.dumps({"offset": offset + limit}).encode()).decode()
        return page, {"nextToken": token}
    return page, {}


def shape_keys(operation: str) -> set[str]:
    model = operation_model(operation)
    return set(model.output_shape.members) if model and model.output_shape else set()


def handle(handlers: dict[str, Handler], ctx: Context, target: str, body: bytes) -> dict[str, Any]:
    """Run one API call; raises ApiError for every failure the caller should see."""
    operation = target.removeprefix(TARGET_PREFIX)
    model = operation_model(operation)
    if not target.startswith(TARGET_PREFIX) or model is None:
        raise ApiError("UnknownOperationException", f"Unknown operation {target}")
    if operation not in handlers:
        raise ApiError("UnknownOperationException", f"The emulator does not implement {operation}")
    try:
        params = json.loads(body or b"{}")
    except ValueError as exc:
        raise ApiError("SerializationException", "Request body is not valid JSON") from exc
    validate(model.input_shape, params)
    result = handlers[operation](ctx, params)
    allowed = shape_keys(operation)
    return {key: _prune(value) for key, value in result.items() if key in allowed and value is not None}


def _prune(value: Any) -> Any:
    """Drop ``None`` members at every depth: AWS leaves absent members out."""
    if isinstance(value, dict):
        return {key: _prune(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_prune(item) for item in value]
    return value
