"""The signature gate against a real Distribution registry holding images signed the cosign way
(sandbox/signing.py): keys and keyless, good signatures and every way one must be refused."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from ecr_mirror.registry import AuthError, RegistryClient
from ecr_mirror.signatures import (
    KeylessIdentity,
    KeylessTrust,
    SignaturePolicy,
    SignatureVerdict,
    TrustedKey,
    TrustMaterialError,
    Verdict,
    verify_signature,
)
from sandbox import signing
from sandbox.upstream import RegistryProcess, SeededImage, seed_image, start_registry

pytestmark = pytest.mark.skipif(
    not shutil.which("docker-registry"), reason="needs the docker-registry package"
)

ISSUER = "https://token.actions.example.com"
SUBJECT = "https://github.example/org/app/.github/workflows/release.yml@refs/tags/v1"


@dataclass
class Sandbox:
    registry: RegistryProcess
    client: RegistryClient
    trusted: signing.SigningKey
    fulcio: signing.FulcioCA
    rekor: signing.RekorLog
    trust_dir: Path

    def image(self, repository: str, **kwargs: object) -> SeededImage:
        return seed_image(self.registry.url, repository, "1.0", **kwargs)  # type: ignore[arg-type]

    def sign(self, image: SeededImage, *layers: signing.SignatureLayer, digest: str | None = None) -> str:
        return signing.push_signatures(self.registry.url, image.repository, digest or image.digest, layers)

    def ref(self, image: SeededImage) -> str:
        return f"upstream.example/{image.repository}"

    def keys(self, *keys: signing.SigningKey) -> SignaturePolicy:
        return SignaturePolicy(keys=tuple(TrustedKey.from_pem(k.public_pem, k.name) for k in keys))

    def keyless(
        self,
        issuer: str = rf"^{ISSUER}$",
        subject: str = r"^https://github\.example/org/app/",
        fulcio: signing.FulcioCA | None = None,
        rekor: signing.RekorLog | None = None,
    ) -> SignaturePolicy:
        root = self.trust_dir / f"fulcio-{id(fulcio or self.fulcio)}.pem"
        root.write_bytes((fulcio or self.fulcio).root_pem)
        log = self.trust_dir / f"rekor-{id(rekor or self.rekor)}.pub"
        log.write_bytes((rekor or self.rekor).public_pem)
        return SignaturePolicy(
            keyless=KeylessTrust.from_files([root], [log], [KeylessIdentity(issuer, subject)])
        )

    def keyless_layer(self, image: SeededImage, **kwargs: object) -> signing.SignatureLayer:
        return signing.keyless_signature(
            self.fulcio,
            self.rekor,
            SUBJECT,
            ISSUER,
            self.ref(image),
            image.digest,
            **kwargs,  # type: ignore[arg-type]
        )

    def verify(
        self, image: SeededImage, policy: SignaturePolicy, digest: str | None = None
    ) -> SignatureVerdict:
        return verify_signature(self.client, image.repository, digest or image.digest, policy)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with (
        start_registry(tmp_path_factory.mktemp("upstream")) as registry,
        RegistryClient(registry.url) as client,
    ):
        yield Sandbox(
            registry,
            client,
            signing.generate_key(name="release-key"),
            signing.FulcioCA.generate(),
            signing.RekorLog(),
            tmp_path_factory.mktemp("trust"),
        )


# -- key-based ------------------------------------------------------------------------------------


def test_key_signed_multi_arch_index_is_verified_and_its_unsigned_platforms_are_not(sandbox: Sandbox) -> None:
    image = sandbox.image("keys/signed")
    sig_digest = sandbox.sign(image, signing.key_signature(sandbox.trusted, sandbox.ref(image), image.digest))
    policy = sandbox.keys(sandbox.trusted)

    verdict = sandbox.verify(image, policy)
    assert verdict.verified, verdict.message
    assert verdict.signer == "key release-key"
    assert verdict.signature == sig_digest
    assert (
        verdict.message
        == f"{sandbox.client.registry}/keys/signed@{image.digest}: verified: signed by key release-key"
    )

    child = image.children["linux/arm64"]
    unsigned = sandbox.verify(image, policy, digest=child)
    assert unsigned.verdict is Verdict.UNSIGNED
    assert unsigned.message == (
        f"{sandbox.client.registry}/keys/signed@{child}: unsigned: "
        f"no cosign signature (no tag sha256-{child.removeprefix('sha256:')}.sig)"
    )


def test_unsigned_image_is_refused(sandbox: Sandbox) -> None:
    image = sandbox.image("keys/unsigned")
    verdict = sandbox.verify(image, sandbox.keys(sandbox.trusted))
    assert verdict.verdict is Verdict.UNSIGNED and not verdict.verified
    assert verdict.signature is None


def test_signature_by_a_key_nobody_trusts_is_a_bad_signature(sandbox: Sandbox) -> None:
    image = sandbox.image("keys/wrong-key")
    intruder = signing.generate_key(name="intruder")
    sandbox.sign(image, signing.key_signature(intruder, sandbox.ref(image), image.digest))
    verdict = sandbox.verify(image, sandbox.keys(sandbox.trusted))
    assert verdict.verdict is Verdict.BAD_SIGNATURE
    assert "signature does not verify with the trusted key(s) release-key" in verdict.message


def test_payload_altered_after_signing_is_a_bad_signature(sandbox: Sandbox) -> None:
    image = sandbox.image("keys/tampered-payload")
    genuine = signing.key_signature(sandbox.trusted, sandbox.ref(image), image.digest)
    sandbox.sign(image, signing.tamper_payload(genuine))
    verdict = sandbox.verify(image, sandbox.keys(sandbox.trusted))
    assert verdict.verdict is Verdict.BAD_SIGNATURE, verdict.message


def test_altered_signature_is_a_bad_signature(sandbox: Sandbox) -> None:
    image = sandbox.image("keys/tampered-signature")
    genuine = signing.key_signature(sandbox.trusted, sandbox.ref(image), image.digest)
    sandbox.sign(image, signing.tamper_signature(genuine))
    verdict = sandbox.verify(image, sandbox.keys(sandbox.trusted))
    assert verdict.verdict is Verdict.BAD_SIGNATURE, verdict.message


def test_genuine_signature_of_another_image_is_refused(sandbox: Sandbox) -> None:
    """A valid signature copied onto another image's .sig tag signs the other digest."""
    image = sandbox.image("keys/replayed")
    other = sandbox.image("keys/replayed", variant="other")
    sandbox.sign(image, signing.key_signature(sandbox.trusted, sandbox.ref(other), other.digest))
    verdict = sandbox.verify(image, sandbox.keys(sandbox.trusted))
    assert verdict.verdict is Verdict.BAD_SIGNATURE
    assert f"signature payload signs {other.digest}, not {image.digest}" in verdict.detail


