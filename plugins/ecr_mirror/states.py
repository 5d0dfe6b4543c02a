"""Every state a run knows, in one place: drift policies, plan actions, pull intents, tag and run
statuses. The audit stores them as their string values."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

DriftPolicy = Literal["report", "repull", "evict-and-repull"]
"""What a run does with a tag whose cached digest differs from upstream (see pull.py). A Literal,
not an enum, because it is a manifest value: pydantic and the trigger form take its members as is."""


class Action(StrEnum):
    """What the comparison found for a tag (the audit's ``action`` column)."""

    UP_TO_DATE = "up_to_date"
    MISSING = "missing"
    DRIFTED = "drifted"
    UPSTREAM_MISSING = "upstream_missing"
    FAILED = "failed"
    #: a selector's filter kept no upstream tag (the image yields no tag: tags.Unresolved)
    NO_MATCH = "no_match"
    #: a ``tag@digest`` pin whose tag now points at another digest (tags.Unresolved)
    PIN_MISMATCH = "pin_mismatch"
    #: two entries of one image select the same tag (tags.Unresolved): neither mirrors it
    OVERLAP = "overlap"
    #: a cached tag no selector of the manifest asks for any more (prune.py)
    UNSELECTED = "unselected"


#: actions that fail a run: ``ecr-mirror plan`` exits 1 when it shows one
FAILING_ACTIONS = frozenset(
    {Action.FAILED, Action.UPSTREAM_MISSING, Action.NO_MATCH, Action.PIN_MISMATCH, Action.OVERLAP}
)


class Intent(StrEnum):
    """What the pull does to a tag that needs one (pull.Puller)."""

    PULL = "pull"
    #: delete the cached tag first (``on_drift: evict-and-repull``)
    EVICT = "evict"


class Status(StrEnum):
    """Outcome of one tag in a run (the audit's ``status`` column). Only ``failed`` fails a run."""

    OK = "ok"  # already cached with the upstream digest
    PULLED = "pulled"  # pulled through the cache and verified
    STALE = "stale"  # ECR still serves the old digest (its 24 h refresh window)
    DRIFT_REPORTED = "drift_reported"  # drifted, on_drift: report (nothing pulled)
    BLOCKED_IMMUTABLE = "blocked_immutable"  # drifted, but the tag is immutable in ECR: untouched
    PLANNED = "planned"  # dry run: the note says what the run would do
    DELETED = "deleted"  # pruned: no selector asks for the tag any more (ecr-mirror prune --apply)
    FAILED = "failed"


class RunStatus(StrEnum):
    """A run's summary status (the ``ecr_mirror_run`` table)."""

    SUCCESS = "success"
    FAILED = "failed"


class ErrorKind(StrEnum):
    """Why a failed tag failed, for what comes next (the audit's ``error_kind`` column).

    A batch whose tags failed for a transient reason fails its task, so Airflow retries it on
    those tags; a permanent failure fails the run without spending a retry on it.
    """

    #: 429, 5xx, a reset or timed-out connection, AWS throttling, a short or corrupted body, a
    #: warm layer ECR does not hold yet, a run that was interrupted: another try may succeed
    TRANSIENT = "transient"
    #: not found upstream, a bad digest pin, a missing platform, an overlap, no match, a refused
    #: signature, access denied, a configuration error: the same try fails the same way
    PERMANENT = "permanent"
