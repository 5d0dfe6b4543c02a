"""Where a run came from, as its audit summary records it: the manifest file's content hash and
path, the Airflow DAG version, the trigger conf, the dry-run flag, the run type and who triggered
it (where Airflow knows: a person's trigger in the UI or the API; a scheduled run has nobody).

The conf holds only the trigger form's fields (params.py), none of which is a secret.
"""

from __future__ import annotations

import getpass
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from ecr_mirror.audit import RunSummary


def manifest_hash(text: str) -> str:
    """The sha256 of a manifest's text (UTF-8): the DAG doc shows it, the audit records it."""
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ManifestFile:
    """The manifest file a DAG was built from, as it was when the DAG file was parsed."""

    path: str
    sha256: str

    @classmethod
    def read(cls, path: Path) -> tuple[ManifestFile, str]:
        """The file and its text (an unreadable file is shown as such, never fatal here)."""
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            text = f"# could not read {path}: {exc}"
        return cls(str(path), manifest_hash(text)), text


@dataclass(frozen=True)
class Provenance:
    started_at: datetime | None = None
    manifest_hash: str | None = None
    manifest_path: str | None = None
    conf: str | None = None
    dry_run: bool | None = None
    triggered_by: str | None = None
    run_type: str | None = None
    dag_version: str | None = None

    def apply(self, summary: RunSummary) -> None:
        for item in fields(self):
            setattr(summary, item.name, getattr(self, item.name))


def _conf(conf: Mapping[str, Any] | None) -> str | None:
    return None if conf is None else json.dumps(dict(conf), sort_keys=True, default=str)


def for_dag_run(source: ManifestFile, dag_run: Any, dag_version: object, dry_run: bool) -> Provenance:
    """A DAG run's (``dag_run``: the task context's, ``dag_version``: the task instance's id)."""
    return Provenance(
        started_at=dag_run.start_date,
        manifest_hash=source.sha256,
        manifest_path=source.path,
        conf=_conf(dag_run.conf),
        dry_run=dry_run,
        triggered_by=dag_run.triggering_user_name,
        run_type=str(getattr(dag_run.run_type, "value", dag_run.run_type)),  # an Enum: its value
        dag_version=None if dag_version is None else str(dag_version),
    )


def for_cli(path: Path, options: Mapping[str, Any], started_at: datetime) -> Provenance:
    """An ``ecr-mirror sync`` run's: the options it was given, the user who ran it."""
    source, _ = ManifestFile.read(path)
    given = {key: value for key, value in options.items() if value not in (None, False, (), [])}
    return Provenance(
        started_at=started_at,
        manifest_hash=source.sha256,
        manifest_path=source.path,
        conf=_conf(given),
        dry_run=bool(options.get("dry_run")),
        triggered_by=getpass.getuser(),
        run_type="cli",
    )
