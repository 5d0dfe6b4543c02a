"""``ecr-mirror audit``: the audit from a shell, without Airflow.

  runs               runs, newest first, with the count of each tag status and their provenance
  tags               one run's rows (default: the latest run); also ``ecr-mirror audit`` alone
  history IMAGE:TAG  the digests a tag had, run after run
  prune              delete old rows (never a tag's latest row)
  migrate            create or upgrade the audit's tables now (every command does it on first use)

Output is a table, ``--json`` (JSON only on stdout) or ``--csv``. Exit status: 0; 1 when the run
shown failed (``runs``: when the latest run shown of a DAG failed; ``history``: when the tag's
latest row failed); 2 when the DAG, run or tag is not in the audit or the audit cannot be read.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ecr_mirror import audit_read, audit_retention
from ecr_mirror import cli_audit_tables as tables
from ecr_mirror import cli_format as fmt
from ecr_mirror.audit import AuditStore, tag_rows
from ecr_mirror.audit_migrations import upgrade
from ecr_mirror.audit_read import RunView, TagRow
from ecr_mirror.refs import InvalidReference, parse_image
from ecr_mirror.settings import get_settings
from ecr_mirror.states import Status

SUBCOMMANDS = ("runs", "tags", "history", "prune", "migrate")

#: exit statuses
OK, FAILED, UNAVAILABLE = 0, 1, 2

_AGE = re.compile(r"^(\d+)([mhdw])$")
_AGE_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class AuditUnavailable(Exception):
    """What ``ecr-mirror audit`` says instead of its answer (exit 2): one line, no traceback."""


def with_default_subcommand(argv: Sequence[str]) -> list[str]:
    """``ecr-mirror audit [--dag-id D] [--run-id R] [--json]`` as ``ecr-mirror audit tags ...``, as
    the command was before it had subcommands."""
    args = list(argv)
    # the command is the first argument that is not an option (-v may come before it)
    at = next((i for i, arg in enumerate(args) if not arg.startswith("-")), -1)
    given = args[at + 1] if 0 <= at < len(args) - 1 else None
    if at >= 0 and args[at] == "audit" and given not in (*SUBCOMMANDS, "-h", "--help"):
        args.insert(at + 1, "tags")
    return args


# -- arguments ---------------------------------------------------------------------------------------


def age(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m`` or ``2w`` (argparse type)."""
    # four units are all these options need; a library would bring a grammar for more
    match = _AGE.fullmatch(text.strip())
    if not match or int(match[1]) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an age such as 90d, 12h, 30m or 2w")
    return timedelta(**{_AGE_UNITS[match[2]]: int(match[1])})


def positive(text: str) -> int:
    """A whole number above 0 (argparse type)."""
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number above 0")
    return int(text)


def _age_text(value: timedelta) -> str:
    days, seconds = value.days, value.seconds
    if seconds == 0:
        return f"{days} day" + ("s" if days != 1 else "")
    return f"{value.total_seconds() / 3600:g} hours"


