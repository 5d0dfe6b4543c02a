"""RegistryClient against a real Distribution registry on loopback (anonymous, htpasswd, token auth).

Distribution 2.8 neither paginates tag lists nor misbehaves on demand, so a small forwarding
proxy in front of it adds spec-conformant pagination (``n``/``last`` + ``Link``), faults
(429/503 with Retry-After), rate-limit headers and tampered manifest bytes.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ecr_mirror.registry import (
    AuthError,
    BlobAnswer,
    DigestMismatchError,
    FetchedManifest,
    NotFoundError,
    RateLimitedError,
    RegistryClient,
    RegistryError,
    UnavailableError,
    compute_digest,
    parse_www_authenticate,
)
from sandbox.upstream import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    RegistryProcess,
    SeededImage,
    TokenAuthConfig,
    seed_image,
    start_registry,
)

pytestmark = pytest.mark.skipif(
    not (shutil.which("docker-registry") and shutil.which("htpasswd")),
    reason="needs the docker-registry and apache2-utils Debian packages",
)

PAGED_TAGS = [f"t{i:02d}" for i in range(1, 8)]
USER, PASSWORD = "alice", "s3cret-Pa55"


@dataclass
class ManualClock:
    """A monotonic clock the test moves."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def _fast(url: str, **kwargs: object) -> RegistryClient:
    return RegistryClient(url, timeout=5.0, backoff_initial=0.01, max_backoff=1.0, **kwargs)  # type: ignore[arg-type]


def _serve(handler: type[BaseHTTPRequestHandler], state: object) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.state = state  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def reply(
        self, status: int, headers: dict[str, str], body: bytes = b"", length: int | None = None
    ) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


# -- forwarding proxy ---------------------------------------------------------------------------


@dataclass
class Proxy:
    upstream: str
    url: str = ""
    requests: list[tuple[str, str]] = field(default_factory=list)
    faults: list[int] = field(default_factory=list)  # statuses served (in order) before forwarding
    retry_after: str = "0"
    extra_headers: dict[str, str] = field(default_factory=dict)
    paginate: bool = False
    tamper: bool = False  # alter manifest bodies
    strip_digest: bool = False  # drop Docker-Content-Digest
    authorizations: list[str] = field(default_factory=list)  # Authorization headers seen
    revoked: set[str] = field(default_factory=set)  # forwarded without them: the registry's own 401


class _ProxyHandler(_Handler):
    def do_GET(self) -> None:
        proxy: Proxy = self.server.state  # type: ignore[attr-defined]
        proxy.requests.append((self.command, self.path))
        if proxy.faults:
            self.reply(proxy.faults.pop(0), {"Retry-After": proxy.retry_after})
            return
        parts = urlsplit(self.path)
        if proxy.paginate and parts.path.endswith("/tags/list"):
            self._page(proxy, parts.path, parse_qs(parts.query))
            return
        forwarded = {k: v for k, v in self.headers.items() if k.lower() in ("accept", "authorization")}
        if "Authorization" in self.headers:
            proxy.authorizations.append(self.headers["Authorization"])
            if self.headers["Authorization"] in proxy.revoked:
                forwarded = {k: v for k, v in forwarded.items() if k.lower() != "authorization"}
        upstream = httpx.request(self.command, proxy.upstream + self.path, headers=forwarded)
        headers = {
            k: v
            for k, v in upstream.headers.items()
            if k.lower() not in ("content-length", "connection", "transfer-encoding", "date")
        }
        body = upstream.content
        if proxy.tamper and "/manifests/" in parts.path:
            body = body.replace(b'"schemaVersion":2', b'"schemaVersion": 2')
        if proxy.strip_digest:
            headers.pop("docker-content-digest", None)
        headers.update(proxy.extra_headers)
        length = int(upstream.headers.get("content-length", 0)) if self.command == "HEAD" else None
        self.reply(upstream.status_code, headers, body, length)

    do_HEAD = do_GET

    def _page(self, proxy: Proxy, path: str, query: dict[str, list[str]]) -> None:
        """Spec pagination over the full (sorted) list; Link alternates relative and absolute."""
        full = httpx.get(proxy.upstream + path).json()
        tags = sorted(full["tags"])
        n = int(query["n"][0]) if "n" in query else len(tags)
        last = query.get("last", [""])[0]
        rest = [t for t in tags if t > last]
        headers = {"Content-Type": "application/json"}
        if len(rest) > n:
            link = f"{path}?n={n}&last={rest[n - 1]}"
            if len(proxy.requests) % 2 == 0:
                link = proxy.url + link
            headers["Link"] = f'<{link}>; rel="next"'
        self.reply(200, headers, json.dumps({"name": full["name"], "tags": rest[:n]}).encode())


