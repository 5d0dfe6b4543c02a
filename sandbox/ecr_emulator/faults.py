"""Test-only fault injection: the next calls of an ECR API operation answer an AWS error.

Not a behaviour of ECR (behaviour.py holds those): a switch tests set through the admin endpoint
``POST /_emulator/faults`` to see how the engine handles errors AWS documents for every
operation, e.g. ``ThrottlingException`` (HTTP 400, "the request was denied due to request
throttling", https://docs.aws.amazon.com/AmazonECR/latest/APIReference/CommonErrors.html) or
``AccessDeniedException``. Nothing is armed unless a test arms it; ``POST /_emulator/faults/reset``
disarms everything. The error is sent in the AWS JSON 1.1 shape every other error uses.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from .errors import ApiError


@dataclass
class Fault:
    code: str
    message: str
    status: int
    remaining: int  # calls still to fail
    served: int = 0


class Faults:
    """Armed faults by operation name (``DescribePullThroughCacheRules``)."""

    def __init__(self) -> None:
        self._armed: dict[str, Fault] = {}
        self._lock = threading.Lock()

    def arm(self, body: dict[str, Any]) -> None:
        """``{"operation", "code", "message"?, "status"? (400), "count"? (1)}``."""
        fault = Fault(
            str(body["code"]),
            str(body.get("message") or f"{body['code']} injected by a test"),
            int(body.get("status", 400)),
            int(body.get("count", 1)),
        )
        with self._lock:
            self._armed[str(body["operation"])] = fault

    def take(self, operation: str) -> ApiError | None:
        """The error this call of ``operation`` answers with, if a fault is armed for it."""
        with self._lock:
            fault = self._armed.get(operation)
            if fault is None or fault.remaining <= 0:
                return None
            fault.remaining -= 1
            fault.served += 1
            return ApiError(fault.code, fault.message, fault.status)

    def doc(self) -> dict[str, Any]:
        with self._lock:
            return {
                op: {"code": f.code, "remaining": f.remaining, "served": f.served}
                for op, f in self._armed.items()
            }

    def reset(self) -> dict[str, Any]:
        served = self.doc()
        with self._lock:
            self._armed.clear()
        return served
