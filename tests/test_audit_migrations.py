"""The audit store's migrations: a new database gets exactly the tables audit.py defines, and every
earlier schema (before 6bb2aea, a00658c's) is recognised, upgraded in place with its rows, and
written to by today's engine, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from ecr_mirror import audit_migrations
from ecr_mirror.audit import AuditRecord, AuditStore, RunSummary, SlaMiss, metadata
from ecr_mirror.audit_migrations import HEAD, VERSION_TABLE
from ecr_mirror.cli import main
from ecr_mirror.settings import get_settings
from ecr_mirror.states import Action, Status
from sandbox.upstream import seed_image
from tests.audit_databases import DIALECTS, SCHEMAS, create_old_store, throwaway_url

ROOT = Path(__file__).resolve().parents[1]

#: the schemas a database may have without a version table: each old schema as its code left it,
#: and the pre-6bb2aea one after a00658c's code opened it (which added the missing tables only)
OLD_DATABASES = ["before_6bb2aea", "a00658c", "before_6bb2aea+opened_by_a00658c"]


def make_old_store(url: str, old: str) -> dict[str, list[dict]]:
    schema, _, opened = old.partition("+")
    rows = create_old_store(url, schema)
    if opened:
        engine = sa.create_engine(url)
        SCHEMAS["a00658c"]().create_all(engine)
        engine.dispose()
    return rows


def schema_diff(url: str, target: sa.MetaData) -> list:
    """What Alembic's autogenerate would change to make the database at ``url`` match ``target``."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            return compare_metadata(context, target)
    finally:
        engine.dispose()


def revision_of(url: str) -> str | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return audit_migrations.current(conn)
    finally:
        engine.dispose()


def stored_rows(url: str, table: str, columns: list[str]) -> list[tuple]:
    """``columns`` of every row of ``table``, sorted."""
    engine = sa.create_engine(url)
    try:
        reflected = sa.Table(table, sa.MetaData(), autoload_with=engine)
        with engine.connect() as conn:
            result = conn.execute(sa.select(*(reflected.c[name] for name in columns)))
            return sorted(tuple(aware(v) for v in row) for row in result)
    finally:
        engine.dispose()


def as_stored(rows: list[dict]) -> list[tuple]:
    return sorted(tuple(row.values()) for row in rows)


def aware(value: object) -> object:
    # SQLite hands back naive datetimes; the audit's are UTC
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def test_head_names_the_newest_revision():
    scripts = ScriptDirectory.from_config(audit_migrations.config())
    assert scripts.get_current_head() == HEAD
    assert [s.revision for s in scripts.walk_revisions()] == ["0006", "0005", "0004", "0003", "0002", "0001"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_new_store_has_exactly_the_tables_audit_py_defines(dialect, tmp_path):
    with throwaway_url(dialect, tmp_path) as url:
        store = AuditStore(url)
        store.engine.dispose()
        assert revision_of(url) == HEAD
        assert schema_diff(url, metadata) == []


#: the schema each revision gives, and the way through them: up one at a time, then down again
SCHEMA_AT = {
    "0001": SCHEMAS["before_6bb2aea"],
    "0002": SCHEMAS["a00658c"],
    "head": lambda: metadata,
    "base": sa.MetaData,
}
WAY = [("upgrade", "0001"), ("upgrade", "0002"), ("upgrade", "head")]
WAY += [("downgrade", "0002"), ("downgrade", "0001"), ("downgrade", "base")]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_each_revision_is_the_schema_of_its_commit_both_ways(dialect, tmp_path):
    """0001 is the schema before 6bb2aea, 0002 a00658c's, exactly as ``create_all`` made them."""
    with throwaway_url(dialect, tmp_path) as url:
        engine = sa.create_engine(url)
        try:
            for direction, target in WAY:
                with engine.begin() as conn:
                    getattr(command, direction)(audit_migrations.config(conn), target)
                assert schema_diff(url, SCHEMA_AT[target]()) == [], f"{direction} to {target}"
        finally:
            engine.dispose()


@pytest.mark.parametrize("old", OLD_DATABASES)
@pytest.mark.parametrize("dialect", DIALECTS)
def test_an_old_store_is_upgraded_in_place_with_its_rows(dialect, old, tmp_path):
    with throwaway_url(dialect, tmp_path) as url:
        written = make_old_store(url, old)
        assert revision_of(url) is None

        engine = sa.create_engine(url)
        upgrade = audit_migrations.upgrade(engine)
        engine.dispose()

        legacy = "0002" if old == "a00658c" else "0001"
        assert upgrade == audit_migrations.Upgrade(before=None, legacy=legacy, after=HEAD)
        assert schema_diff(url, metadata) == []
        for table, rows in written.items():
            assert stored_rows(url, table, list(rows[0])) == as_stored(rows), table
        # a second upgrade finds it current
        engine = sa.create_engine(url)
        assert audit_migrations.upgrade(engine) == audit_migrations.Upgrade(HEAD, None, HEAD)
        engine.dispose()


@pytest.mark.parametrize("old", OLD_DATABASES)
@pytest.mark.parametrize("dialect", DIALECTS)
def test_todays_engine_reads_and_writes_an_upgraded_store(dialect, old, tmp_path):
    with throwaway_url(dialect, tmp_path) as url:
        make_old_store(url, old)
        store = AuditStore(url)  # upgrades on first use
        try:
            old_rows = store.records(dag_id="ecr_mirror__old", run_id="scheduled__2")
            assert [(r.tag, r.status, r.error) for r in old_rows] == [
                ("1.27", "ok", None),
                ("1.26", "failed", "boom"),
            ]
            new = AuditRecord(
                run_id="scheduled__3",
                dag_id="ecr_mirror__old",
                manifest="old",
                image="docker.io/library/nginx",
                ecr_repository="docker-hub/library/nginx",
                tag="1.26",
                action=Action.DRIFTED,
                status=Status.PULLED,
                platform_digests=json.dumps({"linux/arm64": "sha256:" + "2" * 64}),
                warmed_bytes=2048,
            )
            store.write([new])
            store.write_summary(RunSummary.of("scheduled__3", "ecr_mirror__old", "old", [new]))
            store.mark_warmed("docker-hub/library/nginx", {"sha256:" + "3" * 64: 10})
            store.write_sla_miss(SlaMiss("scheduled__3", "ecr_mirror__old", "old", 60, None, "log"))

            [row] = store.records(run_id="scheduled__3")
            assert (row.platform_digests, row.warmed_bytes) == (new.platform_digests, 2048)
            runs = [(s.run_id, s.status) for s in store.summaries(dag_id="ecr_mirror__old")]
            assert sorted(runs) == [
                ("scheduled__1", "success"),
                ("scheduled__2", "failed"),
                ("scheduled__3", "success"),
            ]
            assert "sha256:" + "3" * 64 in store.warmed("docker-hub/library/nginx")
            assert [m.run_id for m in store.sla_misses(dag_id="ecr_mirror__old")][-1] == "scheduled__3"
        finally:
            store.engine.dispose()


# -- several processes, the installed package, Airflow's plugins folder ---------------------------

OPEN_WHEN_TOLD = """
import sys, time
from pathlib import Path
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.01)
from ecr_mirror.audit import AuditStore
AuditStore(sys.argv[1]).engine.dispose()
"""


@pytest.mark.parametrize("dialect", DIALECTS)
def test_workers_starting_together_upgrade_one_old_store_once(dialect, tmp_path):
    """Four processes open an old store at the same moment: each waits for the one upgrading it."""
    with throwaway_url(dialect, tmp_path) as url:
        written = make_old_store(url, "before_6bb2aea")
        go = tmp_path / "go"
        # each imports SQLAlchemy first, then waits for the others
        script = "import sqlalchemy, ecr_mirror.audit\n" + OPEN_WHEN_TOLD
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", script, url, str(go)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env={**os.environ, "PYTHONPATH": str(ROOT / "plugins")},
            )
            for _ in range(4)
        ]
        go.touch()
        outputs = [w.communicate(timeout=120)[0] for w in workers]
        assert [w.returncode for w in workers] == [0] * 4, outputs
        assert revision_of(url) == HEAD
        assert schema_diff(url, metadata) == []
        rows = written["ecr_mirror_audit"]
        assert stored_rows(url, "ecr_mirror_audit", list(rows[0])) == as_stored(rows)


