"""``ecr-mirror prune``: cached tags that no selector of a manifest asks for any more (prune.py).

``--report`` (the default) changes nothing: it is the dry run. ``--apply`` prints the same report
first, then deletes exactly its ``stale`` tags, one audit row each. ``--lifecycle-policy`` prints
the ECR lifecycle policy that is the alternative (pull time only, applied by ECR).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ecr_mirror import cli_format as fmt
from ecr_mirror.cli_logging import load_airflow

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _command(args: argparse.Namespace) -> int:
    from ecr_mirror.manifest import ManifestError, load_manifest

    try:
        manifest = load_manifest(Path(args.manifest))
    except ManifestError as exc:
        print(exc, file=sys.stderr)
        return EXIT_BAD_INPUT
    from ecr_mirror import prune

    if args.min_idle_days is None:
        args.min_idle_days = manifest.prune.min_idle_days
    if args.lifecycle_policy:
        repositories = [manifest.cache_repository(spec.ref) for spec in manifest.images]
        print(json.dumps(prune.lifecycle_policy(repositories, args.min_idle_days), indent=2))
        return EXIT_OK
    load_airflow(args.verbose)
    from ecr_mirror.mirror import RunOptions, open_mirror

    with open_mirror(manifest) as mirror:
        selection = mirror.resolve(RunOptions())
        report = prune.build_report(
            manifest, mirror.target, selection, args.min_idle_days, mirror.store.pin_carrier
        )
        records = []
        if args.apply:
            if not args.json:  # the dry run first: what is about to go
                _print_report(report, applying=True)
            records = prune.apply_report(report, mirror.target, f"prune__{datetime.now(UTC).isoformat()}")
            mirror.store.write(records)
    applied = [
        {"repository": r.ecr_repository, "tag": r.tag, "status": str(r.status), "note": r.error}
        for r in records
    ]
    if args.json:
        doc = {"manifest": report.manifest, "tags": prune.report_rows(report), "skipped": report.skipped}
        print(json.dumps({**doc, "applied": applied} if args.apply else doc, indent=2))
    elif args.apply:
        for row in applied:
            print(f"{row['status']}: {row['repository']}:{row['tag']}")
    else:
        _print_report(report, applying=False)
    return EXIT_FAILED if any(row["status"] == "failed" for row in applied) else EXIT_OK


def _print_report(report: Any, *, applying: bool) -> None:
    from ecr_mirror.prune import report_rows

    rows = report_rows(report)
    what = "will be deleted" if applying else "would be deleted by --apply"
    print(
        f"{report.manifest}: {len(report.stale)} stale tag(s) {what} "
        f"(not pulled for {report.min_idle_days} days)"
    )
    table = [
        [
            r["repository"],
            r["tag"],
            fmt.short(r["digest"]),
            r["last_pull"] or "never",
            r["verdict"],
            r["reason"],
        ]
        for r in rows
    ]
    if table:
        print(fmt.table(table, ["repository", "tag", "digest", "last pull", "verdict", "why"]))
    for repository, why in report.skipped.items():
        print(f"skipped {repository}: {why}", file=sys.stderr)


def register(commands: Any) -> None:
    """Add ``prune`` to the ``ecr-mirror`` subcommands."""
    parser = commands.add_parser(
        "prune",
        help="cached tags no selector of a manifest asks for any more: "
        "report (default), --apply deletes them",
    )
    parser.add_argument("manifest", help="the manifest file")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--report", action="store_true", help="list them, change nothing (the default)")
    mode.add_argument(
        "--apply",
        action="store_true",
        help="print the report, then delete its stale tags (never immutable ones, never recent pulls)",
    )
    mode.add_argument(
        "--lifecycle-policy",
        action="store_true",
        help="print an ECR lifecycle policy expiring images not pulled for --min-idle-days (the alternative)",
    )
    parser.add_argument(
        "--min-idle-days",
        type=int,
        metavar="N",
        help="never touch a tag pulled in the last N days (default: the manifest's prune.min_idle_days, 30)",
    )
    parser.add_argument("--json", action="store_true", help="the report as JSON")
    parser.set_defaults(func=_command)
