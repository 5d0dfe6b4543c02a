"""How a registry client waits and retries: the retry policy, one backoff shared per host, the
pull budget Docker Hub's rate-limit headers announce, and a deadline per request.

Engine module: no Airflow imports.

- Transient answers (429, 500, 502, 503, 504, connection errors, read timeouts) are retried with
  exponential backoff and jitter (a uniform wait between half and all of the step), up to
  ``max_attempts``. ``Retry-After`` is honoured but never below the backoff itself:
  ``Retry-After: 0`` or a date in the past does not make a client hammer a host that just said it
  is overloaded (RFC 9110 section 10.2.3 leaves the client free to wait longer).
- A host that tells one thread to wait is waited on by every thread of the process (one
  :class:`HostGate` per host), so eight threads do not spend eight attempts learning the same
  thing.
- Docker Hub counts manifest GETs as pulls, not HEADs
  (https://docs.docker.com/docker-hub/usage/pulls/), and reports what is left in
  ``ratelimit-remaining``. When the last figure a host reported is at or below the configured
  floor, manifest GETs are deferred (raised as RateLimitedError without a request) while HEAD
  checks go on, so a run keeps its last pulls for ECR's own pull through.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx

from ecr_mirror.registry.headers import RateLimit

#: answers worth another attempt: too many requests, and server errors a retry may cure (the AWS
#: SDKs and regclient retry 500 too)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts and waits of one client (settings.Settings documents the values)."""

    max_attempts: int = 5
    backoff_initial: float = 0.5
    max_backoff: float = 30.0
    #: ``ratelimit-remaining`` at or below which manifest GETs are deferred; None: never
    pull_floor: int | None = None

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter before retry ``attempt`` (1 = the first retry):
        uniform in [b/2, b] with b = initial * 2**(attempt-1), capped at ``max_backoff``."""
        ceiling = min(self.max_backoff, self.backoff_initial * 2 ** max(0, attempt - 1))
        return random.uniform(ceiling / 2, ceiling)

    def wait(self, attempt: int, retry_after: float | None) -> float:
        """The wait before retry ``attempt``: the backoff, or the host's Retry-After when longer."""
        backoff = self.backoff(attempt)
        return backoff if retry_after is None else max(backoff, retry_after)


class HostGate:
    """The backoff and the pull budget of one host, shared by every thread and client."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._until = 0.0
        self.rate_limit: RateLimit | None = None

    def hold(self, seconds: float) -> float:
        """Make every request to this host wait ``seconds`` from now (a longer hold stays);
        returns how long the host is held."""
        with self._lock:
            self._until = max(self._until, self._clock() + seconds)
            return self._until - self._clock()

    def held_for(self) -> float:
        with self._lock:
            return max(0.0, self._until - self._clock())

    def wait(self, sleep: Callable[[float], None] = time.sleep) -> None:
        """Sleep until the host's hold ends (another thread may lengthen it meanwhile)."""
        while (remaining := self.held_for()) > 0:
            sleep(remaining)

    def pull_budget_spent(self, floor: int | None) -> bool:
        """Whether the host's last ``ratelimit-remaining`` is at or below ``floor``."""
        remaining = self.rate_limit.remaining if self.rate_limit else None
        return floor is not None and remaining is not None and remaining <= floor


_gates: dict[str, HostGate] = {}
_gates_lock = threading.Lock()


def gate_for(host: str) -> HostGate:
    """The process-wide gate of ``host`` (``netloc``, e.g. ``registry-1.docker.io``)."""
    with _gates_lock:
        return _gates.setdefault(host, HostGate())


class DeadlineExceeded(httpx.TimeoutException):
    """A response that did not arrive whole within its deadline (a body trickled slowly)."""


@dataclass(frozen=True)
class Deadline:
    """The moment one request must be done by (``timeout`` bounds each read; this, the whole)."""

    at: float
    seconds: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds, seconds)

    def check(self, request: httpx.Request | None = None) -> None:
        if time.monotonic() > self.at:
            raise DeadlineExceeded(f"no complete answer within {self.seconds:g} s", request=request)


def chunks_within(response: httpx.Response, deadline: Deadline) -> Iterator[bytes]:
    """A streamed response's raw bytes, checking the deadline after every read from the socket
    (no chunk size: httpx would gather reads into chunks of that size before yielding)."""
    for chunk in response.iter_raw():
        deadline.check(response.request)
        yield chunk


def read_within(response: httpx.Response, deadline: Deadline) -> httpx.Response:
    """A streamed response read whole before ``deadline`` (closed either way), as a read one."""
    try:
        raw = b"".join(chunks_within(response, deadline))
    finally:
        response.close()
    return httpx.Response(
        response.status_code, headers=response.headers, content=raw, request=response.request
    )
