"""``ecr-mirror``: the same engine as the DAGs, from a shell, without an Airflow scheduler.

Subcommands: ``validate`` (manifests), ``plan`` (what a run would do, changing nothing), ``sync``
(a run without Airflow), ``schema`` (the manifest JSON Schema) and ``audit`` (the audit trail:
runs, a run's tags, a tag's history, retention, migrations; cli_audit).
``plan`` and ``sync`` reach ECR through the manifest's ``aws_conn_id`` Airflow connection; an
``AIRFLOW_CONN_<ID>`` environment variable is enough (no metadata database is needed).

stdout carries the result only (a table, or JSON with ``--json``); logs go to stderr, warnings
only unless ``-v`` (``-vv`` for debug). Exit codes: 0 ok, 1 a tag failed (or would fail), 2 bad
input or configuration (a manifest that does not load, an unknown image, a rule ECR refuses, AWS
refusing the connection), 3 an unexpected error.

Imports are lazy: ``validate`` and ``schema`` load the manifest model only, and Airflow (through
the Amazon provider) is imported when a command opens its ECR connection.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from ecr_mirror import cli_format as fmt
from ecr_mirror import cli_run_tables as run_tables
from ecr_mirror.cli_logging import configure_logging, load_airflow
from ecr_mirror.states import DriftPolicy

if TYPE_CHECKING:
    from ecr_mirror.manifest import Manifest, ManifestError
    from ecr_mirror.mirror import Mirror, RunInfo, RunOptions
    from ecr_mirror.rules import RuleCheck
    from ecr_mirror.tags import TagRef

#: exit codes, the same for every subcommand (3: ecr-mirror itself failed, see main)
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_CRASHED = 0, 1, 2, 3

_log = logging.getLogger("ecr_mirror.cli")


# -- validate, schema ------------------------------------------------------------------------------


def _expand(raw: Sequence[str]) -> tuple[list[Path], list[ManifestError]]:
    """Files named, and the manifest files of folders named, in the order given."""
    from ecr_mirror.manifest import FieldError, ManifestError, manifest_files

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
    from ecr_mirror.manifest import load_paths

    paths, errors = _expand(args.paths)
    loaded, failed = load_paths(paths)
    errors += failed
    for path, _ in loaded:
        print(f"ok: {path}")
    for error in errors:
        print(error, file=sys.stderr)
    return EXIT_BAD_INPUT if errors else EXIT_OK


def _schema(args: argparse.Namespace) -> int:
    from ecr_mirror.manifest import manifest_json_schema

    print(json.dumps(manifest_json_schema(), indent=2))
    return EXIT_OK


# -- plan, sync --------------------------------------------------------------------------------------


def _load(path: str) -> Manifest | None:
    from ecr_mirror.manifest import ManifestError, load_manifest

    try:
        return load_manifest(Path(path))
    except ManifestError as exc:
        print(exc, file=sys.stderr)
        return None


def _options(args: argparse.Namespace, manifest: Manifest) -> RunOptions | None:
    """The run's options, as the trigger form takes them; None (after saying why) when they ask for
    something the manifest does not have, before anything is imported or changed."""
    from ecr_mirror.mirror import RunOptions
    from ecr_mirror.tags import SelectionError, wanted_images

    try:
        options = RunOptions(
            images=tuple(args.image or ()),
            extra_tags=tuple(args.extra_tag or ()),
            dry_run=getattr(args, "dry_run", False),
            force=getattr(args, "force", False),
            on_drift=getattr(args, "on_drift", None),
            warm_layers=getattr(args, "warm_layers", None),
            retry_failed=getattr(args, "retry_failed", None),
        )
        wanted_images(manifest, options.images)
    except (SelectionError, ValueError) as exc:
        print(f"{manifest.name}: {exc}", file=sys.stderr)
        return None
    return options


def _plan(args: argparse.Namespace) -> int:
    from ecr_mirror.mirror import open_mirror
    from ecr_mirror.progress import Progress
    from ecr_mirror.rules import RuleError, ensure_rules
    from ecr_mirror.states import FAILING_ACTIONS

    manifest = _load(args.manifest)
    options = None if manifest is None else _options(args, manifest)
    if manifest is None or options is None:
        return EXIT_BAD_INPUT
    load_airflow(args.verbose)
    rules_error: str | None = None
    checks: list[RuleCheck] = []
    with open_mirror(manifest) as mirror:
        # the dry run of a trigger's ensure_rules: what the rules and templates would change
        try:
            checks = ensure_rules(
                manifest, mirror.target, dry_run=True, manifest_dir=Path(args.manifest).parent
            )
        except RuleError as exc:
            rules_error = str(exc)
        selection = mirror.resolve(options)
        with Progress.for_terminal(len(selection.tags), json_output=args.json) as progress:
            plan = mirror.compare(selection.tags, options, on_compared=progress.compared)
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
            "action": str(item.action),
            "upstream_digest": None,
            "cached_digest": None,
            "error": item.error,
        }
        for item in selection.unresolved
    ]
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["action"]] = counts.get(row["action"], 0) + 1
    if args.json:
        rules = [asdict(check) for check in checks]
        result = {"manifest": manifest.name, "rules": rules, "rules_error": rules_error, "tags": rows}
        print(json.dumps({**result, "counts": dict(sorted(counts.items()))}, indent=2))
    else:
        _print_plan(manifest, checks, rules_error, rows, counts)
    if rules_error is not None:
        return EXIT_BAD_INPUT
    return EXIT_FAILED if any(r["action"] in FAILING_ACTIONS for r in rows) else EXIT_OK


def _print_plan(
    manifest: Manifest,
    checks: Sequence[RuleCheck],
    rules_error: str | None,
    rows: Sequence[dict[str, Any]],
    counts: dict[str, int],
) -> None:
    if checks:
        print(run_tables.rules_table(checks))
        print()
    if rules_error is not None:
        print(f"rules: {rules_error}\n")
    table = [
        [
            fmt.name(r["image"], r["tag"]),
            r["ecr_repository"],
            r["action"],
            fmt.short(r["upstream_digest"]),
            fmt.short(r["cached_digest"]),
            r["error"] or "",
        ]
        for r in rows
    ]
    print(fmt.table(table, ["image", "ecr repository", "action", "upstream", "ecr", "error"]))
    print(f"\n{manifest.name}: " + ", ".join(f"{n} {a}" for a, n in sorted(counts.items())))


def _sync(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from ecr_mirror.audit_writes import AuditWriteError
    from ecr_mirror.mirror import RunInfo, open_mirror
    from ecr_mirror.provenance import for_cli
    from ecr_mirror.rules import RuleError, ensure_rules
    from ecr_mirror.run_closing import running
    from ecr_mirror.states import RunStatus
    from ecr_mirror.tags import SelectionError

    manifest = _load(args.manifest)
    options = None if manifest is None else _options(args, manifest)
    if manifest is None or options is None:
        return EXIT_BAD_INPUT
    load_airflow(args.verbose)
    started = datetime.now(UTC)
    run = RunInfo(f"cli__{started.isoformat()}", manifest.dag_id, manifest.name)
    with open_mirror(manifest) as mirror, running(run.run_id):
        # the same steps as a DAG run (and a dry-run trigger's, with --dry-run)
        try:
            for closed in mirror.begin(run, by_airflow=False):
                print(f"closed the interrupted run {closed.run_id}: {closed.note}", file=sys.stderr)
            checks = ensure_rules(
                manifest, mirror.target, dry_run=options.dry_run, manifest_dir=Path(args.manifest).parent
            )
            tags = _sync_tags(mirror, run, options, args.json)
            note = "; ".join(warning for check in checks for warning in check.warnings) or None
            origin = for_cli(Path(args.manifest), options.to_dict(), started)
            summary, records = mirror.finish(run, tags, note=note, provenance=origin)
        except (RuleError, SelectionError) as exc:  # SelectionError: --retry-failed of no such run
            print(f"{manifest.name}: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except AuditWriteError as exc:  # nothing more is pulled: each pulled tag has its row
            print(f"{manifest.name}: {exc}", file=sys.stderr)
            return EXIT_FAILED
    if args.json:
        result = {
            "run_id": run.run_id,
            "dag_id": run.dag_id,
            "status": str(summary.status),
            "counts": summary.counts,
            "dry_run": options.dry_run,
            "rules": [asdict(check) for check in checks],
            "tags": [asdict(r) for r in records],
        }
        print(json.dumps(result, default=str, indent=2))
    else:
        if any(check.changes or check.warnings for check in checks):
            print(run_tables.rules_table(checks) + "\n")
        print(f"run {run.run_id} of {run.dag_id}" + (" (dry run)" if options.dry_run else ""))
        print(run_tables.records_table(records))
        print(f"\n{summary.status}: " + ", ".join(f"{n} {s}" for s, n in summary.counts.items()))
    return EXIT_FAILED if summary.status is RunStatus.FAILED else EXIT_OK


def _sync_tags(mirror: Mirror, run: RunInfo, options: RunOptions, json_output: bool) -> list[TagRef]:
    """Resolve, register, then mirror every shard at once, as a DAG run's mapped tasks run: one
    shard's pulls overlap another's listings and HEADs; the engine's ``concurrency`` still caps the
    requests in flight (Mirror.slot). The run's tags."""
    from concurrent.futures import ThreadPoolExecutor

    from ecr_mirror.progress import Progress
    from ecr_mirror.run_closing import this_process
    from ecr_mirror.shards import MAX_TASKS_PER_HOST, shards_for

    tags = mirror.resolve(options, run).tags
    mirror.register(run, tags, this_process())
    shards = shards_for(tags, MAX_TASKS_PER_HOST, mirror.manifest.defaults.batch_size)
    with Progress.for_terminal(len(tags), json_output=json_output, force=options.force) as progress:

        def one(shard: Sequence[TagRef]) -> None:
            progress.pulled(mirror.mirror(shard, run, options, on_compared=progress.compared))

        if shards:
            with ThreadPoolExecutor(max_workers=len(shards), thread_name_prefix="shard") as pool:
                list(pool.map(one, shards))
    return tags