@pytest.fixture
def proxy(upstream: tuple[RegistryProcess, dict[str, SeededImage]]) -> Iterator[Proxy]:
    state = Proxy(upstream[0].url)
    server, state.url = _serve(_ProxyHandler, state)
    yield state
    server.shutdown()


# -- registries ---------------------------------------------------------------------------------


def _seed_all(url: str, auth: tuple[str, str] | None = None) -> dict[str, SeededImage]:
    images = {
        OCI_INDEX: seed_image(url, "library/nginx", "1.27", auth=auth),
        DOCKER_LIST: seed_image(url, "library/python", "3.12-slim", oci=False, auth=auth),
        OCI_MANIFEST: seed_image(url, "single/oci", "1.0", platforms=(), auth=auth),
        DOCKER_MANIFEST: seed_image(url, "bitnami/redis", "7.4", platforms=(), oci=False, auth=auth),
    }
    for tag in PAGED_TAGS:
        seed_image(url, "paged/app", tag, platforms=(), auth=auth)
    return images


@pytest.fixture(scope="module")
def upstream(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RegistryProcess, dict[str, SeededImage]]]:
    with start_registry(tmp_path_factory.mktemp("anon")) as registry:
        yield registry, _seed_all(registry.url)


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RegistryProcess, SeededImage]]:
    with start_registry(tmp_path_factory.mktemp("basic"), htpasswd={USER: PASSWORD}) as registry:
        yield registry, seed_image(registry.url, "private/app", "1.0", auth=(USER, PASSWORD))


# -- token service (Distribution's JWT token auth) ------------------------------------------------


