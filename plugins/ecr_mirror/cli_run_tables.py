"""The tables ``ecr-mirror plan`` and ``sync`` print: what the rules would change or changed, and
a run's audit rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ecr_mirror import cli_format as fmt

if TYPE_CHECKING:
    from ecr_mirror.audit import AuditRecord
    from ecr_mirror.rules import RuleCheck


def rules_table(checks: Sequence[RuleCheck]) -> str:
    rows = [
        [
            check.prefix,
            check.action,
            "-" if check.valid is None else ("valid" if check.valid else "invalid"),
            "; ".join([*check.changes, *(f"warning: {w}" for w in check.warnings)]) or "-",
        ]
        for check in checks
    ]
    return fmt.table(rows, ["rule", "action", "ecr says", "changes"])


def records_table(records: Sequence[AuditRecord]) -> str:
    rows = [
        [
            fmt.name(r.image, r.tag),
            r.ecr_repository,
            r.action,
            r.status,
            fmt.short(r.upstream_digest),
            fmt.short(r.cached_digest_after),
            r.error or "",
        ]
        for r in records
    ]
    return fmt.table(rows, ["image", "ecr repository", "action", "status", "upstream", "ecr after", "error"])
