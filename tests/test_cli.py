"""The ``ecr-mirror`` console script: validate, schema, and plan/sync against the sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ecr_mirror.cli import main
from ecr_mirror.manifest import manifest_json_schema
from sandbox.upstream import seed_image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "config" / "manifests"
OTHER_DIGEST = "sha256:" + "0" * 64
VALID = """\
# a valid manifest
name: monitoring
target: {region: eu-west-1}
rules: [{prefix: quay, upstream: quay}]
images: [{image: quay.io/prometheus/prometheus, tags: {semver: "^3", latest: 2}}]
"""


def test_validate_lists_every_error_of_every_file_and_names_used_twice(tmp_path, capsys):
    (tmp_path / "a.yaml").write_text(VALID)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "again.yaml").write_text(VALID)
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "name: bad\ntarget: {region: cn-north-1}\nrules: [{prefix: quay, upstream: quay}]\n"
        "images:\n  - image: quay.io/a/b\n    tags: {include: ['(']}\n"
    )
    code = main(["validate", str(tmp_path), str(tmp_path / "other"), str(tmp_path / "missing.yaml")])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == f"ok: {tmp_path / 'a.yaml'}\n"
    assert err.splitlines() == [
        f"{tmp_path / 'missing.yaml'}: no such file or directory",
        f"{bad}:2: target.region: ECR pull through cache is not available in cn-north-1",
        f"{bad}:6: images[0].tags.include[0]: '(' is not a valid regular expression: "
        "missing ), unterminated subpattern at position 0",
        f"{tmp_path / 'other' / 'again.yaml'}:2: name: 'monitoring' gives DAG id ecr_mirror__monitoring, "
        f"already used by {tmp_path / 'a.yaml'}",
    ]


def test_validate_accepts_the_examples(capsys):
    assert main(["validate", str(EXAMPLES)]) == 0
    assert capsys.readouterr().out.count("ok: ") == 2


def test_schema_prints_the_generated_schema(capsys):
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == manifest_json_schema()


# -- against the sandbox (Distribution upstreams, the ECR emulator) ----------------------------------

PROMETHEUS = ["v3.1.0", "v3.0.0", "v3.2.0-rc.0", "v2.55.1", "v2.50.0", "v2.49.1", "main", "latest"]
ALERTMANAGER = ["v0.28.1", "v0.28.0", "v0.28.0-rc.0", "v0.27.0", "main"]

MANIFEST = """\
name: cli-{name}
target: {{region: eu-west-1}}
rules:
  - prefix: cli-{name}
    upstream: quay
images:
  - image: quay.io/{name}/prometheus
    tags: {{semver: "^2.50 || ^3", latest: 3}}
  - image: quay.io/{name}/alertmanager
    tags: {{include: ['^v0\\.28\\.'], exclude: ['-rc'], exact: [main]}}
{more}"""


def seed(sandbox, name: str) -> dict[str, str]:
    quay = sandbox.upstreams["quay.io"]
    digests = {}
    for repository, tags in (("prometheus", PROMETHEUS), ("alertmanager", ALERTMANAGER)):
        for tag in tags:
            digests[f"{repository}:{tag}"] = seed_image(
                quay, f"{name}/{repository}", tag, platforms=()
            ).digest
    for tag in ("v1.8.2", "v1.8.1"):
        digests[f"node-exporter:{tag}"] = seed_image(quay, f"{name}/node-exporter", tag, platforms=()).digest
    return digests


def plan(path: Path, capsys) -> tuple[int, set[tuple[str, str, str]]]:
    code = main(["plan", str(path), "--json"])
    rows = json.loads(capsys.readouterr().out)
    return code, {(r["image"].rsplit("/", 1)[1], r["tag"], r["action"]) for r in rows}


@pytest.mark.slow
def test_plan_shows_exactly_the_tags_each_selector_chooses(sandbox, sandbox_env, capsys):
    digests = seed(sandbox, "plan")
    more = (
        f"  - image: quay.io/plan/node-exporter:v1.8.2@{digests['node-exporter:v1.8.2']}\n"
        f"  - image: quay.io/plan/node-exporter:v1.8.1@{OTHER_DIGEST}\n"
        "  - image: quay.io/plan/alertmanager\n    tags: {semver: '^9'}\n"
        "  - image: quay.io/plan/absent\n    tags: {latest: 1}\n"
    )
    path = sandbox_env / "plan.yaml"
    path.write_text(MANIFEST.format(name="plan", more=more))

    code, rows = plan(path, capsys)

    assert rows == {
        ("prometheus", "v3.1.0", "missing"),
        ("prometheus", "v3.0.0", "missing"),
        ("prometheus", "v2.55.1", "missing"),
        ("alertmanager", "main", "missing"),
        ("alertmanager", "v0.28.1", "missing"),
        ("alertmanager", "v0.28.0", "missing"),
        ("node-exporter", "v1.8.2", "missing"),
        ("node-exporter", "v1.8.1", "pin_mismatch"),
        ("alertmanager", "(selector)", "no_match"),
        ("absent", "(selector)", "failed"),
    }
    assert code == 1  # a run would fail: the moved pin, the empty selector and the absent image

    assert main(["plan", str(path)]) == 1
    table = capsys.readouterr().out
    assert "quay.io/plan/prometheus:v3.1.0" in table and "cli-plan/plan/prometheus" in table
    assert "quay.io/plan/alertmanager:(selector)" in table and "no_match" in table
    assert "cli-plan: 1 failed, 7 missing, 1 no_match, 1 pin_mismatch" in table


@pytest.mark.slow
def test_sync_mirrors_without_airflow_then_plan_finds_everything_up_to_date(sandbox, sandbox_env, capsys):
    digests = seed(sandbox, "sync")
    path = sandbox_env / "sync.yaml"
    path.write_text(MANIFEST.format(name="sync", more=""))

    assert main(["sync", str(path), "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert {(r["tag"], r["status"]) for r in records} == {
        ("v3.1.0", "pulled"),
        ("v3.0.0", "pulled"),
        ("v2.55.1", "pulled"),
        ("main", "pulled"),
        ("v0.28.1", "pulled"),
        ("v0.28.0", "pulled"),
    }
    assert all(r["run_id"].startswith("cli__") for r in records)
    pulled = {r["tag"]: r["cached_digest_after"] for r in records}
    assert pulled["v3.1.0"] == digests["prometheus:v3.1.0"]

    code, rows = plan(path, capsys)
    assert code == 0
    assert {action for _, _, action in rows} == {"up_to_date"}

    # a selector that matches nothing fails the run, and the other images are still mirrored
    path.write_text(
        MANIFEST.format(name="sync", more="  - image: quay.io/sync/prometheus\n    tags: {semver: '^9'}\n")
    )
    assert main(["sync", str(path)]) == 1
    out = capsys.readouterr().out
    assert "no_match" in out and "failed: 1 failed, 6 ok" in out
