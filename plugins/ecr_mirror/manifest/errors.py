"""The errors a manifest file gives: one FieldError per problem, a ManifestError per file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ecr_mirror.manifest.notify import NotifyTarget


@dataclass(frozen=True)
class FieldError:
    """One problem in a manifest file. `loc` is a path such as "images[2].tags.exact[0]" ("" for the file)."""

    loc: str
    message: str
    line: int | None = None

    def format(self, path: Path) -> str:
        where = f"{path}:{self.line}" if self.line is not None else str(path)
        return f"{where}: {self.loc}: {self.message}" if self.loc else f"{where}: {self.message}"


@dataclass(frozen=True)
class Identity:
    """The DAG id and schedule a manifest that does not load gives (read from its raw YAML), so
    its DAG keeps them and keeps running and failing, in sight, until the file is fixed."""

    dag_id: str
    schedule: str | None
    #: ``target.aws_conn_id`` (the SNS targets' connection)
    aws_conn_id: str
    #: the ``notify`` entries that are valid on their own, told (``failed``) when a run fails
    notify: tuple[NotifyTarget, ...] = ()


class ManifestError(Exception):
    """A manifest file that cannot be used.

    `str()` gives one "<path>:<line>: <loc>: <message>" line per error. `identity` is the DAG id
    and schedule the file still gives, when its name and schedule could be read.
    """

    def __init__(self, path: Path, errors: list[FieldError], identity: Identity | None = None) -> None:
        super().__init__(path, errors)
        self.path = path
        self.errors = errors
        self.identity = identity

    def __str__(self) -> str:
        return "\n".join(error.format(self.path) for error in self.errors)
