"""Artifact discovery (cosign .sig/.att/.sbom tags and OCI 1.1 referrers) and the registry client's
referrers and blob reads, against a real Distribution registry.

Debian's Distribution (2.8) has no referrers API, so it exercises the tag schema fallback. For the
API itself a forwarding proxy in front of it answers ``/v2/<name>/referrers/<digest>`` the way
distribution-spec v1.1 says a registry that enables the API must: from the referrers already
listed under the tag schema (with ``artifactType`` filtering and ``Link`` pages when asked).
"""

from __future__ import annotations

import base64
import json
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from ecr_mirror.artifacts import ArtifactKind, cosign_tag, discover_artifacts, subject_digests
from ecr_mirror.registry import DigestMismatchError, RegistryClient, RegistryError, referrers_tag
from sandbox import signing
from sandbox.upstream import RegistryProcess, SeededImage, seed_image, start_registry

pytestmark = pytest.mark.skipif(
    not shutil.which("docker-registry"), reason="needs the docker-registry package"
)

SPDX = "application/spdx+json"
VULN = "application/vnd.example.vulnerability-report+json"
REPO = "supply/app"


@dataclass
class Upstream:
    registry: RegistryProcess
    image: SeededImage  # multi-arch, with every kind of artifact
    bare: SeededImage  # nothing attached
    sbom_referrers: dict[str, str]  # subject digest -> digest of its SPDX referrer
    vuln_referrer: str  # on the index only
    key: signing.SigningKey


def _descriptor(registry_url: str, repository: str, digest: str) -> dict[str, object]:
    response = httpx.get(
        f"{registry_url}/v2/{repository}/manifests/{digest}",
        headers={
            "Accept": "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"
        },
    )
    response.raise_for_status()
    return {"mediaType": response.headers["content-type"], "digest": digest, "size": len(response.content)}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    with start_registry(tmp_path_factory.mktemp("upstream")) as registry:
        url = registry.url
        image = seed_image(url, REPO, "1.0")
        bare = seed_image(url, REPO, "bare", variant="bare")
        key = signing.generate_key()
        ref = f"upstream.example/{REPO}"
        sbom_referrers = {}
        for digest in (image.digest, *image.children.values()):
            signing.push_signatures(url, REPO, digest, [signing.key_signature(key, ref, digest)])
            signing.attach_sbom(
                url, REPO, digest, b'{"spdxVersion":"SPDX-2.3","name":"%s"}' % digest.encode()
            )
            sbom_referrers[digest] = signing.attach_referrer(
                url, REPO, _descriptor(url, REPO, digest), SPDX, b'{"spdxVersion":"SPDX-2.3"}', SPDX
            )
        signing.attach_attestation(
            url,
            REPO,
            image.digest,
            key,
            "https://slsa.dev/provenance/v1",
            {"buildDefinition": {"buildType": "x"}},
        )
        vuln = signing.attach_referrer(
            url, REPO, _descriptor(url, REPO, image.digest), VULN, b'{"matches":[]}', "application/json",
            {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
        )  # fmt: skip
        yield Upstream(registry, image, bare, sbom_referrers, vuln, key)


# -- a registry with the referrers API -------------------------------------------------------------


@dataclass
class ReferrersProxy:
    upstream: str
    url: str = ""
    apply_filter: bool = True
    page_size: int | None = None
    gitlab_tags: bool = False  # resolve `sha256-<hex>` as the digest, as GitLab's registry does
    has_api: bool = True
    swap_blobs: dict[str, str] = field(default_factory=dict)  # blob asked for -> blob served
    requests: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        proxy: ReferrersProxy = self.server.state  # type: ignore[attr-defined]
        with proxy.lock:
            proxy.requests.append((self.command, self.path))
        parts = urlsplit(self.path)
        if "/referrers/" in parts.path and proxy.has_api:
            self._referrers(proxy, parts.path, parse_qs(parts.query))
            return
        path = parts.path
        if proxy.gitlab_tags and "/manifests/sha256-" in path:
            path = path.replace("/manifests/sha256-", "/manifests/sha256:")
        for asked, served in proxy.swap_blobs.items():
            path = path.replace(f"/blobs/{asked}", f"/blobs/{served}")
        forwarded = {k: v for k, v in self.headers.items() if k.lower() == "accept"}
        answer = httpx.request(self.command, proxy.upstream + path, headers=forwarded, follow_redirects=True)
        headers = {
            k: v
            for k, v in answer.headers.items()
            if k.lower() not in ("content-length", "connection", "transfer-encoding", "date")
        }
        self._reply(answer.status_code, headers, answer.content)

    do_HEAD = do_GET

    def _referrers(self, proxy: ReferrersProxy, path: str, query: dict[str, list[str]]) -> None:
        name, _, digest = path.removeprefix("/v2/").partition("/referrers/")
        tagged = httpx.get(
            f"{proxy.upstream}/v2/{name}/manifests/{referrers_tag(digest)}",
            headers={"Accept": "application/vnd.oci.image.index.v1+json"},
        )
        manifests = tagged.json()["manifests"] if tagged.status_code == 200 else []
        headers = {"Content-Type": "application/vnd.oci.image.index.v1+json"}
        if proxy.apply_filter and "artifactType" in query:
            manifests = [m for m in manifests if m.get("artifactType") == query["artifactType"][0]]
            headers["OCI-Filters-Applied"] = "artifactType"
        if proxy.page_size:
            start = int(query.get("page", ["0"])[0])
            end = start + proxy.page_size
            if end < len(manifests):
                headers["Link"] = f'<{path}?page={end}>; rel="next"'
            manifests = manifests[start:end]
        body = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        }
        self._reply(200, headers, json.dumps(body).encode())


