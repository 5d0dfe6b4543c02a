"""The manifest's ``notify`` section: who hears about a failed run, drift and an SLA miss.

Each entry names one destination (an SNS topic, e-mail addresses, or a Slack channel) and the
events it wants; the DAG sends them through Airflow's notifiers (ecr_mirror/notify.py).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from ecr_mirror.manifest.checks import SNS_ARN_RE, Problem, StrictModel, raise_at

NotifyEvent = Literal["failed", "drift", "sla_miss"]
"""``failed``: a run failed (the message names the failed tags); ``drift``: a run found tags whose
upstream moved and that ECR still serves at the old digest (stale, drift_reported,
blocked_immutable); ``sla_miss``: a run was not done within the manifest's ``sla``."""

ALL_EVENTS: list[NotifyEvent] = ["failed", "drift", "sla_miss"]
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DESTINATIONS = ("sns", "email", "slack")


class NotifyTarget(StrictModel):
    """One destination of the run's notifications: exactly one of ``sns``, ``email``, ``slack``."""

    sns: str | None = Field(default=None, description="an SNS topic ARN (Amazon provider's SnsNotifier)")
    email: list[str] = Field(default=[], description="addresses (SMTP provider's SmtpNotifier)")
    slack: str | None = Field(
        default=None, description="a Slack channel (Slack provider's SlackNotifier, where installed)"
    )
    #: not ``on``, which YAML 1.1 reads as the boolean true
    events: list[NotifyEvent] = Field(
        default_factory=lambda: list(ALL_EVENTS), description="the events sent (default: all three)"
    )
    conn_id: str | None = Field(
        default=None,
        min_length=1,
        description="the Airflow connection (default: target.aws_conn_id for SNS, smtp_default, "
        "slack_api_default)",
    )

    @model_validator(mode="after")
    def _check_destination(self) -> NotifyTarget:
        named = [name for name in _DESTINATIONS if getattr(self, name)]
        problems: list[Problem] = []
        if len(named) != 1:
            what = ", ".join(named) if named else "none"
            problems.append(((), f"name exactly one of sns, email, slack (found: {what})", None))
        if self.sns is not None and not SNS_ARN_RE.fullmatch(self.sns):
            problems.append((("sns",), f"{self.sns!r} is not an SNS topic ARN", self.sns))
        problems += [
            (("email", i), f"{address!r} is not an e-mail address", address)
            for i, address in enumerate(self.email)
            if not _EMAIL_RE.fullmatch(address)
        ]
        if not self.events:
            problems.append((("events",), "name at least one event: failed, drift, sla_miss", self.events))
        raise_at("NotifyTarget", problems)
        return self

    @property
    def kind(self) -> str:
        """``sns``, ``email`` or ``slack``."""
        return next(name for name in _DESTINATIONS if getattr(self, name))

    def describe(self) -> str:
        where = self.sns or ", ".join(self.email) or str(self.slack)
        return f"{self.kind} {where} on {', '.join(self.events)}"
