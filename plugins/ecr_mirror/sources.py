"""Where a DAG's runs take their manifest from: the strategy the DAG factory is built around.

A manifest DAG's runs all mirror its manifest (``ManifestSource``); the backfill DAG's runs each
mirror a manifest built from the run's image references (``backfill.BackfillSource``). The factory
and the task bodies (tasks.py) only talk to a ``RunSource``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ecr_mirror.audit import AuditRecord
from ecr_mirror.manifest import Manifest
from ecr_mirror.mirror import RunInfo
from ecr_mirror.states import Action, ErrorKind, Status

#: a task's way to read resolve_tags' XCom, called only by a source that needs it
ResolvedTags = Callable[[], Mapping[str, Any]]


@dataclass(frozen=True)
class Unrouted:
    """A reference a run cannot mirror (no rule caches it, or it does not parse), and why.

    A line of an image list that is no reference at all gives its row's ``image`` (the list file)
    and ``tag`` (``line <n>``) itself, ``kind`` "bad line".
    """

    reference: str
    error: str
    image: str | None = None
    tag: str | None = None
    kind: str = "no rule"

    def record(self, run: RunInfo) -> AuditRecord:
        name, _, reference = self.reference.rpartition("@" if "@" in self.reference else ":")
        image = self.image or name or self.reference
        return AuditRecord(
            run_id=run.run_id,
            dag_id=run.dag_id,
            manifest=run.manifest,
            image=image[:500],  # the audit's column sizes (PostgreSQL refuses longer values)
            ecr_repository=f"({self.kind})/{image}"[:256],
            tag=(self.tag or reference or self.reference)[:200],
            action=Action.FAILED,
            status=Status.FAILED,
            error=self.error,
            error_kind=ErrorKind.PERMANENT,  # the manifest or the backfill list must change
        )


@dataclass(frozen=True)
class RunScope:
    """What one run mirrors, as resolve_tags decides it."""

    manifest: Manifest
    #: references that get a failed row instead of being mirrored
    unrouted: list[Unrouted] = field(default_factory=list)
    #: kept in resolve_tags' XCom so that the run's later tasks rebuild the same manifest
    remembered: dict[str, Any] = field(default_factory=dict)


class RunSource(Protocol):
    """The manifest behind a DAG (its id, schedule, defaults, rules) and, per run, what it mirrors."""

    @property
    def manifest(self) -> Manifest: ...

    @property
    def rules_dir(self) -> Path:
        """The folder the rules' relative policy files are read from."""
        ...

    def form_fields(self) -> dict[str, dict[str, Any]]:
        """Trigger form fields beyond the run options (params.py): name -> Param arguments."""
        ...

    def scope(self, params: Mapping[str, Any]) -> RunScope:
        """What a run with these trigger parameters mirrors (in resolve_tags)."""
        ...

    def run_manifest(self, resolved: ResolvedTags) -> Manifest:
        """The manifest a later task of the run works with, from resolve_tags' XCom."""
        ...


@dataclass(frozen=True)
class ManifestSource:
    """A manifest file's DAG: every run mirrors the manifest itself."""

    manifest: Manifest
    rules_dir: Path

    def form_fields(self) -> dict[str, dict[str, Any]]:
        return {}

    def scope(self, params: Mapping[str, Any]) -> RunScope:
        return RunScope(self.manifest)

    def run_manifest(self, resolved: ResolvedTags) -> Manifest:
        return self.manifest
