"""``ecr-mirror probe`` against the ECR emulator: under each profile, and under overrides that
reach every other variant, it must report the variants the emulator runs (the sandbox's quay.io
stands in for the public upstream), and leave nothing behind."""

from __future__ import annotations

import json
import sys
import uuid
from typing import Any

import pytest

from ecr_mirror.cli import main
from ecr_mirror.ecr import EcrTarget
from ecr_mirror.probe import BEHAVIOURS, ProbeOptions, run_probe
from sandbox.services import DOCKER_HUB_SECRET
from sandbox.upstream import seed_image
from tests.ptc_helpers import REGION, aws

QUAY = "quay.io"
# behaviour sets that, together, make the emulator run every variant of every switch
CASES: dict[str, dict[str, Any]] = {
    "documented": {"profile": "documented"},
    "strict": {"profile": "strict"},
    "kind": {
        "profile": "documented",
        "switches": {
            "refresh_bound": "at-least-once",
            "blob_delivery": "direct",
            "template_custom_role": "applied",
            "hub_missing_repository": "not-found",
            "last_recorded_pull_time": "exact",
        },
    },
    "skipping": {"profile": "strict", "switches": {"template_custom_role": "skipped"}},
    "refusing": {"profile": "strict", "switches": {"template_custom_role": "refused"}},
}


def probe_images(sandbox) -> tuple[str, str, list[str]]:
    """A fresh image (its layers never fetched by ECR), a tag to move, and the command that moves it."""
    upstream = sandbox.upstreams[QUAY]
    run = uuid.uuid4().hex[:8]
    seed_image(upstream, "probe/busybox", run, variant=run)
    seed_image(upstream, "probe/moving", run, platforms=(), variant="before")
    move = (
        "from sandbox.upstream import seed_image; "
        f"seed_image({upstream!r}, 'probe/moving', {run!r}, platforms=(), variant='after')"
    )
    return f"{QUAY}/probe/busybox:{run}", f"{QUAY}/probe/moving:{run}", [sys.executable, "-c", move]


def expected(switches: dict[str, str]) -> dict[str, str | None]:
    return {name: (None if name == "refresh_timer" else switches[name]) for name in BEHAVIOURS}


def leftovers(sandbox, prefix: str) -> list[str]:
    ecr = aws(sandbox, "ecr")
    rules = [
        r["ecrRepositoryPrefix"] for r in ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"]
    ]
    templates = [
        t["prefix"] for t in ecr.describe_repository_creation_templates()["repositoryCreationTemplates"]
    ]
    pages = ecr.get_paginator("describe_repositories").paginate()
    repositories = [r["repositoryName"] for page in pages for r in page["repositories"]]
    return [name for name in rules + templates + repositories if name.startswith(prefix)]


@pytest.mark.parametrize("emulator_profile", list(CASES.values()), ids=list(CASES), indirect=True)
def test_the_probe_reports_the_variants_the_emulator_runs(sandbox, sandbox_env, emulator_profile, tmp_path):
    image, moving, move = probe_images(sandbox)
    options = ProbeOptions(
        image=image,
        docker_hub_secret=DOCKER_HUB_SECRET,
        refresh_tag=moving,
        move_command=move,
        pull_gap_s=0.05,
    )
    report = run_probe(EcrTarget("aws_default", REGION), options, tmp_path / "probe.json")
    assert report.variants() == expected(emulator_profile), report.table()
    assert report.cleanup_problems == []
    assert leftovers(sandbox, report.prefix) == []
    written = json.loads((tmp_path / "probe.json").read_text())
    assert {f["behaviour"]: f["variant"] for f in written["findings"]} == expected(emulator_profile)
    assert written["region"] == REGION and written["prefix"] == report.prefix


@pytest.mark.parametrize("emulator_profile", ["documented"], indirect=True)
def test_the_probe_command_prints_a_table_and_writes_json(
    sandbox, sandbox_env, emulator_profile, tmp_path, capsys
):
    image, _, _ = probe_images(sandbox)
    out = tmp_path / "found.json"
    code = main(
        ["probe", "--region", REGION, "--image", image, "--prefix", "cli-probe", "--json-out", str(out)]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "scratch prefix cli-probe" in printed and "presigned-redirect" in printed
    assert "needs --docker-hub-secret" in printed and "not determinable" in printed
    found = {f["behaviour"]: f["variant"] for f in json.loads(out.read_text())["findings"]}
    assert found["digest_first_pull"] == "imports" and found["hub_missing_repository"] is None
    assert leftovers(sandbox, "cli-probe") == []


def test_the_probe_refuses_an_image_that_needs_credentials(sandbox_env, capsys):
    code = main(["probe", "--region", REGION, "--image", "docker.io/library/busybox:1"])
    assert code == 1 and "needs no credentials" in capsys.readouterr().err


def test_the_cli_default_image_is_the_probes():
    from ecr_mirror import probe, probe_cli

    assert probe_cli.DEFAULT_IMAGE == probe.DEFAULT_IMAGE
