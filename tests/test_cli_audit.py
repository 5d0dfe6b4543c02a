"""``ecr-mirror audit``: runs, tags, history, prune and migrate, on SQLite and PostgreSQL stores, as a
user reads them (tables, --json, --csv, exit statuses, one-line errors)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from ecr_mirror.audit import AuditRecord, AuditStore, RunSummary, run_rows
from ecr_mirror.audit_migrations import HEAD
from ecr_mirror.cli import main
from ecr_mirror.states import Action, Status
from tests.audit_databases import DIALECTS, create_old_store, throwaway_url

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2025, 3, 1, 6, 0, tzinfo=UTC)
BASE, APPS = "ecr_mirror__base", "ecr_mirror__apps"


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


def row(dag_id: str, run_id: str, tag: str, status: str, when: datetime, n: int, **extra) -> AuditRecord:
    image = extra.pop("image", "docker.io/library/nginx")
    return AuditRecord(
        run_id=run_id,
        dag_id=dag_id,
        manifest=dag_id.removeprefix("ecr_mirror__"),
        image=image,
        ecr_repository="docker-hub/" + image.removeprefix("docker.io/"),
        tag=tag,
        action=Action.MISSING if n == 1 else Action.DRIFTED,
        status=Status(status),
        upstream_digest=digest(n),
        cached_digest_before=digest(n - 1) if n > 1 else None,
        cached_digest_after=digest(n) if status != "failed" else digest(n - 1),
        error="upstream answered 500" if status == "failed" else None,
        started_at=when,
        finished_at=when,
        **extra,
    )


def write_run(store: AuditStore, rows: list[AuditRecord], summary: bool = True) -> None:
    store.write(rows)
    if summary:
        first = rows[0]
        done = RunSummary.of(first.run_id, first.dag_id, first.manifest, rows)
        done.finished_at = max(r.finished_at for r in rows)
        store.write_summary(done)


def seed(store: AuditStore) -> None:
    """Three runs of BASE (the last failed: nginx 1.27 and a redis tag), one of APPS that shares
    BASE's run id scheduled__2, and a killed run of APPS without a summary."""
    for day, statuses in enumerate([("pulled", "pulled"), ("ok", "ok"), ("failed", "ok")]):
        when = T0 + timedelta(days=day)
        nginx = [row(BASE, f"scheduled__{day}", "1.27", statuses[0], when, day + 1)]
        nginx.append(row(BASE, f"scheduled__{day}", "1.26", statuses[1], when, 10))
        if day == 2:
            nginx.append(
                row(BASE, "scheduled__2", "7.4", "failed", when, 20, image="docker.io/library/redis")
            )
        write_run(store, nginx)
    write_run(store, [row(APPS, "scheduled__2", "1.27", "ok", T0 + timedelta(days=1, hours=1), 3)])
    write_run(
        store, [row(APPS, "manual__killed", "1.27", "failed", T0 + timedelta(days=5), 4)], summary=False
    )
    with store.engine.begin() as conn:  # provenance, as the run writes it
        conn.execute(
            run_rows.update()
            .where(run_rows.c.dag_id == BASE, run_rows.c.run_id == "scheduled__2")
            .values(
                started_at=T0 + timedelta(days=2, minutes=-5),
                run_type="manual",
                dry_run=True,
                triggered_by="alice",
                conf=json.dumps({"images": ["docker.io/library/nginx"]}),
                manifest_hash="ab" * 32,
                manifest_path="config/manifests/base.yaml",
            )
        )


@pytest.fixture(params=DIALECTS)
def url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    with throwaway_url(request.param, tmp_path) as url:
        store = AuditStore(url)
        seed(store)
        store.engine.dispose()
        yield url


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    store = AuditStore(url)
    seed(store)
    store.engine.dispose()
    return url


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["audit", *args])
    out, err = capsys.readouterr()
    return code, out, err


def as_json(capsys, *args: str) -> tuple[int, object]:
    code, out, err = run(capsys, *args, "--json")
    assert err == ""
    return code, json.loads(out)  # stdout is JSON and nothing else