def test_one_good_signature_among_several_is_enough(sandbox: Sandbox) -> None:
    image = sandbox.image("keys/two-signatures", platforms=())
    ref = sandbox.ref(image)
    sandbox.sign(image, signing.key_signature(signing.generate_key(name="other"), ref, image.digest))
    sig_digest = sandbox.sign(image, signing.key_signature(sandbox.trusted, ref, image.digest))
    manifest = json.loads(sandbox.client.get_manifest(image.repository, sig_digest).body)
    assert len(manifest["layers"]) == 2  # appended, as cosign does
    assert sandbox.verify(image, sandbox.keys(sandbox.trusted)).verified


def test_signatures_none_of_which_verify_report_how_many_were_tried(sandbox: Sandbox) -> None:
    image = sandbox.image("keys/all-bad", platforms=())
    ref = sandbox.ref(image)
    sandbox.sign(image, signing.key_signature(signing.generate_key(name="a"), ref, image.digest))
    sandbox.sign(image, signing.key_signature(signing.generate_key(name="b"), ref, image.digest))
    verdict = sandbox.verify(image, sandbox.keys(sandbox.trusted))
    assert verdict.verdict is Verdict.BAD_SIGNATURE
    assert verdict.detail.endswith("(none of 2 signatures verified)")


@pytest.mark.parametrize("kind", ["ecdsa-p384", "rsa", "ed25519"])
def test_other_key_types_verify(sandbox: Sandbox, kind: str) -> None:
    image = sandbox.image(f"keys/{kind}", platforms=())
    key = signing.generate_key(kind)
    sandbox.sign(image, signing.key_signature(key, sandbox.ref(image), image.digest))
    verdict = sandbox.verify(image, sandbox.keys(sandbox.trusted, key))
    assert verdict.verified, verdict.message
    assert verdict.signer == f"key {kind}"


