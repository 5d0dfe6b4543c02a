"""A whole mirroring run at scale, ecr-mirror against ``skopeo sync``, with a fixed added latency.

Run: ``.venv/bin/python -m bench.scale --tags 1000,10000 --delay-ms 20``. For each size it seeds the
Docker Hub stand-in (a few big repositories and many small, single- and multi-arch; the blobs of a
repository are pushed once, then one tiny manifest per tag: sandbox/bulk_seed.py), puts a counting
proxy (bench/proxy.py) adding ``--delay-ms`` to every request in front of the upstream, the ECR
emulator and skopeo's destination registry, then runs, as a user would:

- ``ecr-mirror sync`` of the manifest: the first mirror, then no-change runs (median of ``--repeat``);
- ``airflow dags test`` of the generated DAG (a no-change run), counting its task instances;
- ``skopeo sync`` of the same tags to a second Distribution registry: first, then no-change, then
  ``--dry-run`` (skopeo 1.9.3 has it: it lists what it would copy and copies nothing).

It prints one table and writes JSON (``--json``): wall time, requests per tag by kind,
DescribeImages calls per repository page, body bytes per tag, peak RSS of the process, task
instances, and the ratios to skopeo and to the limit of a no-change run at this latency:
``ceil(tags / concurrency) + ceil(pages / concurrency)`` round trips (one HEAD per tag, one
DescribeImages per page of 1,000 tagged images). See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sqlite3
import statistics
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.check_cost import HUB, REGION, Endpoints, bench_workdir, point_at, services_stderr_to
from bench.proxy import CountingProxy

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONCURRENCY = 8
PLATFORMS = ("linux/amd64", "linux/arm64")


@dataclass
class Row:
    """One measured run (or the median of its repeats)."""

    name: str
    tags: int
    walls: list[float]
    requests: dict[str, int] = field(default_factory=dict)
    body_bytes: int = 0
    peak_rss_mb: float = 0.0
    task_instances: int | None = None
    describe_images_per_page: float | None = None

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)


def shape(n: int) -> dict[str, tuple[list[str], bool]]:
    """repository -> (tags, multi-arch): 3 big repositories hold 45% of the tags, the rest are
    repositories of 5 tags; every other repository is multi-arch."""
    big = [int(n * 0.15)] * 3
    small = n - sum(big)
    sizes = big + [5] * (small // 5) + ([small % 5] if small % 5 else [])
    return {f"scale/r{i:04d}": ([f"1.{t}" for t in range(size)], i % 2 == 0) for i, size in enumerate(sizes)}


def seed(hub: str, repositories: dict[str, tuple[list[str], bool]]) -> None:
    from sandbox.bulk_seed import seed_tags

    def one(item: tuple[str, tuple[list[str], bool]]) -> None:
        repository, (tags, multi) = item
        seed_tags(hub, repository, tags, platforms=PLATFORMS if multi else (), workers=4)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(one, repositories.items()))


def write_manifest(folder: Path, repositories: dict[str, tuple[list[str], bool]]) -> Path:
    images = [{"image": repository, "tags": tags} for repository, (tags, _) in repositories.items()]
    doc = {
        "name": "scale",
        "target": {"region": REGION},
        "defaults": {"concurrency": CONCURRENCY, "retries": 0},
        "rules": [
            {
                "prefix": "scale",
                "upstream": "docker-hub",
                "credential_secret": "ecr-pullthroughcache/docker-hub",
            }
        ],
        "images": images,
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "scale.yaml"
    path.write_text(json.dumps(doc))  # JSON is YAML
    return path


def timed(command: list[str], env: dict[str, str], log: Path) -> tuple[float, float]:
    """Run ``command``; (wall s, peak RSS MB of the process and its waited-for children)."""
    started = time.perf_counter()
    with log.open("ab") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} exited {status} (see {log})")
    return wall, usage.ru_maxrss / 1024


def counted(
    name: str, n: int, proxies: dict[str, CountingProxy], run: Any, repeat: int = 1, pages: int = 0
) -> Row:
    """``run()`` ``repeat`` times; the requests of the first run, the median wall."""
    walls, rss = [], 0.0
    requests: Counter[str] = Counter()
    body = 0
    for attempt in range(repeat):
        for proxy in proxies.values():
            proxy.reset()
        wall, peak, *more = run()
        walls.append(wall)
        rss = max(rss, peak)
        if attempt == 0:
            for side, proxy in proxies.items():
                counts, _, _ = proxy.snapshot()
                requests.update({f"{side} {kind}": value for kind, value in counts.items()})
                body += sum(proxy.body_bytes.values())
            instances = more[0] if more else None
    row = Row(name, n, walls, dict(requests), body, rss, instances)
    if pages:
        row.describe_images_per_page = requests.get("ECR API DescribeImages", 0) / pages
    return row


def task_instances(airflow_home: Path, dag_id: str) -> int:
    with sqlite3.connect(airflow_home / "airflow.db") as db:
        (run_id,) = db.execute(
            "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
        ).fetchone()
        (count,) = db.execute(
            "SELECT count(*) FROM task_instance WHERE dag_id = ? AND run_id = ?", (dag_id, run_id)
        ).fetchone()
    return int(count)


def skopeo_sync(source: Path, dest: str, env: dict[str, str], log: Path, *extra: str) -> tuple[float, float]:
    command = ["skopeo", "sync", "--src", "yaml", "--dest", "docker", "--all", "--dest-tls-verify=false"]
    return timed([*command, *extra, str(source), f"{dest}/mirror"], env, log)


def measure_size(n: int, args: argparse.Namespace, work: Path, sandbox: Any) -> list[Row]:
    from sandbox.upstream import start_registry

    delay = args.delay_ms / 1000
    repositories = shape(n)
    started = time.perf_counter()
    seed(sandbox.upstreams[HUB], repositories)
    print(f"{n} tags: seeded {len(repositories)} repositories in {time.perf_counter() - started:.1f} s")
    pages = sum(math.ceil(len(tags) / 1000) for tags, _ in repositories.values())
    hub, ecr = CountingProxy(sandbox.upstreams[HUB], delay), CountingProxy(sandbox.ecr_url, delay)
    point_at(sandbox, Endpoints(hub.url, ecr.url))
    manifest = write_manifest(work / f"manifests-{n}", repositories)
    env = {
        **os.environ,
        "ECR_MIRROR_MANIFEST_DIR": str(manifest.parent),
        "ECR_MIRROR_AUDIT_URL": f"sqlite:///{work / f'audit-{n}.db'}",
        "ECR_MIRROR_POOL_SLOTS": str(args.slots),
    }
    log = work / f"runs-{n}.log"
    engine = {"upstream": hub, "ECR": ecr}
    sync = [str(BIN / "ecr-mirror"), "sync", str(manifest), "--json"]
    rows = [
        counted("ecr-mirror sync, first", n, engine, lambda: timed(sync, env, log)),
        counted("ecr-mirror sync, no change", n, engine, lambda: timed(sync, env, log), args.repeat, pages),
    ]
    dags_test = [str(BIN / "airflow"), "dags", "test", "ecr_mirror__scale"]
    home = Path(env["AIRFLOW_HOME"])

    def dag_run() -> tuple[float, float, int]:
        wall, rss = timed(dags_test, env, log)
        return wall, rss, task_instances(home, "ecr_mirror__scale")

    rows.append(counted("airflow dags test, no change", n, engine, dag_run, 1, pages))
    if args.profile:
        profile(f"sync-{n}", [str(BIN / "ecr-mirror"), *sync[1:]], env, log, args.profile)
        profile(f"dags-test-{n}", [str(BIN / "airflow"), *dags_test[1:]], env, log, args.profile)
    if n > args.skopeo_max_tags:
        print(f"{n} tags: skopeo sync skipped (--skopeo-max-tags {args.skopeo_max_tags})")
        return rows
    dest_registry = start_registry(work / f"dest-{n}")
    try:
        dest = CountingProxy(dest_registry.url, delay)
        source = work / f"skopeo-{n}.yaml"
        host = hub.url.removeprefix("http://")
        images = {repository: tags for repository, (tags, _) in repositories.items()}
        source.write_text(json.dumps({host: {"tls-verify": False, "images": images}}))
        peer = {"upstream": hub, "dest": dest}
        target = dest.url.removeprefix("http://")
        run = lambda: skopeo_sync(source, target, env, log)  # noqa: E731
        rows.append(counted("skopeo sync, first", n, peer, run))
        rows.append(counted("skopeo sync, no change", n, peer, run, args.peer_repeat))
        dry = lambda: skopeo_sync(source, target, env, log, "--dry-run")  # noqa: E731
        rows.append(counted("skopeo sync --dry-run", n, peer, dry, args.peer_repeat))
        dest.close()
    finally:
        dest_registry.stop()
    hub.close()
    ecr.close()
    return rows


def profile(name: str, command: list[str], env: dict[str, str], log: Path, folder: Path) -> None:
    """One more no-change run of ``command`` under cProfile: writes ``<folder>/<name>.prof`` and
    prints where its time goes (the 25 entries of most cumulative time)."""
    import pstats

    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{name}.prof"
    wall, _ = timed([sys.executable, "-m", "cProfile", "-o", str(out), *command], env, log)
    print(f"\n{name}: {wall:.1f} s under cProfile, by cumulative time ({out}):")
    pstats.Stats(str(out)).sort_stats("cumulative").print_stats(25)


def limit_s(n: int, pages: int, delay_ms: float) -> float:
    return (math.ceil(n / CONCURRENCY) + math.ceil(pages / CONCURRENCY)) * delay_ms / 1000


def per_tag(row: Row) -> dict[str, float]:
    return {kind: round(count / row.tags, 3) for kind, count in sorted(row.requests.items())}


def table(rows: list[Row], limits: dict[int, float]) -> str:
    header = ["run", "tags", "wall s", "x skopeo", "x limit", "req/tag", "DI/page", "B/tag", "RSS MB", "TIs"]
    lines = [header]
    peers = {r.tags: r for r in rows if r.name == "skopeo sync, no change"}
    for row in rows:
        peer = peers.get(row.tags)
        no_change = "no change" in row.name and not row.name.startswith("skopeo")
        lines.append(
            [
                row.name,
                str(row.tags),
                f"{row.wall:.2f}",
                f"{row.wall / peer.wall:.3f}" if peer and no_change else "",
                f"{row.wall / limits[row.tags]:.2f}" if no_change else "",
                f"{sum(row.requests.values()) / row.tags:.2f}",
                "" if row.describe_images_per_page is None else f"{row.describe_images_per_page:.2f}",
                f"{row.body_bytes / row.tags:.0f}",
                f"{row.peak_rss_mb:.0f}",
                "" if row.task_instances is None else str(row.task_instances),
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |" for line in lines]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--tags", default="1000", help="comma-separated sizes (default 1000)")
    parser.add_argument("--delay-ms", type=float, default=20.0, help="added to every request (default 20)")
    parser.add_argument("--repeat", type=int, default=3, help="no-change ecr-mirror runs, median (default 3)")
    parser.add_argument("--peer-repeat", type=int, default=1, help="no-change skopeo runs (default 1)")
    parser.add_argument("--slots", type=int, default=8, help="ECR_MIRROR_POOL_SLOTS (default 8)")
    parser.add_argument("--skopeo-max-tags", type=int, default=10000, help="skip skopeo above this size")
    parser.add_argument("--json", type=Path, default=Path("bench-scale.json"), help="where the JSON goes")
    parser.add_argument(
        "--profile", type=Path, help="also profile a no-change sync and dags test (cProfile) into this folder"
    )
    args = parser.parse_args(argv)
    work = bench_workdir(
        parser,
        "ecr-mirror-scale-",
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
    )
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], check=True, capture_output=True)
    from sandbox.services import start_sandbox

    with services_stderr_to(work / "services.log"):
        sandbox = start_sandbox(work / "sandbox")
    rows: list[Row] = []
    limits: dict[int, float] = {}
    try:
        for n in (int(size) for size in args.tags.split(",")):
            pages = sum(math.ceil(len(tags) / 1000) for tags, _ in shape(n).values())
            limits[n] = limit_s(n, pages, args.delay_ms)
            rows += measure_size(n, args, work, sandbox)
    finally:
        sandbox.stop()
    print(table(rows, limits))
    doc: dict[str, Any] = {
        "delay_ms": args.delay_ms,
        "concurrency": CONCURRENCY,
        "limits_s": limits,
        "rows": [{**asdict(row), "wall": row.wall, "requests_per_tag": per_tag(row)} for row in rows],
    }
    args.json.write_text(json.dumps(doc, indent=2))
    print(f"JSON: {args.json}; logs: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