def moment(text: str) -> datetime:
    """An age ago (``7d``) or an ISO 8601 date or time, UTC unless it says otherwise (argparse type)."""
    try:
        return datetime.now(UTC) - age(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an age (7d, 12h) nor an ISO 8601 date or time "
            "(2025-01-31, 2025-01-31T08:00)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _statuses(values: Sequence[str] | None) -> list[str]:
    """``--status failed --status stale`` and ``--status failed,stale`` alike."""
    return [s for value in values or () for s in value.split(",") if s]


def register(commands: Any) -> None:
    """Add ``audit`` and its subcommands to the ``ecr-mirror`` subcommands."""
    audit = commands.add_parser(
        "audit",
        help="read the audit: runs, a run's tags (the default), a tag's history; prune; migrate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    audit.set_defaults(func=run_command)
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument(
        "--url", help="audit database URL (default: ECR_MIRROR_AUDIT_URL, else under AIRFLOW_HOME)"
    )
    output = argparse.ArgumentParser(add_help=False)
    formats = output.add_mutually_exclusive_group()
    formats.add_argument("--json", action="store_true", help="JSON, and nothing else, on stdout")
    formats.add_argument("--csv", action="store_true", help="CSV with a header row")
    status = "only these statuses (repeat, or separate with commas)"
    sub = audit.add_subparsers(dest="audit_command", required=True, metavar="{" + ",".join(SUBCOMMANDS) + "}")

    runs = sub.add_parser("runs", parents=[store, output], help="runs, newest first, with counts per status")
    runs.add_argument("--dag-id")
    runs.add_argument("--status", action="append", help=status)
    runs.add_argument("--since", type=moment, help="finished at or after: 7d (ago), or 2025-01-31[T08:00]")
    runs.add_argument("--until", type=moment, help="finished before: 7d (ago), or 2025-01-31[T08:00]")
    runs.add_argument("--limit", type=positive, default=20, help="at most this many runs (default 20)")
    runs.set_defaults(handler=_runs)

    tags = sub.add_parser("tags", parents=[store, output], help="a run's rows (default: the latest run)")
    tags.add_argument("--dag-id")
    tags.add_argument("--run-id", help="the run (default: the DAG's latest)")
    tags.add_argument("--status", action="append", help=status)
    tags.add_argument("--image", help="only images matching this glob, e.g. '*/nginx' or 'quay.io/*'")
    tags.set_defaults(handler=_tags)

    history = sub.add_parser(
        "history", parents=[store, output], help="the digests of IMAGE:TAG, run after run"
    )
    history.add_argument(
        "reference", metavar="IMAGE:TAG", help="upstream image or ECR repository, with :TAG or @DIGEST"
    )
    history.add_argument("--dag-id")
    history.add_argument("--limit", type=positive, default=50, help="at most this many rows (default 50)")
    history.set_defaults(handler=_history)

    prune = sub.add_parser(
        "prune", parents=[store, output], help="delete rows older than an age (never a tag's latest)"
    )
    prune.add_argument("--older-than", type=age, required=True, help="e.g. 90d, 12w")
    prune.add_argument("--dag-id", help="only this DAG's rows")
    prune.add_argument("--dry-run", action="store_true", help="count what would go, delete nothing")
    prune.set_defaults(handler=_prune)

    migrate = sub.add_parser("migrate", parents=[store], help="create or upgrade the audit's tables now")
    migrate.set_defaults(handler=_migrate)


# -- the store ---------------------------------------------------------------------------------------


def _shown(url: sa.URL) -> str:
    return url.render_as_string(hide_password=True)


def _url(args: argparse.Namespace) -> sa.URL:
    try:
        return sa.make_url(args.url or get_settings().resolved_audit_url())
    except sa.exc.ArgumentError:
        where = "--url" if args.url else "ECR_MIRROR_AUDIT_URL"
        raise AuditUnavailable(
            f"{where} is not a database URL (e.g. sqlite:///path or postgresql+psycopg2://...)"
        ) from None


def _reason(exc: BaseException) -> str:
    """The first line of what the database driver said (SQLAlchemy adds the SQL and a link)."""
    inner = getattr(exc, "orig", None) or exc
    lines = str(inner).strip().splitlines()
    return lines[0] if lines else type(inner).__name__


def _open(args: argparse.Namespace, *, create: bool = False) -> AuditStore:
    """The store at ``--url``; a SQLite file that does not exist is an error unless ``create``."""
    url = _url(args)
    path = url.database if url.get_backend_name() == "sqlite" else None
    if (
        path
        and path != ":memory:"
        and not path.startswith("file:")
        and not create
        and not Path(path).exists()
    ):
        raise AuditUnavailable(f"no audit database at {path} ({_shown(url)}): no run has written one yet")
    try:
        return AuditStore(url.render_as_string(hide_password=False))
    except Exception as exc:  # any driver's, Alembic's: said in one line, the URL without its password
        raise AuditUnavailable(f"cannot open the audit at {_shown(url)}: {_reason(exc)}") from None


def run_command(args: argparse.Namespace) -> int:
    """Run an ``audit`` subcommand; what goes wrong with the store is one line on stderr, exit 2."""
    func: Callable[[argparse.Namespace], int] = args.handler
    try:
        return func(args)
    except AuditUnavailable as exc:
        print(f"ecr-mirror audit: {exc}", file=sys.stderr)
        return UNAVAILABLE
    except sa.exc.SQLAlchemyError as exc:
        print(
            f"ecr-mirror audit: cannot read the audit at {_shown(_url(args))}: {_reason(exc)}",
            file=sys.stderr,
        )
        return UNAVAILABLE


def _reading(func: Callable[[argparse.Namespace, AuditStore], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        store = _open(args)
        try:
            return func(args, store)
        finally:
            store.engine.dispose()

    return run


# -- output ------------------------------------------------------------------------------------------


def _emit(
    args: argparse.Namespace,
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    table: Callable[[], str],
    empty: str,
) -> None:
    if args.json:
        fmt.print_json(rows)
    elif args.csv:
        fmt.print_csv(rows, columns)
    elif rows:
        print(table())
    else:
        print(empty, file=sys.stderr)


# -- runs --------------------------------------------------------------------------------------------


def _run_dict(run: RunView) -> dict[str, Any]:
    return {**asdict(run), "failed": run.failed}


def _require_dag(store: AuditStore, dag_id: str | None) -> None:
    if dag_id is not None and not audit_read.dag_known(store, dag_id):
        raise AuditUnavailable(f"no DAG {dag_id} in the audit at {_shown(store.engine.url)}")


@_reading
def _runs(args: argparse.Namespace, store: AuditStore) -> int:
    _require_dag(store, args.dag_id)
    runs = audit_read.runs(
        store,
        dag_id=args.dag_id,
        statuses=_statuses(args.status),
        since=args.since,
        until=args.until,
        limit=args.limit,
    )
    columns = [f.name for f in fields(RunView)] + ["failed"]
    _emit(args, [_run_dict(r) for r in runs], columns, lambda: tables.runs_table(runs), "no runs match")
    latest: dict[str, RunView] = {}
    for run in runs:  # newest first
        latest.setdefault(run.dag_id, run)
    return FAILED if any(r.failed for r in latest.values()) else OK


# -- tags --------------------------------------------------------------------------------------------


@dataclass
class _Run:
    """The run ``tags`` shows: its ids, and its summary when it has one."""

    dag_id: str
    run_id: str
    summary: RunView | None


def _chosen_run(store: AuditStore, dag_id: str | None, run_id: str | None) -> _Run:
    _require_dag(store, dag_id)
    where = f" of {dag_id}" if dag_id else ""
    if run_id is None:
        latest = audit_read.runs(store, dag_id=dag_id, limit=1)
        if latest:
            return _Run(latest[0].dag_id, latest[0].run_id, latest[0])
        without_summary = audit_read.latest_run_without_summary(store, dag_id)
        if without_summary is None:
            raise AuditUnavailable(f"no runs{where} in the audit at {_shown(store.engine.url)} yet")
        return _Run(*without_summary, None)
    found = audit_read.runs(store, dag_id=dag_id, run_id=run_id, limit=None)
    dags = sorted({r.dag_id for r in found} | set(audit_read.dags_of_run(store, run_id, dag_id)))
    if not dags:
        raise AuditUnavailable(f"no run {run_id}{where} in the audit at {_shown(store.engine.url)}")
    if len(dags) > 1:
        raise AuditUnavailable(
            f"run {run_id} is a run of several DAGs ({', '.join(dags)}): say which with --dag-id"
        )
    return _Run(dags[0], run_id, found[0] if found else None)


def _matches(row: TagRow, statuses: Sequence[str], image: str | None) -> bool:
    if statuses and row["status"] not in statuses:
        return False
    names = (row["image"], row["ecr_repository"], f"{row['image']}:{row['tag']}")
    return image is None or any(fnmatchcase(name, image) for name in names)


@_reading
def _tags(args: argparse.Namespace, store: AuditStore) -> int:
    run = _chosen_run(store, args.dag_id, args.run_id)
    every = audit_read.tag_rows_of(store, run.dag_id, run.run_id)
    statuses = _statuses(args.status)
    rows = [r for r in every if _matches(r, statuses, args.image)]
    failed = run.summary.failed if run.summary else any(r["status"] == Status.FAILED for r in every)
    if not (args.json or args.csv):
        state = (
            f"{run.summary.status} ({tables.counts(run.summary.counts)})" if run.summary else "no summary yet"
        )
        print(f"run {run.run_id} of {run.dag_id}: {state}")
    _emit(args, rows, tag_rows.columns.keys(), lambda: tables.tags_table(rows), "no rows match")
    return FAILED if failed else OK


# -- history -----------------------------------------------------------------------------------------


def _reference(text: str) -> tuple[list[str], str]:
    """The names that may spell the image of ``IMAGE:TAG`` / ``IMAGE@DIGEST``, and the tag (a
    digest pin's tag column holds its digest)."""
    name, at, digest = text.partition("@")
    if at:
        reference = digest
    else:
        slash = name.rfind("/")
        if ":" not in name[slash + 1 :]:
            raise AuditUnavailable(f"{text}: say which tag, IMAGE:TAG (or IMAGE@sha256:...)")
        name, _, reference = name.rpartition(":")
    names = [name]  # as stored, or an ECR repository name, e.g. "docker-hub/library/nginx"
    with contextlib.suppress(InvalidReference):  # "nginx" is stored as "docker.io/library/nginx"
        names.append(parse_image(name).name)
    return names, reference


@_reading
def _history(args: argparse.Namespace, store: AuditStore) -> int:
    names, tag = _reference(args.reference)
    _require_dag(store, args.dag_id)
    rows = audit_read.history(store, names, tag, dag_id=args.dag_id, limit=args.limit)
    if not rows:
        raise AuditUnavailable(f"no rows of {args.reference} in the audit at {_shown(store.engine.url)}")
    _emit(args, rows, tag_rows.columns.keys(), lambda: tables.history_table(rows), "")
    return FAILED if rows[0]["status"] == Status.FAILED else OK


# -- prune, migrate ----------------------------------------------------------------------------------


@_reading
def _prune(args: argparse.Namespace, store: AuditStore) -> int:
    pruned = audit_retention.prune(store, args.older_than, dag_id=args.dag_id, dry_run=args.dry_run)
    if args.json:
        print(json.dumps(asdict(pruned)))
        return OK
    if args.csv:
        fmt.print_csv([asdict(pruned)], list(asdict(pruned)))
        return OK
    verb = "would delete" if args.dry_run else "deleted"
    print(
        f"{verb} {pruned.tag_rows} tag rows, {pruned.runs} run summaries and {pruned.sla_misses} SLA misses "
        f"older than {_age_text(args.older_than)}" + (f" of {args.dag_id}" if args.dag_id else "")
    )
    return OK


def _migrate(args: argparse.Namespace) -> int:
    url = _url(args)
    engine = sa.create_engine(url)
    try:
        if engine.dialect.name not in ("sqlite", "postgresql"):
            raise AuditUnavailable(f"the audit runs on SQLite or PostgreSQL, not {engine.dialect.name}")
        done = upgrade(engine)
    except AuditUnavailable:
        raise
    except Exception as exc:  # any driver's, Alembic's: said in one line, the URL without its password
        raise AuditUnavailable(f"cannot migrate the audit at {_shown(url)}: {_reason(exc)}") from None
    finally:
        engine.dispose()
    if done.before == done.after:
        print(f"{_shown(url)}: at revision {done.after} already")
    elif done.legacy:
        print(
            f"{_shown(url)}: made before the migrations, recognised as revision {done.legacy}; "
            f"upgraded to {done.after}"
        )
    else:
        print(f"{_shown(url)}: upgraded from {done.before or 'an empty database'} to revision {done.after}")
    return OK