def test_trusted_key_loads_from_a_file_and_bad_files_name_themselves(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    good = tmp_path / "cosign.pub"
    good.write_bytes(sandbox.trusted.public_pem)
    assert TrustedKey.from_file(good).name == str(good)
    garbage = tmp_path / "garbage.pub"
    garbage.write_text("not a key")
    with pytest.raises(TrustMaterialError, match=r"garbage\.pub: not a PEM public key"):
        TrustedKey.from_file(garbage)
    with pytest.raises(TrustMaterialError, match=r"missing\.pub"):
        TrustedKey.from_file(tmp_path / "missing.pub")
    with pytest.raises(TrustMaterialError, match="at least one key"):
        SignaturePolicy()


# -- keyless --------------------------------------------------------------------------------------


def test_keyless_signature_is_verified_with_its_identity(sandbox: Sandbox) -> None:
    image = sandbox.image("keyless/good")
    sandbox.sign(image, sandbox.keyless_layer(image))
    verdict = sandbox.verify(image, sandbox.keyless())
    assert verdict.verified, verdict.message
    assert verdict.signer == f"{SUBJECT} (issuer {ISSUER})"


def test_keyless_email_identity(sandbox: Sandbox) -> None:
    image = sandbox.image("keyless/email", platforms=())
    layer = signing.keyless_signature(
        sandbox.fulcio, sandbox.rekor, "release@example.com", ISSUER, sandbox.ref(image), image.digest
    )
    sandbox.sign(image, layer)
    assert sandbox.verify(image, sandbox.keyless(subject=r"^release@example\.com$")).verified


@pytest.mark.parametrize(
    ("issuer", "subject"),
    [
        (rf"^{ISSUER}$", r"^https://github\.example/other-org/"),  # someone else's workflow
        (r"^https://accounts\.example\.com$", r"^https://github\.example/org/app/"),  # another issuer
    ],
)
def test_keyless_signature_by_someone_else_is_an_identity_mismatch(
    sandbox: Sandbox, issuer: str, subject: str
) -> None:
    image = sandbox.image("keyless/mismatch")
    sandbox.sign(image, sandbox.keyless_layer(image))
    verdict = sandbox.verify(image, sandbox.keyless(issuer=issuer, subject=subject))
    assert verdict.verdict is Verdict.IDENTITY_MISMATCH
    assert f"signed by {SUBJECT} (issuer {ISSUER}), expected subject ~ /{subject}/" in verdict.message


def test_certificate_from_another_ca_is_untrusted(sandbox: Sandbox) -> None:
    image = sandbox.image("keyless/other-ca", platforms=())
    sandbox.sign(image, sandbox.keyless_layer(image))
    verdict = sandbox.verify(image, sandbox.keyless(fulcio=signing.FulcioCA.generate("another-fulcio")))
    assert verdict.verdict is Verdict.UNTRUSTED_CERTIFICATE
    assert "does not chain to a trusted Fulcio root" in verdict.detail


def test_certificate_expired_when_logged_is_untrusted(sandbox: Sandbox) -> None:
    image = sandbox.image("keyless/expired", platforms=())
    signed_at = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    layer = sandbox.keyless_layer(image, signed_at=signed_at, logged_at=signed_at + dt.timedelta(hours=1))
    sandbox.sign(image, layer)
    verdict = sandbox.verify(image, sandbox.keyless())
    assert verdict.verdict is Verdict.UNTRUSTED_CERTIFICATE
    assert "not valid at validation time" in verdict.detail


def test_short_lived_certificate_long_expired_now_but_valid_when_logged_verifies(sandbox: Sandbox) -> None:
    image = sandbox.image("keyless/old", platforms=())
    sandbox.sign(
        image, sandbox.keyless_layer(image, signed_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=12))
    )
    assert sandbox.verify(image, sandbox.keyless()).verified


