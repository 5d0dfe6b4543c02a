"""``ecr-mirror prune``: after a manifest changes, the report lists exactly the cached tags no
selector asks for any more (with a cosign signature following its image), keeps what was pulled
recently or is immutable, and ``--apply`` deletes only the stale ones, one audit row each."""

from __future__ import annotations

import json

import pytest

from ecr_mirror import tasks
from ecr_mirror.audit import AuditStore
from ecr_mirror.cli import main
from ecr_mirror.dag_factory import build_dag
from ecr_mirror.manifest import load_manifest
from ecr_mirror.mirror import open_mirror
from sandbox import signing
from sandbox.upstream import seed_image
from tests.ptc_helpers import aws

HUB = "registry-1.docker.io"

MANIFEST = """\
name: prune
target: {{region: eu-west-1}}
defaults: {{retries: 0, artifacts: {{cosign: [signature], referrers: false}}}}
rules:
  - prefix: prune
    upstream: docker-hub
    credential_secret: ecr-pullthroughcache/docker-hub
images:
  - image: prune/app
    tags: {app}
  - image: prune/locked
    tags: {locked}
"""


def tags_in(sandbox, repository: str) -> set[str]:
    details = aws(sandbox, "ecr").describe_images(repositoryName=repository)["imageDetails"]
    return {tag for detail in details for tag in detail.get("imageTags", [])}


def prune(*argv: str, capsys) -> tuple[int, dict]:
    code = main(["prune", *argv, "--json"])
    out, err = capsys.readouterr()
    assert out.startswith("{"), err
    return code, json.loads(out)


@pytest.mark.own_clock
def test_prune_reports_then_deletes_only_what_no_selector_asks_for(sandbox, sandbox_env, capsys):
    hub = sandbox.upstreams[HUB]
    app = {tag: seed_image(hub, "prune/app", tag, variant=tag) for tag in ("1.0", "1.1", "2.0")}
    seed_image(hub, "prune/locked", "1.0")
    seed_image(hub, "prune/locked", "1.1", variant="1.1")
    old = app["1.0"].digest
    signing.push_signatures(
        hub, "prune/app", old, [signing.key_signature(signing.generate_key(), "docker.io/prune/app", old)]
    )
    path = sandbox_env / "prune.yaml"
    path.write_text(MANIFEST.format(app="['1.0', '1.1', '2.0']", locked="['1.0', '1.1']"))
    assert main(["sync", str(path)]) == 0
    capsys.readouterr()
    sig = old.replace(":", "-") + ".sig"
    assert tags_in(sandbox, "prune/prune/app") == {"1.0", "1.1", "2.0", sig}
    aws(sandbox, "ecr").put_image_tag_mutability(
        repositoryName="prune/prune/locked", imageTagMutability="IMMUTABLE"
    )

    # 40 days later someone still pulls 1.1 from ECR; then the manifest drops 1.0 and 1.1
    sandbox.emulator("clock", {"advance_seconds": 40 * 86400})
    with open_mirror(load_manifest(path)) as mirror:
        mirror.target.registry().get_manifest("prune/prune/app", "1.1")
    path.write_text(MANIFEST.format(app="['2.0']", locked="['1.1']"))

    # the DAG's task (off by default) logs the same verdicts with the manifest's min_idle_days
    assert tasks.prune_report(load_manifest(path)) == {"stale": 2, "recent": 1, "immutable": 1}

    code, report = prune(str(path), "--report", "--min-idle-days", "30", capsys=capsys)
    assert code == 0
    assert {(r["repository"], r["tag"]): r["verdict"] for r in report["tags"]} == {
        ("prune/prune/app", "1.0"): "stale",
        ("prune/prune/app", sig): "stale",  # its image is no longer selected
        ("prune/prune/app", "1.1"): "recent",  # pulled within 30 days
        ("prune/prune/locked", "1.0"): "immutable",
    }
    stale = {r["tag"]: r for r in report["tags"] if r["repository"] == "prune/prune/app"}
    assert stale["1.0"]["reason"].startswith("no selector asks for it; last pulled ")
    assert stale[sig]["reason"].startswith(f"its image {old} is no longer selected")
    assert tags_in(sandbox, "prune/prune/app") == {"1.0", "1.1", "2.0", sig}  # the report changed nothing

    code, applied = prune(str(path), "--apply", "--min-idle-days", "30", capsys=capsys)
    assert code == 0
    assert applied["tags"] == report["tags"]  # what it decided on, as the dry run said
    assert [(a["tag"], a["status"]) for a in applied["applied"]] == [("1.0", "deleted"), (sig, "deleted")]
    assert tags_in(sandbox, "prune/prune/app") == {"1.1", "2.0"}
    assert tags_in(sandbox, "prune/prune/locked") == {"1.0", "1.1"}
    rows = AuditStore(f"sqlite:///{sandbox_env / 'audit.db'}").records()
    deleted = [(r.ecr_repository, r.tag, r.action, r.status) for r in rows if r.run_id.startswith("prune__")]
    assert sorted(deleted) == [
        ("prune/prune/app", "1.0", "unselected", "deleted"),
        ("prune/prune/app", sig, "unselected", "deleted"),
    ]


