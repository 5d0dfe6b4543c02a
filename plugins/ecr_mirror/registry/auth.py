"""How a registry client authenticates: anonymous, Basic, or Bearer tokens from the registry's
token service (https://distribution.github.io/distribution/spec/auth/token/).

Engine module: no Airflow imports. A token is kept for the ``expires_in`` its token service
gave, less a margin, so it is renewed as often as the registry asks; a token the registry refuses
(401) is dropped and a new one fetched. Basic credentials can be renewed too (``relogin``): ECR's
registry endpoint takes an authorization token that expires after 12 hours and answers 403 once
it has. Every credential read or received is handed to secret_sink.register_secret so the
Airflow side can mask it; none appears in an exception, a repr or a log line.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable

import httpx

from ecr_mirror.registry.headers import Challenge, parse_www_authenticate
from ecr_mirror.secret_sink import register_secret

#: Docker token spec: a token without ``expires_in`` lives 60 s
DEFAULT_TOKEN_LIFETIME_S = 60.0
#: renew a token this long (at most half its lifetime) before it expires
TOKEN_MARGIN_S = 10.0

#: fetches a token: (realm, query, headers) -> the token service's answer
TokenFetch = Callable[[str, dict[str, str], dict[str, str]], httpx.Response]


class TokenRefused(Exception):
    """The token service gave no token; ``status`` is its HTTP status (no secret in the text)."""

    def __init__(self, scope: str, status: int) -> None:
        super().__init__(f"token service refused scope {scope} (HTTP {status})")
        self.status = status


class Auth:
    """The credentials, the registry's challenge and the token cache of one client (thread-safe)."""

    def __init__(
        self,
        credentials: tuple[str, str] | None,
        *,
        preemptive_basic: bool,
        clock: Callable[[], float],
        relogin: Callable[[], tuple[str, str]] | None = None,
    ) -> None:
        self._credentials = credentials
        _register(credentials)
        self._basic = preemptive_basic and credentials is not None
        self._relogin = relogin
        self._bearer: Challenge | None = None
        self._tokens: dict[str, tuple[str, float]] = {}
        self._scope_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def header(self, scope: str, fetch: TokenFetch) -> dict[str, str]:
        """Authorization for a request: a cached (or, once the realm is known, fresh) bearer
        token, else Basic once the registry asked for it or ``preemptive_basic`` is set."""
        if self._bearer is not None:
            return {"Authorization": f"Bearer {self._token(scope, fetch)}"}
        if self._basic and self._credentials:
            return {"Authorization": basic_header(self._credentials)}
        return {}

    def answer(self, header: str) -> bool:
        """Learn from a 401 challenge; True if a re-send with new auth is worth trying."""
        challenges = {c.scheme: c for c in parse_www_authenticate(header)}
        if (bearer := challenges.get("bearer")) and "realm" in bearer.params:
            self._bearer = bearer
            return True
        if "basic" in challenges and self._credentials and not self._basic:
            self._basic = True
            return True
        return False

    def renew_login(self, sent: dict[str, str]) -> bool:
        """After a 401/403 to Basic credentials: log in again when a ``relogin`` is set and the
        refused credentials are still the current ones (another thread may have renewed them)."""
        if self._relogin is None or self._bearer is not None or not self._credentials:
            return False
        with self._lock:
            if sent.get("Authorization") == basic_header(self._credentials):
                self._credentials = self._relogin()
                _register(self._credentials)
        return True

    def forget(self, scope: str, sent: dict[str, str]) -> None:
        """Drop the cached token if it is the one that just drew a 401 (another thread may
        already have replaced it; an unauthenticated request's 401 says nothing about it)."""
        with self._lock:
            cached = self._tokens.get(scope)
            if cached and sent.get("Authorization") == f"Bearer {cached[0]}":
                del self._tokens[scope]

    def _token(self, scope: str, fetch: TokenFetch) -> str:
        with self._lock:
            lock = self._scope_locks.setdefault(scope, threading.Lock())
        with lock:  # one token request per scope even when many threads need it at once
            cached = self._tokens.get(scope)
            if cached and cached[1] > self._clock():
                return cached[0]
            token, lifetime = self._fetch_token(scope, fetch)
            margin = min(TOKEN_MARGIN_S, lifetime / 2)
            with self._lock:
                self._tokens[scope] = (token, self._clock() + lifetime - margin)
            return token

    def _fetch_token(self, scope: str, fetch: TokenFetch) -> tuple[str, float]:
        assert self._bearer is not None
        params = {"scope": scope}
        if service := self._bearer.params.get("service"):
            params["service"] = service
        headers = {"Authorization": basic_header(self._credentials)} if self._credentials else {}
        response = fetch(self._bearer.params["realm"], params, headers)
        body = response.json() if response.status_code == 200 else {}
        token = body.get("token") or body.get("access_token")
        if not token or not isinstance(token, str):
            raise TokenRefused(scope, response.status_code)
        register_secret(token)
        lifetime = body.get("expires_in")
        if not isinstance(lifetime, (int, float)) or isinstance(lifetime, bool) or lifetime < 0:
            lifetime = DEFAULT_TOKEN_LIFETIME_S
        return token, float(lifetime)


def basic_header(credentials: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(":".join(credentials).encode()).decode()


def _register(credentials: tuple[str, str] | None) -> None:
    """Hand a login's password, and the Basic header value it makes, to the secret sink."""
    if credentials:
        register_secret(credentials[1])
        register_secret(basic_header(credentials).removeprefix("Basic "))