def test_bundle_from_an_untrusted_log_is_untrusted(sandbox: Sandbox) -> None:
    image = sandbox.image("keyless/other-log", platforms=())
    sandbox.sign(image, sandbox.keyless_layer(image))
    verdict = sandbox.verify(image, sandbox.keyless(rekor=signing.RekorLog()))
    assert verdict.verdict is Verdict.UNTRUSTED_CERTIFICATE
    assert "untrusted transparency log" in verdict.detail


def test_bundle_with_altered_integrated_time_is_untrusted(sandbox: Sandbox) -> None:
    image = sandbox.image("keyless/backdated", platforms=())
    layer = sandbox.keyless_layer(image)
    bundle = json.loads(layer.annotations[signing.BUNDLE_ANNOTATION])
    bundle["Payload"]["integratedTime"] -= 3600
    layer = replace(layer, annotations={**layer.annotations, signing.BUNDLE_ANNOTATION: json.dumps(bundle)})
    sandbox.sign(image, layer)
    verdict = sandbox.verify(image, sandbox.keyless())
    assert verdict.verdict is Verdict.UNTRUSTED_CERTIFICATE
    assert "signed entry timestamp does not verify" in verdict.detail


def test_bundle_of_another_signature_is_untrusted(sandbox: Sandbox) -> None:
    image = sandbox.image("keyless/borrowed-bundle", platforms=())
    layer = sandbox.keyless_layer(image)
    other = sandbox.keyless_layer(image)
    borrowed = {**layer.annotations, signing.BUNDLE_ANNOTATION: other.annotations[signing.BUNDLE_ANNOTATION]}
    sandbox.sign(image, replace(layer, annotations=borrowed))
    verdict = sandbox.verify(image, sandbox.keyless())
    assert verdict.verdict is Verdict.UNTRUSTED_CERTIFICATE
    assert "Rekor entry is for another signature" in verdict.detail


def test_keyless_signature_without_bundle_is_untrusted(sandbox: Sandbox) -> None:
    image = sandbox.image("keyless/no-bundle", platforms=())
    layer = sandbox.keyless_layer(image)
    annotations = {k: v for k, v in layer.annotations.items() if k != signing.BUNDLE_ANNOTATION}
    sandbox.sign(image, replace(layer, annotations=annotations))
    verdict = sandbox.verify(image, sandbox.keyless())
    assert verdict.verdict is Verdict.UNTRUSTED_CERTIFICATE
    assert "no Rekor bundle" in verdict.detail


def test_keyless_signature_tampered_is_a_bad_signature(sandbox: Sandbox) -> None:
    image = sandbox.image("keyless/tampered", platforms=())
    sandbox.sign(image, signing.tamper_payload(sandbox.keyless_layer(image)))
    verdict = sandbox.verify(image, sandbox.keyless())
    assert verdict.verdict is Verdict.BAD_SIGNATURE
    assert "does not verify with the key of its certificate" in verdict.detail


def test_key_signed_image_under_a_keyless_only_policy_is_untrusted(sandbox: Sandbox) -> None:
    image = sandbox.image("keyless/key-signed", platforms=())
    sandbox.sign(image, signing.key_signature(sandbox.trusted, sandbox.ref(image), image.digest))
    verdict = sandbox.verify(image, sandbox.keyless())
    assert verdict.verdict is Verdict.UNTRUSTED_CERTIFICATE
    assert "carries no Fulcio certificate" in verdict.detail


def test_policy_with_keys_and_keyless_accepts_either(sandbox: Sandbox) -> None:
    keyless = sandbox.keyless()
    policy = SignaturePolicy(keys=sandbox.keys(sandbox.trusted).keys, keyless=keyless.keyless)
    by_key = sandbox.image("both/key", platforms=())
    sandbox.sign(by_key, signing.key_signature(sandbox.trusted, sandbox.ref(by_key), by_key.digest))
    by_identity = sandbox.image("both/keyless", platforms=())
    sandbox.sign(by_identity, sandbox.keyless_layer(by_identity))
    assert sandbox.verify(by_key, policy).signer == "key release-key"
    assert sandbox.verify(by_identity, policy).signer == f"{SUBJECT} (issuer {ISSUER})"


