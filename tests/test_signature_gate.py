"""The signature gate in real runs: images signed the cosign way in the sandbox's Docker Hub
stand-in (sandbox/signing.py), mirrored with ``ecr-mirror sync`` and with a DAG's ``dag.test()``.
A tag is pulled through the cache only when its upstream digest carries a signature the
manifest's ``verify:`` trusts; every other tag gets a failed row saying why, and ECR never sees it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from ecr_mirror.audit import AuditStore
from ecr_mirror.cli import main
from ecr_mirror.dag_factory import build_dag
from ecr_mirror.manifest import load_manifest
from sandbox import signing
from sandbox.upstream import SeededImage, seed_image
from tests.ptc_helpers import aws

HUB = "registry-1.docker.io"
ISSUER = "https://token.actions.example.com"
RELEASE = "https://github.example/acme/app/.github/workflows/release.yml@refs/tags/v1"

MANIFEST = """\
name: {name}
target: {{region: eu-west-1}}
defaults: {{retries: 0, concurrency: 4}}
rules:
  - prefix: {name}
    upstream: docker-hub
    credential_secret: ecr-pullthroughcache/docker-hub
{rule_verify}images:
{images}"""


@dataclass
class Signers:
    trusted: signing.SigningKey
    stranger: signing.SigningKey
    fulcio: signing.FulcioCA
    rekor: signing.RekorLog


@pytest.fixture(scope="module")
def signers() -> Signers:
    return Signers(
        signing.generate_key(name="release"),
        signing.generate_key(name="stranger"),
        signing.FulcioCA.generate(),
        signing.RekorLog(),
    )


def write_trust(folder: Path, signers: Signers) -> None:
    """The trust material as an operator keeps it next to the manifest (relative paths)."""
    (folder / "trust").mkdir(exist_ok=True)
    (folder / "trust" / "release.pub").write_bytes(signers.trusted.public_pem)
    (folder / "trust" / "fulcio.pem").write_bytes(signers.fulcio.root_pem)
    (folder / "trust" / "rekor.pub").write_bytes(signers.rekor.public_pem)


def sign(hub: str, image: SeededImage, *layers: signing.SignatureLayer) -> str:
    return signing.push_signatures(hub, image.repository, image.digest, layers)


def seed_gate_images(hub: str, prefix: str, signers: Signers) -> dict[str, SeededImage]:
    """One image per case, each tag 1.0; the reference cosign signs is the upstream name."""
    images = {
        case: seed_image(hub, f"{prefix}/{case}", "1.0")
        for case in ("signed", "unsigned", "tampered", "wrong-key", "keyless", "other-identity")
    }
    ref = {case: f"docker.io/{image.repository}" for case, image in images.items()}

    def by_key(case: str, key: signing.SigningKey) -> signing.SignatureLayer:
        return signing.key_signature(key, ref[case], images[case].digest)

    def keyless(case: str, subject: str) -> signing.SignatureLayer:
        return signing.keyless_signature(
            signers.fulcio, signers.rekor, subject, ISSUER, ref[case], images[case].digest
        )

    sign(hub, images["signed"], by_key("signed", signers.trusted))
    sign(hub, images["tampered"], signing.tamper_payload(by_key("tampered", signers.trusted)))
    sign(hub, images["wrong-key"], by_key("wrong-key", signers.stranger))
    sign(hub, images["keyless"], keyless("keyless", RELEASE))
    sign(hub, images["other-identity"], keyless("other-identity", "mallory@example.com"))
    return images


VERIFY = """\
    verify:
      keys: [trust/release.pub]
      keyless:
        fulcio: [trust/fulcio.pem]
        rekor: [trust/rekor.pub]
        identities:
          - {issuer: '^https://token\\.actions\\.example\\.com$', subject: '^https://github\\.example/acme/'}
