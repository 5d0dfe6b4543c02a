"""On a real Airflow stack (api-server, scheduler, dag-processor, triggerer, Celery worker; PostgreSQL
and Redis on 127.0.0.1): trigger-form validation through the REST API, an SLA miss recorded by the
Deadline Alert's callback, ``airflow backfill create`` on a scheduled manifest, and a mirror run
through the CeleryExecutor that audits exactly like the in-process run.

One stack serves the whole module; it is started once and stopped (database dropped) at the end.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from ecr_mirror.audit import AuditStore
from ecr_mirror.dag_factory import build_dag
from ecr_mirror.manifest import load_manifest
from sandbox.airflow_stack import ROOT
from sandbox.upstream import seed_image
from tests.airflow_stack import AirflowStack, create_stack, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.stack]

HUB = "registry-1.docker.io"
HUB_RULE = (
    "  - prefix: {prefix}\n    upstream: docker-hub\n    credential_secret: ecr-pullthroughcache/docker-hub\n"
)
MANIFESTS = {
    # trigger-only, kept paused: the trigger form is validated when the run is created
    "forms": "name: forms\ntarget: {region: eu-west-1}\nrules:\n"
    + HUB_RULE.format(prefix="forms")
    + 'images:\n  - image: acme/forms\n    tags: ["1"]\n',
    # runs through the Celery worker
    "celery": "name: celery\ntarget: {region: eu-west-1}\ndefaults: {batch_size: 1, retries: 0}\nrules:\n"
    + HUB_RULE.format(prefix="celery")
    + 'images:\n  - image: acme/stack\n    tags: ["1.0", "2.0"]\n',
    # its upstream's pool has no slot (ECR_MIRROR_POOLS below): the run cannot finish within 5 s
    "slow-sla": "name: slow-sla\ntarget: {region: eu-west-1}\ndefaults: {retries: 0}\n"
    "sla: {within: 5s, notify: [log]}\nrules:\n  - prefix: sla\n    upstream: quay\n"
    'images:\n  - image: quay.io/acme/slow\n    tags: ["1"]\n',
    # scheduled daily: `airflow backfill create` makes one run per day of the range
    "scheduled": 'name: scheduled\nschedule: "@daily"\ntarget: {region: eu-west-1}\n'
    "defaults: {retries: 0}\nrules:\n"
    + HUB_RULE.format(prefix="sched")
    + 'images:\n  - image: acme/stack\n    tags: ["1.0"]\n',
    # its asset event triggers config/examples/downstream_scan.py (the note is checked too)
    "monitoring": "name: monitoring\ntarget: {region: eu-west-1}\ndefaults: {retries: 0}\nrules:\n"
    + HUB_RULE.format(prefix="stack-mon")
    + 'images:\n  - image: acme/stack\n    tags: ["1.0", "gone"]\n',
    # its upstream's pool is deleted before it is triggered
    "pooled": "name: pooled\ntarget: {region: eu-west-1}\ndefaults: {retries: 0}\nrules:\n"
    + HUB_RULE.format(prefix="pooled")
    + 'images:\n  - image: acme/stack\n    tags: ["1.0"]\n',
}
# a DAG of another project beside ecr-mirror's: its conf is none of ecr-mirror's business
OTHER_DAG = """
from airflow.sdk import DAG, Param, task

with DAG("other_project", schedule=None, params={"size": Param(1, type="integer")}):

    @task
    def noop():
        pass

    noop()
"""
DOWNSTREAM = "scan_after_mirror__monitoring"
DAG_IDS = [f"ecr_mirror__{name.replace('-', '_')}" for name in MANIFESTS]


@pytest.fixture(scope="module")
def upstream_digests(shared_sandbox) -> dict[str, str]:
    """The tags of acme/stack in the sandbox's Docker Hub, and their digests."""
    hub = shared_sandbox.upstreams[HUB]
    return {tag: seed_image(hub, "acme/stack", tag).digest for tag in ("1.0", "2.0")}