# -- runs --------------------------------------------------------------------------------------------


def test_runs_newest_first_with_counts_from_the_rows_and_provenance(url, capsys):
    code, runs = as_json(capsys, "runs", "--url", url)
    assert [(r["dag_id"], r["run_id"], r["status"], r["counts"]) for r in runs] == [
        (BASE, "scheduled__2", "failed", {"failed": 2, "ok": 1}),
        (APPS, "scheduled__2", "success", {"ok": 1}),
        (BASE, "scheduled__1", "success", {"ok": 2}),
        (BASE, "scheduled__0", "success", {"pulled": 2}),
    ]
    latest = runs[0]
    assert latest["started_at"] == (T0 + timedelta(days=2, minutes=-5)).isoformat()
    assert latest["finished_at"] == (T0 + timedelta(days=2)).isoformat()
    assert (latest["run_type"], latest["dry_run"], latest["triggered_by"]) == ("manual", True, "alice")
    assert latest["conf"] == {"images": ["docker.io/library/nginx"]}
    assert (latest["manifest_hash"], latest["manifest_path"]) == ("ab" * 32, "config/manifests/base.yaml")
    assert runs[1]["run_type"] is None and runs[1]["conf"] is None
    assert code == 1  # BASE's latest run failed


def test_runs_filters_and_exits_1_only_when_a_dags_latest_shown_run_failed(sqlite_url, capsys):
    code, runs = as_json(capsys, "runs", "--url", sqlite_url, "--dag-id", BASE, "--status", "success")
    assert [r["run_id"] for r in runs] == ["scheduled__1", "scheduled__0"]
    assert code == 0
    code, runs = as_json(capsys, "runs", "--url", sqlite_url, "--dag-id", BASE, "--limit", "1")
    assert [r["run_id"] for r in runs] == ["scheduled__2"] and code == 1
    code, runs = as_json(
        capsys, "runs", "--url", sqlite_url, "--since", "2025-03-02", "--until", "2025-03-02T12:00"
    )
    assert [(r["dag_id"], r["run_id"]) for r in runs] == [(APPS, "scheduled__2"), (BASE, "scheduled__1")]
    assert code == 0
    code, runs = as_json(capsys, "runs", "--url", sqlite_url, "--status", "failed,success", "--since", "1d")
    assert runs == [] and code == 0


def test_runs_as_a_table_and_as_csv(sqlite_url, capsys):
    code, out, _ = run(capsys, "runs", "--url", sqlite_url, "--dag-id", BASE)
    lines = out.splitlines()
    assert lines[0].split() == [
        "dag", "id", "run", "id", "status", "started", "(UTC)", "finished", "(UTC)", "tags", "type",
        "triggered", "by", "manifest", "sha256",
    ]  # fmt: skip
    assert lines[2].split() == [
        BASE, "scheduled__2", "failed", "2025-03-03", "05:55:00", "2025-03-03", "06:00:00",
        "2", "failed,", "1", "ok", "manual", "(dry", "run)", "alice", "ab" * 6,
    ]  # fmt: skip
    assert len(lines) == 5 and code == 1

    code, out, _ = run(capsys, "runs", "--url", sqlite_url, "--dag-id", BASE, "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert (rows[0]["run_id"], rows[0]["status"], json.loads(rows[0]["counts"])) == (
        "scheduled__2",
        "failed",
        {"failed": 2, "ok": 1},
    )
    assert rows[0]["conf"] == '{"images": ["docker.io/library/nginx"]}' and rows[0]["dry_run"] == "True"


# -- tags --------------------------------------------------------------------------------------------


def test_tags_of_the_latest_run_exit_1_when_it_failed(url, capsys):
    """On a00658c, ``ecr-mirror audit --dag-id ...`` exited 0 on a failed run."""
    code, rows = as_json(capsys, "--url", url, "--dag-id", BASE)
    assert [(r["run_id"], r["image"], r["tag"], r["status"], r["error"]) for r in rows] == [
        ("scheduled__2", "docker.io/library/nginx", "1.27", "failed", "upstream answered 500"),
        ("scheduled__2", "docker.io/library/nginx", "1.26", "ok", None),
        ("scheduled__2", "docker.io/library/redis", "7.4", "failed", "upstream answered 500"),
    ]
    assert code == 1
    code, rows = as_json(capsys, "tags", "--url", url, "--dag-id", BASE, "--run-id", "scheduled__1")
    assert {r["status"] for r in rows} == {"ok"} and code == 0


