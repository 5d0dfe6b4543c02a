"""The errors a registry call raises. Messages name the registry, repository and reference only,
never credentials or tokens."""

from __future__ import annotations

from ecr_mirror.registry.media import is_digest


class RegistryError(Exception):
    """A registry call failed. The message names registry, repository and reference only."""

    def __init__(
        self,
        message: str,
        *,
        registry: str,
        repository: str | None = None,
        reference: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        target = _ref(repository, reference) if repository else None
        super().__init__(f"{registry}" + (f" {target}" if target else "") + f": {message}")
        self.registry, self.repository, self.reference = registry, repository, reference
        self.status = status
        self.retry_after = retry_after  # seconds, from Retry-After on 429/503


class NotFoundError(RegistryError):
    pass


class AuthError(RegistryError):
    pass


class DigestMismatchError(RegistryError):
    pass


class RateLimitedError(RegistryError):
    """HTTP 429 after the retries ran out (or with a Retry-After too long to wait for)."""


class UnavailableError(RegistryError):
    """HTTP 502/503/504 after the retries ran out."""


def _ref(repository: str | None, reference: str | None) -> str:
    if not reference:
        return repository or ""
    return f"{repository}{'@' if is_digest(reference) else ':'}{reference}"
