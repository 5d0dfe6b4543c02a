"""``ecr-mirror``: the same engine from a shell, without an Airflow scheduler.

Subcommands: ``validate`` (manifests) and ``audit`` (read the audit trail).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from tabulate import tabulate

from ecr_mirror.audit import AuditRecord, AuditStore
from ecr_mirror.manifest import ManifestError, load_manifest, load_manifests
from ecr_mirror.settings import get_settings


def _short(digest: str | None) -> str:
    return digest[:19] if digest else "-"


def _validate(args: argparse.Namespace) -> int:
    errors: list[ManifestError] = []
    for raw in args.paths:
        path = Path(raw)
        if path.is_dir():
            loaded, found = load_manifests(path)
            errors.extend(found)
            names = [str(p) for p, _ in loaded]
        else:
            try:
                load_manifest(path)
                names = [str(path)]
            except ManifestError as exc:
                errors.append(exc)
                names = []
        for name in names:
            print(f"ok: {name}")
    for error in errors:
        print(error, file=sys.stderr)
    return 1 if errors else 0


def _audit_table(records: Sequence[AuditRecord]) -> str:
    rows = [
        [
            f"{r.image}:{r.tag}",
            r.ecr_repository,
            r.action,
            r.status,
            _short(r.upstream_digest),
            _short(r.cached_digest_after),
            r.error or "",
        ]
        for r in records
    ]
    headers = ["image", "ecr repository", "action", "status", "upstream", "ecr after", "error"]
    return tabulate(rows, headers=headers, maxcolwidths=[None, None, None, None, None, None, 60])


def _audit(args: argparse.Namespace) -> int:
    store = AuditStore(args.url or get_settings().resolved_audit_url())
    run_id = args.run_id
    if run_id is None:
        summaries = store.summaries(dag_id=args.dag_id, limit=1)
        if not summaries:
            print("no runs in the audit yet", file=sys.stderr)
            return 1
        run_id = summaries[0].run_id
    records = store.records(dag_id=args.dag_id, run_id=run_id)
    if args.json:
        print(json.dumps([asdict(r) for r in records], default=str, indent=2))
    else:
        print(f"run {run_id}" + (f" of {args.dag_id}" if args.dag_id else ""))
        print(_audit_table(records))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ecr-mirror", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser("validate", help="check manifest files or folders; exit 1 on any error")
    validate.add_argument("paths", nargs="+")
    validate.set_defaults(func=_validate)
    audit = commands.add_parser("audit", help="show the audit rows of a run (default: the latest)")
    audit.add_argument("--dag-id")
    audit.add_argument("--run-id")
    audit.add_argument("--url", help="audit database URL (default: ECR_MIRROR_AUDIT_URL or AIRFLOW_HOME)")
    audit.add_argument("--json", action="store_true")
    audit.set_defaults(func=_audit)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
