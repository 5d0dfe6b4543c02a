"""Audit writes that survive (issue #8, measured on a00658c: with the SQLite store locked for 40 s
the CLI crashed after pulling, 8 tags without a row; read-only, rules were created and 4 tags
pulled with 0 rows; a killed CLI run left no summary, so ``ecr-mirror audit`` never showed it).

Each test runs ``ecr-mirror sync`` (in-process ``main``, or a real subprocess killed with SIGKILL)
against the sandbox, with the audit in a SQLite file the test locks or opens read-only.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ecr_mirror.audit import AuditStore
from ecr_mirror.cli import main
from ecr_mirror.settings import get_settings
from sandbox.upstream import seed_image
from tests.faults import FaultPlan, fault_proxy, hub_manifest

pytestmark = pytest.mark.slow

HUB = "registry-1.docker.io"


def setup(sandbox, folder: Path, name: str) -> Path:
    for tag in ("1", "2", "3"):
        seed_image(sandbox.upstreams[HUB], f"acme/{name}", tag, platforms=())
    return hub_manifest(folder, f"survive-{name}", name, ["1", "2", "3"], "{batch_size: 1, concurrency: 2}")


def setup_two_shards(sandbox, folder: Path, name: str) -> Path:
    """Tag 1 in ``acme/<name>``, tags 2 and 3 in ``acme/<name>-b``: two repositories, so two
    shards (shards.py keeps a repository whole), which the CLI mirrors side by side."""
    hub = sandbox.upstreams[HUB]
    seed_image(hub, f"acme/{name}", "1", platforms=())
    for tag in ("2", "3"):
        seed_image(hub, f"acme/{name}-b", tag, platforms=())
    path = hub_manifest(folder, f"survive-{name}", name, ["1"], "{batch_size: 1, concurrency: 2}")
    path.write_text(path.read_text() + f'  - image: acme/{name}-b\n    tags: ["2", "3"]\n')
    return path


def wait_for_row(audit: AuditStore, dag_id: str, tag: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not any(r.tag == tag for r in audit.records(dag_id=dag_id)):
        assert time.monotonic() < deadline, f"tag {tag} never got its row"
        time.sleep(0.1)


def store(folder: Path) -> AuditStore:
    return AuditStore(f"sqlite:///{folder / 'audit.db'}")


@contextmanager
def locked(
    db: Path, *, seconds: float, after: threading.Event | None = None, taken: threading.Event | None = None
) -> Iterator[threading.Event]:
    """Another writer holds the SQLite database's write lock for ``seconds`` (from ``after``, when
    given); ``taken`` (yielded) is set once the lock is taken."""
    taken, done = taken or threading.Event(), threading.Event()

    def hold() -> None:
        if after is not None:
            after.wait(60)
        conn = sqlite3.connect(db, timeout=30, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        taken.set()
        done.wait(seconds)
        conn.execute("ROLLBACK")
        conn.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    try:
        yield taken
    finally:
        thread.join(seconds + 90)


def test_a_read_only_store_stops_the_run_before_any_rule_or_pull(sandbox, sandbox_env, monkeypatch, capsys):
    path = setup(sandbox, sandbox_env, "readonly")
    store(sandbox_env).engine.dispose()  # the schema exists; the run may only read it now
    monkeypatch.setenv("ECR_MIRROR_AUDIT_URL", f"sqlite:///file:{sandbox_env / 'audit.db'}?mode=ro&uri=true")
    get_settings.cache_clear()
    gets = sandbox.emulator("stats")["manifest_gets"]

    assert main(["sync", str(path)]) == 1

    err = capsys.readouterr().err
    assert "audit store sqlite:///file" in err and "readonly database" in err
    assert "the run stops here, before it pulls anything more" in err
    assert "survive-readonly" not in sandbox.rule_prefixes()
    assert sandbox.emulator("stats")["manifest_gets"] == gets


def test_a_store_locked_for_seconds_gets_every_row_once_the_lock_goes(sandbox, sandbox_env, capsys):
    path = setup(sandbox, sandbox_env, "locked")
    store(sandbox_env).engine.dispose()
    # longer than sqlite3's own 5 s busy wait, which is all a00658c had
    with locked(sandbox_env / "audit.db", seconds=8) as taken:
        assert taken.wait(10)
        code = main(["sync", str(path), "--json"])
    assert code == 0, capsys.readouterr().err
    rows = store(sandbox_env).records(dag_id="ecr_mirror__survive_locked")
    assert sorted((r.tag, r.status) for r in rows) == [("1", "pulled"), ("2", "pulled"), ("3", "pulled")]


def test_a_write_failure_that_outlasts_the_retries_stops_the_pulls_and_the_next_run_closes_the_run(
    sandbox, sandbox_env, monkeypatch, capsys
):
    path = setup_two_shards(sandbox, sandbox_env, "stuck")
    audit = store(sandbox_env)
    monkeypatch.setenv("ECR_MIRROR_AUDIT_WRITE_SECONDS", "2")
    get_settings.cache_clear()
    second_tag, taken = threading.Event(), threading.Event()

    def lock_at_tag_2() -> bool:
        # the second shard compares tag 2 once the first has its row: another writer takes the lock
        wait_for_row(audit, "ecr_mirror__survive_stuck", "1")
        second_tag.set()
        taken.wait(10)
        return True

    plan = FaultPlan(match="/acme/stuck-b/manifests/2", until=lock_at_tag_2)
    hub = sandbox.upstreams[HUB]
    with (
        fault_proxy(hub, plan) as proxy,
        locked(sandbox_env / "audit.db", seconds=15, after=second_tag, taken=taken),
    ):
        monkeypatch.setenv("ECR_MIRROR_UPSTREAM_ENDPOINTS", json.dumps({**sandbox.upstreams, HUB: proxy.url}))
        get_settings.cache_clear()
        gets = sandbox.emulator("stats")["manifest_gets"]
        code = main(["sync", str(path)])
        err = capsys.readouterr().err
        pulled = sandbox.emulator("stats")["manifest_gets"] - gets
    assert code == 1
    assert "failed for 2 s: database is locked; the run stops here, before it pulls anything more" in err
    assert pulled == 1  # tag 1 only: nothing is pulled without its row
    [first] = {r.run_id for r in audit.records(dag_id="ecr_mirror__survive_stuck")}
    assert [(r.tag, r.status) for r in audit.records(run_id=first)] == [("1", "pulled")]

    monkeypatch.setenv("ECR_MIRROR_UPSTREAM_ENDPOINTS", json.dumps(sandbox.upstreams))
    get_settings.cache_clear()
    assert main(["sync", str(path)]) == 0
    assert f"closed the interrupted run {first}" in capsys.readouterr().err
    rows = {r.tag: (r.status, r.error_kind) for r in audit.records(run_id=first)}
    assert rows == {"1": ("pulled", None), "2": ("failed", "transient"), "3": ("failed", "transient")}
    summary = next(s for s in audit.summaries(dag_id="ecr_mirror__survive_stuck") if s.run_id == first)
    assert (summary.status, summary.total, summary.counts) == ("failed", 3, {"failed": 2, "pulled": 1})


def test_a_cli_run_killed_mid_run_is_closed_by_the_next_run_and_shown_by_audit_runs(
    sandbox, sandbox_env, monkeypatch, capsys
):
    path = setup_two_shards(sandbox, sandbox_env, "killed")
    audit = store(sandbox_env)
    hub = sandbox.upstreams[HUB]
    plan = FaultPlan(kinds=("stall",), match="/acme/killed-b/manifests/2", first=1, stall_seconds=20)
    with fault_proxy(hub, plan) as proxy:
        env = {
            **os.environ,
            "ECR_MIRROR_UPSTREAM_ENDPOINTS": json.dumps({**sandbox.upstreams, HUB: proxy.url}),
        }
        cli = subprocess.Popen(
            [sys.executable, "-m", "ecr_mirror.cli", "sync", str(path)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while not proxy.faulted and time.monotonic() < deadline:  # tag 2 stalls
            time.sleep(0.2)
        assert proxy.faulted, "the CLI never reached tag 2"
        wait_for_row(audit, "ecr_mirror__survive_killed", "1")  # the other shard is done
        os.kill(cli.pid, signal.SIGKILL)
        assert cli.wait(10) == -signal.SIGKILL
    [killed] = {r.run_id for r in audit.records(dag_id="ecr_mirror__survive_killed")}
    assert audit.summaries(dag_id="ecr_mirror__survive_killed") == []  # what a00658c left

    assert main(["sync", str(path)]) == 0
    assert f"closed the interrupted run {killed}" in capsys.readouterr().err
    rows = {r.tag: (r.status, r.error_kind) for r in audit.records(run_id=killed)}
    assert rows == {"1": ("pulled", None), "2": ("failed", "transient"), "3": ("failed", "transient")}
    assert main(["audit", "runs", "--dag-id", "ecr_mirror__survive_killed", "--json"]) == 0
    runs = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert runs[killed]["status"] == "failed" and "interrupted" in runs[killed]["note"]
