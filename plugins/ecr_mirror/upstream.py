"""The upstream registries a manifest mirrors from: one pooled client per registry host."""

from __future__ import annotations

import threading
from collections.abc import Callable

from ecr_mirror.registry import RegistryClient
from ecr_mirror.settings import get_settings
from ecr_mirror.tags import TagRef

#: the login for an upstream host, or None for anonymous access
Credentials = Callable[[str], tuple[str, str] | None]


class Upstreams:
    """Hands out one :class:`RegistryClient` per upstream host and reads upstream digests."""

    def __init__(self, credentials: Credentials | None = None) -> None:
        """``credentials(host)`` is the login for a host's client, read when that client is made."""
        self._settings = get_settings()
        self._clients: dict[str, RegistryClient] = {}
        self._lock = threading.Lock()
        self._credentials = credentials

    def client(self, host: str) -> RegistryClient:
        """The host's client; the first call per host reads its credentials (errors propagate)."""
        with self._lock:
            if host not in self._clients:
                login = self._credentials(host) if self._credentials else None
                self._clients[host] = RegistryClient(
                    self._settings.upstream_base_url(host),
                    credentials=login,
                    **self._settings.client_options(),
                )
            return self._clients[host]

    def digest(self, tag: TagRef) -> str | None:
        """The upstream digest of a tag (a HEAD, which Docker Hub does not count as a pull)."""
        info = self.client(tag.registry).head_manifest(tag.repository, tag.reference)
        return info.digest if info else None

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()

    def __enter__(self) -> Upstreams:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
