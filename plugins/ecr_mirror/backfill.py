"""The backfill DAG's manifest: mirror a list of image references through the manifests' rules.

``config/backfill/backfill.yaml`` holds what a manifest holds except rules and images (name,
target, defaults, optional sla). The rules are the union of the rules of every loaded manifest, and
the images are the references of a run: the trigger form's ``references``, or else every line of
``config/backfill/*.txt`` (``image:tag`` or ``image@sha256:...``, ``#`` starts a comment). The whole
is validated as a Manifest, so the backfill obeys the same rules as any manifest. A reference no
rule caches (or that does not parse) is not mirrored: it gets a failed audit row naming it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import field_validator

from ecr_mirror.audit import AuditRecord
from ecr_mirror.manifest import FieldError, Manifest, ManifestError, read_document
from ecr_mirror.mirror import RunInfo
from ecr_mirror.refs import InvalidReference, parse_image

CONFIG_FILE = "backfill.yaml"


class BackfillManifest(Manifest):
    """A Manifest whose images come with each run, so it may list none when the DAG is parsed."""

    @field_validator("rules", "images", mode="before")
    @classmethod
    def _not_empty(cls, value: object) -> object:  # replaces Manifest's check of the same name
        return [] if value is None else value


@dataclass(frozen=True)
class Unrouted:
    """A reference the backfill cannot mirror, and why."""

    reference: str
    error: str

    def record(self, run: RunInfo) -> AuditRecord:
        name, _, reference = self.reference.rpartition("@" if "@" in self.reference else ":")
        return AuditRecord(
            run_id=run.run_id,
            dag_id=run.dag_id,
            manifest=run.manifest,
            image=name or self.reference,
            ecr_repository=f"(no rule)/{name or self.reference}"[:256],
            tag=(reference or self.reference)[:200],
            action="failed",
            status="failed",
            error=self.error,
        )


def load_backfill(directory: Path, manifests: Sequence[Manifest]) -> BackfillManifest:
    """The backfill's base manifest: ``backfill.yaml`` plus the manifests' rules (no images yet).

    Read by the manifest loader, so errors carry their line and a key written twice is one.
    """
    path = directory / CONFIG_FILE
    document = read_document(path, expected="name, target and defaults")
    for key in ("rules", "images"):
        if key in document.data:
            message = f"not allowed here: the backfill's {key} come from the manifests and the image lists"
            raise ManifestError(path, [document.error((key,), message)])
    rules: list[dict[str, Any]] = []
    for manifest in manifests:
        for rule in manifest.rules:
            dumped = rule.model_dump()
            if dumped not in rules:
                rules.append(dumped)
    if not rules:
        raise ManifestError(path, [FieldError("rules", "no manifest loaded, so there is no rule to use")])
    return document.validate(BackfillManifest, {**document.data, "rules": rules, "images": []})


def read_references(directory: Path) -> list[str]:
    """Every reference in ``directory/*.txt`` (by file name), without comments and blank lines."""
    references = []
    for path in sorted(directory.glob("*.txt")):
        for line in path.read_text(encoding="utf-8").splitlines():
            text = line.split("#", 1)[0].strip()
            if text and text not in references:
                references.append(text)
    return references


def run_manifest(base: BackfillManifest, references: Iterable[str]) -> tuple[Manifest, list[Unrouted]]:
    """The manifest of one backfill run (its images are the routable references) and the rest."""
    images: dict[str, list[str]] = {}
    unrouted = []
    for reference in references:
        try:
            ref = parse_image(reference)
            base.rule_for(ref)
        except (InvalidReference, LookupError) as exc:
            unrouted.append(Unrouted(reference, str(exc)))
            continue
        if ref.digest:
            images.setdefault(reference, [])
        elif ref.tag is None:
            unrouted.append(Unrouted(reference, f"{reference!r} names no tag or digest"))
        else:
            tags = images.setdefault(reference[: -len(ref.tag) - 1], [])
            if ref.tag not in tags:
                tags.append(ref.tag)
    specs = [{"image": image, "tags": tags or None} for image, tags in images.items()]
    data = base.model_dump(exclude={"images"})
    return BackfillManifest.model_validate({**data, "images": specs}), unrouted