# -- the parser --------------------------------------------------------------------------------------


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    """The trigger form's selection fields (params.py), for plan and sync alike."""
    parser.add_argument("manifest", help="the manifest file")
    parser.add_argument(
        "--image",
        action="append",
        metavar="GLOB",
        help="only images matching this glob, on the name as written or in full (repeat); "
        "a glob that matches no image is an error",
    )
    parser.add_argument(
        "--extra-tag", action="append", metavar="TAG", help="also mirror this tag of each image (repeat)"
    )
    parser.add_argument("--json", action="store_true", help="JSON for machines instead of a table")


def _sync_arguments(parser: argparse.ArgumentParser) -> None:
    """The rest of the trigger form: what a run does with the tags."""
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="compare and audit, pull and change nothing (the rules too): a dry-run trigger",
    )
    parser.add_argument("--force", action="store_true", help="pull even the tags that are up to date")
    parser.add_argument("--retry-failed", metavar="RUN_ID", help="only the tags that failed in that run")
    parser.add_argument(
        "--on-drift", choices=get_args(DriftPolicy), help="override the manifest's on_drift for this run"
    )
    parser.add_argument(
        "--warm-layers",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="override the manifest's warm_layers for this run",
    )


#: ``audit``'s line in ``ecr-mirror --help`` (cli_audit.register's own, without importing it)
AUDIT_HELP = "read the audit: runs, a run's tags (the default), a tag's history; prune; migrate"


