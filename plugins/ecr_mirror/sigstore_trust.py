"""Keyless trust for the signature gate: a Rekor bundle's signed entry timestamp, the entry it
signs, and a Fulcio certificate's chain and identity (what ``cosign verify`` checks for keyless
signatures; https://github.com/sigstore/cosign/blob/main/specs/SIGNATURE_SPEC.md).

The X.509 path validation is ``cryptography.x509.verification`` (the one sigstore-python uses);
RFC 8785 canonical JSON comes from ``rfc8785``. See signatures.py for why not sigstore-python.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

#: Fulcio's OIDC issuer extensions (v1: raw string, v2: DER UTF8String)
OIDC_ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
OIDC_ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")


@dataclass(frozen=True)
class RekorEntry:
    """A transparency log entry whose signed entry timestamp verified."""

    body: dict[str, Any]
    integrated_time: datetime
    log_index: int
    log_id: str


class UntrustedError(Exception):
    """Trust in a certificate or log entry could not be established; the message says why."""


def rekor_log_id(key: ec.EllipticCurvePublicKey) -> str:
    """Rekor's log ID: hex SHA-256 of the log key's DER SubjectPublicKeyInfo."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def verify_rekor_bundle(
    bundle: str | bytes, rekor_keys: Mapping[str, ec.EllipticCurvePublicKey]
) -> RekorEntry:
    """Check the SET of a cosign bundle annotation: ECDSA/SHA-256 by the log's key over the RFC 8785
    canonical JSON of ``body``, ``integratedTime``, ``logIndex`` and ``logID``."""
    try:
        document = json.loads(bundle)
        set_bytes = base64.b64decode(document["SignedEntryTimestamp"], validate=True)
        entry = document["Payload"]
        body_b64, integrated, index, log_id = (
            entry["body"],
            entry["integratedTime"],
            entry["logIndex"],
            entry["logID"],
        )
        if not (isinstance(body_b64, str) and isinstance(integrated, int) and isinstance(index, int)):
            raise TypeError("body, integratedTime or logIndex has the wrong type")
        body = json.loads(base64.b64decode(body_b64, validate=True))
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise UntrustedError(f"Rekor bundle is malformed ({exc})") from None
    key = rekor_keys.get(str(log_id))
    if key is None:
        raise UntrustedError(f"Rekor bundle is from an untrusted transparency log (log ID {log_id})")
    signed = rfc8785.dumps(
        {"body": body_b64, "integratedTime": integrated, "logIndex": index, "logID": log_id}
    )
    try:
        key.verify(set_bytes, signed, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise UntrustedError("Rekor bundle's signed entry timestamp does not verify") from None
    if not isinstance(body, dict):
        raise UntrustedError("Rekor entry body is not a JSON object")
    return RekorEntry(body, datetime.fromtimestamp(integrated, UTC), index, str(log_id))


def check_entry_matches(entry: RekorEntry, signature: bytes, payload: bytes, cert: x509.Certificate) -> None:
    """The log entry must be this signature: a ``hashedrekord`` (or ``rekord``) v0.0.1 body with
    the payload's SHA-256, the same signature bytes and the same certificate (cosign's
    compareSigs/comparePublicKey/bundleHash), else a SET of another entry could be replayed."""
    body = entry.body
    spec = body.get("spec") if isinstance(body.get("spec"), dict) else {}
    if body.get("kind") not in ("hashedrekord", "rekord") or body.get("apiVersion") != "0.0.1":
        raise UntrustedError(
            f"Rekor entry is a {body.get('kind')} {body.get('apiVersion')}, not a hashedrekord 0.0.1"
        )
    hashed = field_of(field_of(spec, "data"), "hash") or {}
    if hashed.get("algorithm") != "sha256" or hashed.get("value") != hashlib.sha256(payload).hexdigest():
        raise UntrustedError("Rekor entry is for another payload")
    recorded = field_of(spec, "signature") or {}
    try:
        same_signature = base64.b64decode(recorded.get("content", ""), validate=True) == signature
        public = base64.b64decode(field_of(recorded.get("publicKey"), "content") or "", validate=True)
    except binascii.Error:
        raise UntrustedError("Rekor entry's signature or key is not base64") from None
    if not same_signature:
        raise UntrustedError("Rekor entry is for another signature")
    try:
        same_cert = x509.load_pem_x509_certificate(public).public_bytes(serialization.Encoding.DER) == (
            cert.public_bytes(serialization.Encoding.DER)
        )
    except ValueError:
        same_cert = False
    if not same_cert:
        raise UntrustedError("Rekor entry is for another certificate")


# Fulcio certificates carry the code-signing EKU, which the WebPKI client profile does not
# expect; allow it at both levels (as sigstore-python does) and require it separately.
_CA_POLICY = ExtensionPolicy.webpki_defaults_ca().may_be_present(
    x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
)
_EE_POLICY = ExtensionPolicy.webpki_defaults_ee().may_be_present(
    x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
)


def verify_certificate_chain(
    cert: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    at: datetime,
) -> list[x509.Certificate]:
    """RFC 5280 path validation of ``cert`` up to one of ``roots`` at time ``at`` (every
    certificate of the path must be valid then); ``intermediates`` may include untrusted
    candidates (the signature's chain annotation): only ``roots`` anchor trust."""
    verifier = (
        PolicyBuilder()
        .store(Store(list(roots)))
        .time(at)
        .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
        .build_client_verifier()
    )
    try:
        chain = verifier.verify(cert, list(intermediates)).chain
    except (VerificationError, ValueError) as exc:
        raise UntrustedError(
            f"certificate does not chain to a trusted Fulcio root at {at.isoformat()} ({exc})"
        ) from None
    try:
        usages = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        usages = []
    if ExtendedKeyUsageOID.CODE_SIGNING not in usages:
        raise UntrustedError("certificate is not for code signing")
    return chain


def certificate_identity(cert: x509.Certificate) -> tuple[str | None, list[str]]:
    """(OIDC issuer, SAN emails and URIs) of a Fulcio certificate."""
    issuer = None
    for oid in (OIDC_ISSUER_V2, OIDC_ISSUER_V1):
        try:
            raw = cert.extensions.get_extension_for_oid(oid).value
        except x509.ExtensionNotFound:
            continue
        value = raw.value if isinstance(raw, x509.UnrecognizedExtension) else b""
        issuer = _der_utf8_string(value) if oid == OIDC_ISSUER_V2 else value.decode(errors="replace")
        break
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        subjects = [
            *san.get_values_for_type(x509.RFC822Name),
            *san.get_values_for_type(x509.UniformResourceIdentifier),
        ]
    except x509.ExtensionNotFound:
        subjects = []
    return issuer, subjects


def _der_utf8_string(der: bytes) -> str | None:
    """Decode one DER UTF8String (tag 0x0C); written here because cryptography exposes no DER
    reader and the whole grammar is a tag, a length and the bytes."""
    if len(der) < 2 or der[0] != 0x0C:
        return None
    length, offset = der[1], 2
    if length & 0x80:
        count = length & 0x7F
        length, offset = int.from_bytes(der[2 : 2 + count], "big"), 2 + count
    value = der[offset : offset + length]
    return value.decode(errors="replace") if len(value) == length else None


def field_of(mapping: Any, key: str) -> Any:
    """``mapping[key]``, matching the key without regard to case (cosign's payloads and Rekor's
    entries are read that way); None when absent or ``mapping`` is no mapping."""
    if not isinstance(mapping, dict):
        return None
    if key in mapping:
        return mapping[key]
    return next((v for k, v in mapping.items() if isinstance(k, str) and k.lower() == key.lower()), None)
