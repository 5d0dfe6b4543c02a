"""Errors of the two planes: ECR JSON API errors and OCI distribution errors."""

from __future__ import annotations


class ApiError(Exception):
    """An ECR API error, sent as ``{"__type": code, "message": ...}`` (AWS JSON 1.1 protocol)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


class RegistryError(Exception):
    """An OCI distribution-spec error (``{"errors": [{"code", "message"}]}``)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class UpstreamError(Exception):
    """The upstream registry answered with an error or could not be reached.

    ``status`` is the upstream HTTP status, or ``None`` when the upstream was unreachable; ``code``
    the OCI error code of its answer (``NAME_UNKNOWN`` for a repository it does not have).
    """

    def __init__(self, status: int | None, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