def _parser(audit: bool = False) -> argparse.ArgumentParser:
    """The command line; ``audit``: with the audit subcommands (cli_audit), which import the store."""
    from ecr_mirror import probe_cli, prune_cli

    # -v is taken before and after the subcommand; SUPPRESS keeps a subcommand's default from
    # hiding a -v given before it
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more logs on stderr (-vv: debug)"
    )
    parser = argparse.ArgumentParser(
        prog="ecr-mirror",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[verbose],
    )
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser(
        "validate", parents=[verbose], help="check manifest files or folders; exit 2 listing every error"
    )
    validate.add_argument("paths", nargs="+")
    validate.set_defaults(func=_validate)
    plan = commands.add_parser(
        "plan",
        parents=[verbose],
        help="the dry run: rule and template changes, then each tag's action; changes nothing; "
        "exit 1 if a tag would fail",
    )
    _run_arguments(plan)
    plan.set_defaults(func=_plan)
    sync = commands.add_parser(
        "sync", parents=[verbose], help="mirror a manifest now, without Airflow; exit 1 if a tag failed"
    )
    _run_arguments(sync)
    _sync_arguments(sync)
    sync.set_defaults(func=_sync)
    schema = commands.add_parser("schema", parents=[verbose], help="print the manifest JSON Schema")
    schema.set_defaults(func=_schema)
    if audit:
        from ecr_mirror import cli_audit

        cli_audit.register(commands)
    else:  # listed in --help; its parser (and SQLAlchemy) is built only for `ecr-mirror audit ...`
        commands.add_parser("audit", help=AUDIT_HELP)
    probe_cli.register(commands)
    prune_cli.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    audit = next((arg for arg in argv if not arg.startswith("-")), None) == "audit"
    if audit:
        from ecr_mirror.cli_audit import with_default_subcommand

        argv = with_default_subcommand(argv)
    args = _parser(audit).parse_args(argv)
    args.verbose = getattr(args, "verbose", 0)
    # restored afterwards, for callers that run main() in their own process (tests, scripts): the
    # logging configuration, and structlog's, which load_airflow points at this call's stderr
    root = logging.getLogger()
    handlers, level, own = list(root.handlers), root.level, logging.getLogger("ecr_mirror").level
    structlog = sys.modules.get("structlog")
    structlog_config = structlog.get_config() if structlog is not None else None
    configure_logging(args.verbose)
    try:
        code: int = args.func(args)
    except Exception as exc:  # one line for the user, the traceback with -vv
        code = _crashed(exc)
    finally:
        root.handlers, root.level = handlers, level
        logging.getLogger("ecr_mirror").setLevel(own)
        if structlog is not None and structlog_config is not None:
            structlog.configure(**structlog_config)
    return code


def _crashed(exc: Exception) -> int:
    """An error no subcommand handles: AWS refusing or unreachable is configuration (exit 2: the
    connection, its credentials, region, endpoint or IAM policy); anything else exits 3."""
    _log.debug("traceback", exc_info=exc)
    from ecr_mirror.aws_errors import AwsError

    aws = type(exc).__module__.startswith("botocore") or isinstance(exc, AwsError)
    print(f"ecr-mirror: {type(exc).__name__}: {exc}", file=sys.stderr)
    if aws:
        print(
            "check the manifest's aws_conn_id connection: credentials, region, endpoint, IAM", file=sys.stderr
        )
        return EXIT_BAD_INPUT
    print("ecr-mirror failed unexpectedly: run again with -vv for the traceback", file=sys.stderr)
    return EXIT_CRASHED


if __name__ == "__main__":
    sys.exit(main())
