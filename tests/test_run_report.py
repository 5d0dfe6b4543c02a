"""The run's note, task summary and notification text, built from audit rows."""

from __future__ import annotations

from ecr_mirror.audit import AuditRecord, RunSummary
from ecr_mirror.run_report import NOTE_LIMIT, RunReport, audit_path
from ecr_mirror.states import Action, Status

STALE_NOTE = (
    "ECR serves sha256:a while upstream has sha256:b; not pulled: ... the refresh comes with the "
    "first run after 2026-01-02 10:00 UTC (ECR's clock). Clients that pull this image..."
)


def row(tag: str, status: Status, error: str | None = None) -> AuditRecord:
    return AuditRecord(
        "run1",
        "ecr_mirror__base",
        "base",
        "docker.io/library/nginx",
        "hub/library/nginx",
        tag,
        Action.MISSING,
        status,
        error=error,
    )


def report(records: list[AuditRecord]) -> RunReport:
    summary = RunSummary.of("run1", "ecr_mirror__base", "base", records)
    return RunReport(summary, records, audit_path("/ecr-mirror", "ecr_mirror__base", "manual__2026 1"))


def test_a_note_of_hundreds_of_failures_stays_within_airflows_limit_and_counts_the_rest():
    records = [row(f"1.{i}", Status.FAILED, "not found upstream " + "x" * 300) for i in range(300)]
    records.append(row("stale", Status.STALE, STALE_NOTE))
    note = report(records).note()
    assert len(note) <= NOTE_LIMIT
    assert note.startswith("**failed**: 301 tags: 300 failed, 1 stale")
    shown = note.count("\n- `docker.io/library/nginx:1.")
    assert shown > 0
    assert f"… and {300 - shown + 1} more" in note  # the stale tag did not fit either
    assert note.endswith("(/ecr-mirror/dags/ecr_mirror__base/runs/manual__2026%201)")


def test_the_notification_names_every_failed_and_drifted_tag():
    records = [row("1.27", Status.PULLED), row("gone", Status.FAILED, "not found upstream")]
    records += [row("1.26", Status.STALE, STALE_NOTE), row("1.25", Status.DRIFT_REPORTED)]
    message = report(records).message()
    assert message.splitlines()[0] == (
        "ecr-mirror base: run run1 failed, 4 tags: 1 failed, 1 drift_reported, 1 pulled, 1 stale"
    )
    assert "docker.io/library/nginx:gone: not found upstream" in message
    assert "docker.io/library/nginx:1.26: ECR refreshes it after 2026-01-02 10:00 UTC" in message
    assert "docker.io/library/nginx:1.25: drift_reported" in message
