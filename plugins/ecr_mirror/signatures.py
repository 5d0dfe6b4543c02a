"""The signature gate: is this upstream manifest digest signed with cosign by someone we trust?

Engine module: no Airflow imports. Reads the cosign signature tag (``sha256-<hex>.sig``) from the
upstream repository, and for each simple signing layer checks what ``cosign verify`` checks
(https://github.com/sigstore/cosign/blob/main/specs/SIGNATURE_SPEC.md):

- the payload names this digest in ``critical.image.docker-manifest-digest`` and is of type
  ``cosign container image signature``;
- with keys: the signature verifies with one of the trusted public keys;
- keyless: the signature verifies with the key of its Fulcio certificate, the Rekor bundle's
  signed entry timestamp (SET) verifies with a trusted Rekor key and its entry is this very
  signature, the certificate chains to a trusted Fulcio root and was valid at the log's
  integrated time, and its OIDC issuer and subject (SAN email or URI) match a trusted identity.

Why not sigstore-python (pip ``sigstore``, 4.5): its verifier only accepts Sigstore bundles
whose log entry carries a Merkle inclusion proof with a signed checkpoint
(``TransparencyLogEntry._validate``), while cosign's tag-based signatures carry only the SET
in the ``dev.sigstore.cosign/bundle`` annotation, so they cannot be verified with it offline;
it also verifies keyless only (no ``--key`` equivalent) and requires embedded SCTs. The
primitives and the X.509 path validation (``cryptography.x509.verification``, the same one
sigstore-python uses) come from ``cryptography``; RFC 8785 canonical JSON from ``rfc8785``.

A registry failure other than "not found" raises ``RegistryError``: it says nothing about the
signature, and the caller records it as a failure rather than as a verdict.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from .artifacts import ArtifactKind, cosign_tag
from .protocols import UpstreamRegistry
from .registry import DigestMismatchError, FetchedManifest, NotFoundError
from .sigstore_trust import (
    UntrustedError,
    certificate_identity,
    check_entry_matches,
    field_of,
    rekor_log_id,
    verify_certificate_chain,
    verify_rekor_bundle,
)

SIMPLE_SIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_SIGNATURE_TYPE = "cosign container image signature"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"
BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
# Fulcio's OIDC issuer: 1.1 holds the raw string (deprecated), 1.8 a DER UTF8String
# (https://github.com/sigstore/fulcio/blob/main/docs/oid-info.md)
MAX_PAYLOAD_BYTES = 1 << 20

TrustedPublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


class Verdict(StrEnum):
    VERIFIED = "verified"
    UNSIGNED = "unsigned"
    BAD_SIGNATURE = "bad signature"
    IDENTITY_MISMATCH = "identity mismatch"
    UNTRUSTED_CERTIFICATE = "untrusted certificate"


# When no signature layer verifies, the verdict is the one that got furthest.
_RANK = {
    Verdict.UNSIGNED: 0,
    Verdict.BAD_SIGNATURE: 1,
    Verdict.UNTRUSTED_CERTIFICATE: 2,
    Verdict.IDENTITY_MISMATCH: 3,
    Verdict.VERIFIED: 4,
}


@dataclass(frozen=True)
class SignatureVerdict:
    """The gate's answer for one image digest. ``signer`` names the key or the keyless identity
    that verified it; ``signature`` is the digest of the signature manifest that was read."""

    verdict: Verdict
    image: str
    digest: str
    detail: str
    signer: str | None = None
    signature: str | None = None

    @property
    def verified(self) -> bool:
        return self.verdict is Verdict.VERIFIED

    @property
    def message(self) -> str:
        return f"{self.image}@{self.digest}: {self.verdict}: {self.detail}"


class TrustMaterialError(ValueError):
    """A key, certificate or identity given to the gate is unusable; the message names it."""


@dataclass(frozen=True)
class TrustedKey:
    """A cosign public key (``cosign verify --key``): ECDSA (P-256, P-384, P-521), RSA (PKCS #1
    v1.5) or Ed25519. cosign hashes with SHA-256 unless told otherwise (``hash``)."""

    name: str
    key: TrustedPublicKey
    hash: hashes.HashAlgorithm = field(default_factory=hashes.SHA256)

    @classmethod
    def from_pem(cls, pem: bytes, name: str) -> TrustedKey:
        try:
            key = serialization.load_pem_public_key(pem)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise TrustMaterialError(f"{name}: not a PEM public key ({exc})") from None
        if not isinstance(key, TrustedPublicKey):
            raise TrustMaterialError(f"{name}: {type(key).__name__} keys are not supported")
        return cls(name, key)

    @classmethod
    def from_file(cls, path: Path) -> TrustedKey:
        return cls.from_pem(_read(path), str(path))

    def verifies(self, signature: bytes, payload: bytes) -> bool:
        return _signature_verifies(self.key, signature, payload, self.hash)


@dataclass(frozen=True)
class KeylessIdentity:
    """Who may sign keylessly: regular expressions searched (like cosign's
    ``--certificate-identity-regexp``: anchor with ``^...$``) in the certificate's OIDC issuer
    and in its subject alternative names (emails, URIs)."""

    issuer: str
    subject: str
    _patterns: tuple[re.Pattern[str], re.Pattern[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            patterns = (re.compile(self.issuer), re.compile(self.subject))
        except re.error as exc:
            raise TrustMaterialError(
                f"identity issuer={self.issuer!r} subject={self.subject!r}: {exc}"
            ) from None
        object.__setattr__(self, "_patterns", patterns)

    def matches(self, issuer: str | None, subjects: Sequence[str]) -> bool:
        issuer_re, subject_re = self._patterns
        return (
            issuer is not None
            and bool(issuer_re.search(issuer))
            and any(subject_re.search(s) for s in subjects)
        )

    def __str__(self) -> str:
        return f"subject ~ /{self.subject}/ from issuer ~ /{self.issuer}/"


@dataclass(frozen=True)
class KeylessTrust:
    """Offline trust material for keyless signatures: Fulcio CA certificates (self-signed ones are
    roots, the others intermediates), Rekor public keys (by log ID, the SHA-256 of the key's DER),
    and the identities allowed to sign."""

    fulcio_roots: tuple[x509.Certificate, ...]
    fulcio_intermediates: tuple[x509.Certificate, ...]
    rekor_keys: Mapping[str, ec.EllipticCurvePublicKey]
    identities: tuple[KeylessIdentity, ...]

    @classmethod
    def from_files(
        cls, fulcio: Iterable[Path], rekor: Iterable[Path], identities: Iterable[KeylessIdentity]
    ) -> KeylessTrust:
        roots: list[x509.Certificate] = []
        intermediates: list[x509.Certificate] = []
        for path in fulcio:
            try:
                certs = x509.load_pem_x509_certificates(_read(path))
            except ValueError as exc:
                raise TrustMaterialError(f"{path}: not PEM certificates ({exc})") from None
            for cert in certs:
                (roots if cert.subject == cert.issuer else intermediates).append(cert)
        rekor_keys: dict[str, ec.EllipticCurvePublicKey] = {}
        for path in rekor:
            key = TrustedKey.from_file(path).key
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise TrustMaterialError(f"{path}: a Rekor key must be an ECDSA key")
            rekor_keys[rekor_log_id(key)] = key
        trust = cls(tuple(roots), tuple(intermediates), rekor_keys, tuple(identities))
        if not trust.fulcio_roots:
            raise TrustMaterialError("keyless trust needs at least one self-signed Fulcio root certificate")
        if not trust.rekor_keys:
            raise TrustMaterialError("keyless trust needs at least one Rekor public key")
        if not trust.identities:
            raise TrustMaterialError("keyless trust needs at least one identity (issuer and subject)")
        return trust


@dataclass(frozen=True)
class SignaturePolicy:
    """What the gate accepts: a signature by any of ``keys``, or a keyless one trusted by
    ``keyless``."""

    keys: tuple[TrustedKey, ...] = ()
    keyless: KeylessTrust | None = None

    def __post_init__(self) -> None:
        if not self.keys and self.keyless is None:
            raise TrustMaterialError("a signature policy needs at least one key or keyless trust")


@dataclass(frozen=True)
class _Outcome:
    verdict: Verdict
    detail: str
    signer: str | None = None


def verify_signature(
    upstream: UpstreamRegistry,
    repository: str,
    digest: str,
    policy: SignaturePolicy,
    *,
    image: str | None = None,
) -> SignatureVerdict:
    """The verdict on ``repository@digest`` under ``policy``; ``image`` names it in messages
    (default ``<registry>/<repository>``). Verified if any signature of the cosign tag passes."""
    name = image or f"{upstream.registry}/{repository}"
    tag = cosign_tag(digest, ArtifactKind.SIGNATURE)
    try:
        manifest = upstream.get_manifest(repository, tag)
    except NotFoundError:
        return SignatureVerdict(Verdict.UNSIGNED, name, digest, f"no cosign signature (no tag {tag})")
    layers = _signature_layers(manifest)
    if not layers:
        return SignatureVerdict(
            Verdict.UNSIGNED,
            name,
            digest,
            f"tag {tag} holds no simple signing layer",
            signature=manifest.digest,
        )
    outcomes = [_check_layer(upstream, repository, digest, layer, policy) for layer in layers]
    best = max(outcomes, key=lambda o: _RANK[o.verdict])
    detail = best.detail
    if best.verdict is Verdict.VERIFIED:
        detail = f"signed by {best.signer}"
    elif len(outcomes) > 1:
        detail = f"{detail} (none of {len(outcomes)} signatures verified)"
    return SignatureVerdict(best.verdict, name, digest, detail, best.signer, manifest.digest)


def _signature_layers(manifest: FetchedManifest) -> list[dict[str, Any]]:
    try:
        layers = manifest.json().get("layers") or []
    except (ValueError, AttributeError):
        return []
    return [
        layer
        for layer in layers
        if isinstance(layer, dict)
        and layer.get("mediaType") == SIMPLE_SIGNING_MEDIA_TYPE
        and isinstance(layer.get("digest"), str)
    ]


def _check_layer(
    upstream: UpstreamRegistry, repository: str, digest: str, layer: dict[str, Any], policy: SignaturePolicy
) -> _Outcome:
    annotations = layer.get("annotations") or {}
    try:
        signature = base64.b64decode(annotations.get(SIGNATURE_ANNOTATION) or "", validate=True)
    except binascii.Error:
        signature = b""
    if not signature:
        return _Outcome(Verdict.BAD_SIGNATURE, "a signature layer has no valid signature annotation")
    try:
        payload = upstream.read_blob(repository, layer["digest"], MAX_PAYLOAD_BYTES)
    except DigestMismatchError:
        return _Outcome(Verdict.BAD_SIGNATURE, f"payload blob {layer['digest']} does not match its digest")
    except NotFoundError:
        return _Outcome(Verdict.BAD_SIGNATURE, f"payload blob {layer['digest']} is missing")
    claim_error = payload_claim_error(payload, digest)

    for key in policy.keys:
        if key.verifies(signature, payload):
            if claim_error:
                return _Outcome(Verdict.BAD_SIGNATURE, f"{claim_error} (signed by key {key.name})")
            return _Outcome(Verdict.VERIFIED, "", f"key {key.name}")
    certificate = annotations.get(CERTIFICATE_ANNOTATION)
    if policy.keyless is not None and certificate:
        return _check_keyless(signature, payload, claim_error, annotations, policy.keyless)
    if policy.keys:
        names = ", ".join(k.name for k in policy.keys)
        return _Outcome(Verdict.BAD_SIGNATURE, f"signature does not verify with the trusted key(s) {names}")
    return _Outcome(Verdict.UNTRUSTED_CERTIFICATE, "signature carries no Fulcio certificate")


def _check_keyless(
    signature: bytes,
    payload: bytes,
    claim_error: str | None,
    annotations: Mapping[str, str],
    trust: KeylessTrust,
) -> _Outcome:
    try:
        cert = x509.load_pem_x509_certificate(annotations[CERTIFICATE_ANNOTATION].encode())
    except ValueError:
        return _Outcome(Verdict.UNTRUSTED_CERTIFICATE, "certificate annotation is not a PEM certificate")
    if not _signature_verifies(cert.public_key(), signature, payload, hashes.SHA256()):
        return _Outcome(Verdict.BAD_SIGNATURE, "signature does not verify with the key of its certificate")
    if claim_error:
        return _Outcome(Verdict.BAD_SIGNATURE, claim_error)
    try:
        bundle = annotations.get(BUNDLE_ANNOTATION)
        if not bundle:
            raise UntrustedError("no Rekor bundle, so no proof of when the short-lived certificate was used")
        entry = verify_rekor_bundle(bundle, trust.rekor_keys)
        check_entry_matches(entry, signature, payload, cert)
        chain = (
            x509.load_pem_x509_certificates(annotations[CHAIN_ANNOTATION].encode())
            if (annotations.get(CHAIN_ANNOTATION))
            else []
        )
        verify_certificate_chain(
            cert, [*trust.fulcio_intermediates, *chain], trust.fulcio_roots, entry.integrated_time
        )
    except (UntrustedError, ValueError) as exc:
        return _Outcome(Verdict.UNTRUSTED_CERTIFICATE, str(exc))
    issuer, subjects = certificate_identity(cert)
    for identity in trust.identities:
        if identity.matches(issuer, subjects):
            return _Outcome(Verdict.VERIFIED, "", f"{', '.join(subjects)} (issuer {issuer})")
    expected = "; ".join(str(i) for i in trust.identities)
    return _Outcome(
        Verdict.IDENTITY_MISMATCH,
        f"signed by {', '.join(subjects) or 'no subject'} (issuer {issuer or 'none'}), expected {expected}",
    )


def payload_claim_error(payload: bytes, digest: str) -> str | None:
    """Why a simple signing payload does not sign ``digest`` (None: it does).

    Keys are looked up case-insensitively after an exact match, as Go's encoding/json does for
    cosign (the spec's own example writes ``Docker-manifest-digest``)."""
    try:
        document = json.loads(payload)
    except ValueError:
        return "signature payload is not JSON"
    critical = field_of(document, "critical")
    if not isinstance(critical, dict):
        return "signature payload has no critical section"
    kind = field_of(critical, "type")
    if kind != COSIGN_SIGNATURE_TYPE:
        return f"signature payload type is {kind!r}, not {COSIGN_SIGNATURE_TYPE!r}"
    if not isinstance(field_of(critical, "identity"), dict):
        return "signature payload has no critical.identity"
    image = field_of(critical, "image")
    claimed = field_of(image, "docker-manifest-digest") if isinstance(image, dict) else None
    if claimed != digest:
        return f"signature payload signs {claimed}, not {digest}"
    return None


def _signature_verifies(key: Any, signature: bytes, payload: bytes, algorithm: hashes.HashAlgorithm) -> bool:
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, payload, ec.ECDSA(algorithm))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, payload, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, payload)
        else:
            return False
    except InvalidSignature:
        return False
    return True


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TrustMaterialError(f"{path}: {exc.strerror or exc}") from None
