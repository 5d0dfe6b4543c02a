"""Sign sandbox images the way cosign does, with trust material generated on the spot.

Everything here is made at test time and stays on loopback: key pairs, a two-level CA standing in
for Fulcio (short-lived code-signing certificates with Fulcio's OIDC issuer extensions), and a
transparency log standing in for Rekor (``hashedrekord`` entries and signed entry timestamps).
The registry objects follow cosign's specs byte for byte where cosign fixes the bytes
(https://github.com/sigstore/cosign/tree/main/specs):

- signatures: tag ``sha256-<hex>.sig``, an OCI image manifest whose config is the empty image
  config cosign writes and whose layers are simple signing payloads
  (``application/vnd.dev.cosign.simplesigning.v1+json``) annotated with the signature and, for
  keyless, the certificate, chain and Rekor bundle; a second signature is appended as a layer;
- attestations: tag ``sha256-<hex>.att``, DSSE envelopes of in-toto statements;
- SBOMs: tag ``sha256-<hex>.sbom``, the SBOM document as the layer;
- OCI 1.1 referrers: a manifest with ``subject`` and ``artifactType``, listed in the referrers tag
  schema's index because Debian's Distribution (2.8) has no referrers API.

``tamper_payload``/``tamper_signature`` and a key the verifier does not trust make the images a
signature gate must refuse.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from sandbox.upstream import OCI_INDEX, OCI_MANIFEST, _digest, _Pusher

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
IN_TOTO = "application/vnd.in-toto+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"
BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
OIDC_ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
OIDC_ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def _json(obj: Any) -> bytes:
    """Compact JSON with keys in the given order, as Go's encoding/json writes cosign's structs."""
    return json.dumps(obj, separators=(",", ":")).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass(frozen=True)
class SigningKey:
    """A cosign-style key pair; ``public_pem`` is what ``cosign verify --key`` reads."""

    name: str
    private_key: PrivateKey

    @property
    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, data: bytes) -> bytes:
        """SHA-256 for ECDSA and RSA (PKCS #1 v1.5), as cosign does by default; pure Ed25519."""
        key = self.private_key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(data, ec.ECDSA(hashes.SHA256()))
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return key.sign(data)


def generate_key(kind: str = "ecdsa-p256", name: str | None = None) -> SigningKey:
    """A fresh key: ``ecdsa-p256`` (what ``cosign generate-key-pair`` makes), ``ecdsa-p384``,
    ``rsa`` (3072 bits) or ``ed25519``."""
    makers: dict[str, Callable[[], PrivateKey]] = {
        "ecdsa-p256": lambda: ec.generate_private_key(ec.SECP256R1()),
        "ecdsa-p384": lambda: ec.generate_private_key(ec.SECP384R1()),
        "rsa": lambda: rsa.generate_private_key(public_exponent=65537, key_size=3072),
        "ed25519": ed25519.Ed25519PrivateKey.generate,
    }
    if kind not in makers:
        raise ValueError(f"unknown key kind {kind!r}; one of {', '.join(makers)}")
    return SigningKey(name or kind, makers[kind]())


def _utf8_string_der(value: str) -> bytes:
    data = value.encode()
    if len(data) < 0x80:
        return bytes([0x0C, len(data)]) + data
    length = len(data).to_bytes((len(data).bit_length() + 7) // 8, "big")
    return bytes([0x0C, 0x80 | len(length)]) + length + data


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class FulcioCA:
    """A root and an intermediate CA issuing Fulcio-shaped code-signing certificates: empty
    subject, critical SAN (email or URI), issuer in extensions 1.3.6.1.4.1.57264.1.1 (raw) and
    .1.8 (DER UTF8String), valid for minutes."""

    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    intermediate_key: ec.EllipticCurvePrivateKey
    intermediate: x509.Certificate

    @classmethod
    def generate(cls, name: str = "sandbox-fulcio", now: dt.datetime | None = None) -> FulcioCA:
        now = now or dt.datetime.now(dt.UTC)
        root_key = ec.generate_private_key(ec.SECP384R1())
        root_name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ecr-mirror sandbox"),
                x509.NameAttribute(NameOID.COMMON_NAME, name),
            ]
        )
        root = _ca_cert(root_name, root_key, root_name, root_key, now, path_length=1)
        intermediate_key = ec.generate_private_key(ec.SECP384R1())
        intermediate_name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ecr-mirror sandbox"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{name}-intermediate"),
            ]
        )
        intermediate = _ca_cert(intermediate_name, intermediate_key, root_name, root_key, now, path_length=0)
        return cls(root_key, root, intermediate_key, intermediate)

    @property
    def root_pem(self) -> bytes:
        return _pem(self.root)

    @property
    def chain_pem(self) -> bytes:
        """What cosign writes to the chain annotation: the intermediate, then the root."""
        return _pem(self.intermediate) + _pem(self.root)

    def issue(
        self,
        subject: str,
        issuer: str,
        *,
        not_before: dt.datetime | None = None,
        lifetime: dt.timedelta = dt.timedelta(minutes=10),
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """An ephemeral P-256 key and its certificate for ``subject`` (an email, or a URI when it
        has ``://``) as authenticated by OIDC ``issuer``."""
        key = ec.generate_private_key(ec.SECP256R1())
        start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
        name: x509.GeneralName = (
            x509.UniformResourceIdentifier(subject) if "://" in subject else x509.RFC822Name(subject)
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.intermediate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + lifetime)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.intermediate_key.public_key()),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName([name]), critical=True)
            .add_extension(x509.UnrecognizedExtension(OIDC_ISSUER_V1, issuer.encode()), critical=False)
            .add_extension(
                x509.UnrecognizedExtension(OIDC_ISSUER_V2, _utf8_string_der(issuer)), critical=False
            )
            .sign(self.intermediate_key, hashes.SHA384())
        )
        return key, cert


