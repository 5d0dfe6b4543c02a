"""How long ``ecr-mirror validate`` and ``schema`` take, and what they import.

Run: ``.venv/bin/python -m bench.cli_startup [--runs 20] [--manifest FILE]``. Each command runs as a
new process (``python -m ecr_mirror.cli``), as a shell runs it; prints per command the median and
minimum wall time, the CPU time per run (user + system: what a loaded machine does not inflate)
and the heavy packages the command imported (none is the goal: see docs/benchmarks.md).
Issue #12's target: ``validate`` of one manifest under 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("airflow", "botocore", "boto3", "sqlalchemy", "httpx", "tabulate", "rich")
_PROBE = (
    "import sys, json\nfrom ecr_mirror.cli import main\nmain(sys.argv[1:])\n"
    "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & set(%r))), file=sys.stderr)\n"
)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(argv: list[str], runs: int) -> dict[str, object]:
    walls = []
    before = cpu_seconds()
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ecr_mirror.cli", *argv], stdout=subprocess.DEVNULL, check=True)
        walls.append(time.perf_counter() - start)
    cpu = (cpu_seconds() - before) / runs
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE % (HEAVY,), *argv], capture_output=True, text=True, check=True
    )
    imported = json.loads(probe.stderr.strip().splitlines()[-1])
    return {
        "command": " ".join(argv),
        "median_s": round(statistics.median(walls), 3),
        "min_s": round(min(walls), 3),
        "cpu_s_per_run": round(cpu, 3),
        "heavy_imports": imported,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--manifest", default=str(ROOT / "config" / "manifests" / "monitoring.yaml"))
    args = parser.parse_args()
    with open("/proc/loadavg") as loadavg:
        print(f"load average: {loadavg.read().split()[0]} ({args.runs} runs each)")
    print(f"{'command':<40} {'median':>8} {'min':>8} {'cpu/run':>8}  heavy imports")
    for argv in (["validate", args.manifest], ["schema"]):
        row = measure(argv, args.runs)
        name = str(row["command"]).replace(str(ROOT) + "/", "")
        print(
            f"{name:<40} {row['median_s']:>7}s {row['min_s']:>7}s {row['cpu_s_per_run']:>7}s  "
            f"{', '.join(row['heavy_imports']) or 'none'}"  # type: ignore[arg-type]
        )


if __name__ == "__main__":
    main()