@pytest.fixture
def proxy(upstream: Upstream) -> Iterator[ReferrersProxy]:
    state = ReferrersProxy(upstream.registry.url)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ProxyHandler)
    server.daemon_threads = True
    server.state = state  # type: ignore[attr-defined]
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state
    server.shutdown()
    server.server_close()


# -- discovery -------------------------------------------------------------------------------------


def _kinds(found: list, subject: str) -> dict[ArtifactKind, list[str]]:
    by_kind: dict[ArtifactKind, list[str]] = {}
    for artifact in found:
        if artifact.subject == subject:
            by_kind.setdefault(artifact.kind, []).append(artifact.reference)
    return by_kind


def test_discovers_cosign_tags_and_referrers_of_an_index_and_its_platform_manifests(
    upstream: Upstream,
) -> None:
    with RegistryClient(upstream.registry.url) as client:
        manifest = client.get_manifest(REPO, "1.0")
        subjects = subject_digests(manifest)
        found = discover_artifacts(client, REPO, subjects)

    image = upstream.image
    assert subjects == [image.digest, image.children["linux/amd64"], image.children["linux/arm64"]]
    assert _kinds(found, image.digest) == {
        ArtifactKind.SIGNATURE: [cosign_tag(image.digest, ArtifactKind.SIGNATURE)],
        ArtifactKind.ATTESTATION: [cosign_tag(image.digest, ArtifactKind.ATTESTATION)],
        ArtifactKind.SBOM: [cosign_tag(image.digest, ArtifactKind.SBOM)],
        ArtifactKind.REFERRER: [upstream.sbom_referrers[image.digest], upstream.vuln_referrer],
    }
    for child in image.children.values():
        assert _kinds(found, child) == {
            ArtifactKind.SIGNATURE: [cosign_tag(child, ArtifactKind.SIGNATURE)],
            ArtifactKind.SBOM: [cosign_tag(child, ArtifactKind.SBOM)],
            ArtifactKind.REFERRER: [upstream.sbom_referrers[child]],
        }
    referrers = [a for a in found if a.kind is ArtifactKind.REFERRER]
    assert {a.source for a in referrers} == {"tag-schema"}
    assert {a.artifact_type for a in referrers} == {SPDX, VULN}
    cosign = [a for a in found if a.kind is not ArtifactKind.REFERRER]
    assert all(a.source == "cosign-tag" and a.digest.startswith("sha256:") and a.size for a in cosign)


