"""The ECR JSON API (AWS JSON 1.1): dispatch on ``X-Amz-Target``, validate, answer.

Requests are validated against the installed botocore model before a handler runs; answers are
trimmed to the members of the operation's output shape, then checked (``shapes``): a problem is
recorded as a violation, not hidden.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .behaviour import Behaviour
from .clock import Clock
from .errors import ApiError
from .pullthrough import PullThroughCache
from .shapes import Facts, Violations, output_problems
from .store import Store
from .validation import operation_model, validate

TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921."
T = TypeVar("T")


@dataclass
class Context:
    """What every operation handler gets; ``facts`` is filled in by the handler (one per request)."""

    store: Store
    clock: Clock
    cache: PullThroughCache
    account: str
    region: str
    endpoint: str
    facts: Facts = field(default_factory=Facts)

    @property
    def registry_host(self) -> str:
        return f"{self.account}.dkr.ecr.{self.region}.amazonaws.com"

    @property
    def behaviour(self) -> Behaviour:
        return self.cache.behaviour


Handler = Callable[[Context, dict[str, Any]], dict[str, Any]]


def encode_token(doc: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()


def decode_token(token: str) -> dict[str, Any]:
    """The document inside a ``nextToken``; InvalidParameterException when it is not one of ours."""
    try:
        doc = json.loads(base64.urlsafe_b64decode(token))
        if not isinstance(doc, dict):
            raise ValueError(token)
        return doc
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ApiError("InvalidParameterException", "Invalid parameter at 'nextToken'") from exc


def paginate(
    ctx: Context, items: Sequence[T], params: dict[str, Any], default: int = 100
) -> tuple[list[T], dict[str, Any]]:
    """Slice ``items`` by ``maxResults``/``nextToken``; returns the page and the ``nextToken`` member."""
    offset = 0
    if params.get("nextToken"):
        try:
            offset = int(decode_token(params["nextToken"])["offset"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ApiError("InvalidParameterException", "Invalid parameter at 'nextToken'") from exc
    limit = params.get("maxResults") or default
    page = list(items[offset : offset + limit])
    if offset + limit < len(items):
        ctx.facts = Facts(more_pages=True)
        return page, {"nextToken": encode_token({"offset": offset + limit})}
    return page, {}


def shape_keys(operation: str) -> set[str]:
    model = operation_model(operation)
    return set(model.output_shape.members) if model and model.output_shape else set()


def check_registry(ctx: Context, operation: str, params: dict[str, Any]) -> None:
    """A ``registryId`` of another account: AccessDeniedException, as IAM answers a principal that no
    resource-based policy of that registry lets in (the emulator is one registry and has none)."""
    other = params.get("registryId")
    if other is None or other == ctx.account:
        return
    name = params.get("repositoryName")
    resource = f"arn:aws:ecr:{ctx.region}:{other}:" + (f"repository/{name}" if name else "*")
    raise ApiError(
        "AccessDeniedException",
        f"User: arn:aws:iam::{ctx.account}:user/ecr-emulator is not authorized to perform: ecr:{operation} "
        f"on resource: {resource} because no resource-based policy allows the ecr:{operation} action",
    )


def handle(
    handlers: dict[str, Handler],
    ctx: Context,
    target: str,
    body: bytes,
    violations: Violations | None = None,
) -> dict[str, Any]:
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
    check_registry(ctx, operation, params)
    result = handlers[operation](ctx, params)
    allowed = shape_keys(operation)
    answer = {key: _prune(value) for key, value in result.items() if key in allowed and value is not None}
    if violations is not None:
        violations.record("shape", operation, output_problems(operation, answer, ctx.facts))
    return answer


def _prune(value: Any) -> Any:
    """Drop ``None`` members at every depth: AWS leaves absent members out."""
    if isinstance(value, dict):
        return {key: _prune(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_prune(item) for item in value]
    return value
