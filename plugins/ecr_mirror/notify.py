"""The manifest's ``notify`` targets, sent through Airflow's notifiers.

A mirror DAG with a ``notify`` section gets a ``RunNotifier`` as its ``on_failure_callback`` and
``on_success_callback`` (dag_factory). Airflow runs DAG callbacks in the dag processor (in
``dag.test()``'s own process), after ``record_audit`` closed the run; the notifier reads the run's
report from the audit and sends it to each target that wants one of the run's events:

- ``failed``: the run failed; the message names every failed tag with its error;
- ``drift``: the run found tags whose upstream moved and that ECR still serves at the old digest
  (a failed run with drift is one message, to the targets of either event).

SLA misses are sent by the deadline callback (sla.py) with ``send``. Each target goes through the
provider's notifier: SNS the Amazon provider's ``SnsNotifier``, e-mail the SMTP provider's
``SmtpNotifier``, Slack the Slack provider's ``SlackNotifier`` (a provider that is not installed
is an error in the log, never a failed run). A target that cannot be reached is logged and the
others are still told.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from airflow.sdk import BaseNotifier

from ecr_mirror.audit import AuditStore
from ecr_mirror.manifest import Identity, Manifest, ManifestError, NotifyEvent, NotifyTarget
from ecr_mirror.run_notes import audit_link
from ecr_mirror.run_report import RunReport, load_report
from ecr_mirror.settings import get_settings

log = logging.getLogger(__name__)

#: SNS refuses a subject over 100 characters
SUBJECT_LIMIT = 100


def _provider_notifier(target: NotifyTarget, aws_conn_id: str, subject: str, message: str) -> BaseNotifier:
    """The provider's notifier that sends ``message`` to ``target``."""
    if target.kind == "sns":
        from airflow.providers.amazon.aws.notifications.sns import SnsNotifier

        assert target.sns is not None
        conn = target.conn_id or aws_conn_id
        return SnsNotifier(aws_conn_id=conn, target_arn=target.sns, message=message, subject=subject)
    if target.kind == "email":
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        body = f"<pre>{html.escape(message)}</pre>"
        return SmtpNotifier(
            to=list(target.email),
            subject=subject,
            html_content=body,
            smtp_conn_id=target.conn_id or "smtp_default",
        )
    try:
        from airflow.providers.slack.notifications.slack import SlackNotifier  # type: ignore[import-not-found]
    except ImportError:
        raise RuntimeError("the Slack provider is not installed: apache-airflow-providers-slack") from None
    slack: BaseNotifier = SlackNotifier(
        slack_conn_id=target.conn_id or "slack_api_default", channel=target.slack, text=message
    )
    return slack


def send(
    targets: Iterable[NotifyTarget], aws_conn_id: str, subject: str, message: str, context: Mapping[str, Any]
) -> list[str]:
    """Send to each target (the message as it is: no template is rendered in it); what each did,
    e.g. ``sns arn:...: sent`` or ``email a@b.c: failed: ...``."""
    told = []
    for target in targets:
        where = target.sns or ", ".join(target.email) or str(target.slack)
        try:
            sender = _provider_notifier(target, aws_conn_id, subject[:SUBJECT_LIMIT], message)
            sender.notify(context)  # type: ignore[arg-type]  # the callback's context, as Airflow gave it
            told.append(f"{target.kind} {where}: sent")
        except Exception as exc:  # one unreachable target never keeps the others from hearing
            log.exception("notification to %s %s failed", target.kind, where)
            told.append(f"{target.kind} {where}: failed: {exc}")
    return told


def run_events(report: RunReport | None, failed: bool) -> set[NotifyEvent]:
    """The events a finished run is news for."""
    events: set[NotifyEvent] = {"failed"} if failed else set()
    if report is not None and report.drifted:
        events.add("drift")
    return events


def wanting(targets: Sequence[NotifyTarget], events: set[NotifyEvent]) -> list[NotifyTarget]:
    return [target for target in targets if events & set(target.events)]


class RunNotifier(BaseNotifier):
    """A DAG callback: tells the manifest's ``notify`` targets about a finished run."""

    template_fields = ()

    def __init__(self, manifest: Manifest, *, failed: bool) -> None:
        super().__init__()
        self.manifest = manifest
        self.failed = failed

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Nothing to render: the message comes from the audit, and a ``{{`` in an error must stay as
        it is. (Rendering would also need the DAG's template environment, which the serialized DAG
        that ``dag.test()`` hands to callbacks in Airflow 3.3 does not have.)"""

    def _report(self, run_id: str) -> RunReport | None:
        store = AuditStore(get_settings().resolved_audit_url())
        try:
            return load_report(
                store, self.manifest.dag_id, run_id, audit_link(self.manifest.dag_id, run_id, absolute=True)
            )
        finally:
            store.engine.dispose()

    def notify(self, context: Any) -> None:
        run_id = str(context.get("run_id") or context["dag_run"].run_id)
        report = self._report(run_id)
        targets = wanting(self.manifest.notify, run_events(report, self.failed))
        if not targets:
            return
        if report is not None:
            subject, message = report.headline(), report.message()
        else:
            subject = f"ecr-mirror {self.manifest.name}: run {run_id} failed"
            message = f"{subject} before its audit was closed: see its task logs"
        told = send(targets, self.manifest.target.aws_conn_id, subject, message, context)
        log.info("run %s of %s: notified %s", run_id, self.manifest.dag_id, "; ".join(told))


class ManifestErrorNotifier(BaseNotifier):
    """The failure callback of a manifest that does not load (dag_factory.invalid_dag): tells the
    ``notify`` targets its raw YAML still gives, that want ``failed``, why the run failed."""

    template_fields = ()

    def __init__(self, error: ManifestError, identity: Identity) -> None:
        super().__init__()
        self.path, self.message, self.identity = error.path, str(error), identity

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Nothing to render: ``{{`` in a manifest error stays as it is (see RunNotifier)."""

    def notify(self, context: Any) -> None:
        targets = wanting(self.identity.notify, {"failed"})
        run_id = str(context.get("run_id") or context["dag_run"].run_id)
        subject = f"ecr-mirror {self.identity.dag_id}: run {run_id} failed, {self.path.name} does not load"
        message = f"{subject}: nothing was mirrored. Fix the manifest:\n{self.message}"
        told = send(targets, self.identity.aws_conn_id, subject, message, context)
        log.info("run %s of %s: notified %s", run_id, self.identity.dag_id, "; ".join(told))


def callbacks(manifest: Manifest) -> dict[str, Any]:
    """The DAG's callbacks for the manifest's ``notify`` section (none without one)."""
    if not manifest.notify:
        return {}
    return {
        "on_failure_callback": RunNotifier(manifest, failed=True),
        "on_success_callback": RunNotifier(manifest, failed=False),
    }
