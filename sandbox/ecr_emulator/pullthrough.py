"""Pull through cache semantics of the registry endpoint.

AWS sources (cited in docs/emulator.md):
- Pulling ``<prefix>/<upstream repo>`` creates the repository and caches the image
  (AmazonECR/latest/userguide/pull-through-cache.html, "Using pull through cache rules").
- Creation templates with ``appliedFor`` PULL_THROUGH_CACHE apply when ECR creates the
  repository; ROOT applies when no other template matches; without a template the repository is
  MUTABLE with AES256 (userguide/repository-creation-templates.html).
- A cached tag is re-checked upstream on a pull once its 24 h window has passed; what the window
  counts from and whether it may come earlier are behaviour switches (``refresh_timer``,
  ``refresh_bound``); if the upstream cannot be reached the cached image is served
  (userguide/pull-through-cache.html, "Considerations").
- Layers are fetched lazily on first blob request (containers-roadmap #2304, #939); how a blob GET
  is answered is the ``blob_delivery`` switch (see blobhost.py).

Every point AWS leaves open reads ``self.behaviour`` (behaviour.py), which an admin call may swap.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .behaviour import Behaviour
from .blobhost import BlobHost
from .clock import Clock
from .errors import ApiError, RegistryError, UpstreamError
from .secrets import SecretReader
from .store import Image, Ref, Repository, Rule, Store
from .upstream import Manifest, UpstreamClient

log = logging.getLogger(__name__)
REFRESH_WINDOW = 24 * 3600
#: lastRecordedPullTime "at least once every 24 hours" (model documentation of ImageDetail)
PULL_RECORD_WINDOW = 24 * 3600
INDEX_TYPES = frozenset(
    {"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"}
)
KMS_TYPES = frozenset({"KMS", "KMS_DSSE"})


@dataclass(frozen=True)
class Settings:
    upstreams: dict[str, str]
    refresh_window: float = REFRESH_WINDOW
    #: Secrets Manager endpoint for rule credentials; None: credentials from the --upstream userinfo
    secrets_endpoint: str | None = None
    behaviour: Behaviour = field(default_factory=Behaviour.build)


def needs_custom_role(template: dict[str, Any]) -> bool:
    """A template ECR can apply only with a custom role: resource tags or KMS encryption
    (userguide/repository-creation-templates-create.html)."""
    encryption = (template.get("encryptionConfiguration") or {}).get("encryptionType")
    return bool(template.get("resourceTags")) or encryption in KMS_TYPES


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


def repository_from_template(
    name: str, created_at: float, template: dict[str, Any] | None, *, without_role_settings: bool = False
) -> Repository:
    """The repository ECR creates with ``template``; ``without_role_settings`` leaves out what only
    a custom role could apply (resource tags, KMS encryption)."""
    template = template or {}
    encryption = template.get("encryptionConfiguration", {"encryptionType": "AES256"})
    tags = template.get("resourceTags", [])
    if without_role_settings:
        tags = []
        if encryption.get("encryptionType") in KMS_TYPES:
            encryption = {"encryptionType": "AES256"}
    return Repository(
        name=name,
        created_at=created_at,
        mutability=template.get("imageTagMutability", "MUTABLE"),
        mutability_filters=template.get("imageTagMutabilityExclusionFilters", []),
        encryption=encryption,
        tags=tags,
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


@dataclass(frozen=True)
class BlobAnswer:
    """A blob answer: the file to send, or where to redirect the client (``redirect``)."""

    file: Path | None
    size: int
    redirect: str | None = None


class KeyedLocks:
    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def __call__(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())


class PullThroughCache:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        settings: Settings,
        region: str = "us-east-1",
        account: str = "123456789012",
    ) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings
        self.region = region
        self.account = account
        #: the behaviour variants in force; replaced as a whole (an atomic assignment) by the admin API
        self.behaviour = settings.behaviour
        #: signs blob redirects (set by the app once the blob host listens); None: no redirects
        self.blob_host: BlobHost | None = None
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
            self._record_pull(image)
        return image

    def _record_pull(self, image: Image) -> None:
        """Note a manifest GET: exactly (the refresh timer's ``last-pull``), and as
        lastRecordedPullTime, which under ``lagging`` moves only once it is 24 h old."""
        now = self.clock.now()
        recorded = (
            self.behaviour["last_recorded_pull_time"] == "exact"
            or image.last_pull is None
            or now - image.last_pull >= PULL_RECORD_WINDOW
        )
        self.store.record_pull(image.repo, image.digest, now, recorded=recorded)

    def _resolve(
        self, name: str, repo: Repository | None, matched: tuple[Rule, str] | None, reference: str, head: bool
    ) -> Image:
        unknown = RegistryError(404, "MANIFEST_UNKNOWN", f"Requested image not found: {name}:{reference}")
        if reference.startswith("sha256:"):
            image = self.store.get_image(name, reference) if repo else None
            if image:
                return image
            # containers-roadmap #2837: a first pull by digest reported as not found
            if head or matched is None or self.behaviour["digest_first_pull"] == "not-found":
                raise unknown
            return self._import(name, matched, reference, tag=None)
        tagged = self.store.get_tag(name, reference) if repo else None
        if tagged is None:
            if head or matched is None:
                raise unknown
            return self._import(name, matched, reference, tag=reference)
        digest, checked = tagged
        mutable = repo is not None and not tag_is_immutable(repo, reference)
        if not head and matched and mutable and self._refresh_due(name, digest, checked):
            digest = self._refresh(name, matched, reference, digest)
        image = self.store.get_image(name, digest)
        if image is None:
            raise unknown
        return image

    def _refresh_due(self, name: str, digest: str, checked: float) -> bool:
        """Whether a pull of a cached tag re-checks it upstream (``refresh_timer``, ``refresh_bound``)."""
        if self.behaviour["refresh_bound"] == "at-least-once":
            return True
        since = checked
        if self.behaviour["refresh_timer"] == "last-pull":
            image = self.store.get_image(name, digest)
            since = image.pulled_at if image and image.pulled_at is not None else checked
        return self.clock.now() - since >= self.settings.refresh_window

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
        except UpstreamError as exc:
            raise registry_error(exc, name, reference, rule, self.behaviour) from exc
        try:
            manifest = client.get_manifest(upstream_repo, reference)
            if self.store.get_repository(name) is None:
                self.store.insert_repository(self._new_repository(name, reference))
            self._store_tree(name, client, upstream_repo, manifest)
        except UpstreamError as exc:
            if (
                exc.status == 404
                and exc.code != "NAME_UNKNOWN"
                and client.repository_exists(upstream_repo) is False
            ):
                exc.code = "NAME_UNKNOWN"
            raise registry_error(exc, name, reference, rule, self.behaviour) from exc
        if tag is not None:
            self.store.set_tag(name, tag, manifest.digest, self.clock.now())
        image = self.store.get_image(name, manifest.digest)
        assert image is not None
        return image

    def _new_repository(self, name: str, reference: str) -> Repository:
        """The repository a first import creates, from its creation template (``template_custom_role``
        decides what happens to a template that needs a custom role but has none)."""
        template = template_for(self.store.templates(), name, "PULL_THROUGH_CACHE")
        without_role = (
            template is not None and needs_custom_role(template) and not template.get("customRoleArn")
        )
        variant = self.behaviour["template_custom_role"]
        if without_role and variant in ("pull-fails", "refused"):
            # containers-roadmap #2398: the pull fails and no repository is created.
            raise RegistryError(
                404,
                "NAME_UNKNOWN",
                f"The repository with name '{name}' does not exist in the registry with id '{self.account}'",
            )
        return repository_from_template(
            name, self.clock.now(), template, without_role_settings=without_role and variant == "skipped"
        )

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

    def store_manifest(self, name: str, client: UpstreamClient, upstream_repo: str, digest: str) -> None:
        """Fetch ``digest`` upstream and store it (with what it lists) unless held (referrers.py)."""
        if self.store.get_image(name, digest) is None:
            self._store_tree(name, client, upstream_repo, client.get_manifest(upstream_repo, digest))

    def _stored_size(self, name: str, digest: str) -> int:
        image = self.store.get_image(name, digest)
        return image.size if image else 0

    # blobs
    def blob_ref(self, name: str, digest: str) -> Ref:
        """The descriptor of a blob an image of ``name`` references; 404 BLOB_UNKNOWN otherwise."""
        ref = self.store.find_ref(name, digest)
        if ref is None or ref.kind != "blob":
            raise RegistryError(404, "BLOB_UNKNOWN", f"blob {digest} is not in repository {name}")
        return ref

    def blob(self, name: str, digest: str, *, head: bool) -> BlobAnswer:
        """How the registry endpoint answers a blob request (``blob_delivery``).

        A HEAD answers the size from the manifest and never fetches. A GET of a blob ECR does not
        hold fetches it from upstream first, except under ``upstream-redirect-first-pull``, where
        the client is sent to the upstream's storage while ECR fetches it in the background.
        """
        self.count("blob_heads" if head else "blob_gets")
        ref = self.blob_ref(name, digest)
        held = self.store.has_blob(digest)
        if head:
            return BlobAnswer(self.store.blob_path(digest) if held else None, ref.size)
        variant = self.behaviour["blob_delivery"]
        first_pull = variant == "upstream-redirect-first-pull" and not held and self.blob_host is not None
        if first_pull and self.start_blob_import(name, digest):
            assert self.blob_host is not None
            self.count("blob_redirects")
            return BlobAnswer(None, ref.size, self.blob_host.upstream_url(name, digest))
        if not self.store.has_blob(digest):
            self.fetch_blob(name, digest)
        if variant == "direct" or self.blob_host is None:
            return BlobAnswer(self.store.blob_path(digest), ref.size)
        self.count("blob_redirects")
        return BlobAnswer(None, ref.size, self.blob_host.presigned_url(self.account, name, digest))

    def held_blob(self, name: str, digest: str) -> Path | None:
        """The file of a blob ECR holds for ``name`` (what a pre-signed URL leads to), else None."""
        if self.store.find_ref(name, digest) is None or not self.store.has_blob(digest):
            return None
        return self.store.blob_path(digest)

    def _blob_source(self, name: str, digest: str) -> tuple[Rule, str]:
        matched = self.match(name)
        if matched is None:
            raise RegistryError(
                404, "BLOB_UNKNOWN", f"blob {digest} was never fetched and no rule matches {name}"
            )
        return matched

    def fetch_blob(self, name: str, digest: str, lock: threading.Lock | None = None) -> None:
        """Bring a blob from upstream into ECR's store (once, whoever asks at the same time).

        ``lock``: the blob's lock, already held by the caller; released here (a background import).
        """
        rule, upstream_repo = self._blob_source(name, digest)
        held = lock or self._locks(f"blob:{digest}")
        if lock is None:
            held.acquire()
        try:
            if not self.store.has_blob(digest):
                with self.client(rule).blob(upstream_repo, digest) as chunks:
                    self.store.write_blob(digest, chunks)
        except UpstreamError as exc:
            raise registry_error(exc, name, digest, rule, self.behaviour, "BLOB_UNKNOWN") from exc
        except ValueError as exc:
            raise RegistryError(503, "UNAVAILABLE", str(exc)) from exc
        finally:
            held.release()

    def start_blob_import(self, name: str, digest: str) -> bool:
        """Begin fetching a blob ECR does not hold, in the background; False when ECR holds it
        or another request is fetching it (that request's fetch is then awaited)."""
        self._blob_source(name, digest)
        lock = self._locks(f"blob:{digest}")
        if not lock.acquire(blocking=False):
            with lock:  # another fetch is under way: wait for it
                return False
        if self.store.has_blob(digest):
            lock.release()
            return False

        def run() -> None:
            try:
                self.fetch_blob(name, digest, lock)
            except RegistryError as exc:
                log.warning("background import of %s@%s failed: %s", name, digest, exc.message)

        threading.Thread(target=run, name=f"blob-import-{digest[7:19]}", daemon=True).start()
        return True

    def upstream_chunks(self, name: str, digest: str) -> Iterator[bytes]:
        """A blob's bytes as the upstream registry's storage serves them (the redirect target of
        ``upstream-redirect-first-pull``); raises before the first byte when the upstream fails."""
        rule, upstream_repo = self._blob_source(name, digest)
        client = self.client(rule)

        def chunks() -> Iterator[bytes]:
            with client.blob(upstream_repo, digest, count=False) as body:
                yield from body

        stream = chunks()
        try:
            first = next(stream, b"")
        except UpstreamError as exc:
            raise registry_error(exc, name, digest, rule, self.behaviour, "BLOB_UNKNOWN") from exc
        return itertools.chain([first], stream)


def registry_error(
    exc: UpstreamError,
    name: str,
    reference: str,
    rule: Rule,
    behaviour: Behaviour,
    unknown: str = "MANIFEST_UNKNOWN",
) -> RegistryError:
    """Map an upstream failure during an import to the error the client sees."""
    missing_hub_repository = (
        exc.status == 404 and exc.code == "NAME_UNKNOWN" and rule.upstream_registry == "docker-hub"
    )
    if missing_hub_repository and behaviour["hub_missing_repository"] == "auth-failed":
        # Docker Hub answers 401 for a repository it does not have; ECR relays it as a failed
        # authentication (containers-roadmap #2211, #2354).
        exc = UpstreamError(401, exc.message)
    if exc.status == 404 and exc.code == "NAME_UNKNOWN":
        return RegistryError(404, "NAME_UNKNOWN", f"The upstream registry has no repository for {name}")
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