def test_audit_without_a_subcommand_is_tags_as_before(sqlite_url, capsys):
    assert as_json(capsys, "--dag-id", BASE, "--url", sqlite_url) == as_json(
        capsys, "tags", "--dag-id", BASE, "--url", sqlite_url
    )
    code, out, _ = run(capsys, "--url", sqlite_url, "--dag-id", BASE, "--run-id", "scheduled__0")
    assert out.splitlines()[0] == f"run scheduled__0 of {BASE}: success (2 pulled)"
    assert "docker.io/library/nginx:1.27  docker-hub/library/nginx  missing   pulled" in out
    assert code == 0
    # -v before the command: still the tags of the run (it was a usage error, exit 2)
    assert main(["-v", "audit", "--url", sqlite_url, "--dag-id", BASE, "--run-id", "scheduled__0"]) == 0
    assert capsys.readouterr().out == out


def test_tags_filters_by_status_and_image_glob(sqlite_url, capsys):
    args = ["tags", "--url", sqlite_url, "--dag-id", BASE]
    _, rows = as_json(capsys, *args, "--status", "failed", "--image", "*/redis")
    assert [(r["image"], r["tag"]) for r in rows] == [("docker.io/library/redis", "7.4")]
    _, rows = as_json(capsys, *args, "--image", "docker-hub/library/nginx")  # the ECR repository
    assert [r["tag"] for r in rows] == ["1.27", "1.26"]
    code, rows = as_json(capsys, *args, "--status", "stale")
    assert rows == [] and code == 1  # the run failed, whatever the filter shows
    code, out, err = run(capsys, *args, "--status", "stale")
    assert out == f"run scheduled__2 of {BASE}: failed (2 failed, 1 ok)\n" and err == "no rows match\n"


def test_tags_of_a_run_id_several_dags_share_needs_the_dag(sqlite_url, capsys):
    code, out, err = run(capsys, "tags", "--url", sqlite_url, "--run-id", "scheduled__2")
    assert (code, out) == (2, "")
    assert err == (
        f"ecr-mirror audit: run scheduled__2 is a run of several DAGs ({APPS}, {BASE}): "
        "say which with --dag-id\n"
    )
    code, rows = as_json(capsys, "tags", "--url", sqlite_url, "--run-id", "scheduled__1")
    assert {r["dag_id"] for r in rows} == {BASE} and code == 0


def test_tags_of_a_killed_run_without_a_summary(sqlite_url, capsys):
    code, out, _ = run(capsys, "tags", "--url", sqlite_url, "--dag-id", APPS, "--run-id", "manual__killed")
    assert out.splitlines()[0] == f"run manual__killed of {APPS}: no summary yet"
    assert "upstream answered 500" in out and code == 1


def test_unknown_dag_or_run_exits_2_with_one_line(url, capsys):
    """On a00658c an unknown DAG said "no runs in the audit yet" and exited 1."""
    shown = sa.make_url(url).render_as_string(hide_password=True)
    for args, message in [
        (["tags", "--dag-id", "ecr_mirror__nope"], f"no DAG ecr_mirror__nope in the audit at {shown}"),
        (["--dag-id", "ecr_mirror__nope"], f"no DAG ecr_mirror__nope in the audit at {shown}"),
        (["runs", "--dag-id", "ecr_mirror__nope"], f"no DAG ecr_mirror__nope in the audit at {shown}"),
        (["tags", "--dag-id", BASE, "--run-id", "nope"], f"no run nope of {BASE} in the audit at {shown}"),
        (
            ["history", "docker.io/library/nginx:9.9"],
            f"no rows of docker.io/library/nginx:9.9 in the audit at {shown}",
        ),
        (["history", "nginx"], "nginx: say which tag, IMAGE:TAG (or IMAGE@sha256:...)"),
    ]:
        code, out, err = run(capsys, *args, "--url", url, "--json")
        assert (code, out, err) == (2, "", f"ecr-mirror audit: {message}\n"), args