def test_only_the_selected_platforms_are_subjects(upstream: Upstream) -> None:
    with RegistryClient(upstream.registry.url) as client:
        manifest = client.get_manifest(REPO, "1.0")
    assert subject_digests(manifest, {"linux/arm64"}) == [
        upstream.image.digest,
        upstream.image.children["linux/arm64"],
    ]


def test_referrers_filtered_by_artifact_type(upstream: Upstream) -> None:
    with RegistryClient(upstream.registry.url) as client:
        found = discover_artifacts(client, REPO, [upstream.image.digest], kinds=(), artifact_types=[VULN])
    assert [(a.kind, a.digest, a.artifact_type) for a in found] == [
        (ArtifactKind.REFERRER, upstream.vuln_referrer, VULN)
    ]


def test_image_without_artifacts_has_none(upstream: Upstream) -> None:
    with RegistryClient(upstream.registry.url) as client:
        assert discover_artifacts(client, REPO, [upstream.bare.digest]) == []
        listed = client.list_referrers(REPO, upstream.bare.digest)
    assert (listed.referrers, listed.source) == ((), "tag-schema")


def test_a_known_tag_list_spares_the_look_ups_of_absent_cosign_tags(
    upstream: Upstream, proxy: ReferrersProxy
) -> None:
    image = upstream.image
    with RegistryClient(proxy.url) as client:
        tags = client.list_tags(REPO)
        proxy.requests.clear()
        found = discover_artifacts(
            client, REPO, [image.digest, upstream.bare.digest], referrers=False, tags=tags
        )
    assert [a.kind for a in found] == [ArtifactKind.SIGNATURE, ArtifactKind.ATTESTATION, ArtifactKind.SBOM]
    assert [method for method, _ in proxy.requests] == [
        "HEAD"
    ] * 3  # the bare image's tags were not asked for


# -- the referrers API -----------------------------------------------------------------------------


def test_referrers_api_is_used_where_the_registry_has_it(upstream: Upstream, proxy: ReferrersProxy) -> None:
    with RegistryClient(proxy.url) as client:
        listed = client.list_referrers(REPO, upstream.image.digest, SPDX)
    assert listed.source == "api"
    assert [r.digest for r in listed.referrers] == [upstream.sbom_referrers[upstream.image.digest]]
    assert any("/referrers/" in path and "artifactType=" in path for _, path in proxy.requests)
    assert not any(referrers_tag(upstream.image.digest) in path for _, path in proxy.requests)


