"""The manifest's supply-chain sections: ``artifacts:`` (what comes along with an image) and
``verify:`` (the signature gate's trust material).

Trust material is named by file (public keys, Fulcio certificates, Rekor keys in PEM): nothing
here reaches the internet. A relative path is read from the manifest file's folder (the loader
passes it as the ``manifest_dir`` validation context). Each file is read and parsed when the
manifest is loaded, so a missing or unusable file is an error at its field and line, not a
failure in the middle of a run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from pydantic import Field, ValidationInfo, field_validator, model_validator

from ecr_mirror.manifest.checks import Problem, StrictModel, invalid, raise_at

#: the validation context key under which the loader passes the manifest file's folder
MANIFEST_DIR = "manifest_dir"

CosignKind = Literal["signature", "attestation", "sbom"]
COSIGN_KINDS: tuple[CosignKind, ...] = ("signature", "attestation", "sbom")


class ArtifactsSpec(StrictModel):
    """What is mirrored along with each digest of an image (the index and its selected platform
    manifests): cosign's tags of ``cosign`` kinds, and with ``referrers`` the OCI 1.1 referrers,
    only those whose artifactType is in ``artifact_types`` when it is given."""

    cosign: list[CosignKind] = Field(default_factory=lambda: list(COSIGN_KINDS))
    referrers: bool = True
    artifact_types: list[str] | None = None

    @field_validator("artifact_types")
    @classmethod
    def _check_types(cls, value: list[str] | None) -> list[str] | None:
        problems: list[Problem] = [
            ((i,), f"{kind!r} is not a media type such as application/spdx+json", kind)
            for i, kind in enumerate(value or [])
            if not re.fullmatch(r"[\w.+-]+/[\w.+-]+(;.*)?", kind)
        ]
        raise_at("ArtifactsSpec", problems)
        return value


class IdentitySpec(StrictModel):
    """A keyless signer: regular expressions searched in the certificate's OIDC issuer and
    subject (anchor them with ^...$, as with cosign's --certificate-identity-regexp)."""

    issuer: str = Field(min_length=1)
    subject: str = Field(min_length=1)

    @field_validator("issuer", "subject")
    @classmethod
    def _check_regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise invalid(f"{value!r} is not a valid regular expression: {exc}") from None
        return value


def _resolve(value: str, info: ValidationInfo) -> Path:
    path = Path(value).expanduser()
    base = (info.context or {}).get(MANIFEST_DIR)
    return path if path.is_absolute() or base is None else Path(base) / path


def _pem_problem(path: Path, what: Literal["key", "certificates"]) -> str | None:
    """Why ``path`` cannot serve as a PEM public key or PEM certificates (None: it can)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"{path} cannot be read: {exc.strerror}"
    try:
        if what == "key":
            serialization.load_pem_public_key(data)
        else:
            x509.load_pem_x509_certificates(data)
    except (ValueError, UnsupportedAlgorithm):
        return f"{path} is not a PEM {'public key' if what == 'key' else 'certificate file'}"
    return None


def _check_files(values: list[str], info: ValidationInfo, what: Literal["key", "certificates"]) -> list[str]:
    """The paths made absolute; one error per file that is missing or not PEM."""
    resolved = [str(_resolve(v, info)) for v in values]
    problems: list[Problem] = [
        ((i,), problem, values[i])
        for i, path in enumerate(resolved)
        if (problem := _pem_problem(Path(path), what))
    ]
    raise_at("files", problems)
    return resolved


class KeylessSpec(StrictModel):
    """Keyless (Fulcio/Rekor) trust: the CA certificates, the log keys and who may sign."""

    fulcio: list[str] = Field(min_length=1)
    rekor: list[str] = Field(min_length=1)
    identities: list[IdentitySpec] = Field(min_length=1)

    @field_validator("fulcio")
    @classmethod
    def _check_fulcio(cls, value: list[str], info: ValidationInfo) -> list[str]:
        return _check_files(value, info, "certificates")

    @field_validator("rekor")
    @classmethod
    def _check_rekor(cls, value: list[str], info: ValidationInfo) -> list[str]:
        return _check_files(value, info, "key")


class VerifySpec(StrictModel):
    """The signature gate: a tag is pulled only when its upstream digest carries a cosign
    signature by one of ``keys`` (public key files) or a keyless one ``keyless`` trusts."""

    keys: list[str] = Field(default_factory=list)
    keyless: KeylessSpec | None = None

    @field_validator("keys")
    @classmethod
    def _check_keys(cls, value: list[str], info: ValidationInfo) -> list[str]:
        return _check_files(value, info, "key")

    @model_validator(mode="after")
    def _needs_trust(self) -> VerifySpec:
        if not self.keys and self.keyless is None:
            raise_at("VerifySpec", [(("keys",), "verify needs keys, keyless or both", None)])
        return self


class PruneSpec(StrictModel):
    """The DAG's ``prune_report`` task (off by default): after a successful run, log the cached
    tags no selector asks for any more (prune.py); it deletes nothing (``ecr-mirror prune --apply``
    does). ``min_idle_days`` is also ``ecr-mirror prune``'s default."""

    report: bool = False
    min_idle_days: int = Field(default=30, ge=0, le=3650)
