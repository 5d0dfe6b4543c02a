"""The ``ecr-mirror`` console script: validate, schema, and plan/sync against the sandbox."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
    assert code == 2  # bad input
    assert out == f"ok: {tmp_path / 'a.yaml'}\n"
    assert err.splitlines() == [
        f"{tmp_path / 'missing.yaml'}: no such file or directory",
        f"{bad}:2: target.region: ECR pull through cache is not available in cn-north-1",
        f"{bad}:6: images[0].tags.include[0]: '(' is not a valid regular expression: missing ) at position 1",
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
    rows = json.loads(capsys.readouterr().out)["tags"]
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
    records = json.loads(capsys.readouterr().out)["tags"]
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


# -- the CLI in a shell: stdout is the result, logs on stderr, exit codes -----------------------------

LIGHT = ("airflow", "botocore", "boto3", "sqlalchemy", "httpx", "tabulate", "rich")


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ecr_mirror.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
        timeout=300,
    )


def imported_by(*argv: str) -> tuple[int, set[str]]:
    """The exit code of ``ecr-mirror <argv>`` and which of LIGHT's packages it imported."""
    code = (
        "import sys, json\nfrom ecr_mirror.cli import main\ncode = main(sys.argv[1:])\n"
        f"print(json.dumps([code, sorted({{m.split('.')[0] for m in sys.modules}} & {set(LIGHT)!r})]), "
        "file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, check=False, timeout=120
    )
    status, modules = json.loads(done.stderr.strip().splitlines()[-1])
    return status, set(modules)


def test_validate_and_schema_import_neither_airflow_nor_any_client(tmp_path):
    # issue #11/#12: validate took 2 s importing what checking YAML never needs
    assert imported_by("validate", str(EXAMPLES)) == (0, set())
    assert imported_by("schema") == (0, set())
    bad = tmp_path / "bad.yaml"
    bad.write_text(VALID.replace("images: [", "images: [{image: quay.io/a/b, tags: 1.27}, "))
    assert imported_by("validate", str(bad)) == (2, set())


def test_plan_and_sync_refuse_bad_input_with_exit_2_before_importing_airflow(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(VALID)
    for command in ("plan", "sync"):
        code, modules = imported_by(command, str(path), "--image", "quay.io/prometheus/prometheuz")
        assert code == 2 and "airflow" not in modules
    done = run_cli("plan", str(path), "--image", "prometheuz", "--json")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "monitoring: image glob 'prometheuz' matches no image of manifest 'monitoring' "
        "(did you mean 'quay.io/prometheus/prometheus'?)\n"
    )
    path.write_text(VALID.replace("region: eu-west-1", "region: cn-north-1"))
    done = run_cli("sync", str(path))
    assert done.returncode == 2 and "not available in cn-north-1" in done.stderr and done.stdout == ""


