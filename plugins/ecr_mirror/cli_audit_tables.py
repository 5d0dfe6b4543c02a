"""The tables ``ecr-mirror audit`` prints: runs, a run's tags, a tag's history."""

from __future__ import annotations

from collections.abc import Sequence

from ecr_mirror import cli_format as fmt
from ecr_mirror.audit_read import RunView, TagRow


def counts(by_status: dict[str, int]) -> str:
    return ", ".join(f"{n} {status}" for status, n in by_status.items()) or "no rows"


def error(row: TagRow) -> str:
    kind = row.get("error_kind")
    return (row["error"] or "") + (f" [{kind}]" if kind else "")


def run_type(run: RunView) -> str:
    kind = run.run_type or "-"
    return f"{kind} (dry run)" if run.dry_run else kind


def runs_table(runs: Sequence[RunView]) -> str:
    rows = [
        [
            r.dag_id,
            r.run_id,
            r.status,
            fmt.when(r.started_at),
            fmt.when(r.finished_at),
            counts(r.counts),
            run_type(r),
            r.triggered_by or "-",
            (r.manifest_hash or "-")[:12],
        ]
        for r in runs
    ]
    headers = [
        "dag id",
        "run id",
        "status",
        "started (UTC)",
        "finished (UTC)",
        "tags",
        "type",
        "triggered by",
        "manifest sha256",
    ]
    return fmt.table(rows, headers, wrap_last=False)


TAG_COLUMNS = ["image", "ecr repository", "action", "status", "upstream", "ecr after", "error"]


def tags_table(rows: Sequence[TagRow]) -> str:
    table = [
        [
            fmt.name(r["image"], r["tag"]),
            r["ecr_repository"],
            r["action"],
            r["status"],
            fmt.short(r["upstream_digest"]),
            fmt.short(r["cached_digest_after"]),
            error(r),
        ]
        for r in rows
    ]
    return fmt.table(table, TAG_COLUMNS)


def history_table(rows: Sequence[TagRow]) -> str:
    table = [
        [
            fmt.when(r["finished_at"]),
            r["dag_id"],
            r["run_id"],
            r["action"],
            r["status"],
            fmt.short(r["upstream_digest"]),
            fmt.short(r["cached_digest_before"]),
            fmt.short(r["cached_digest_after"]),
            error(r),
        ]
        for r in rows
    ]
    headers = [
        "finished (UTC)",
        "dag id",
        "run id",
        "action",
        "status",
        "upstream",
        "ecr before",
        "ecr after",
        "error",
    ]
    return fmt.table(table, headers)