def test_keyless_trust_material_errors_name_the_file(tmp_path: Path, sandbox: Sandbox) -> None:
    rekor = tmp_path / "rekor.pub"
    rekor.write_bytes(sandbox.rekor.public_pem)
    leaf_only = tmp_path / "intermediate.pem"
    leaf_only.write_bytes(
        sandbox.fulcio.chain_pem.split(b"-----END CERTIFICATE-----")[0] + b"-----END CERTIFICATE-----\n"
    )
    identity = [KeylessIdentity(ISSUER, SUBJECT)]
    with pytest.raises(TrustMaterialError, match="self-signed Fulcio root"):
        KeylessTrust.from_files([leaf_only], [rekor], identity)
    with pytest.raises(TrustMaterialError, match=r"rekor\.pub: not PEM certificates"):
        KeylessTrust.from_files([rekor], [rekor], identity)
    with pytest.raises(TrustMaterialError, match="subject='\\('"):
        KeylessIdentity(ISSUER, "(")


# -- failures that are not verdicts --------------------------------------------------------------


def test_registry_refusal_is_raised_not_mistaken_for_unsigned(tmp_path: Path) -> None:
    """Fail closed: a registry that refuses the signature look-up says nothing about the image."""
    with start_registry(tmp_path / "private", htpasswd={"ci": "s3cret"}) as registry:
        image = seed_image(registry.url, "private/app", "1.0", platforms=(), auth=("ci", "s3cret"))
        key = signing.generate_key()
        with RegistryClient(registry.url, max_attempts=1) as anonymous, pytest.raises(AuthError):
            verify_signature(
                anonymous,
                "private/app",
                image.digest,
                SignaturePolicy(keys=(TrustedKey.from_pem(key.public_pem, "k"),)),
            )


# -- the stored format is cosign's ------------------------------------------------------------------


def test_signature_is_stored_in_cosign_format(sandbox: Sandbox) -> None:
    image = sandbox.image("format/signed", platforms=())
    layer = sandbox.keyless_layer(image)
    sandbox.sign(image, layer)
    tag = "sha256-" + image.digest.removeprefix("sha256:") + ".sig"
    manifest = sandbox.client.get_manifest(image.repository, tag)
    doc = manifest.json()
    assert doc["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert doc["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    config = json.loads(sandbox.client.read_blob(image.repository, doc["config"]["digest"]))
    [descriptor] = doc["layers"]
    assert config["rootfs"] == {"type": "layers", "diff_ids": [descriptor["digest"]]}
    assert descriptor["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    assert set(descriptor["annotations"]) == {
        "dev.cosignproject.cosign/signature",
        "dev.sigstore.cosign/certificate",
        "dev.sigstore.cosign/chain",
        "dev.sigstore.cosign/bundle",
    }
    payload = sandbox.client.read_blob(image.repository, descriptor["digest"])
    assert payload == (
        b'{"critical":{"identity":{"docker-reference":"upstream.example/format/signed"},'
        b'"image":{"docker-manifest-digest":"' + image.digest.encode() + b'"},'
        b'"type":"cosign container image signature"},"optional":null}'
    )
    bundle = json.loads(descriptor["annotations"]["dev.sigstore.cosign/bundle"])
    assert set(bundle) == {"SignedEntryTimestamp", "Payload"}
    assert set(bundle["Payload"]) == {"body", "integratedTime", "logIndex", "logID"}
    body = json.loads(base64.b64decode(bundle["Payload"]["body"]))
    assert (body["kind"], body["apiVersion"]) == ("hashedrekord", "0.0.1")


@pytest.mark.skipif(not shutil.which("skopeo"), reason="needs skopeo")
def test_skopeo_reads_the_signature_tag_as_stored(sandbox: Sandbox) -> None:
    image = sandbox.image("format/skopeo", platforms=())
    digest = sandbox.sign(image, signing.key_signature(sandbox.trusted, sandbox.ref(image), image.digest))
    tag = "sha256-" + image.digest.removeprefix("sha256:") + ".sig"
    host = sandbox.registry.url.removeprefix("http://")
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{host}/{image.repository}:{tag}"],
        check=True,
        capture_output=True,
    ).stdout
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
