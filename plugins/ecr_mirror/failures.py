"""Which failures another try may cure (states.ErrorKind): the classification of the exceptions
a tag's requests raise, shared by the comparison, the pull and the selection.

An HTTP answer is transient when the server says so (429, 408, 5xx), a connection that broke,
stalled or sent a short body is transient, and so is an AWS error that the AWS SDKs retry
themselves (throttling, 5xx: https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html).
A body whose digest is not the one asked for is transient too: a corrupted transfer is the likely
cause, and a registry that keeps serving it fails the run once the retries are spent.
Everything else (not found, access denied, a malformed answer, a bug) is permanent.
"""

from __future__ import annotations

import http.client

import httpx

from ecr_mirror.registry import DigestMismatchError, RegistryError
from ecr_mirror.states import ErrorKind

#: AWS error codes the SDKs treat as throttling or transient
TRANSIENT_AWS_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "InternalServerException",
        "ServerException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
    }
)

_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    httpx.TransportError,
    ConnectionError,
    TimeoutError,
    http.client.IncompleteRead,
    DigestMismatchError,
)


def _transient_status(status: int | None) -> bool:
    return status is not None and (status in (408, 429) or status >= 500)


def _aws_transient(exc: BaseException) -> bool:
    module = type(exc).__module__
    if not module.startswith(("botocore", "urllib3")):
        return False
    response = getattr(exc, "response", None)
    if isinstance(response, dict):  # botocore.exceptions.ClientError
        code = response.get("Error", {}).get("Code")
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return code in TRANSIENT_AWS_CODES or _transient_status(status)
    # EndpointConnectionError, ConnectionClosedError, ReadTimeoutError...: the connection, not the call
    return any(c.__name__ in ("ConnectionError", "HTTPClientError") for c in type(exc).__mro__)


def _one(exc: BaseException) -> bool:
    if isinstance(exc, _TRANSIENT_TYPES):
        return True
    if isinstance(exc, RegistryError):
        return _transient_status(exc.status)
    return _aws_transient(exc)


def error_kind(exc: BaseException) -> ErrorKind:
    """TRANSIENT when ``exc``, or an exception it was raised from, is one another try may cure."""
    if isinstance(exc, RegistryError) and exc.status is not None and not _transient_status(exc.status):
        return ErrorKind.PERMANENT  # the registry answered, e.g. 404 or 403: whatever came before
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if _one(current):
            return ErrorKind.TRANSIENT
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return ErrorKind.PERMANENT
