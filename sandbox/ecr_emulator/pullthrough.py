"""Pull through cache semantics of the registry endpoint.

AWS sources (cited in docs/emulator.md):
- Pulling ``<prefix>/<upstream repo>`` creates the repository and caches the image
  (AmazonECR/latest/userguide/pull-through-cache.html, "Using pull through cache rules").
- Creation templates with ``appliedFor`` PULL_THROUGH_CACHE apply when ECR creates the
  repository; ROOT applies when no other template matches; without a template the repository is
  MUTABLE with AES256 (userguide/repository-creation-templates.html).
- A cached tag is checked upstream at most once per 24 hours; if the upstream cannot be reached
  the cached image is served (userguide/pull-through-cache.html, "Considerations").
- Layers are fetched lazily on first blob request (containers-roadmap #2304, #939).
"""

from __future__ import annotations

import fnmatch
import json
import threading
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .clock import Clock
from .errors import ApiError, RegistryError, UpstreamError
from .secrets import SecretReader
from .store import Image, Ref, Repository, Rule, Store
from .upstream import Manifest, UpstreamClient

REFRESH_WINDOW = 24 * 3600
INDEX_TYPES = frozenset(
    {"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"}
)


@dataclass(frozen=True)
class Settings:
    upstreams: dict[str, str]
    refresh_window: float = REFRESH_WINDOW
    fail_uncached_digest_pull: bool = False
    #: Secrets Manager endpoint for rule credentials; None: credentials from the --upstream userinfo
    secrets_endpoint: str | None = None


def host_of(url: str) -> str:
    return url.split("://", 1)[-1].rstrip("/").lower()


def tag_is_immutable(repo: Repository, tag: str) -> bool:
    """Tag mutability with wildcard exclusion filters (API_ImageTagMutabilityExclusionFilter.html)."""
    matched = any(fnmatch.fnmatchcase(tag, f["filter"]) for f in repo.mutability_filters)
    if repo.mutability == "IMMUTABLE":
        return True
    if repo.mutability == "IMMUTABLE_WITH_EXCLUSION":
        return not matched
    return repo.mutability == "MUTABLE_WITH_EXCLUSION" and matched


def template_for(templates: list[dict[str, Any]], name: str, applied_for: str) -> dict[str, Any] | None:
    """Longest matching prefix (an implied trailing ``/``), else ROOT."""
    candidates = [t for t in templates if applied_for in t.get("appliedFor", [])]
    best = max(
        (t for t in candidates if t["prefix"] != "ROOT" and name.startswith(t["prefix"].rstrip("/") + "/")),
        key=lambda t: len(t["prefix"].rstrip("/")),
        default=None,
    )
    return best or next((t for t in candidates if t["prefix"] == "ROOT"), None)


def repository_from_template(name: str, created_at: float, template: dict[str, Any] | None) -> Repository:
    template = template or {}
    return Repository(
        name=name,
        created_at=created_at,
        mutability=template.get("imageTagMutability", "MUTABLE"),
        mutability_filters=template.get("imageTagMutabilityExclusionFilters", []),
        encryption=template.get("encryptionConfiguration", {"encryptionType": "AES256"}),
        tags=template.get("resourceTags", []),
        repository_policy=template.get("repositoryPolicy"),
        lifecycle_policy=template.get("lifecyclePolicy"),
    )


def describe_manifest(manifest: Manifest) -> tuple[str, list[Ref], str | None, int]:
    """Media type, referenced descriptors, artifact media type and layer bytes of a manifest."""
    doc = json.loads(manifest.body)
    media_type = manifest.media_type or doc.get("mediaType", "")
    if media_type in INDEX_TYPES or "manifests" in doc:
        refs = [Ref(m["digest"], "manifest", int(m.get("size", 0))) for m in doc.get("manifests", [])]
        return media_type, refs, doc.get("artifactType"), 0
    config = doc.get("config") or {}
    layers = [Ref(d["digest"], "blob", int(d.get("size", 0))) for d in doc.get("layers") or []]
    refs = ([Ref(config["digest"], "blob", int(config.get("size", 0)))] if config else []) + layers
    return media_type, refs, doc.get("artifactType") or config.get("mediaType"), sum(r.size for r in layers)


class KeyedLocks:
    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def __call__(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())