"""


def cached_tags(sandbox, repository: str) -> set[str]:
    ecr = aws(sandbox, "ecr")
    try:
        details = ecr.describe_images(repositoryName=repository)["imageDetails"]
    except ecr.exceptions.RepositoryNotFoundException:
        return set()
    return {tag for detail in details for tag in detail.get("imageTags", [])}


def test_sync_pulls_only_what_a_trusted_signer_signed(sandbox, sandbox_env, signers, capsys):
    hub = sandbox.upstreams[HUB]
    images = seed_gate_images(hub, "gate", signers)
    write_trust(sandbox_env, signers)
    entries = "".join(f"  - image: gate/{case}\n    tags: ['1.0']\n{VERIFY}" for case in images)
    path = sandbox_env / "gate.yaml"
    path.write_text(MANIFEST.format(name="sync-gate", rule_verify="", images=entries))

    assert main(["sync", str(path), "--json"]) == 1  # refused tags fail the run
    rows = {r["image"].rsplit("/", 1)[1]: r for r in json.loads(capsys.readouterr().out)["tags"]}

    assert {case: r["status"] for case, r in rows.items()} == {
        "signed": "pulled",
        "keyless": "pulled",
        "unsigned": "failed",
        "tampered": "failed",
        "wrong-key": "failed",
        "other-identity": "failed",
    }
    assert rows["signed"]["error"].startswith("signature gate: signature verified, signed by key ")
    assert "release.pub" in rows["signed"]["error"]
    assert f"signed by {RELEASE} (issuer {ISSUER})" in rows["keyless"]["error"]
    digest = {case: image.digest for case, image in images.items()}
    unsigned_tag = digest["unsigned"].replace(":", "-") + ".sig"
    assert rows["unsigned"]["error"] == (
        f"unsigned: no cosign signature (no tag {unsigned_tag}) "
        f"(docker.io/gate/unsigned@{digest['unsigned']}); not mirrored, the signature gate refused it"
    )
    assert rows["tampered"]["error"].startswith(
        "bad signature: signature does not verify with the trusted key"
    )
    assert rows["wrong-key"]["error"].startswith(
        "bad signature: signature does not verify with the trusted key"
    )
    assert rows["other-identity"]["error"].startswith(
        f"identity mismatch: signed by mallory@example.com (issuer {ISSUER}), expected subject ~ "
    )
    # what the gate refused never reached ECR; what it let through is there with the upstream digest
    for case, image in images.items():
        held = cached_tags(sandbox, f"sync-gate/{image.repository}")
        assert ("1.0" in held) == (case in ("signed", "keyless")), case
    assert rows["signed"]["cached_digest_after"] == digest["signed"]
    for case in ("unsigned", "tampered", "wrong-key", "other-identity"):
        assert rows[case]["cached_digest_after"] is None
        assert rows[case]["error_kind"] == "permanent"  # no Airflow retry can make it signed


def test_manifest_refuses_trust_material_it_cannot_use_naming_the_field(tmp_path, capsys):
    (tmp_path / "bad.pub").write_text("not a key\n")
    verify = (
        "    verify: {keys: [bad.pub, missing.pub],\n"
        "             keyless: {fulcio: [bad.pub], rekor: [], identities: []}}\n"
    )
    path = tmp_path / "m.yaml"
    path.write_text(
        MANIFEST.format(name="bad-trust", rule_verify=verify, images="  - {image: a/b, tags: ['1']}\n")
    )

    assert main(["validate", str(path)]) == 2
    errors = capsys.readouterr().err.splitlines()
    at = f"{path}:8: rules[0].verify"
    assert errors[0] == f"{at}.keys[0]: {tmp_path / 'bad.pub'} is not a PEM public key"
    assert errors[1] == f"{at}.keys[1]: {tmp_path / 'missing.pub'} cannot be read: No such file or directory"
    keyless = f"{path}:9: rules[0].verify.keyless"  # the line of each key
    assert errors[2] == f"{keyless}.fulcio[0]: {tmp_path / 'bad.pub'} is not a PEM certificate file"
    empty = "List should have at least 1 item after validation, not 0"
    assert errors[3:] == [f"{keyless}.rekor: {empty}", f"{keyless}.identities: {empty}"]


@pytest.mark.slow
def test_dag_run_refuses_unsigned_tags_of_a_rule_with_a_gate(airflow_db, sandbox, sandbox_env, signers):
    hub = sandbox.upstreams[HUB]
    signed = seed_image(hub, "dag-gate/app", "2.0")
    sign(hub, signed, signing.key_signature(signers.trusted, "docker.io/dag-gate/app", signed.digest))
    unsigned = seed_image(hub, "dag-gate/app", "2.1", variant="unsigned")
    write_trust(sandbox_env / "manifests", signers)
    path = sandbox_env / "manifests" / "dag-gate.yaml"
    path.write_text(
        MANIFEST.format(
            name="dag-gate",
            rule_verify="    verify: {keys: [trust/release.pub]}\n",
            images="  - image: dag-gate/app\n    tags: ['2.0', '2.1']\n",
        )
    )

    run = build_dag(load_manifest(path), path).test()

    assert run.state == "failed"
    store = AuditStore(f"sqlite:///{sandbox_env / 'audit.db'}")
    rows = {r.tag: r for r in store.records(run_id=run.run_id)}
    assert (rows["2.0"].status, rows["2.0"].cached_digest_after) == ("pulled", signed.digest)
    assert rows["2.1"].status == "failed"
    assert rows["2.1"].error.startswith(
        f"unsigned: no cosign signature (no tag {unsigned.digest.replace(':', '-')}.sig)"
    )
    assert cached_tags(sandbox, "dag-gate/dag-gate/app") == {"2.0"}