@pytest.fixture(scope="module")
def stack(
    shared_sandbox, upstream_digests, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AirflowStack]:
    rules = shared_sandbox.rule_prefixes()
    home = tmp_path_factory.mktemp("stack")
    for name, text in MANIFESTS.items():
        (home / "manifests").mkdir(exist_ok=True)
        (home / "manifests" / f"{name}.yaml").write_text(text)
    (home / "backfill").mkdir()
    (home / "dags").mkdir()
    (home / "dags" / "ecr_mirror_dags.py").symlink_to(ROOT / "dags" / "ecr_mirror_dags.py")
    (home / "dags" / "other_project.py").write_text(OTHER_DAG)
    (home / "dags" / "downstream_scan.py").symlink_to(ROOT / "config" / "examples" / "downstream_scan.py")
    running = create_stack(
        home,
        {
            **shared_sandbox.environment(),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "ECR_MIRROR_MANIFEST_DIR": str(home / "manifests"),
            "ECR_MIRROR_BACKFILL_DIR": str(home / "backfill"),
            "ECR_MIRROR_POOLS": json.dumps({"quay.io": 0}),
        },
    )
    try:
        print(running.run("ecr-mirror-pools").stdout)
        running.start()
        running.wait_for_dags([*DAG_IDS, "other_project", DOWNSTREAM])
        yield running
    finally:
        running.stop()
        shared_sandbox.delete_rules_except(rules)


def trigger(stack: AirflowStack, dag_id: str, conf: dict[str, object] | None = None) -> str:
    response = stack.api("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
    assert response.status_code == 200, response.text
    return str(response.json()["dag_run_id"])


def unpause(stack: AirflowStack, dag_id: str) -> None:
    response = stack.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
    assert response.status_code == 200, response.text


def test_the_pools_command_makes_one_pool_per_upstream_sized_from_configuration(stack):
    pools = {p["name"]: p["slots"] for p in stack.api("GET", "/pools").json()["pools"]}
    assert pools["ecr_mirror__quay_io"] == 0  # ECR_MIRROR_POOLS
    assert pools["ecr_mirror__registry_1_docker_io"] == 4  # ECR_MIRROR_POOL_SLOTS' default


def test_the_trigger_form_is_validated_when_a_run_is_created(stack):
    dag_id = "ecr_mirror__forms"
    form = stack.api("GET", f"/dags/{dag_id}/details").json()["params"]
    assert {"images", "extra_tags", "dry_run", "force", "on_drift", "warm_layers"} <= set(form)
    assert form["on_drift"]["schema"]["enum"] == [None, "report", "repull", "evict-and-repull"]

    conf = {
        "images": ["acme/*"],
        "extra_tags": ["1.1"],
        "dry_run": True,
        "force": True,
        "on_drift": "report",
        "warm_layers": False,
    }
    run_id = trigger(stack, dag_id, conf)
    assert stack.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}").json()["conf"] == conf

    refused = {
        "on_drift": ({"on_drift": "sometimes"}, "sometimes"),
        "extra_tags": ({"extra_tags": ["not a tag!"]}, "not a tag!"),
        "images": ({"images": "nginx"}, "nginx"),
        "dry_run": ({"dry_run": "yes"}, "yes"),
    }
    for field, (bad, shown) in refused.items():
        response = stack.api("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": bad})
        assert response.status_code == 400, (field, response.text)
        assert field in response.text and shown in response.text, response.text


def test_a_missed_sla_is_recorded_by_the_deadline_callback(stack):
    dag_id = "ecr_mirror__slow_sla"
    unpause(stack, dag_id)
    run_id = trigger(stack, dag_id)
    store = AuditStore(stack.db_url)
    try:
        miss = wait_for(
            f"the SLA miss of {run_id} (triggerer log in {stack.home})",
            lambda: next((m for m in store.sla_misses(dag_id=dag_id) if m.run_id == run_id), None),
            timeout=120,
        )
    finally:
        store.engine.dispose()
    assert (miss.manifest, miss.within_seconds, miss.notified) == ("slow-sla", 5, "log")
    assert miss.deadline_at is not None

    def held() -> list[dict[str, object]] | None:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        instances = stack.api("GET", path).json()["task_instances"]
        compare = [ti for ti in instances if ti["task_id"] == "quay_io.mirror"]
        return compare if compare and all(ti["state"] == "scheduled" for ti in compare) else None

    # the run is held by its upstream's empty pool: the compare task waits for a slot
    compare = wait_for("the compare task to wait for a slot of the empty pool", held, timeout=60)
    assert all(ti["pool"] == "ecr_mirror__quay_io" for ti in compare)
    assert "SLA missed" in (stack.home / "triggerer.log").read_text()
    response = stack.api("PATCH", f"/dags/{dag_id}/dagRuns/{run_id}", json={"state": "failed"})
    assert response.status_code == 200, response.text


