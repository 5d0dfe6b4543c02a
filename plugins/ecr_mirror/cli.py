"""``ecr-mirror``: the same engine as the DAGs, from a shell, without an Airflow scheduler.

Subcommands: ``validate`` (manifests), ``plan`` (what a run would do, changing nothing), ``sync``
(a run without Airflow), ``schema`` (the manifest JSON Schema) and ``audit`` (the audit trail:
runs, a run's tags, a tag's history, retention, migrations; cli_audit).
``plan`` and ``sync`` reach ECR through the manifest's ``aws_conn_id`` Airflow connection; an
``AIRFLOW_CONN_<ID>`` environment variable is enough (no metadata database is needed).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tabulate import tabulate

from ecr_mirror import cli_audit, probe_cli
from ecr_mirror.audit import AuditRecord
from ecr_mirror.manifest import (
    FieldError,
    Manifest,
    ManifestError,
    load_manifest,
    load_paths,
    manifest_files,
    manifest_json_schema,
)
from ecr_mirror.mirror import RunInfo, RunOptions, batches, open_mirror
from ecr_mirror.rules import RuleError, ensure_rules
from ecr_mirror.states import FAILING_ACTIONS, RunStatus

_ERROR_WIDTH = 60


def _short(digest: str | None) -> str:
    return digest[:19] if digest else "-"


def _name(image: str, reference: str) -> str:
    """``image:tag``, or ``image@sha256:<12 hex>`` for a digest pin (the digest columns show more)."""
    return f"{image}@{_short(reference)}" if reference.startswith("sha256:") else f"{image}:{reference}"


def _expand(raw: Sequence[str]) -> tuple[list[Path], list[ManifestError]]:
    """Files named, and the manifest files of folders named, in the order given."""
    paths: list[Path] = []
    errors: list[ManifestError] = []
    for item in raw:
        path = Path(item)
        if path.is_dir():
            paths += manifest_files(path)
        elif path.exists():
            paths.append(path)
        else:
            errors.append(ManifestError(path, [FieldError("", "no such file or directory")]))
    return paths, errors


def _validate(args: argparse.Namespace) -> int:
    paths, errors = _expand(args.paths)
    loaded, failed = load_paths(paths)
    errors += failed
    for path, _ in loaded:
        print(f"ok: {path}")
    for error in errors:
        print(error, file=sys.stderr)
    return 1 if errors else 0


def _schema(args: argparse.Namespace) -> int:
    print(json.dumps(manifest_json_schema(), indent=2))
    return 0


def _load(path: str) -> Manifest | None:
    try:
        return load_manifest(Path(path))
    except ManifestError as exc:
        print(exc, file=sys.stderr)
        return None


def _options(args: argparse.Namespace) -> RunOptions:
    return RunOptions(images=tuple(args.image or ()), extra_tags=tuple(args.extra_tag or ()))


def _plan(args: argparse.Namespace) -> int:
    manifest = _load(args.manifest)
    if manifest is None:
        return 1
    with open_mirror(manifest) as mirror:
        selection = mirror.resolve(_options(args))
        plan = mirror.compare(selection.tags)
    rows: list[dict[str, Any]] = [
        {
            "image": item.tag.image,
            "tag": item.tag.reference,
            "ecr_repository": item.tag.cache_repository,
            "action": str(item.action),
            "upstream_digest": item.upstream_digest,
            "cached_digest": item.cached_digest,
            "error": item.error,
        }
        for item in plan
    ]
    rows += [
        {
            "image": item.image,
            "tag": item.tag,
            "ecr_repository": item.cache_repository,
            "action": item.action,
            "upstream_digest": None,
            "cached_digest": None,
            "error": item.error,
        }
        for item in selection.unresolved
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        table = [
            [
                _name(r["image"], r["tag"]),
                r["ecr_repository"],
                r["action"],
                _short(r["upstream_digest"]),
                _short(r["cached_digest"]),
                r["error"] or "",
            ]
            for r in rows
        ]
        headers = ["image", "ecr repository", "action", "upstream", "ecr", "error"]
        print(tabulate(table, headers=headers, maxcolwidths=[None] * 5 + [_ERROR_WIDTH]))
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["action"]] = counts.get(r["action"], 0) + 1
        print(f"\n{manifest.name}: " + ", ".join(f"{n} {a}" for a, n in sorted(counts.items())))
    return 1 if any(r["action"] in FAILING_ACTIONS for r in rows) else 0


def _sync(args: argparse.Namespace) -> int:
    manifest = _load(args.manifest)
    if manifest is None:
        return 1
    run = RunInfo(f"cli__{datetime.now(UTC).isoformat()}", manifest.dag_id, manifest.name)
    with open_mirror(manifest) as mirror:
        try:
            ensure_rules(manifest, mirror.target)
        except RuleError as exc:
            print(f"{manifest.name}: {exc}", file=sys.stderr)
            return 1
        tags = mirror.resolve(_options(args), run).tags
        for batch in batches(tags, manifest.defaults.batch_size):
            mirror.pull(mirror.compare(batch), run)
        summary, records = mirror.finish(run, tags)
    if args.json:
        print(json.dumps([asdict(r) for r in records], default=str, indent=2))
    else:
        print(f"run {run.run_id} of {run.dag_id}")
        print(_audit_table(records))
        print(f"\n{summary.status}: " + ", ".join(f"{n} {s}" for s, n in summary.counts.items()))
    return 1 if summary.status is RunStatus.FAILED else 0


def _audit_table(records: Sequence[AuditRecord]) -> str:
    rows = [
        [
            _name(r.image, r.tag),
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
    return tabulate(rows, headers=headers, maxcolwidths=[None] * 6 + [_ERROR_WIDTH])


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", help="the manifest file")
    parser.add_argument("--image", action="append", help="only images matching this glob (repeat)")
    parser.add_argument("--extra-tag", action="append", help="also mirror this tag of each image (repeat)")
    parser.add_argument("--json", action="store_true", help="JSON for machines instead of a table")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ecr-mirror", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser(
        "validate", help="check manifest files or folders; exit 1 listing every error"
    )
    validate.add_argument("paths", nargs="+")
    validate.set_defaults(func=_validate)
    plan = commands.add_parser(
        "plan",
        help="resolve tags, compare upstream with ECR, change nothing; exit 1 if a tag would fail",
    )
    _run_arguments(plan)
    plan.set_defaults(func=_plan)
    sync = commands.add_parser("sync", help="mirror a manifest now, without Airflow; exit 1 if a tag failed")
    _run_arguments(sync)
    sync.set_defaults(func=_sync)
    schema = commands.add_parser("schema", help="print the manifest JSON Schema")
    schema.set_defaults(func=_schema)
    cli_audit.register(commands)
    probe_cli.register(commands)
    args = parser.parse_args(cli_audit.with_default_subcommand(sys.argv[1:] if argv is None else argv))
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