@dataclass
class TokenService:
    key: ec.EllipticCurvePrivateKey
    kid: str
    issuer: str = "sandbox-issuer"
    service: str = "sandbox-registry"
    url: str = ""
    lifetime: int | None = 300  # None: omit expires_in
    field_name: str = "token"
    requests: list[dict[str, list[str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _libtrust_kid(public_key: ec.EllipticCurvePublicKey) -> str:
    """Distribution 2.8 looks keys up by libtrust key id: SHA-256 of the DER SPKI, first 240 bits,
    base32, 12 groups of 4 joined by ':'."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    return ":".join(b32[i : i + 4] for i in range(0, len(b32), 4))


def _self_signed(key: ec.EllipticCurvePrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sandbox token signer")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


class _TokenHandler(_Handler):
    def do_GET(self) -> None:
        svc: TokenService = self.server.state  # type: ignore[attr-defined]
        query = parse_qs(urlsplit(self.path).query)
        with svc.lock:
            svc.requests.append(query)
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") != expected or query.get("service") != [svc.service]:
            self.reply(401, {"Content-Type": "application/json"}, b'{"details":"bad credentials"}')
            return
        access = []
        for scope in query.get("scope", []):
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {
            "iss": svc.issuer,
            "sub": USER,
            "aud": svc.service,
            "iat": now,
            "nbf": now - 5,
            "exp": now + (svc.lifetime or 60),
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        token = jwt.encode(claims, svc.key, algorithm="ES256", headers={"kid": svc.kid})
        body: dict[str, object] = {svc.field_name: token}
        if svc.lifetime is not None:
            body["expires_in"] = svc.lifetime
        self.reply(200, {"Content-Type": "application/json"}, json.dumps(body).encode())


@pytest.fixture(scope="module")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RegistryProcess, TokenService, dict[str, SeededImage]]]:
    root = tmp_path_factory.mktemp("token")
    key = ec.generate_private_key(ec.SECP256R1())
    bundle = root / "token-signer.pem"
    bundle.write_bytes(_self_signed(key))
    svc = TokenService(key, _libtrust_kid(key.public_key()))
    server, base = _serve(_TokenHandler, svc)
    svc.url = base + "/token"
    with start_registry(root) as seeding:  # seed anonymously, then serve the same storage with auth
        images = _seed_all(seeding.url)
    config = TokenAuthConfig(realm=svc.url, service=svc.service, issuer=svc.issuer, rootcertbundle=bundle)
    with start_registry(root, token=config) as registry:
        yield registry, svc, images
    server.shutdown()


@pytest.fixture
def token_proxy(
    token_registry: tuple[RegistryProcess, TokenService, dict[str, SeededImage]],
) -> Iterator[Proxy]:
    """A forwarding proxy in front of the token-auth registry."""
    state = Proxy(token_registry[0].url)
    server, state.url = _serve(_ProxyHandler, state)
    yield state
    server.shutdown()


@pytest.fixture
def token_service(
    token_registry: tuple[RegistryProcess, TokenService, dict[str, SeededImage]],
) -> Iterator[TokenService]:
    svc = token_registry[1]
    svc.requests.clear()
    yield svc
    svc.lifetime, svc.field_name = 300, "token"


# -- anonymous ----------------------------------------------------------------------------------


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST])
def test_head_digest_matches_seed(
    upstream: tuple[RegistryProcess, dict[str, SeededImage]], media_type: str
) -> None:
    registry, images = upstream
    image = images[media_type]
    with _fast(registry.url) as client:
        info = client.head_manifest(image.repository, image.tag)
        assert info is not None
        assert (info.digest, info.media_type) == (image.digest, media_type)
        fetched = client.get_manifest(image.repository, image.tag)
        assert info.size == len(fetched.body)
        assert (fetched.digest, fetched.media_type) == (image.digest, media_type)
        assert fetched == client.get_manifest(image.repository, image.digest)
        assert fetched.children() == list(image.children.items())
        for digest in image.children.values():
            child = client.head_manifest(image.repository, digest)
            assert child is not None and child.digest == digest


def test_not_found(upstream: tuple[RegistryProcess, dict[str, SeededImage]]) -> None:
    registry, _ = upstream
    with _fast(registry.url) as client:
        assert client.head_manifest("library/nginx", "no-such-tag") is None
        assert client.head_manifest("no/such-repo", "latest") is None
        with pytest.raises(NotFoundError, match=r"127\.0\.0\.1:\d+ library/nginx:no-such-tag: not found"):
            client.get_manifest("library/nginx", "no-such-tag")
        with pytest.raises(NotFoundError):
            client.list_tags("no/such-repo")


def test_a_blob_served_by_the_registry_itself_is_read_and_counted(
    upstream: tuple[RegistryProcess, dict[str, SeededImage]],
) -> None:
    registry, images = upstream
    image = images[OCI_MANIFEST]
    with _fast(registry.url) as client:
        manifest = client.get_manifest(image.repository, image.tag).json()
        for descriptor in (manifest["config"], *manifest["layers"]):
            answer = client.blob_answer(image.repository, descriptor["digest"])
            assert answer == BlobAnswer(None, descriptor["size"])


def test_tags_pagination_follows_link(
    upstream: tuple[RegistryProcess, dict[str, SeededImage]], proxy: Proxy
) -> None:
    proxy.paginate = True
    with _fast(proxy.url) as client:
        assert client.list_tags("paged/app", page_size=2) == PAGED_TAGS
    pages = [path for _, path in proxy.requests]
    assert pages[0] == "/v2/paged/app/tags/list?n=2"
    assert len(pages) == 4  # 2+2+2+1
    with _fast(upstream[0].url) as client:  # Distribution 2.8 itself: one unpaginated page
        assert sorted(client.list_tags("paged/app")) == PAGED_TAGS


def test_pagination_refuses_foreign_origin(proxy: Proxy) -> None:
    proxy.paginate = True
    own_url, proxy.url = proxy.url, "http://127.0.0.2:1"  # absolute Links now point elsewhere
    with _fast(own_url) as client, pytest.raises(RegistryError, match="another origin"):
        client.list_tags("paged/app", page_size=2)
    assert len(proxy.requests) == 2  # the relative first Link was followed, the foreign one not


# -- digest verification ------------------------------------------------------------------------


def test_get_detects_altered_body(
    upstream: tuple[RegistryProcess, dict[str, SeededImage]], proxy: Proxy
) -> None:
    image = upstream[1][OCI_INDEX]
    proxy.tamper = True
    with _fast(proxy.url) as client:
        with pytest.raises(DigestMismatchError, match="does not match") as by_tag:
            client.get_manifest(image.repository, image.tag)  # against Docker-Content-Digest
        assert by_tag.value.reference == image.tag
        proxy.strip_digest = True
        with pytest.raises(DigestMismatchError):
            client.get_manifest(image.repository, image.digest)  # against the requested digest
        proxy.tamper = False
        fetched = client.get_manifest(image.repository, image.tag)  # no header: computed
        assert fetched.digest == image.digest == compute_digest(fetched.body)


def test_head_without_digest_falls_back_to_get(
    upstream: tuple[RegistryProcess, dict[str, SeededImage]], proxy: Proxy
) -> None:
    image = upstream[1][DOCKER_LIST]
    proxy.strip_digest = True
    with _fast(proxy.url) as client:
        info = client.head_manifest(image.repository, image.tag)
    assert info is not None and (info.digest, info.media_type) == (image.digest, DOCKER_LIST)
    assert [m for m, _ in proxy.requests] == ["HEAD", "GET"]


# -- retries, rate limits, timeouts --------------------------------------------------------------


def test_retries_transient_statuses(
    upstream: tuple[RegistryProcess, dict[str, SeededImage]], proxy: Proxy
) -> None:
    image = upstream[1][OCI_INDEX]
    proxy.faults = [503, 429, 502]
    with _fast(proxy.url) as client:
        info = client.head_manifest(image.repository, image.tag)
    assert info is not None and info.digest == image.digest
    assert len(proxy.requests) == 4


def test_gives_up_after_max_attempts(proxy: Proxy) -> None:
    proxy.faults = [503] * 10
    client = RegistryClient(proxy.url, max_attempts=3, backoff_initial=0.01)
    with client, pytest.raises(UnavailableError) as error:
        client.head_manifest("library/nginx", "1.27")
    assert error.value.status == 503 and len(proxy.requests) == 3


def test_long_retry_after_is_not_slept_on(proxy: Proxy) -> None:
    proxy.faults, proxy.retry_after = [429], "21600"
    with _fast(proxy.url) as client, pytest.raises(RateLimitedError) as error:
        client.list_tags("library/nginx")
    # raised at once: the client sleeps only before a retry, and there was none
    assert len(proxy.requests) == 1
    assert error.value.retry_after == 21600


def test_no_retry_on_404(proxy: Proxy) -> None:
    with _fast(proxy.url) as client:
        assert client.head_manifest("library/nginx", "missing") is None
    assert len(proxy.requests) == 1


def test_rate_limit_headers(upstream: tuple[RegistryProcess, dict[str, SeededImage]], proxy: Proxy) -> None:
    proxy.extra_headers = {"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "76;w=21600"}
    with _fast(proxy.url) as client:
        assert client.rate_limit_remaining is None
        client.head_manifest("library/nginx", "1.27")
        assert client.rate_limit_remaining == 76
        assert client.rate_limit is not None
        assert (client.rate_limit.limit, client.rate_limit.window_s) == (100, 21600)


def test_timeouts_apply_and_connection_errors_wrap() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections, never answers
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with RegistryClient(url, timeout=0.3, max_attempts=2, backoff_initial=0.01) as client:
            assert (client.timeout.read, client.timeout.connect) == (0.3, 0.3)
            started = time.monotonic()
            with pytest.raises(RegistryError, match="ReadTimeout after 2 attempt") as error:
                client.head_manifest("library/nginx", "1.27")
            # well below one 30 s default timeout, however loaded the machine
            assert time.monotonic() - started < 20
            assert isinstance(error.value.__cause__, httpx.ReadTimeout)
    finally:
        silent.close()
    with RegistryClient(url, max_attempts=2, backoff_initial=0.01) as client:
        assert client.timeout.read == 30.0 and client.timeout.connect == 10.0
        with pytest.raises(RegistryError, match="ConnectError"):
            client.list_tags("library/nginx")


# -- Basic auth ---------------------------------------------------------------------------------


def test_basic_auth(basic_registry: tuple[RegistryProcess, SeededImage]) -> None:
    registry, image = basic_registry
    with _fast(registry.url, credentials=(USER, PASSWORD)) as client:
        info = client.head_manifest(image.repository, image.tag)
        assert info is not None and info.digest == image.digest
        assert client.list_tags(image.repository) == [image.tag]
    with _fast(registry.url, credentials=(USER, PASSWORD), preemptive_basic=True) as client:
        assert client.get_manifest(image.repository, image.tag).digest == image.digest


@pytest.mark.parametrize("credentials", [None, (USER, "wrong-password")])
def test_basic_auth_refused(
    basic_registry: tuple[RegistryProcess, SeededImage], credentials: tuple[str, str] | None
) -> None:
    registry, image = basic_registry
    with _fast(registry.url, credentials=credentials) as client:
        with pytest.raises(AuthError, match="access denied") as error:
            client.head_manifest(image.repository, image.tag)
        assert "wrong-password" not in str(error.value) + repr(client) + repr(error.value)
        assert error.value.status == 401


# -- Bearer token auth --------------------------------------------------------------------------


def test_bearer_token_fetched_once_and_reused(
    token_registry: tuple[RegistryProcess, TokenService, dict[str, SeededImage]], token_service: TokenService
) -> None:
    registry, _, images = token_registry
    image = images[OCI_INDEX]
    with _fast(registry.url, credentials=(USER, PASSWORD)) as client:
        with ThreadPoolExecutor(8) as pool:
            infos = list(pool.map(lambda _: client.head_manifest(image.repository, image.tag), range(16)))
        assert {i.digest for i in infos if i} == {image.digest}
        assert client.get_manifest(image.repository, image.digest).digest == image.digest
        assert len(token_service.requests) == 1
        assert token_service.requests[0]["scope"] == [f"repository:{image.repository}:pull"]
        assert token_service.requests[0]["service"] == [token_service.service]
        other = images[DOCKER_MANIFEST]
        info = client.head_manifest(other.repository, other.tag)  # new scope: token fetched up front
        assert info is not None and info.digest == other.digest
        assert sorted(client.list_tags("paged/app")) == PAGED_TAGS
        assert len(token_service.requests) == 3


def test_bearer_token_refreshed_after_expiry(
    token_registry: tuple[RegistryProcess, TokenService, dict[str, SeededImage]], token_service: TokenService
) -> None:
    registry, _, images = token_registry
    image = images[DOCKER_LIST]
    token_service.lifetime, token_service.field_name = 1, "access_token"
    clock = ManualClock()
    with _fast(registry.url, credentials=(USER, PASSWORD), clock=clock) as client:
        assert client.head_manifest(image.repository, image.tag) is not None
        assert client.head_manifest(image.repository, image.tag) is not None
        assert len(token_service.requests) == 1
        clock.now += 0.6  # cached until expires_in minus a margin (half of 1 s here)
        assert client.head_manifest(image.repository, image.tag) is not None
        assert len(token_service.requests) == 2


def test_a_revoked_token_is_dropped_and_a_new_one_fetched(
    token_registry: tuple[RegistryProcess, TokenService, dict[str, SeededImage]],
    token_service: TokenService,
    token_proxy: Proxy,
) -> None:
    image = token_registry[2][OCI_INDEX]
    with _fast(token_proxy.url, credentials=(USER, PASSWORD)) as client:
        assert client.head_manifest(image.repository, image.tag) is not None
        assert len(token_service.requests) == 1
        # the registry now refuses the token it accepted (401 with its challenge), long before expiry
        token_proxy.revoked = {a for a in token_proxy.authorizations if a.startswith("Bearer ")}
        info = client.head_manifest(image.repository, image.tag)
    assert info is not None and info.digest == image.digest
    assert len(token_service.requests) == 2  # the revoked token was dropped, a new one fetched


def test_bearer_token_refused(
    token_registry: tuple[RegistryProcess, TokenService, dict[str, SeededImage]], token_service: TokenService
) -> None:
    registry, _, images = token_registry
    client = _fast(registry.url, credentials=(USER, "wrong-password"))
    with client, pytest.raises(AuthError, match="token service refused") as error:
        client.head_manifest("library/nginx", "1.27")
    assert "wrong-password" not in str(error.value)
    with _fast(registry.url) as client, pytest.raises(AuthError):
        client.get_manifest("library/nginx", images[OCI_INDEX].digest)


# -- pure helpers -------------------------------------------------------------------------------


def test_parse_www_authenticate() -> None:
    header = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/nginx:pull,push",error="insufficient_scope", '
        'Basic realm="say \\"hi\\", please"'
    )
    bearer, basic = parse_www_authenticate(header)
    assert bearer.scheme == "bearer"
    assert bearer.params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/nginx:pull,push",
        "error": "insufficient_scope",
    }
    assert (basic.scheme, basic.params) == ("basic", {"realm": 'say "hi", please'})
    assert parse_www_authenticate("Basic realm=unquoted")[0].params == {"realm": "unquoted"}
    assert parse_www_authenticate("") == []


def test_children_of_index_and_manifest() -> None:
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"digest": "sha256:a", "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
            {"digest": "sha256:b", "annotations": {"vnd.docker.reference.type": "attestation-manifest"}},
        ],
    }
    body = json.dumps(index).encode()
    assert FetchedManifest(compute_digest(body), OCI_INDEX, body).children() == [
        ("linux/arm/v7", "sha256:a"),
        ("", "sha256:b"),
    ]
    assert FetchedManifest("sha256:x", OCI_MANIFEST, b"{}").children() == []