def _outcome(records) -> dict[tuple[str, str], tuple[str, str, str | None, str | None]]:
    return {(r.image, r.tag): (r.action, r.status, r.upstream_digest, r.cached_digest_after) for r in records}


def test_a_celery_run_audits_like_the_in_process_run(stack, airflow_db, sandbox_env):
    dag_id = "ecr_mirror__celery"
    unpause(stack, dag_id)
    run_id = trigger(stack, dag_id)
    assert stack.wait_for_run(dag_id, run_id)["state"] == "success"
    instances = stack.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()["task_instances"]
    assert {ti["queue"] for ti in instances} == {stack.queue}  # executed by the stack's Celery worker
    # both tags are of one repository: one shard, so one listing of it
    assert sum(ti["task_id"] == "registry_1_docker_io.mirror" for ti in instances) == 1
    store = AuditStore(stack.db_url)
    try:
        celery = _outcome(store.records(dag_id=dag_id, run_id=run_id))
    finally:
        store.engine.dispose()

    # the same manifest under another ECR prefix, run in-process with dag.test()
    path = sandbox_env / "manifests" / "in-process.yaml"
    path.write_text(
        MANIFESTS["celery"]
        .replace("name: celery", "name: in-process")
        .replace("prefix: celery", "prefix: in-process")
    )
    in_process = build_dag(load_manifest(path), path, with_deadline=False).test()
    assert in_process.state == "success"
    local = AuditStore(f"sqlite:///{sandbox_env / 'audit.db'}")
    assert _outcome(local.records(run_id=in_process.run_id)) == celery
    assert {v[:2] for v in celery.values()} == {("missing", "pulled")} and len(celery) == 2


def test_airflow_backfill_create_runs_a_scheduled_manifest_per_date(stack, upstream_digests):
    dag_id = "ecr_mirror__scheduled"
    unpause(stack, dag_id)  # the scheduler runs no task of a paused DAG, backfilled or not
    stack.run(
        "airflow",
        "backfill",
        "create",
        "--dag-id",
        dag_id,
        "--from-date",
        "2025-01-01",
        "--to-date",
        "2025-01-02",
        "--max-active-runs",
        "1",
    )

    def finished() -> list[dict[str, object]] | None:
        runs = stack.api("GET", f"/dags/{dag_id}/dagRuns", params={"run_type": "backfill"}).json()["dag_runs"]
        done = [r for r in runs if r["state"] in ("success", "failed")]
        return sorted(done, key=lambda r: str(r["logical_date"])) if len(done) == 2 else None

    runs = wait_for(f"the backfill runs of {dag_id} (logs in {stack.home})", finished, timeout=240)
    assert [r["state"] for r in runs] == ["success", "success"]
    assert [str(r["logical_date"])[:10] for r in runs] == ["2025-01-01", "2025-01-02"]
    store = AuditStore(stack.db_url)
    try:
        first, second = (store.records(dag_id=dag_id, run_id=str(r["dag_run_id"])) for r in runs)
    finally:
        store.engine.dispose()
    # Each backfilled run mirrors upstream as it is now, whatever its logical date: the first pulls
    # (unless the run the schedule made on unpausing came first), the second finds the tag cached.
    upstream = upstream_digests["1.0"]
    assert [(r.tag, r.status, r.cached_digest_after) for r in first] in (
        [("1.0", "pulled", upstream)],
        [("1.0", "ok", upstream)],
    )
    assert [(r.tag, r.action, r.status, r.cached_digest_after) for r in second] == [
        ("1.0", "up_to_date", "ok", upstream)
    ]


def test_a_missing_pool_is_created_when_the_run_starts(stack):
    """Without its pool a task stays "scheduled" for ever (only the scheduler log says why)."""
    dag_id, pool = "ecr_mirror__pooled", "ecr_mirror__registry_1_docker_io"
    assert stack.api("DELETE", f"/pools/{pool}").status_code == 204
    assert stack.api("GET", f"/pools/{pool}").status_code == 404
    unpause(stack, dag_id)
    run_id = trigger(stack, dag_id)
    run = stack.wait_for_run(dag_id, run_id, timeout=120)
    assert run["state"] == "success"
    recreated = stack.api("GET", f"/pools/{pool}").json()
    assert recreated["slots"] == 4  # ECR_MIRROR_POOL_SLOTS' default
    assert run_id in recreated["description"]
    scheduler_log = (stack.home / "scheduler.log").read_text()
    assert f"Pool {pool} did not exist: created it with 4 slots" in scheduler_log