# -- history -----------------------------------------------------------------------------------------


def test_history_of_a_tag_newest_first_by_any_of_its_names(url, capsys):
    code, rows = as_json(capsys, "history", "nginx:1.27", "--url", url)
    assert [(r["dag_id"], r["run_id"], r["status"], r["upstream_digest"]) for r in rows] == [
        (APPS, "manual__killed", "failed", digest(4)),
        (BASE, "scheduled__2", "failed", digest(3)),
        (APPS, "scheduled__2", "ok", digest(3)),
        (BASE, "scheduled__1", "ok", digest(2)),
        (BASE, "scheduled__0", "pulled", digest(1)),
    ]
    assert code == 1  # the tag's latest row failed
    _, by_repository = as_json(capsys, "history", "docker-hub/library/nginx:1.27", "--url", url)
    assert by_repository == rows
    code, rows = as_json(capsys, "history", "docker.io/library/nginx:1.26", "--dag-id", BASE, "--url", url)
    assert [r["run_id"] for r in rows] == ["scheduled__2", "scheduled__1", "scheduled__0"] and code == 0
    _, rows = as_json(capsys, "history", "nginx:1.27", "--dag-id", BASE, "--limit", "1", "--url", url)
    assert [r["run_id"] for r in rows] == ["scheduled__2"]


def test_history_of_a_digest_pin_and_as_a_table(sqlite_url, capsys):
    store = AuditStore(sqlite_url)
    write_run(store, [row(BASE, "scheduled__3", digest(7), "pulled", T0 + timedelta(days=3), 7)])
    store.engine.dispose()
    code, rows = as_json(capsys, "history", f"nginx@{digest(7)}", "--url", sqlite_url)
    assert [r["run_id"] for r in rows] == ["scheduled__3"] and code == 0

    code, out, _ = run(capsys, "history", "nginx:1.27", "--url", sqlite_url, "--dag-id", BASE)
    lines = out.splitlines()
    assert lines[0].split()[:6] == ["finished", "(UTC)", "dag", "id", "run", "id"]
    assert lines[2].split()[:5] == ["2025-03-03", "06:00:00", BASE, "scheduled__2", "drifted"]
    assert lines[2].split()[5:9] == ["failed", digest(3)[:19], digest(2)[:19], digest(2)[:19]]
    assert lines[-1].split()[:5] == ["2025-03-01", "06:00:00", BASE, "scheduled__0", "missing"]
    assert code == 1


# -- stores that cannot be read ----------------------------------------------------------------------


def test_a_missing_sqlite_file_is_exit_2_and_is_not_created(tmp_path, capsys):
    path = tmp_path / "nowhere" / "audit.db"
    for args in (["runs"], ["--dag-id", BASE], ["history", "nginx:1"], ["prune", "--older-than", "90d"]):
        code, out, err = run(capsys, *args, "--url", f"sqlite:///{path}")
        assert (code, out) == (2, "")
        assert err == (
            f"ecr-mirror audit: no audit database at {path} (sqlite:///{path}): no run has written one yet\n"
        )
    assert not path.parent.exists()


def test_a_file_that_is_no_database_is_exit_2_without_a_traceback(tmp_path, capsys):
    """On a00658c this was SQLAlchemy's traceback."""
    path = tmp_path / "audit.db"
    path.write_text("not a database\n")
    for args in (["--dag-id", BASE], ["runs"]):
        code, out, err = run(capsys, *args, "--url", f"sqlite:///{path}")
        assert (code, out) == (2, "")
        assert err == f"ecr-mirror audit: cannot open the audit at sqlite:///{path}: file is not a database\n"