@pytest.mark.slow
def test_plan_json_pipes_into_a_json_tool_and_logs_stay_on_stderr(sandbox, sandbox_env):
    seed(sandbox, "pipe")
    path = sandbox_env / "pipe.yaml"
    path.write_text(MANIFEST.format(name="pipe", more=""))
    # the shell pipe of issue #11: `ecr-mirror plan --json | python -m json.tool`
    pipe = subprocess.run(
        f"{sys.executable} -m ecr_mirror.cli plan {path} --json | {sys.executable} -m json.tool",
        shell=True,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    result = json.loads(pipe.stdout)
    assert result["manifest"] == "cli-pipe"
    assert len(result["tags"]) == 6 and {r["action"] for r in result["tags"]} == {"missing"}
    # the rules' dry run, as a dry-run trigger's ensure_rules: the rule does not exist yet
    assert [(r["prefix"], r["action"], r["changes"], r["dry_run"]) for r in result["rules"]] == [
        ("cli-pipe", "created", ["create the rule (quay -> quay.io)"], True)
    ]
    assert pipe.stderr == ""  # quiet by default: no Airflow or boto line anywhere

    verbose = run_cli("plan", str(path), "--json", "-v")
    assert verbose.returncode == 0
    assert json.loads(verbose.stdout)["counts"] == {"missing": 6}
    assert "Fallback on boto3 credential strategy" not in verbose.stdout
    assert "INFO" in verbose.stderr.upper() and "ecr_mirror" in verbose.stderr

    # the rules' dry run changed nothing: the table still plans the rule's creation
    table = run_cli("plan", str(path))
    assert table.returncode == 0 and table.stderr == ""
    assert "cli-pipe  created" in table.stdout and "create the rule (quay -> quay.io)" in table.stdout


@pytest.mark.slow
def test_sync_takes_every_trigger_form_option(sandbox, sandbox_env, capsys):
    seed(sandbox, "opts")
    path = sandbox_env / "opts.yaml"
    path.write_text(MANIFEST.format(name="opts", more=""))

    # --dry-run: the same path as a dry-run trigger: rules planned, rows `planned`, nothing pulled
    assert main(["sync", str(path), "--dry-run", "--json", "--image", "*/prometheus"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["dry_run"] is True and dry["rules"][0]["action"] == "created"
    assert {(r["tag"], r["status"]) for r in dry["tags"]} == {
        ("v3.1.0", "planned"),
        ("v3.0.0", "planned"),
        ("v2.55.1", "planned"),
    }
    _, rows = plan(path, capsys)
    assert len(rows) == 6 and {action for _, _, action in rows} == {"missing"}  # nothing was pulled

    # --image and --extra-tag narrow and extend the selection; --warm-layers warms
    argv = ["sync", str(path), "--json", "--image", "quay.io/opts/alertmanager", "--extra-tag", "v0.27.0"]
    assert main([*argv, "--warm-layers"]) == 0
    run = json.loads(capsys.readouterr().out)
    assert {(r["tag"], r["status"]) for r in run["tags"]} == {
        ("main", "pulled"),
        ("v0.28.1", "pulled"),
        ("v0.28.0", "pulled"),
        ("v0.27.0", "pulled"),
    }
    assert all(r["warmed_bytes"] for r in run["tags"])

    # --force pulls up-to-date tags again; --no-warm-layers
    assert main([*argv, "--force", "--no-warm-layers", "--on-drift", "report"]) == 0
    forced = json.loads(capsys.readouterr().out)
    assert {(r["action"], r["status"]) for r in forced["tags"]} == {("up_to_date", "pulled")}
    assert not any(r["warmed_bytes"] for r in forced["tags"])


@pytest.mark.slow
def test_ranges_select_plain_releases_of_a_real_registry_unless_a_variant_is_named(
    sandbox, sandbox_env, capsys
):
    from tests.tag_catalogs import REDIS

    quay = sandbox.upstreams["quay.io"]
    for tag in REDIS:
        seed_image(quay, "variants/redis", tag, platforms=())
    path = sandbox_env / "variants.yaml"
    path.write_text(
        "name: cli-variants\ntarget: {region: eu-west-1}\n"
        "rules: [{prefix: cli-variants, upstream: quay}]\nimages:\n"
        "  - image: quay.io/variants/redis\n    tags: {semver: '>=7.4'}\n"
        "  - image: quay.io/variants/redis\n    tags: {semver: '>=7.4', latest: 1, variant: alpine}\n"
    )
    assert plan(path, capsys) == (
        0,
        {("redis", "7.4.1", "missing"), ("redis", "7.4.0", "missing"), ("redis", "7.4.1-alpine", "missing")},
    )


def read_terminal(*args: str) -> tuple[int, str, str]:
    """Run ``ecr-mirror <args>`` with stderr on a pseudo-terminal; (exit code, stdout, the terminal)."""
    import pty

    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "ecr_mirror.cli", *args],
        stdout=subprocess.PIPE,
        stderr=terminal,
        env={**os.environ, "COLUMNS": "120"},
    )
    os.close(terminal)
    screen = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        screen += chunk
    stdout = process.stdout.read() if process.stdout else b""
    os.close(controller)
    return process.wait(timeout=300), stdout.decode(), screen.decode(errors="replace")


@pytest.mark.slow
def test_a_terminal_shows_progress_and_a_pipe_or_json_never_does(sandbox, sandbox_env):
    seed(sandbox, "progress")
    path = sandbox_env / "progress.yaml"
    path.write_text(MANIFEST.format(name="progress", more=""))

    code, stdout, screen = read_terminal("sync", str(path))
    assert code == 0 and "6 pulled" in stdout
    assert "checked" in screen and "pulled" in screen and "/s" in screen and "ETA" in screen
    assert "checked" not in stdout  # the display is on stderr only

    code, stdout, screen = read_terminal("plan", str(path), "--json")
    assert code == 0 and json.loads(stdout)["counts"] == {"up_to_date": 6}
    assert screen == ""  # --json: no display, and quiet logs

    piped = run_cli("plan", str(path))  # stderr a pipe, not a terminal
    assert piped.returncode == 0 and piped.stderr == ""


def test_an_unreachable_ecr_is_a_one_line_configuration_error(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(VALID)
    connection = {
        "conn_type": "aws",
        "extra": {"endpoint_url": "http://127.0.0.1:9", "region_name": "eu-west-1"},
    }
    env = {
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(connection),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_MAX_ATTEMPTS": "1",
        "ECR_MIRROR_AUDIT_URL": f"sqlite:///{tmp_path / 'audit.db'}",
    }
    done = run_cli("plan", str(path), "--json", env=env)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines() == [
        "ecr-mirror: AwsError: the registry of the connection in eu-west-1: AWS could not be reached or "
        'signed for (EndpointConnectionError: Could not connect to the endpoint URL: "http://127.0.0.1:9/")',
        "check the manifest's aws_conn_id connection: credentials, region, endpoint, IAM",
    ]
