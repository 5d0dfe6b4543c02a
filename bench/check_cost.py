"""What the digest check of a steady-state mirroring run costs: ecr-mirror against a skopeo peer.

Run: ``.venv/bin/python -m bench.check_cost --tags 200``. Prints figures; asserts nothing beyond
"every tag was found up to date" (else the figures would not describe the steady state).

Everything runs on loopback against the sandbox (``sandbox.services.start_sandbox``). Requests are
counted by :class:`bench.proxy.CountingProxy` instances in front of the Docker Hub stand-in and the
ECR emulator, so both tools are counted by the same code; wall times come from separate passes
that bypass the proxies. See docs/benchmarks.md for what the figures mean.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.proxy import CountingProxy

if TYPE_CHECKING:  # the project's modules are imported once AIRFLOW_HOME is set (see main)
    from ecr_mirror.ecr import EcrTarget
    from ecr_mirror.manifest import Manifest
    from ecr_mirror.tags import TagRef
    from sandbox.services import Sandbox

HUB = "registry-1.docker.io"
REGION = "eu-west-1"
PREFIX = "bench"
BENCH_REPO = "library/benchimg"
#: a few other repositories, so the check is not of one repository only: (repository, tags, seed kwargs)
EXTRA_REPOS: tuple[tuple[str, tuple[str, ...], dict[str, Any]], ...] = (
    ("library/benchaux", ("2.0", "2.1", "2.2"), {}),
    ("acme/benchtool", ("0.1", "0.2", "0.3"), {"oci": False}),  # Docker manifest list
    ("acme/benchsingle", ("1", "2"), {"platforms": ()}),  # one image manifest, no index
)


@dataclass(frozen=True)
class Endpoints:
    """Where the Docker Hub stand-in and the ECR emulator are reached (directly or via a proxy)."""

    hub: str
    ecr: str


@dataclass
class Result:
    """One tool's steady-state check: median wall time of the timed passes, counts of the counted one."""

    tool: str
    tags: int
    walls: list[float]
    upstream: Counter[str]
    ecr: Counter[str]
    hook_calls: Counter[str] = field(default_factory=Counter)  # botocore before-call, cross-check
    emulator: dict[str, int] = field(default_factory=dict)  # /_emulator/stats, cross-check
    statuses: Counter[str] = field(default_factory=Counter)  # "<side> <kind> <status>"
    not_http: int = 0  # connections that were not HTTP (TLS probes), both sides
    up_to_date: int = 0
    body_bytes: Counter[str] = field(default_factory=Counter)  # response body bytes by kind

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)

    @property
    def figures(self) -> dict[str, float]:
        n = self.tags
        api = sum(v for k, v in self.ecr.items() if k.startswith("API "))
        return {
            "wall s": self.wall,
            "s/tag": self.wall / n,
            "upstream req/tag": sum(self.upstream.values()) / n,
            "upstream manifest GETs/tag": self.upstream["GET manifest"] / n,
            "ECR API calls/tag": api / n,
            "ECR /v2 req/tag": (sum(self.ecr.values()) - api) / n,
            "ECR manifest GETs/tag": self.ecr["GET manifest"] / n,
        }


# -- environment -------------------------------------------------------------------------------