def _ca_cert(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
    path_length: int,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
        .sign(issuer_key, hashes.SHA384())
    )


@dataclass
class RekorLog:
    """A transparency log's signing side: records ``hashedrekord`` v0.0.1 entries and returns
    cosign's bundle annotation, whose SET is ECDSA/SHA-256 over the RFC 8785 JSON of body,
    integratedTime, logIndex and logID (the log ID being the SHA-256 of the key's DER)."""

    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    next_index: int = 0

    @property
    def public_pem(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def log_id(self) -> str:
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return hashlib.sha256(der).hexdigest()

    def bundle(self, payload: bytes, signature: bytes, cert_pem: bytes, integrated_time: dt.datetime) -> str:
        body = _json(
            {
                "apiVersion": "0.0.1",
                "kind": "hashedrekord",
                "spec": {
                    "data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()}},
                    "signature": {"content": _b64(signature), "publicKey": {"content": _b64(cert_pem)}},
                },
            }
        )
        entry = {
            "body": _b64(body),
            "integratedTime": int(integrated_time.timestamp()),
            "logIndex": self.next_index,
            "logID": self.log_id,
        }
        self.next_index += 1
        set_signature = self.key.sign(rfc8785.dumps(entry), ec.ECDSA(hashes.SHA256()))  # type: ignore[arg-type]
        return _json({"SignedEntryTimestamp": _b64(set_signature), "Payload": entry}).decode()


@dataclass(frozen=True)
class SignatureLayer:
    """One signature as cosign stores it: the payload blob and the layer's annotations."""

    payload: bytes
    annotations: Mapping[str, str]


def simple_signing_payload(docker_reference: str, digest: str) -> bytes:
    """cosign's payload for an image signature, in the field order cosign marshals it."""
    return _json(
        {
            "critical": {
                "identity": {"docker-reference": docker_reference},
                "image": {"docker-manifest-digest": digest},
                "type": "cosign container image signature",
            },
            "optional": None,
        }
    )


def key_signature(key: SigningKey, docker_reference: str, digest: str) -> SignatureLayer:
    """``cosign sign --key``: the payload signed with ``key`` (no transparency log entry, as with
    ``--tlog-upload=false``)."""
    payload = simple_signing_payload(docker_reference, digest)
    return SignatureLayer(payload, {SIGNATURE_ANNOTATION: _b64(key.sign(payload))})


def keyless_signature(
    fulcio: FulcioCA,
    rekor: RekorLog,
    subject: str,
    issuer: str,
    docker_reference: str,
    digest: str,
    *,
    signed_at: dt.datetime | None = None,
    logged_at: dt.datetime | None = None,
) -> SignatureLayer:
    """Keyless ``cosign sign``: an ephemeral key certified by ``fulcio`` for ``subject``/``issuer``
    at ``signed_at`` (default now), the signature logged in ``rekor`` at ``logged_at`` (default
    ``signed_at``; later than the certificate's ten minutes makes it invalid when logged)."""
    signed_at = signed_at or dt.datetime.now(dt.UTC)
    private_key, cert = fulcio.issue(subject, issuer, not_before=signed_at - dt.timedelta(seconds=5))
    payload = simple_signing_payload(docker_reference, digest)
    signature = private_key.sign(payload, ec.ECDSA(hashes.SHA256()))
    cert_pem = _pem(cert)
    return SignatureLayer(
        payload,
        {
            SIGNATURE_ANNOTATION: _b64(signature),
            CERTIFICATE_ANNOTATION: cert_pem.decode(),
            CHAIN_ANNOTATION: fulcio.chain_pem.decode(),
            BUNDLE_ANNOTATION: rekor.bundle(payload, signature, cert_pem, logged_at or signed_at),
        },
    )


def tamper_payload(layer: SignatureLayer) -> SignatureLayer:
    """The same signature over a payload altered after signing (its docker-reference rewritten)."""
    document = json.loads(layer.payload)
    document["critical"]["identity"]["docker-reference"] += "-tampered"
    return replace(layer, payload=_json(document))


def tamper_signature(layer: SignatureLayer) -> SignatureLayer:
    """The same payload with one bit of the signature flipped."""
    raw = bytearray(base64.b64decode(layer.annotations[SIGNATURE_ANNOTATION]))
    raw[len(raw) // 2] ^= 0x01
    return replace(layer, annotations={**layer.annotations, SIGNATURE_ANNOTATION: _b64(bytes(raw))})


def _cosign_tag(digest: str, suffix: str) -> str:
    return digest.replace(":", "-", 1) + f".{suffix}"


def _cosign_image(push: _Pusher, layers: Sequence[tuple[bytes, str, Mapping[str, str]]]) -> bytes:
    """cosign's signature/attestation/SBOM image: the empty image config of go-containerregistry
    with the layers as diff IDs, one descriptor per layer."""
    descriptors = []
    for data, media_type, layer_annotations in layers:
        descriptor: dict[str, Any] = {"mediaType": media_type, "size": len(data), "digest": push.blob(data)}
        if layer_annotations:
            descriptor["annotations"] = dict(layer_annotations)
        descriptors.append(descriptor)
    config = _json(
        {
            "architecture": "",
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}] * len(descriptors),
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descriptors]},
            "config": {},
        }
    )
    return _json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "size": len(config), "digest": push.blob(config)},
            "layers": descriptors,
        }
    )