def test_the_prune_report_task_is_off_by_default_and_runs_after_a_successful_run(tmp_path):
    path = tmp_path / "prune.yaml"
    path.write_text(MANIFEST.format(app="['2.0']", locked="['1.1']"))
    assert "prune_report" not in build_dag(load_manifest(path), path).task_dict
    path.write_text(path.read_text().replace("rules:", "prune: {report: true}\nrules:"))
    task = build_dag(load_manifest(path), path).task_dict["prune_report"]
    assert task.upstream_task_ids == {"record_audit"} and task.trigger_rule == "all_success"


def test_lifecycle_policy_expires_what_nobody_pulled(tmp_path, capsys):
    path = tmp_path / "prune.yaml"
    path.write_text(MANIFEST.format(app="['2.0']", locked="['1.1']"))
    assert main(["prune", str(path), "--lifecycle-policy", "--min-idle-days", "45"]) == 0
    policy = json.loads(capsys.readouterr().out)
    assert policy["rules"][0]["selection"] == {
        "tagStatus": "any",
        "countType": "sinceImagePulled",
        "countUnit": "days",
        "countNumber": 45,
    }
    assert "prune/prune/app, prune/prune/locked" in policy["rules"][0]["description"]


@pytest.mark.parametrize(
    "emulator_profile",
    [{"profile": "documented", "switches": {"digest_first_pull": "not-found"}}],
    indirect=True,
)
def test_the_tag_a_digest_pin_came_through_is_not_stale(sandbox, emulator_profile, sandbox_env, capsys):
    hub = sandbox.upstreams[HUB]
    amd64 = seed_image(hub, "prune/pinned", "1.0").children["linux/amd64"]
    path = sandbox_env / "pinned.yaml"
    path.write_text(
        "name: pinned\ntarget: {region: eu-west-1}\ndefaults: {retries: 0}\n"
        "rules: [{prefix: pinned, upstream: docker-hub,\n"
        "         credential_secret: ecr-pullthroughcache/docker-hub}]\n"
        f"images: [{{image: 'prune/pinned@{amd64}'}}]\n"
    )
    assert main(["sync", str(path), "--json"]) == 0
    pulled = json.loads(capsys.readouterr().out)["tags"]
    assert [(r["tag"], r["status"], r["via_tag"]) for r in pulled] == [(amd64, "pulled", "1.0")]
    assert "1.0" in tags_in(sandbox, "pinned/prune/pinned")

    # ECR would not pull the platform digest first, so the index came in under the tag 1.0:
    # no selector names 1.0, but deleting it would delete the pin's index
    code, report = prune(str(path), "--report", "--min-idle-days", "0", capsys=capsys)
    assert (code, report["tags"]) == (0, [])
