"""AWS errors said plainly: which call failed, on what, and what to do about it.

botocore raises ``ClientError`` with a code and AWS's message; shown raw, a throttled
``DescribePullThroughCacheRules`` is a traceback. :func:`explain` turns one into a sentence naming
the operation, the rule or repository, and the fix (the IAM action to grant, the retry mode to
set). Throttling is retried by botocore before it gets here: its ``standard`` mode by default in
the Amazon provider, ``adaptive`` when the connection's extra says
``{"config_kwargs": {"retries": {"mode": "adaptive", "max_attempts": 10}}}``
(https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html).

Also :func:`quiet_botocore`: botocore logs every response body at DEBUG, before the engine can
hand a secret in it to the masker, so the calls that return credentials (GetSecretValue,
GetAuthorizationToken) run with botocore's response logging above DEBUG.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError

THROTTLING = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
    }
)
ACCESS_DENIED = frozenset({"AccessDeniedException", "AccessDenied", "UnauthorizedOperation"})
VALIDATION = frozenset({"ValidationException", "InvalidParameterException"})
RETRY_HINT = (
    'set the connection\'s extra {"config_kwargs": {"retries": {"mode": "adaptive", "max_attempts": 10}}} '
    "or run fewer tasks at once"
)


class AwsError(RuntimeError):
    """An AWS call that failed; the message names the operation, its target and the fix."""

    def __init__(self, message: str, *, code: str = "", transient: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.transient = transient  # throttling: a later attempt may succeed


def explain(exc: ClientError | BotoCoreError, target: str, service: str = "ecr") -> AwsError:
    """The AwsError saying why ``exc`` happened to ``target`` (e.g. "rule 'docker-hub'"; empty
    when the caller's message names it already)."""
    if isinstance(exc, BotoCoreError):  # no answer: endpoint, network, credentials
        where = f"{target}: " if target else ""
        return AwsError(f"{where}AWS could not be reached or signed for ({type(exc).__name__}: {exc})")
    error = exc.response.get("Error", {})
    code, message = error.get("Code", "Unknown"), error.get("Message", "")
    operation = exc.operation_name
    said = f"{operation}{f' on {target}' if target else ''}: {code}" + (f" ({message})" if message else "")
    if code in THROTTLING:
        return AwsError(
            f"{said}: AWS throttled the call after botocore's retries; {RETRY_HINT}",
            code=code,
            transient=True,
        )
    if code in ACCESS_DENIED:
        return AwsError(f"{said}: grant {service}:{operation} to the connection's role", code=code)
    if code.endswith("NotFoundException"):
        return AwsError(f"{said}: it does not exist in this account and region", code=code)
    if code in VALIDATION:
        return AwsError(f"{said}: ECR refused the request's values", code=code)
    return AwsError(said, code=code, transient=code in ("ServiceUnavailableException", "ServerException"))


@contextmanager
def aws_call(target: str, service: str = "ecr") -> Iterator[None]:
    """Turn the ClientError or BotoCoreError of the calls inside into :func:`explain`'s AwsError."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise explain(exc, target, service) from None


_quiet_lock = threading.Lock()
_quiet_depth = 0
_LOUD_LOGGERS = ("botocore.parsers", "botocore.endpoint", "botocore.hooks")


@contextmanager
def quiet_botocore() -> Iterator[None]:
    """botocore's DEBUG logging of requests and responses off while a credential is read
    (nested and multi-threaded uses keep it off until the last one ends)."""
    global _quiet_depth
    loggers = [logging.getLogger(name) for name in _LOUD_LOGGERS]
    with _quiet_lock:
        if _quiet_depth == 0:
            _saved[:] = [lg.level for lg in loggers]
            for lg in loggers:
                lg.setLevel(max(lg.getEffectiveLevel(), logging.INFO))
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                for lg, level in zip(loggers, _saved, strict=True):
                    lg.setLevel(level)


_saved: list[int] = []