@pytest.mark.slow
def test_the_installed_package_migrates_without_the_plugins_folder(tmp_path):
    """pip installs the migrations with the package (the production image runs the installed one)."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(ROOT)],
        check=True,
        capture_output=True,
    )
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    create_old_store(url, "a00658c")
    script = textwrap.dedent(
        """
        import sys, ecr_mirror
        from ecr_mirror.audit import AuditStore
        assert ecr_mirror.__file__.startswith(sys.argv[2]), ecr_mirror.__file__
        AuditStore(sys.argv[1]).engine.dispose()
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run(
        [sys.executable, "-c", script, url, str(target)],
        check=True,
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(target)},
    )
    assert revision_of(url) == HEAD


def test_airflow_loads_the_plugins_folder_without_importing_the_migrations():
    """Airflow imports every .py file of its plugins folder; the migrations are left to Alembic."""
    script = "from airflow import plugins_manager as p; import json; print(json.dumps(p.get_import_errors()))"
    result = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True, env=os.environ.copy()
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {}


# -- the command line on an old store --------------------------------------------------------------

MANIFEST = """\
name: {name}
target: {{region: eu-west-1}}
rules: [{{prefix: {name}, upstream: quay}}]
images: [{{image: quay.io/{name}/app, tags: {{exact: ['1.0']}}}}]
"""


@pytest.mark.slow
@pytest.mark.parametrize("dialect", DIALECTS)
def test_sync_writes_to_a_store_from_before_6bb2aea(
    dialect, sandbox, sandbox_env, tmp_path, monkeypatch, capsys
):
    """On a00658c this sync failed: ``table ecr_mirror_audit has no column named platform_digests``."""
    name = f"mig-{dialect[:2]}"
    seed_image(sandbox.upstreams["quay.io"], f"{name}/app", "1.0", platforms=())
    (sandbox_env / "m.yaml").write_text(MANIFEST.format(name=name))
    with throwaway_url(dialect, tmp_path) as url:
        written = make_old_store(url, "before_6bb2aea")
        monkeypatch.setenv("ECR_MIRROR_AUDIT_URL", url)
        get_settings.cache_clear()

        assert main(["sync", str(sandbox_env / "m.yaml"), "--json"]) == 0
        [row] = json.loads(capsys.readouterr().out)["tags"]
        assert (row["tag"], row["status"]) == ("1.0", "pulled")
        key = ["dag_id", "run_id", "tag", "status"]
        old = [{k: r[k] for k in key} for r in written["ecr_mirror_audit"]]
        assert stored_rows(url, "ecr_mirror_audit", key) == as_stored([*old, {k: row[k] for k in key}])
