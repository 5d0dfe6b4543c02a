"""The fault-injection suite: ``ecr-mirror sync`` (in-process ``main``, at DEBUG) through fault
proxies (tests/faults.py) in front of a sandbox upstream and the ECR emulator, with fixed seeds.

Each scenario syncs until every tag is mirrored (at most ``SYNCS`` runs: a CLI run has no
Airflow retries, a DAG run retries its batches, see test_run_retries.py) and prints one line of
figures; the invariants hold for every run of every scenario: no tag without its one row (lost
0), no tag with two rows (duplicated 0), every failed row says why and of which kind, every run
has its summary, and no secret of the sandbox in the logs, the CLI's output or the audit at DEBUG.
docs/reliability.md lists the figures (``pytest -s tests/test_faults.py`` prints them).
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa

from ecr_mirror.audit import AuditStore, run_tags, tag_rows
from ecr_mirror.cli import main
from ecr_mirror.settings import get_settings
from sandbox.upstream import seed_image
from tests.faults import FaultPlan, FaultProxy, fault_proxy, hub_manifest

pytestmark = pytest.mark.slow

HUB = "registry-1.docker.io"
#: the sandbox's secret values (sandbox/services.py): the AWS secret key of the connection, the
#: Docker Hub PTC credential's access token
SECRETS = ("sandbox-secret", "sandbox-token")
#: runs a scenario may take to mirror every tag
SYNCS = 3
TAGS = ("1", "2", "3", "4")


@dataclass(frozen=True)
class Scenario:
    name: str
    upstream: FaultPlan | None = None  # in front of the Docker Hub stand-in (the engine's HEADs)
    ecr: FaultPlan | None = None  # in front of the ECR emulator (API and registry endpoint)
    env: dict[str, str] = field(default_factory=dict)
    #: False: the faults outlast every retry (each run fails every tag, transient, and loses none)
    converges: bool = True


SCENARIOS = [
    Scenario("baseline"),
    Scenario("up-429", upstream=FaultPlan(seed=1, rate=0.5, kinds=("429",), retry_after="1")),
    # the first request of each path: a 500 that the request-level policy does not retry fails the
    # tag for this run, the next run converges; a retried 502/503 never reaches the run
    Scenario("up-5xx", upstream=FaultPlan(seed=2, first=1, kinds=("500", "502", "503"), retry_after="0")),
    Scenario("up-reset", upstream=FaultPlan(seed=3, rate=0.5, kinds=("reset",))),
    Scenario(
        "up-stall",
        upstream=FaultPlan(seed=4, rate=0.3, kinds=("stall",), stall_seconds=3),
        env={"ECR_MIRROR_HTTP_TIMEOUT": "1"},
    ),
    Scenario(
        "up-storm", upstream=FaultPlan(seed=5, rate=1.0, kinds=("503",), retry_after="0"), converges=False
    ),
    Scenario("ecr-5xx", ecr=FaultPlan(seed=6, rate=0.3, kinds=("500", "502", "503"), retry_after="0")),
    Scenario("ecr-reset", ecr=FaultPlan(seed=7, rate=0.3, kinds=("reset",))),
    Scenario(
        "ecr-short-digest", ecr=FaultPlan(seed=8, rate=0.4, kinds=("short", "digest"), methods=("GET",))
    ),
]


@dataclass
class Figures:
    faulted: int = 0
    mirrored: int = 0
    failed_with_error: int = 0
    lost: int = 0
    duplicated: int = 0
    secrets: int = 0
    runs: int = 0
    summaries: int = 0
    kinds: dict[str, int] = field(default_factory=dict)

    def line(self, name: str) -> str:
        kinds = "".join(f" ({n} {kind})" for kind, n in sorted(self.kinds.items()))
        return (
            f"{name}: requests faulted {self.faulted}, tags mirrored {self.mirrored}/{len(TAGS)}, "
            f"tags failed with an error {self.failed_with_error}{kinds}, tags lost {self.lost}, "
            f"rows duplicated {self.duplicated}, secrets found {self.secrets}, runs {self.runs}"
        )


def environment(sandbox, scenario: Scenario, stack: ExitStack, monkeypatch) -> list[FaultProxy]:
    proxies, endpoints = [], dict(sandbox.upstreams)
    if scenario.upstream is not None:
        proxy = stack.enter_context(fault_proxy(sandbox.upstreams[HUB], scenario.upstream))
        endpoints[HUB] = proxy.url
        proxies.append(proxy)
    if scenario.ecr is not None:
        proxy = stack.enter_context(fault_proxy(sandbox.ecr_url, scenario.ecr, keep_host=True))
        connection = sandbox.connection()
        connection["extra"]["service_config"]["ecr"]["endpoint_url"] = proxy.url
        monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))
        proxies.append(proxy)
    monkeypatch.setenv("ECR_MIRROR_UPSTREAM_ENDPOINTS", json.dumps(endpoints))
    for key, value in scenario.env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    return proxies


def audit_figures(store: AuditStore, dag_id: str, figures: Figures) -> None:
    rows = store.records(dag_id=dag_id)
    runs = {r.run_id for r in rows}
    figures.runs = len(runs)
    figures.summaries = len({s.run_id for s in store.summaries(dag_id=dag_id, limit=100)} & runs)
    latest = {}
    for row in rows:  # in write order: the last run's row wins
        latest[row.tag] = row.status
    figures.mirrored = sum(status in ("pulled", "ok") for status in latest.values())
    failed = [r for r in rows if r.status == "failed"]
    figures.failed_with_error = sum(bool(r.error) and r.error_kind is not None for r in failed)
    for row in failed:
        figures.kinds[str(row.error_kind)] = figures.kinds.get(str(row.error_kind), 0) + 1
    with store.engine.connect() as conn:
        key = (tag_rows.c.run_id, tag_rows.c.ecr_repository, tag_rows.c.tag)
        dupes = sa.select(*key).where(tag_rows.c.dag_id == dag_id).group_by(*key).having(sa.func.count() > 1)
        figures.duplicated = len(conn.execute(dupes).all())
        registered = conn.execute(
            sa.select(run_tags.c.run_id, run_tags.c.ecr_repository, run_tags.c.tag)
        ).all()
    written = {(r.run_id, r.ecr_repository, r.tag) for r in rows}
    figures.lost = sum(tuple(r) not in written for r in registered if r.run_id in runs)


def leaks(output: list[str]) -> list[str]:
    """Where each secret was found: the text before it (the secret itself replaced by ***)."""
    found = []
    for text in output:
        for secret in SECRETS:
            start = text.find(secret)
            while start >= 0:
                found.append(text[max(0, start - 160) : start].replace("\n", " ") + "***")
                start = text.find(secret, start + 1)
    return found


def dump(store: AuditStore) -> str:
    with store.engine.connect() as conn:
        return "\n".join(
            repr(tuple(row)) for table in (tag_rows, run_tags) for row in conn.execute(sa.select(table)).all()
        )


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_every_tag_ends_with_one_row_and_no_secret_leaks(
    scenario, sandbox, sandbox_env, monkeypatch, capfd, caplog
):
    caplog.set_level("DEBUG")
    name = scenario.name
    for tag in TAGS:
        seed_image(sandbox.upstreams[HUB], f"acme/{name}", tag, platforms=())
    path = hub_manifest(sandbox_env, f"fault-{name}", name, TAGS, "{batch_size: 2, concurrency: 2}")
    store = AuditStore(f"sqlite:///{sandbox_env / 'audit.db'}")
    dag_id = f"ecr_mirror__fault_{name.replace('-', '_')}"
    figures, output = Figures(), []
    with ExitStack() as stack:
        proxies = environment(sandbox, scenario, stack, monkeypatch)
        for _ in range(SYNCS if scenario.converges else 1):
            code = main(["sync", str(path), "--json", "-vv"])
            out, err = capfd.readouterr()
            output += [out, err]
            if code == 0:
                break
        figures.faulted = sum(p.faulted_total for p in proxies)
    output.append(caplog.text)
    output.append(dump(store))
    audit_figures(store, dag_id, figures)
    found = leaks(output)
    figures.secrets = len(found)
    print("\n" + figures.line(name))

    assert not found, "secrets in the logs, the output or the audit:\n" + "\n".join(found)
    assert figures.lost == 0 and figures.duplicated == 0
    assert figures.summaries == figures.runs  # every run has its summary
    assert figures.failed_with_error == sum(figures.kinds.values())  # every failed row says why
    if not scenario.converges:
        assert code == 1 and figures.mirrored == 0 and figures.kinds == {"transient": len(TAGS)}
        return
    assert code == 0 and figures.mirrored == len(TAGS)
    if scenario.upstream or scenario.ecr:
        assert figures.faulted > 0
