"""One registry's HTTP exchange: a request under the retry policy, the auth dance, the deadline,
and HTTP statuses turned into registry errors. RegistryClient (client.py) builds on it.

Engine module: no Airflow imports.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TypeVar

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from ecr_mirror.registry.auth import Auth, TokenFetch, TokenRefused
from ecr_mirror.registry.errors import (
    AuthError,
    NotFoundError,
    RateLimitedError,
    RegistryError,
    UnavailableError,
)
from ecr_mirror.registry.headers import parse_rate_limit, parse_www_authenticate, retry_after
from ecr_mirror.registry.retry import (
    RETRY_STATUSES,
    Deadline,
    DeadlineExceeded,
    RetryPolicy,
    gate_for,
    read_within,
)

#: re-sends after a 401/403 (a fresh token each, or one new login) before the refusal stands
AUTH_ROUNDS = 3

T = TypeVar("T")


class Transport:
    """The pooled ``httpx.Client`` of one registry, its auth, retry policy and host gate."""

    def __init__(
        self, registry: str, auth: Auth, policy: RetryPolicy, timeout: float, client: httpx.Client
    ) -> None:
        self.registry = registry
        self._auth = auth
        self.policy = policy
        self.gate = gate_for(registry)
        self.deadline_s = timeout
        self.client = client

    def call(self, attempt: Callable[[], T], repository: str, reference: str | None) -> T:
        """Run one request under the retry policy (retry.py): every attempt first waits out the
        host's shared hold; a wait the host asked for (429/5xx) holds the host for every thread.
        Transport errors are wrapped; a missed deadline is not retried (a trickling host would
        trickle again, and each attempt would hold a worker for the whole deadline)."""
        policy, gate = self.policy, self.gate

        def retryable(exc: BaseException) -> bool:
            if isinstance(exc, DeadlineExceeded):
                return False
            if isinstance(exc, httpx.TransportError):
                return True
            if isinstance(exc, (RateLimitedError, UnavailableError)):
                return exc.retry_after is None or exc.retry_after <= policy.max_backoff
            return False

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            seconds = policy.wait(state.attempt_number, getattr(exc, "retry_after", None))
            if isinstance(exc, RegistryError):  # the host answered: it is busy for every thread
                return gate.hold(seconds)
            return seconds

        def gated() -> T:
            gate.wait()
            return attempt()

        retrying = Retrying(
            retry=retry_if_exception(retryable),
            wait=wait,
            stop=stop_after_attempt(policy.max_attempts),
            reraise=True,
        )
        try:
            return retrying(gated)
        except DeadlineExceeded:
            message = f"no complete answer within {self.deadline_s:g} s (ECR_MIRROR_HTTP_TIMEOUT)"
            raise RegistryError(
                message, registry=self.registry, repository=repository, reference=reference
            ) from None
        except httpx.TransportError as exc:
            raise RegistryError(
                f"{type(exc).__name__} after {policy.max_attempts} attempt(s)",
                registry=self.registry,
                repository=repository,
                reference=reference,
            ) from exc

    def send(
        self,
        method: str,
        url: str,
        repository: str,
        reference: str | None,
        headers: dict[str, str],
        *,
        params: dict[str, str] | None = None,
        stream: bool = False,
        follow_redirects: bool = False,
    ) -> httpx.Response:
        """One request with the auth dance: after a 401 challenge, a re-send with new auth (again
        while the registry refuses fresh tokens as invalid, up to AUTH_ROUNDS); after a 401/403
        to Basic credentials that can be renewed (ECR's expired token), one re-send after a new
        login. A response not streamed is read whole within the deadline."""
        scope = f"repository:{repository}:pull"
        fetch = partial(self._fetch_token, repository, reference)
        relogged = False
        for round_ in range(AUTH_ROUNDS + 1):
            deadline = Deadline.after(self.deadline_s)
            auth = self._auth_header(scope, fetch, repository, reference)
            request = self.client.build_request(method, url, headers={**headers, **auth}, params=params)
            response = self.client.send(request, stream=True, follow_redirects=follow_redirects)
            if limit := parse_rate_limit(response.headers):
                self.gate.rate_limit = limit
            status, challenge = response.status_code, response.headers.get("WWW-Authenticate", "")
            if status not in (401, 403) or round_ == AUTH_ROUNDS:
                break
            retry = False
            if status == 401:
                self._auth.forget(scope, auth)
                retry = _worth_a_new_token(challenge, round_) and self._auth.answer(challenge)
            if not retry and not relogged:
                retry = relogged = self._auth.renew_login(auth)
            if not retry:
                break
            response.close()
        if response.status_code >= 400:
            response.close()
            self.raise_for_status(response, repository, reference)
        return response if stream else read_within(response, deadline)

    def _auth_header(
        self, scope: str, fetch: TokenFetch, repository: str, reference: str | None
    ) -> dict[str, str]:
        try:
            return self._auth.header(scope, fetch)
        except TokenRefused as exc:
            cls = AuthError if exc.status in (200, 401, 403) else RegistryError
            raise cls(
                str(exc),
                registry=self.registry,
                repository=repository,
                reference=reference,
                status=exc.status,
            ) from None

    def _fetch_token(
        self,
        repository: str,
        reference: str | None,
        realm: str,
        params: dict[str, str],
        headers: dict[str, str],
    ) -> httpx.Response:
        """The token service's answer (auth.Auth reads it), within the deadline; 429/5xx raised."""
        deadline = Deadline.after(self.deadline_s)
        request = self.client.build_request("GET", realm, params=params, headers=headers)
        response = read_within(self.client.send(request, stream=True), deadline)
        if response.status_code in RETRY_STATUSES:
            self.raise_for_status(response, repository, reference)
        return response

    def raise_for_status(self, response: httpx.Response, repository: str, reference: str | None) -> None:
        status = response.status_code

        def error(cls: type[RegistryError], message: str, wait: float | None = None) -> RegistryError:
            return cls(
                message,
                registry=self.registry,
                repository=repository,
                reference=reference,
                status=status,
                retry_after=wait,
            )

        if status in (401, 403):
            raise error(AuthError, f"access denied (HTTP {status})")
        if status == 404:
            raise error(NotFoundError, "not found")
        if status in RETRY_STATUSES:
            cls = RateLimitedError if status == 429 else UnavailableError
            raise error(cls, f"HTTP {status}", retry_after(response.headers))
        raise error(RegistryError, f"HTTP {status}")


def _worth_a_new_token(challenge: str, round_: int) -> bool:
    """Whether a 401 is worth another token: always after an unauthenticated first try; after a
    refused token, unless the registry says the scope itself is not granted (``insufficient_scope``,
    RFC 6750 section 3.1: a new token for the same scope would be refused too)."""
    if round_ == 0:
        return True
    bearer = next((c for c in parse_www_authenticate(challenge) if c.scheme == "bearer"), None)
    return bearer is not None and bearer.params.get("error") != "insufficient_scope"
