"""How long the DAG file takes to import with N manifests of M images each, and its peak memory.

Run: ``.venv/bin/python -m bench.parse [--manifests 100] [--images 100] [--runs 3]``. Generates the
manifests into a temporary folder, then per run, in a new process (as Airflow's DAG processor
parses a file in a process of its own, with Airflow already imported): imports ``airflow.sdk``,
then the engine's DAG factory, then runs ``dags/ecr_mirror_dags.py``, and reports each step's wall
and CPU time and the process's peak RSS; a second process times loading the manifests alone
(YAML and validation, no DAG). Prints the median of the runs. Issue #12's target: the DAG file
with 100 manifests x 100 images under 1 s and under 300 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DAG_FILE = ROOT / "dags" / "ecr_mirror_dags.py"

_PROBE = """
import json, resource, runpy, sys, time
def now():
    return time.perf_counter(), time.process_time()
def since(start):
    wall, cpu = now()
    return round(wall - start[0], 3), round(cpu - start[1], 3)
start = now()
import airflow.sdk
airflow_s = since(start)
start = now()
from ecr_mirror import dag_factory
engine_s = since(start)
start = now()
if sys.argv[1] == "dags":
    namespace = runpy.run_path(sys.argv[2])
    built = sum(1 for v in namespace.values() if isinstance(v, airflow.sdk.DAG))
else:
    from ecr_mirror.manifest import load_manifests
    loaded, errors = load_manifests(__import__("pathlib").Path(sys.argv[2]))
    assert not errors, errors[0]
    built = len(loaded)
work_s = since(start)
rss_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
row = {"airflow": airflow_s, "engine": engine_s, "work": work_s, "built": built, "rss_mb": rss_mb}
print(json.dumps(row))
"""

MANIFEST = """\
name: bench-{n}
schedule: "0 */6 * * *"
target: {{region: eu-west-1}}
defaults: {{batch_size: 50}}
rules:
  - {{prefix: docker-hub, upstream: docker-hub, credential_secret: ecr-pullthroughcache/docker-hub}}
images:
{images}"""


def image(n: int, i: int) -> str:
    """One entry; every third with a filter instead of exact tags, as real manifests mix them."""
    if i % 3 == 2:
        return f"  - image: team{n}/app{i}\n    tags: {{semver: '^1.{i}', exclude: ['-rc'], latest: 2}}\n"
    return f"  - image: team{n}/app{i}\n    tags: ['1.{i}.0', '1.{i}.1']\n    platforms: [linux/amd64]\n"


def generate(folder: Path, manifests: int, images: int) -> None:
    for n in range(manifests):
        entries = "".join(image(n, i) for i in range(images))
        (folder / f"bench-{n}.yaml").write_text(MANIFEST.format(n=n, images=entries))


def run_probe(kind: str, folder: Path) -> dict[str, object]:
    env = {
        **os.environ,
        "ECR_MIRROR_MANIFEST_DIR": str(folder),
        "ECR_MIRROR_BACKFILL_DIR": str(folder / "no-backfill"),
    }
    target = str(DAG_FILE) if kind == "dags" else str(folder)
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, kind, target], env=env, capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def median(rows: list[dict[str, object]], key: str, index: int) -> float:
    return statistics.median(float(row[key][index]) for row in rows)  # type: ignore[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifests", type=int, default=100)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ecr-mirror-parse-") as tmp:
        folder = Path(tmp)
        generate(folder, args.manifests, args.images)
        size = sum(p.stat().st_size for p in folder.iterdir())
        with open("/proc/loadavg") as loadavg:
            load = loadavg.read().split()[0]
        what = f"{args.manifests} manifests x {args.images} images ({size / 1e6:.1f} MB of YAML)"
        print(f"{what}, load average {load}")
        dags = [run_probe("dags", folder) for _ in range(args.runs)]
        loads = [run_probe("load", folder) for _ in range(args.runs)]
    print(f"{'step (median of ' + str(args.runs) + ' runs)':<44} {'wall':>8} {'cpu':>8}")
    for label, rows, key in (
        ("import airflow.sdk (the DAG processor has it)", dags, "airflow"),
        ("import the engine (ecr_mirror.dag_factory)", dags, "engine"),
        (f"run the DAG file ({dags[0]['built']} DAGs)", dags, "work"),
        (f"  of which: load the manifests ({loads[0]['built']})", loads, "work"),
    ):
        print(f"{label:<44} {median(rows, key, 0):>7.3f}s {median(rows, key, 1):>7.3f}s")
    rss = statistics.median(float(row["rss_mb"]) for row in dags)  # type: ignore[arg-type]
    print(f"{'peak RSS of the DAG file process':<44} {rss:>7.1f} MB")


if __name__ == "__main__":
    main()