def point_at(sandbox: Sandbox, endpoints: Endpoints) -> None:
    """Point the project (Airflow connection, upstream overrides) at ``endpoints``."""
    from ecr_mirror.settings import get_settings

    env = sandbox.environment()
    conn = sandbox.connection()
    conn["extra"]["service_config"]["ecr"]["endpoint_url"] = endpoints.ecr
    env["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps(conn)
    env["ECR_MIRROR_UPSTREAM_ENDPOINTS"] = json.dumps({**sandbox.upstreams, HUB: endpoints.hub})
    os.environ.update(env)
    get_settings.cache_clear()


def seed(sandbox: Sandbox, n: int) -> dict[str, list[str]]:
    """Push ``n`` multi-arch tags of BENCH_REPO plus EXTRA_REPOS to the Docker Hub stand-in."""
    from sandbox.upstream import seed_image

    hub = sandbox.upstreams[HUB]
    images = {BENCH_REPO: [f"1.{i}" for i in range(n)]}
    with ThreadPoolExecutor(max_workers=4) as pool:
        jobs = [
            pool.submit(seed_image, hub, BENCH_REPO, tag, platforms=("linux/amd64", "linux/arm64"))
            for tag in images[BENCH_REPO]
        ]
        for repository, tags, kwargs in EXTRA_REPOS:
            images[repository] = list(tags)
            jobs += [pool.submit(seed_image, hub, repository, tag, **kwargs) for tag in tags]
        for job in jobs:
            job.result()
    return images


def build_manifest(images: dict[str, list[str]], concurrency: int, batch_size: int) -> Manifest:
    from ecr_mirror.manifest import Manifest

    return Manifest.model_validate(
        {
            "name": "bench",
            "target": {"region": REGION, "aws_conn_id": "aws_default"},
            "defaults": {"concurrency": concurrency, "batch_size": batch_size, "retries": 0},
            "rules": [
                {
                    "prefix": PREFIX,
                    "upstream": "docker-hub",
                    "credential_secret": "ecr-pullthroughcache/docker-hub",
                }
            ],
            "images": [
                {"image": repository.removeprefix("library/"), "tags": tags}
                for repository, tags in images.items()
            ],
        }
    )


# -- ecr-mirror --------------------------------------------------------------------------------


@contextmanager
def mirror_for(manifest: Manifest, calls: Counter[str], store_url: str) -> Iterator[Any]:
    """A Mirror with fresh clients, as each DAG task builds them; counts botocore calls in ``calls``."""
    from ecr_mirror.mirror import open_mirror

    with open_mirror(manifest, store_url) as mirror:
        count_calls(mirror.target, calls)
        yield mirror


def count_calls(target: EcrTarget, calls: Counter[str]) -> None:
    def before_call(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    target.client.meta.events.register("before-call.ecr", before_call)


def initial_mirror(manifest: Manifest, tags: Sequence[TagRef], store_url: str) -> Counter[str]:
    """Create the rule, then compare + pull every batch: afterwards everything is cached."""
    from ecr_mirror.mirror import RunInfo
    from ecr_mirror.rules import ensure_rules
    from ecr_mirror.shards import MAX_TASKS_PER_HOST, shards_for

    calls: Counter[str] = Counter()
    run = RunInfo("bench-initial", manifest.dag_id, manifest.name)
    statuses: Counter[str] = Counter()
    with mirror_for(manifest, calls, store_url) as mirror:
        ensure_rules(manifest, mirror.target)
        for shard in shards_for(tags, MAX_TASKS_PER_HOST, manifest.defaults.batch_size):
            statuses.update(r.status for r in mirror.mirror(shard, run))
        mirror.finish(run, tags)
    if statuses != Counter({"pulled": len(tags)}):
        raise RuntimeError(f"initial mirror did not pull every tag: {dict(statuses)}")
    return calls


def ecr_mirror_check(
    manifest: Manifest, tags: Sequence[TagRef], store_url: str, per_batch: bool
) -> tuple[float, int, Counter[str]]:
    """One steady-state digest check: (wall s, tags found up to date, botocore calls).

    ``per_batch=False``: one ``mirror.compare(tags)`` over every tag, clients built before the
    clock starts. ``per_batch=True``: as the DAG runs it, one compare per shard (shards.py) with
    fresh clients each (each ``mirror`` task instance builds its own), clients included.
    """
    from ecr_mirror.shards import MAX_TASKS_PER_HOST, shards_for
    from ecr_mirror.states import Action

    calls: Counter[str] = Counter()
    plan = []
    if per_batch:
        start = time.perf_counter()
        for shard in shards_for(tags, MAX_TASKS_PER_HOST, manifest.defaults.batch_size):
            with mirror_for(manifest, calls, store_url) as mirror:
                plan += mirror.compare(shard)
        wall = time.perf_counter() - start
    else:
        with mirror_for(manifest, calls, store_url) as mirror:
            start = time.perf_counter()
            plan = mirror.compare(tags)
            wall = time.perf_counter() - start
    return wall, sum(item.action is Action.UP_TO_DATE for item in plan), calls


# -- peer: skopeo --------------------------------------------------------------------------------


def skopeo_raw(image: str, creds: str | None = None) -> bytes:
    command = ["skopeo", "inspect", "--raw", "--tls-verify=false"]
    if creds:
        command += ["--creds", creds]
    done = subprocess.run([*command, f"docker://{image}"], capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"skopeo inspect {image} failed: {done.stderr.decode(errors='replace')[-500:]}")
    return done.stdout


def peer_check(tags: Sequence[TagRef], endpoints: Endpoints, concurrency: int) -> tuple[float, int]:
    """What skopeo-based mirroring does to decide a tag is up to date: GET both manifests, compare.

    One GetAuthorizationToken per run (boto3), then per tag two ``skopeo inspect --raw``, run
    ``concurrency`` at a time like ecr-mirror's threads. Returns (wall s, tags found up to date).
    """
    import boto3

    start = time.perf_counter()
    ecr = boto3.client(
        "ecr",
        endpoint_url=endpoints.ecr,
        region_name=REGION,
        aws_access_key_id="sandbox",
        aws_secret_access_key="sandbox-secret",
    )
    auth = ecr.get_authorization_token()["authorizationData"][0]
    creds = base64.b64decode(auth["authorizationToken"]).decode()
    ecr_host = auth["proxyEndpoint"].split("://", 1)[1]
    hub_host = endpoints.hub.split("://", 1)[1]

    def up_to_date(tag: TagRef) -> bool:
        upstream = skopeo_raw(f"{hub_host}/{tag.repository}:{tag.reference}")
        cached = skopeo_raw(f"{ecr_host}/{tag.cache_repository}:{tag.reference}", creds)
        return hashlib.sha256(upstream).digest() == hashlib.sha256(cached).digest()

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        found = sum(pool.map(up_to_date, tags))
    return time.perf_counter() - start, found


# -- measuring -------------------------------------------------------------------------------------


def measure(
    tool: str,
    tags: Sequence[TagRef],
    check: Callable[[], tuple[float, int, Counter[str]]],
    sandbox: Sandbox,
    proxies: tuple[CountingProxy, CountingProxy],
    repeat: int,
) -> Result:
    """One counted pass through the proxies, then ``repeat`` timed passes straight to the sandbox."""
    hub_proxy, ecr_proxy = proxies
    point_at(sandbox, Endpoints(hub_proxy.url, ecr_proxy.url))
    for proxy in proxies:
        proxy.reset()
    sandbox.emulator("stats/reset", {})
    _, found, calls = check()
    upstream, upstream_statuses, hub_not_http = hub_proxy.snapshot()
    ecr, ecr_statuses, ecr_not_http = ecr_proxy.snapshot()
    statuses = Counter({f"upstream {k} {s}": v for (k, s), v in upstream_statuses.items()})
    statuses.update({f"ECR {k} {s}": v for (k, s), v in ecr_statuses.items()})
    emulator = sandbox.emulator("stats")
    if found != len(tags):
        raise RuntimeError(f"{tool}: only {found} of {len(tags)} tags up to date: not a steady state")
    point_at(sandbox, Endpoints(sandbox.upstreams[HUB], sandbox.ecr_url))
    walls = [check()[0] for _ in range(repeat)]
    not_http = hub_not_http + ecr_not_http
    body_bytes = hub_proxy.body_bytes + ecr_proxy.body_bytes
    return Result(
        tool, len(tags), walls, upstream, ecr, calls, emulator, statuses, not_http, found, body_bytes
    )


# -- output --------------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def table(results: Sequence[Result], peer: Result) -> str:
    columns = ["tool", "tags", *peer.figures]
    rows = [[r.tool, str(r.tags), *(_fmt(v) for v in r.figures.values())] for r in results]
    for r in results:
        if r is peer:
            continue
        ratios = []
        for key, value in r.figures.items():
            base = peer.figures[key]
            ratios.append(f"{value / base:.3f}x" if base else ("=" if value == base else "inf"))
        rows.append([f"{r.tool} / peer", "", *ratios])
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(columns)]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += ["| " + " | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) + " |" for row in rows]
    return "\n".join(lines)


def details(result: Result) -> str:
    def fmt(counter: Counter[str]) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(counter.items())) or "none"

    stats = {k: v for k, v in result.emulator.items() if v}
    return (
        f"{result.tool}: up to date {result.up_to_date}/{result.tags}; "
        f"walls {', '.join(f'{w:.3f}' for w in result.walls)} s\n"
        f"  upstream: {fmt(result.upstream)}\n"
        f"  ECR: {fmt(result.ecr)}\n"
        f"  by status: {fmt(result.statuses)}\n"
        f"  non-HTTP connections (TLS probes, not counted): {result.not_http}\n"
        f"  response body bytes: {fmt(result.body_bytes)}\n"
        f"  botocore before-call on the target's client: {fmt(result.hook_calls)}\n"
        f"  /_emulator/stats: {stats or 'all zero'}"
    )


@contextmanager
def services_stderr_to(path: Path) -> Iterator[None]:
    """Give the processes started inside the block ``path`` as their stderr.

    skopeo with ``--tls-verify=false`` first tries https against the plain-http sandbox; the
    emulator's uvicorn logs each such probe ("Invalid HTTP request received") on the stderr it
    inherited, which would bury the figures.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with path.open("ab") as log:
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def bench_workdir(parser: argparse.ArgumentParser, prefix: str, **env: str) -> Path:
    """A fresh work folder holding Airflow's home (set before the project's modules are imported,
    which read it), with ``env`` added to the environment; a usage error without skopeo."""
    if shutil.which("skopeo") is None:
        parser.error("skopeo not found (./dev setup installs it)")
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ.update(
        {
            "AIRFLOW_HOME": str(workdir / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            **env,
        }
    )
    return workdir


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.check_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=200, help=f"tags of {BENCH_REPO} (default 200)")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes per tool, median (default 3)")
    parser.add_argument("--concurrency", type=int, default=8, help="manifest defaults.concurrency")
    parser.add_argument("--batch-size", type=int, default=50, help="manifest defaults.batch_size")
    args = parser.parse_args(argv)
    workdir = bench_workdir(parser, "ecr-mirror-bench-")
    from ecr_mirror.tags import select_tags
    from sandbox.services import start_sandbox

    store_url = f"sqlite:///{workdir / 'audit.db'}"
    proxies: list[CountingProxy] = []
    with services_stderr_to(workdir / "services.log"):
        sandbox = start_sandbox(workdir / "sandbox")
    try:
        hub_proxy, ecr_proxy = CountingProxy(sandbox.upstreams[HUB]), CountingProxy(sandbox.ecr_url)
        proxies = [hub_proxy, ecr_proxy]
        started = time.perf_counter()
        images = seed(sandbox, args.tags)
        manifest = build_manifest(images, args.concurrency, args.batch_size)
        tags = select_tags(manifest).tags
        print(
            f"seeded {len(tags)} tags in {len(images)} repositories ({time.perf_counter() - started:.1f} s)"
        )

        point_at(sandbox, Endpoints(hub_proxy.url, ecr_proxy.url))
        initial_mirror(manifest, tags, store_url)

        # fixed per-run cost outside the digest check: ensure_rules, counted the same way
        from ecr_mirror.rules import ensure_rules

        for proxy in proxies:
            proxy.reset()
        with mirror_for(manifest, Counter(), store_url) as mirror:
            ensure_rules(manifest, mirror.target)
        rules_cost = ecr_proxy.snapshot()[0]

        pair = (hub_proxy, ecr_proxy)
        results = [
            measure(
                "ecr-mirror compare(all)",
                tags,
                lambda: ecr_mirror_check(manifest, tags, store_url, per_batch=False),
                sandbox,
                pair,
                args.repeat,
            ),
            measure(
                "ecr-mirror per shard (the DAG)",
                tags,
                lambda: ecr_mirror_check(manifest, tags, store_url, per_batch=True),
                sandbox,
                pair,
                args.repeat,
            ),
        ]

        def peer() -> tuple[float, int, Counter[str]]:
            point = json.loads(os.environ["AIRFLOW_CONN_AWS_DEFAULT"])["extra"]["service_config"]["ecr"]
            hub = json.loads(os.environ["ECR_MIRROR_UPSTREAM_ENDPOINTS"])[HUB]
            wall, found = peer_check(tags, Endpoints(hub, point["endpoint_url"]), args.concurrency)
            return wall, found, Counter()

        peer_result = measure("skopeo inspect x2 (peer)", tags, peer, sandbox, pair, args.repeat)
        results.append(peer_result)

        print(
            f"\nsteady-state digest check, {len(tags)} tags "
            f"({args.tags} x {BENCH_REPO}, {len(tags) - args.tags} in {len(EXTRA_REPOS)} more repos), "
            f"concurrency {args.concurrency}, {os.cpu_count()} CPUs; wall = median of {args.repeat}\n"
        )
        print(table(results, peer_result))
        print()
        for result in results:
            print(details(result))
        print(
            "ensure_rules (every run, outside the digest check): "
            + ", ".join(f"{k}={v}" for k, v in sorted(rules_cost.items()))
        )
    finally:
        for proxy in proxies:
            proxy.close()
        sandbox.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