class PullThroughCache:
    def __init__(self, store: Store, clock: Clock, settings: Settings, region: str = "us-east-1") -> None:
        self.store = store
        self.clock = clock
        self.settings = settings
        endpoint = settings.secrets_endpoint
        self.secrets = SecretReader(endpoint, region) if endpoint else None
        self.stats: Counter[str] = Counter()
        self._stats_lock = threading.Lock()
        self._clients: dict[tuple[str, tuple[str, str] | None], UpstreamClient] = {}
        self._clients_lock = threading.Lock()
        self._locks = KeyedLocks()
        self._upstreams = {host_of(k): v for k, v in settings.upstreams.items()}

    def count(self, key: str) -> None:
        with self._stats_lock:
            self.stats[key] += 1

    def reset_stats(self) -> None:
        with self._stats_lock:
            self.stats.clear()

    def close(self) -> None:
        for client in self._clients.values():
            client.close()

    # rules and upstreams
    def credentials(self, rule: Rule) -> tuple[str, str] | None:
        """The rule's upstream credentials from its secret, read on every use as ECR does (a
        changed secret value applies to the next request); None without a secret or endpoint."""
        if self.secrets is None or not rule.credential_arn:
            return None
        try:
            return self.secrets.credentials(rule.credential_arn)
        except ApiError as exc:
            raise UpstreamError(401, exc.message) from exc

    def client(self, rule: Rule) -> UpstreamClient:
        """The client for a rule's upstream; UpstreamError when the emulator has no mapping for it
        or the rule's secret cannot be used."""
        base = self._upstreams.get(host_of(rule.upstream_url))
        if base is None:
            raise UpstreamError(None, f"no --upstream mapping for {rule.upstream_url}")
        auth = self.credentials(rule)
        with self._clients_lock:
            if (base, auth) not in self._clients:
                counters: dict[str, Callable[[], None]] = {
                    "manifest_get": lambda: self.count("upstream_manifest_fetches"),
                    "manifest_head": lambda: self.count("upstream_manifest_heads"),
                    "blob_get": lambda: self.count("upstream_blob_fetches"),
                }
                self._clients[base, auth] = UpstreamClient(base, lambda kind: counters[kind](), auth=auth)
            return self._clients[base, auth]

    def match(self, name: str) -> tuple[Rule, str] | None:
        """The rule for repository ``name`` (longest prefix, ROOT last) and the upstream repository."""
        rules = self.store.rules()
        prefixed = [r for r in rules if r.prefix != "ROOT" and name.startswith(r.prefix.rstrip("/") + "/")]
        rule = max(prefixed, key=lambda r: len(r.prefix), default=None)
        rule = rule or next((r for r in rules if r.prefix == "ROOT"), None)
        if rule is None:
            return None
        rest = name if rule.prefix == "ROOT" else name[len(rule.prefix.rstrip("/")) + 1 :]
        if rule.upstream_prefix != "ROOT":
            # ECR to ECR: upstreamRepositoryPrefix replaces the ECR prefix
            # (userguide/pull-through-cache-private-wildcards.html).
            rest = f"{rule.upstream_prefix.rstrip('/')}/{rest}"
        return rule, rest

    # manifests
    def manifest(self, name: str, reference: str, *, head: bool) -> Image:
        """Resolve a manifest request; GET may import from upstream, HEAD never does."""
        self.count("manifest_heads" if head else "manifest_gets")
        matched = self.match(name)
        # Read the repository under the per-reference lock: a concurrent first pull may create it.
        with self._locks(f"{name}@{reference}") if not head else nullcontext():
            repo = self.store.get_repository(name)
            if repo is None and matched is None:
                raise RegistryError(404, "NAME_UNKNOWN", f"The repository with name '{name}' does not exist")
            image = self._resolve(name, repo, matched, reference, head)
        if not head:
            self.store.record_pull(name, image.digest, self.clock.now())
        return image

    def _resolve(
        self, name: str, repo: Repository | None, matched: tuple[Rule, str] | None, reference: str, head: bool
    ) -> Image:
        unknown = RegistryError(404, "MANIFEST_UNKNOWN", f"Requested image not found: {name}:{reference}")
        if reference.startswith("sha256:"):
            image = self.store.get_image(name, reference) if repo else None
            if image:
                return image
            if head or matched is None or self.settings.fail_uncached_digest_pull:
                raise unknown
            return self._import(name, matched, reference, tag=None)
        tagged = self.store.get_tag(name, reference) if repo else None
        if tagged is None:
            if head or matched is None:
                raise unknown
            return self._import(name, matched, reference, tag=reference)
        digest, checked = tagged
        stale = self.clock.now() - checked >= self.settings.refresh_window
        if not head and matched and repo and stale and not tag_is_immutable(repo, reference):
            digest = self._refresh(name, matched, reference, digest)
        image = self.store.get_image(name, digest)
        if image is None:
            raise unknown
        return image

    def _refresh(self, name: str, matched: tuple[Rule, str], tag: str, cached: str) -> str:
        """Re-check a cached tag upstream; on any upstream failure keep serving the cached image."""
        rule, upstream_repo = matched
        now = self.clock.now()
        try:
            client = self.client(rule)
            if client.head_manifest(upstream_repo, tag) != cached:
                manifest = client.get_manifest(upstream_repo, tag)
                if manifest.digest != cached:
                    self._store_tree(name, client, upstream_repo, manifest)
                    cached = manifest.digest
        except UpstreamError:
            return cached
        self.store.set_tag(name, tag, cached, now)
        return cached

    def _import(self, name: str, matched: tuple[Rule, str], reference: str, tag: str | None) -> Image:
        rule, upstream_repo = matched
        try:
            client = self.client(rule)
            manifest = client.get_manifest(upstream_repo, reference)
            if self.store.get_repository(name) is None:
                template = template_for(self.store.templates(), name, "PULL_THROUGH_CACHE")
                self.store.insert_repository(repository_from_template(name, self.clock.now(), template))
            self._store_tree(name, client, upstream_repo, manifest)
        except UpstreamError as exc:
            raise registry_error(exc, name, reference) from exc
        if tag is not None:
            self.store.set_tag(name, tag, manifest.digest, self.clock.now())
        image = self.store.get_image(name, manifest.digest)
        assert image is not None
        return image

    def _store_tree(self, name: str, client: UpstreamClient, upstream_repo: str, manifest: Manifest) -> int:
        """Store a manifest and, for an index, every child manifest first. Returns the image size."""
        existing = self.store.get_image(name, manifest.digest)
        if existing:
            return existing.size
        media_type, refs, artifact_type, size = describe_manifest(manifest)
        if media_type in INDEX_TYPES:
            sizes = [
                self._store_tree(name, client, upstream_repo, client.get_manifest(upstream_repo, ref.target))
                if self.store.get_image(name, ref.target) is None
                else self._stored_size(name, ref.target)
                for ref in refs
            ]
            # "If the image is a manifest list, this will be the max size of all manifests in the list."
            size = max(sizes, default=0)
        image = Image(
            name, manifest.digest, media_type, artifact_type, size, self.clock.now(), None, manifest.body
        )
        self.store.put_image(image, refs)
        return size

    def _stored_size(self, name: str, digest: str) -> int:
        image = self.store.get_image(name, digest)
        return image.size if image else 0

    # blobs
    def blob(self, name: str, digest: str, *, head: bool) -> tuple[Path | None, int]:
        """A blob's file (None for a HEAD of a blob not fetched yet) and its size."""
        self.count("blob_heads" if head else "blob_gets")
        ref = self.store.find_ref(name, digest)
        if ref is None or ref.kind != "blob":
            raise RegistryError(404, "BLOB_UNKNOWN", f"blob {digest} is not in repository {name}")
        if self.store.has_blob(digest):
            return self.store.blob_path(digest), ref.size
        if head:
            return None, ref.size
        matched = self.match(name)
        if matched is None:
            raise RegistryError(
                404, "BLOB_UNKNOWN", f"blob {digest} was never fetched and no rule matches {name}"
            )
        rule, upstream_repo = matched
        with self._locks(digest):
            if not self.store.has_blob(digest):
                try:
                    with self.client(rule).blob(upstream_repo, digest) as chunks:
                        self.store.write_blob(digest, chunks)
                except UpstreamError as exc:
                    raise registry_error(exc, name, digest, "BLOB_UNKNOWN") from exc
                except ValueError as exc:
                    raise RegistryError(503, "UNAVAILABLE", str(exc)) from exc
        return self.store.blob_path(digest), ref.size


def registry_error(
    exc: UpstreamError, name: str, reference: str, unknown: str = "MANIFEST_UNKNOWN"
) -> RegistryError:
    """Map an upstream failure during an import to the error the client sees."""
    if exc.status == 404:
        return RegistryError(404, unknown, f"Requested image not found upstream: {name}:{reference}")
    if exc.status in (401, 403):
        return RegistryError(
            403,
            "DENIED",
            "The authentication to the upstream registry failed. Verify that the credentials are correct.",
        )
    if exc.status == 429:
        return RegistryError(429, "TOOMANYREQUESTS", "The upstream registry rate limit was exceeded.")
    return RegistryError(503, "UNAVAILABLE", f"The upstream registry is unavailable: {exc.message}")