def test_a_postgresql_store_that_cannot_be_opened_is_named_without_its_password(capsys):
    url = "postgresql+psycopg2://postgres:s3cret-pw@127.0.0.1:5432/ecr_mirror_no_such_database"
    code, out, err = run(capsys, "runs", "--url", url)
    assert (code, out) == (2, "")
    assert err.startswith(
        "ecr-mirror audit: cannot open the audit at "
        "postgresql+psycopg2://postgres:***@127.0.0.1:5432/ecr_mirror_no_such_database: "
    )
    assert 'database "ecr_mirror_no_such_database" does not exist' in err
    assert "s3cret-pw" not in err and len(err.splitlines()) == 1


def test_a_url_that_is_no_url_is_exit_2(capsys):
    code, out, err = run(capsys, "runs", "--url", "not a url")
    assert (code, out) == (2, "")
    assert err == (
        "ecr-mirror audit: --url is not a database URL (e.g. sqlite:///path or postgresql+psycopg2://...)\n"
    )


def test_reading_the_audit_imports_no_airflow(sqlite_url):
    script = (
        "import sys; from ecr_mirror.cli import main; code = main(sys.argv[1:]); "
        "loaded = sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')); "
        "print(loaded, file=sys.stderr); sys.exit(code)"
    )
    for args in (["runs"], ["tags", "--dag-id", BASE], ["history", "nginx:1.27"]):
        result = subprocess.run(
            [sys.executable, "-c", script, "audit", *args, "--url", sqlite_url, "--json"],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT / "plugins")},
        )
        assert result.returncode == 1, result.stderr  # each shows a failed run or tag
        assert json.loads(result.stdout)
        assert result.stderr.strip().splitlines()[-1] == "[]"


# -- prune and migrate -------------------------------------------------------------------------------


def test_prune_from_the_command_line(sqlite_url, capsys):
    code, out, _ = run(capsys, "prune", "--url", sqlite_url, "--older-than", "2w", "--dry-run")
    # every row but the latest of each tag (BASE's two nginx tags in two runs, APPS's nginx:1.27 in
    # scheduled__2), and the summaries of the runs that lose all their rows
    assert (code, out) == (
        0,
        "would delete 5 tag rows, 3 run summaries and 0 SLA misses older than 14 days\n",
    )
    code, pruned = as_json(capsys, "prune", "--url", sqlite_url, "--older-than", "2w")
    assert pruned == {"tag_rows": 5, "runs": 3, "sla_misses": 0} and code == 0
    _, runs = as_json(capsys, "runs", "--url", sqlite_url)
    assert [(r["dag_id"], r["run_id"]) for r in runs] == [(BASE, "scheduled__2")]
    code, out, _ = run(capsys, "prune", "--url", sqlite_url, "--older-than", "2w", "--dag-id", BASE)
    assert out == f"deleted 0 tag rows, 0 run summaries and 0 SLA misses older than 14 days of {BASE}\n"

    with pytest.raises(SystemExit) as exit_:
        main(["audit", "prune", "--url", sqlite_url, "--older-than", "90"])
    assert exit_.value.code == 2
    assert "'90' is not an age such as 90d, 12h, 30m or 2w" in capsys.readouterr().err


def test_migrate_an_old_store_then_find_it_current(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    create_old_store(url, "before_6bb2aea")
    code, out, _ = run(capsys, "migrate", "--url", url)
    assert (code, out) == (
        0,
        f"{url}: made before the migrations, recognised as revision 0001; upgraded to {HEAD}\n",
    )
    code, out, _ = run(capsys, "migrate", "--url", url)
    assert (code, out) == (0, f"{url}: at revision {HEAD} already\n")
    fresh = f"sqlite:///{tmp_path / 'new.db'}"
    code, out, _ = run(capsys, "migrate", "--url", fresh)
    assert (code, out) == (0, f"{fresh}: upgraded from an empty database to revision {HEAD}\n")
    code, rows = as_json(capsys, "--url", url, "--dag-id", "ecr_mirror__old")
    assert [(r["run_id"], r["tag"], r["status"]) for r in rows] == [
        ("scheduled__2", "1.27", "ok"),
        ("scheduled__2", "1.26", "failed"),
    ]
    assert code == 1