def _runs(stack: AirflowStack, dag_id: str) -> int:
    return int(stack.api("GET", f"/dags/{dag_id}/dagRuns").json()["total_entries"])


def test_a_conf_key_the_form_does_not_have_is_refused_naming_the_closest(stack):
    dag_id = "ecr_mirror__forms"
    before = _runs(stack, dag_id)
    for conf, shown in (
        ({"dryrun": True}, "conf: unknown key 'dryrun' (did you mean 'dry_run'?)"),
        ({"dry_run": True, "image": ["x"]}, "conf: unknown key 'image' (did you mean 'images'?)"),
        ({"zzz": 1}, "conf: unknown key 'zzz' (valid keys: dry_run, extra_tags, force, images, on_drift"),
    ):
        response = stack.api("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
        assert response.status_code == 400, response.text
        assert response.json()["detail"].startswith(shown), response.text
    assert _runs(stack, dag_id) == before  # no run was made

    # the same through a backfill of a scheduled manifest
    body = {"dag_id": "ecr_mirror__scheduled", "from_date": "2025-02-01T00:00:00Z"}
    body |= {"to_date": "2025-02-02T00:00:00Z", "dag_run_conf": {"dry-run": True}}
    response = stack.api("POST", "/backfills/dry_run", json=body)
    assert response.status_code == 400, response.text
    assert "unknown key 'dry-run' (did you mean 'dry_run'?)" in response.text

    # a request Airflow refuses is answered by Airflow, whatever its conf (this stack runs the
    # all-admins mode, which lets anonymous requests in: test_local_airflow checks those)
    bad = {"logical_date": None, "conf": {"dryrun": True}}
    forged = {"Authorization": "Bearer not-a-token"}
    refused = httpx.post(f"{stack.url}/api/v2/dags/{dag_id}/dagRuns", json=bad, headers=forged, timeout=30)
    assert refused.status_code == 403 and "Invalid JWT token" in refused.text, refused.text

    # the form's own keys pass, and so does any conf of a DAG that is not ecr-mirror's
    trigger(stack, dag_id, {"dry_run": True, "images": ["acme/*"]})
    assert _runs(stack, dag_id) == before + 1
    trigger(stack, "other_project", {"size": 2, "anything": "goes"})


def test_the_scheduler_writes_the_runs_note_and_runs_the_downstream_dag_on_the_asset_event(
    stack, shared_sandbox
):
    unpause(stack, DOWNSTREAM)
    unpause(stack, "ecr_mirror__monitoring")
    failed = trigger(stack, "ecr_mirror__monitoring")
    run = stack.wait_for_run("ecr_mirror__monitoring", failed)
    assert run["state"] == "failed"
    assert run["note"].startswith("**failed**: 2 tags: 1 failed, 1 pulled")  # written by the scheduler
    assert "- `docker.io/acme/stack:gone`: docker.io/acme/stack:gone was not found upstream" in run["note"]
    assert _runs(stack, DOWNSTREAM) == 0  # a failed run emits no asset event

    seed_image(shared_sandbox.upstreams[HUB], "acme/stack", "gone")  # upstream catches up
    retry = trigger(stack, "ecr_mirror__monitoring", {"retry_failed": failed})
    run = stack.wait_for_run("ecr_mirror__monitoring", retry)
    assert run["state"] == "success"
    assert run["note"].startswith("**success**: 1 tags: 1 pulled")  # only the failed tag

    def downstream() -> list[dict[str, object]] | None:
        return stack.api("GET", f"/dags/{DOWNSTREAM}/dagRuns").json()["dag_runs"] or None

    (scan,) = wait_for("a run of the downstream DAG", downstream, timeout=120)
    assert scan["run_type"] == "asset_triggered"
    assert stack.wait_for_run(DOWNSTREAM, str(scan["dag_run_id"]))["state"] == "success"