def test_artifact_type_filter_the_registry_did_not_apply_is_applied_here(
    upstream: Upstream, proxy: ReferrersProxy
) -> None:
    proxy.apply_filter = False
    with RegistryClient(proxy.url) as client:
        listed = client.list_referrers(REPO, upstream.image.digest, VULN)
    assert listed.source == "api"
    assert [(r.digest, r.artifact_type) for r in listed.referrers] == [(upstream.vuln_referrer, VULN)]
    assert listed.referrers[0].annotations == {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"}


def test_referrers_api_pages_are_all_read(upstream: Upstream, proxy: ReferrersProxy) -> None:
    proxy.page_size = 1
    with RegistryClient(proxy.url) as client:
        listed = client.list_referrers(REPO, upstream.image.digest)
    assert [r.digest for r in listed.referrers] == [
        upstream.sbom_referrers[upstream.image.digest],
        upstream.vuln_referrer,
    ]
    assert sum("/referrers/" in path for _, path in proxy.requests) == 2


def test_tag_schema_tag_that_resolves_to_the_subject_itself_is_not_a_referrers_list(
    upstream: Upstream, proxy: ReferrersProxy
) -> None:
    """GitLab's registry reads `sha256-<hex>` as the digest and serves the image index itself
    (oras-project/oras#2148): its platform manifests must not pass for referrers."""
    proxy.has_api, proxy.gitlab_tags = False, True
    with RegistryClient(proxy.url) as client:
        listed = client.list_referrers(REPO, upstream.bare.digest)
    assert (listed.referrers, listed.source) == ((), "tag-schema")


def test_referrers_tag_follows_the_spec() -> None:
    assert referrers_tag("sha256:" + "a" * 64) == "sha256-" + "a" * 64
    assert referrers_tag("sha512:" + "b" * 128) == "sha512-" + "b" * 64
    assert referrers_tag("test+algorithm+using+algorithm+separators:alsoSome=InTheEncoded") == (
        "test-algorithm-using-algorithm-s-alsoSome-InTheEncoded"
    )


def test_cosign_tag() -> None:
    digest = "sha256:" + "c" * 64
    assert cosign_tag(digest, ArtifactKind.SIGNATURE) == "sha256-" + "c" * 64 + ".sig"
    assert cosign_tag(digest, ArtifactKind.ATTESTATION).endswith(".att")
    assert cosign_tag(digest, ArtifactKind.SBOM).endswith(".sbom")
    with pytest.raises(ValueError, match="no cosign tag"):
        cosign_tag(digest, ArtifactKind.REFERRER)
    with pytest.raises(ValueError, match="not a digest"):
        cosign_tag("latest", ArtifactKind.SIGNATURE)


# -- blobs -----------------------------------------------------------------------------------------


def test_read_blob_verifies_the_digest_and_bounds_the_size(upstream: Upstream, proxy: ReferrersProxy) -> None:
    sbom_tag = cosign_tag(upstream.image.digest, ArtifactKind.SBOM)
    with RegistryClient(proxy.url) as client:
        manifest = client.get_manifest(REPO, sbom_tag).json()
        sbom, config = manifest["layers"][0]["digest"], manifest["config"]["digest"]
        assert (
            client.read_blob(REPO, sbom)
            == b'{"spdxVersion":"SPDX-2.3","name":"%s"}' % upstream.image.digest.encode()
        )
        with pytest.raises(RegistryError, match="larger than 10 bytes"):
            client.read_blob(REPO, sbom, max_bytes=10)
        proxy.swap_blobs[sbom] = config  # a registry that serves other bytes than asked for
        with pytest.raises(DigestMismatchError, match=f"does not match digest {sbom}"):
            client.read_blob(REPO, sbom)


# -- the sandbox's artifacts are cosign's ------------------------------------------------------------


def test_attestation_is_a_dsse_envelope_signed_over_its_pae(upstream: Upstream) -> None:
    tag = cosign_tag(upstream.image.digest, ArtifactKind.ATTESTATION)
    with RegistryClient(upstream.registry.url) as client:
        [layer] = client.get_manifest(REPO, tag).json()["layers"]
        envelope = json.loads(client.read_blob(REPO, layer["digest"]))
    assert layer["mediaType"] == "application/vnd.dsse.envelope.v1+json"
    assert layer["annotations"]["predicateType"] == "https://slsa.dev/provenance/v1"
    statement = base64.b64decode(envelope["payload"])
    pae = b"DSSEv1 28 application/vnd.in-toto+json %d %s" % (len(statement), statement)
    public_key = upstream.key.private_key.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(base64.b64decode(envelope["signatures"][0]["sig"]), pae, ec.ECDSA(hashes.SHA256()))
    subject = json.loads(statement)["subject"][0]
    assert subject["digest"] == {"sha256": upstream.image.digest.removeprefix("sha256:")}