def _existing_layers(
    client: httpx.Client, base: str, repository: str, tag: str
) -> list[tuple[bytes, str, Mapping[str, str]]]:
    """The layers already under a cosign tag, so a new signature is appended like cosign does."""
    response = client.get(f"{base}/v2/{repository}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
    if response.status_code == 404:
        return []
    response.raise_for_status()
    layers = []
    for layer in response.json().get("layers", []):
        blob = client.get(f"{base}/v2/{repository}/blobs/{layer['digest']}", follow_redirects=True)
        blob.raise_for_status()
        layers.append((blob.content, layer["mediaType"], layer.get("annotations") or {}))
    return layers


def _layer_key(layer: tuple[bytes, str, Mapping[str, str]]) -> tuple[bytes, str, frozenset[tuple[str, str]]]:
    return layer[0], layer[1], frozenset(layer[2].items())


def _push_cosign_tag(
    registry_url: str,
    repository: str,
    tag: str,
    layers: Sequence[tuple[bytes, str, Mapping[str, str]]],
    auth: tuple[str, str] | None,
    append: bool,
) -> str:
    base = registry_url.rstrip("/")
    with httpx.Client(auth=auth, timeout=30.0) as client:
        push = _Pusher(client, base, repository)
        existing = _existing_layers(client, base, repository, tag) if append else []
        known = {_layer_key(layer) for layer in existing}  # cosign skips an identical signature
        merged = existing + [layer for layer in layers if _layer_key(layer) not in known]
        manifest = _cosign_image(push, merged)
        push.manifest(tag, manifest, OCI_MANIFEST)
    return _digest(manifest)


def push_signatures(
    registry_url: str,
    repository: str,
    digest: str,
    signatures: Sequence[SignatureLayer],
    *,
    append: bool = True,
    auth: tuple[str, str] | None = None,
) -> str:
    """Store ``signatures`` under ``sha256-<hex>.sig`` (after those already there, unless
    ``append=False``); returns the signature manifest's digest."""
    layers = [(s.payload, SIMPLE_SIGNING, s.annotations) for s in signatures]
    return _push_cosign_tag(registry_url, repository, _cosign_tag(digest, "sig"), layers, auth, append)


def attach_attestation(
    registry_url: str,
    repository: str,
    digest: str,
    key: SigningKey,
    predicate_type: str,
    predicate: Mapping[str, Any],
    *,
    auth: tuple[str, str] | None = None,
) -> str:
    """``cosign attest --key``: an in-toto statement about ``digest``, signed as a DSSE envelope
    (PAE encoding), stored under ``sha256-<hex>.att``; returns the manifest digest."""
    algorithm, _, encoded = digest.partition(":")
    statement = _json(
        {
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": predicate_type,
            "subject": [{"name": repository, "digest": {algorithm: encoded}}],
            "predicate": dict(predicate),
        }
    )
    pae = b"DSSEv1 %d %s %d %s" % (len(IN_TOTO), IN_TOTO.encode(), len(statement), statement)
    envelope = _json(
        {
            "payloadType": IN_TOTO,
            "payload": _b64(statement),
            "signatures": [{"keyid": "", "sig": _b64(key.sign(pae))}],
        }
    )
    annotations = {SIGNATURE_ANNOTATION: "", "predicateType": predicate_type}
    tag = _cosign_tag(digest, "att")
    return _push_cosign_tag(
        registry_url, repository, tag, [(envelope, DSSE_ENVELOPE, annotations)], auth, True
    )


def attach_sbom(
    registry_url: str,
    repository: str,
    digest: str,
    sbom: bytes,
    media_type: str = "text/spdx+json",
    *,
    auth: tuple[str, str] | None = None,
) -> str:
    """``cosign attach sbom``: the document under ``sha256-<hex>.sbom``; returns its digest."""
    tag = _cosign_tag(digest, "sbom")
    return _push_cosign_tag(registry_url, repository, tag, [(sbom, media_type, {})], auth, append=False)


def attach_referrer(
    registry_url: str,
    repository: str,
    subject: Mapping[str, Any],
    artifact_type: str,
    content: bytes,
    media_type: str,
    annotations: Mapping[str, str] | None = None,
    *,
    auth: tuple[str, str] | None = None,
) -> str:
    """``oras attach``: an OCI 1.1 artifact manifest (empty config, ``artifactType``, ``subject``)
    pushed by digest. Where the registry has no referrers API (404, as Distribution 2.8), the
    referrers tag schema's index (``sha256-<hex>``) is updated the way the spec asks of
    clients. ``subject`` is the subject's descriptor (``mediaType``, ``digest``, ``size``)."""
    base = registry_url.rstrip("/")
    with httpx.Client(auth=auth, timeout=30.0) as client:
        push = _Pusher(client, base, repository)
        empty = b"{}"
        manifest_doc: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": OCI_EMPTY, "digest": push.blob(empty), "size": len(empty)},
            "layers": [{"mediaType": media_type, "digest": push.blob(content), "size": len(content)}],
            "subject": {k: subject[k] for k in ("mediaType", "digest", "size")},
        }
        if annotations:
            manifest_doc["annotations"] = dict(annotations)
        manifest = _json(manifest_doc)
        digest = _digest(manifest)
        push.manifest(digest, manifest, OCI_MANIFEST)
        probe = client.get(f"{base}/v2/{repository}/referrers/{subject['digest']}")
        if probe.status_code == 404:
            _add_to_referrers_tag(
                client, push, base, repository, subject["digest"], manifest_doc, digest, len(manifest)
            )
    return digest


def _add_to_referrers_tag(
    client: httpx.Client,
    push: _Pusher,
    base: str,
    repository: str,
    subject_digest: str,
    manifest_doc: Mapping[str, Any],
    digest: str,
    size: int,
) -> None:
    tag = subject_digest.replace(":", "-", 1)
    response = client.get(f"{base}/v2/{repository}/manifests/{tag}", headers={"Accept": OCI_INDEX})
    index: dict[str, Any] = (
        response.json()
        if response.status_code == 200
        else {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    )
    if any(entry.get("digest") == digest for entry in index["manifests"]):
        return
    descriptor: dict[str, Any] = {
        "mediaType": OCI_MANIFEST,
        "digest": digest,
        "size": size,
        "artifactType": manifest_doc["artifactType"],
    }
    if manifest_doc.get("annotations"):
        descriptor["annotations"] = manifest_doc["annotations"]
    index["manifests"].append(descriptor)
    push.manifest(tag, _json(index), OCI_INDEX)
