"""What a run's outcome tells people: the DAG run's note, the record_audit task's summary in the
grid, and the text of a notification. Built from the run's summary and audit rows; pure.

Airflow keeps a run's note and a task's note in ``String(1000)`` columns, so ``note`` and
``task_summary`` never exceed ``NOTE_LIMIT`` characters: the failed tags come first, then the
stale ones, and what does not fit is counted ("... and 12 more") with the link to the audit view,
which shows every row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ecr_mirror.audit import AuditRecord, AuditStore, RunSummary
from ecr_mirror.refresh import refresh_time
from ecr_mirror.states import RunStatus, Status

#: Airflow's dag_run_note.content and task_instance_note.content are String(1000)
NOTE_LIMIT = 1000
#: an error longer than this is cut in a note (the audit keeps it whole)
ERROR_SHOWN = 160
#: statuses of a tag that drifted upstream and still serves the old digest in ECR
DRIFT_STATUSES = frozenset({Status.STALE, Status.DRIFT_REPORTED, Status.BLOCKED_IMMUTABLE})


def audit_path(base: str, dag_id: str, run_id: str) -> str:
    """The audit view's page of one run (``base``: where the view is mounted, e.g. /ecr-mirror)."""
    return f"{base.rstrip('/')}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def _cut(text: str | None, limit: int = ERROR_SHOWN) -> str:
    flat = " ".join((text or "no error recorded").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True)
class RunReport:
    """One finished run: its summary and rows, and where the audit view shows them."""

    summary: RunSummary
    records: Sequence[AuditRecord]
    #: the audit view's page of this run (audit_path), None where unknown
    link: str | None = None

    @property
    def failed(self) -> list[AuditRecord]:
        return [r for r in self.records if r.status is Status.FAILED]

    @property
    def stale(self) -> list[AuditRecord]:
        return [r for r in self.records if r.status is Status.STALE]

    @property
    def drifted(self) -> list[AuditRecord]:
        """Tags whose upstream moved and that ECR still serves at the old digest."""
        return [r for r in self.records if r.status in DRIFT_STATUSES]

    def counts(self) -> str:
        """E.g. ``3 tags: 2 pulled, 1 failed`` (the failed first)."""
        counts = self.summary.counts
        order = sorted(counts, key=lambda status: (status != Status.FAILED, status))
        shown = ", ".join(f"{counts[status]} {status}" for status in order) or "nothing to mirror"
        return f"{self.summary.total} tags: {shown}"

    def headline(self) -> str:
        verdict = "failed" if self.summary.status is RunStatus.FAILED else "succeeded"
        return f"ecr-mirror {self.summary.manifest}: run {self.summary.run_id} {verdict}, {self.counts()}"

    def _lines(self) -> list[tuple[str, list[str]]]:
        sections = []
        if self.failed:
            sections.append(("Failed", [f"- `{_tag(r)}`: {_cut(r.error)}" for r in self.failed]))
        if self.stale:
            stale = [f"- `{_tag(r)}`: ECR refreshes it after {_refresh(r)}" for r in self.stale]
            sections.append(("Stale (ECR still serves the old digest)", stale))
        others = [r for r in self.drifted if r.status is not Status.STALE]
        if others:
            sections.append(("Drifted, not pulled", [f"- `{_tag(r)}`: {r.status}" for r in others]))
        return sections

    def note(self, limit: int = NOTE_LIMIT) -> str:
        """The DAG run's note (Markdown): counts, failed tags with errors, stale tags with the time
        ECR refreshes them, the run's warnings, and the link to every row."""
        head = [f"**{self.summary.status}**: {self.counts()}"]
        if self.summary.note:
            head.append(f"Warnings: {_cut(self.summary.note, 300)}")
        footer = f"[Every tag of this run in the ECR audit]({self.link})" if self.link else ""
        return _fit(head, self._lines(), footer, limit)

    def task_summary(self, limit: int = NOTE_LIMIT) -> str:
        """The record_audit task's note in the grid: the counts and the failed tags, one line each."""
        failed = [("Failed", [f"- `{_tag(r)}`" for r in self.failed])] if self.failed else []
        return _fit([self.counts()], failed, "", limit)

    def message(self) -> str:
        """A notification's text (plain, every failed and drifted tag, nothing cut)."""
        lines = [self.headline()]
        for title, items in self._lines():
            lines += ["", f"{title}:", *(item.replace("`", "") for item in items)]
        if self.summary.note:
            lines += ["", f"Warnings: {self.summary.note}"]
        if self.link:
            lines += ["", f"Audit: {self.link}"]
        return "\n".join(lines)


def _refresh(record: AuditRecord) -> str:
    return refresh_time(record.error) or "24 h after its last pull"


def _tag(record: AuditRecord) -> str:
    separator = "@" if record.tag.startswith("sha256:") else ":"
    return f"{record.image}{separator}{record.tag}"


def _fit(head: list[str], sections: list[tuple[str, list[str]]], footer: str, limit: int) -> str:
    """``head``, then as many section lines as fit in ``limit`` characters with ``footer``; the
    lines left out are counted."""
    text = "\n\n".join(head)
    budget = limit - len(footer) - 40  # room for "... and N more" and the separators
    left_out = 0
    for title, items in sections:
        block = f"\n\n{title}:"
        if left_out or len(text) + len(block) + len(items[0]) + 1 > budget:
            left_out += len(items)
            continue
        text += block
        for index, item in enumerate(items):
            if len(text) + len(item) + 1 > budget:
                left_out += len(items) - index
                break
            text += "\n" + item
    if left_out:
        text += f"\n\n… and {left_out} more"
    return f"{text}\n\n{footer}" if footer else text


def load_report(store: AuditStore, dag_id: str, run_id: str, link: str | None = None) -> RunReport | None:
    """The report of a run as the audit has it (None: the run wrote no summary, e.g. it was killed)."""
    summaries = store.summaries(dag_id=dag_id, run_id=run_id, limit=1)
    if not summaries:
        return None
    return RunReport(summaries[0], store.records(dag_id=dag_id, run_id=run_id), link)


def asset_extra(report: RunReport) -> dict[str, Any]:
    """A run's summary as the extra of its manifest's asset event (JSON), for downstream DAGs."""
    summary = report.summary
    return {
        "dag_id": summary.dag_id,
        "run_id": summary.run_id,
        "manifest": summary.manifest,
        "status": str(summary.status),
        "total": summary.total,
        "counts": dict(summary.counts),
        "failed": [_tag(r) for r in report.failed],
        "audit": report.link,
    }


def image_extra(report: RunReport, image: str) -> dict[str, Any]:
    """One image's tags in a run (status and the digest ECR serves), its asset event's extra."""
    return {
        "image": image,
        "run_id": report.summary.run_id,
        "tags": {
            r.tag: {"status": str(r.status), "digest": r.cached_digest_after}
            for r in report.records
            if r.image == image
        },
    }
