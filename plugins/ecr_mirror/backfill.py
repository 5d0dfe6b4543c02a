"""The backfill DAG's manifest: mirror a list of image references through the manifests' rules.

``config/backfill/backfill.yaml`` holds what a manifest holds except rules and images (name,
target, defaults, optional sla). The rules are the union of the rules of every loaded manifest, and
the images are the references of a run: the trigger form's ``references``, or else every line of
``config/backfill/*.txt`` (``image:tag`` or ``image@sha256:...``, ``#`` starts a comment). The whole
is validated as a Manifest, so the backfill obeys the same rules as any manifest. A reference no
rule caches (or that does not parse) is not mirrored: it gets a failed audit row naming it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import field_validator

from ecr_mirror.manifest import FieldError, Manifest, ManifestError, read_document
from ecr_mirror.refs import InvalidReference, parse_image
from ecr_mirror.sources import ResolvedTags, RunScope, Unrouted

CONFIG_FILE = "backfill.yaml"
#: the trigger form's field, and resolve_tags' XCom key, of a run's references
REFERENCES = "references"


class BackfillManifest(Manifest):
    """A Manifest whose images come with each run, so it may list none when the DAG is parsed."""

    @field_validator("rules", "images", mode="before")
    @classmethod
    def _not_empty(cls, value: object) -> object:  # replaces Manifest's check of the same name
        return [] if value is None else value


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
    written_as: dict[str, str] = {}
    unrouted: list[Unrouted] = []
    for reference in references:
        try:
            ref = parse_image(reference)
            base.rule_for(ref)
        except (InvalidReference, LookupError) as exc:
            unrouted.append(Unrouted(reference, str(exc)))
            continue
        if ref.digest:
            images.setdefault(
                f"{ref.name}:{ref.tag}@{ref.digest}" if ref.tag else f"{ref.name}@{ref.digest}", []
            )
        elif ref.tag is None:
            unrouted.append(Unrouted(reference, f"{reference!r} names no tag or digest"))
        else:
            # by full name: nginx:1.27 and docker.io/library/nginx:1.27 are one tag of one image
            written = written_as.setdefault(ref.name, reference[: -len(ref.tag) - 1])
            tags = images.setdefault(written, [])
            if ref.tag not in tags:
                tags.append(ref.tag)
    specs = [{"image": image, "tags": tags or None} for image, tags in images.items()]
    data = base.model_dump(exclude={"images"})
    return BackfillManifest.model_validate({**data, "images": specs}), unrouted


@dataclass(frozen=True)
class BackfillSource:
    """The backfill DAG: each run mirrors the references of its trigger form, or else every line
    of ``directory/*.txt``, through the manifests' rules (``rules_dir``: the manifests' folder)."""

    manifest: BackfillManifest
    directory: Path
    rules_dir: Path

    def form_fields(self) -> dict[str, dict[str, Any]]:
        return {
            REFERENCES: {
                "default": [],
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "title": "Image references",
                "description": f"image:tag or image@sha256:...; empty: every line of {self.directory}/*.txt",
            }
        }

    def scope(self, params: Mapping[str, Any]) -> RunScope:
        references = list(params.get(REFERENCES) or read_references(self.directory))
        manifest, unrouted = run_manifest(self.manifest, references)
        return RunScope(manifest, unrouted, {REFERENCES: references})

    def run_manifest(self, resolved: ResolvedTags) -> Manifest:
        return run_manifest(self.manifest, resolved()[REFERENCES])[0]
