"""The backfill DAG's manifest: mirror a list of image references through the manifests' rules.

``config/backfill/backfill.yaml`` holds what a manifest holds except rules and images (name,
target, defaults, optional sla). The rules are the union of the rules of every loaded manifest, and
the images are the references of a run: the trigger form's ``references``, or else every line of
``config/backfill/*.txt`` (``image:tag`` or ``image@sha256:...``, ``#`` starts a comment). The whole
is validated as a Manifest, so the backfill obeys the same rules as any manifest. A reference no
rule caches (or that does not parse) is not mirrored: it gets a failed audit row naming it; a line
of a list that is no reference (over 500 characters, not UTF-8, not a reference) gets a failed row
naming its file and line; the other lines are mirrored.
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
#: the longest reference (the audit's image column); a longer line is refused, not mirrored
MAX_REFERENCE = 500
#: the kind of row (its ecr_repository reads "(bad line)/<list file>") of a line that is no reference
BAD_LINE = "bad line"


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


@dataclass(frozen=True)
class ImageLists:
    """What ``directory/*.txt`` hold: the references of their good lines, and one Unrouted per
    bad line (too long, not UTF-8, not a reference), naming its file and line."""

    references: list[str]
    bad_lines: list[Unrouted]


def read_lists(directory: Path) -> ImageLists:
    """Every reference in ``directory/*.txt`` (by file name), without comments and blank lines;
    a bad line never stops the others."""
    references: list[str] = []
    bad: list[Unrouted] = []
    for path in sorted(directory.glob("*.txt")):
        try:
            data = path.read_bytes()
        except OSError as exc:
            bad.append(
                Unrouted(path.name, f"{path}: cannot read the list: {exc}", path.name, "unreadable", BAD_LINE)
            )
            continue
        for number, raw in enumerate(data.splitlines(), start=1):
            text, problem = _list_line(raw)
            if problem:
                where = f"{path.name}:{number}"
                bad.append(
                    Unrouted(where, f"{path}:{number}: {problem}", path.name, f"line {number}", BAD_LINE)
                )
            elif text and text not in references:
                references.append(text)
    return ImageLists(references, bad)


def read_references(directory: Path) -> list[str]:
    """The references of the good lines of ``directory/*.txt`` (read_lists)."""
    return read_lists(directory).references


def _shown(reference: str) -> str:
    """A reference as a row shows it: at most 100 characters."""
    return reference if len(reference) <= 100 else reference[:97] + "..."


def _list_line(raw: bytes) -> tuple[str, str]:
    """A list line's reference ("" for a blank or comment line) and what is wrong with it ("")."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return "", f"not UTF-8: byte 0x{raw[exc.start]:02x} at column {exc.start + 1} cannot be decoded"
    text = line.split("#", 1)[0].strip()
    if not text:
        return "", ""
    return text, reference_problem(text)


def reference_problem(reference: str) -> str:
    """Why ``reference`` is no image reference a run can mirror ("" when it is one)."""
    if len(reference) > MAX_REFERENCE:
        return f"{len(reference):,} characters, over the limit of {MAX_REFERENCE} for an image reference"
    try:
        ref = parse_image(reference)
    except InvalidReference as exc:
        return str(exc)
    if ref.tag is None and ref.digest is None:
        return f"{reference!r} names no tag or digest"
    return ""


def run_manifest(base: BackfillManifest, references: Iterable[str]) -> tuple[Manifest, list[Unrouted]]:
    """The manifest of one backfill run (its images are the routable references) and the rest."""
    images: dict[str, list[str]] = {}
    written_as: dict[str, str] = {}
    unrouted: list[Unrouted] = []
    for reference in references:
        if problem := reference_problem(reference):
            unrouted.append(Unrouted(_shown(reference), problem))
            continue
        ref = parse_image(reference)
        try:
            base.rule_for(ref)
        except LookupError as exc:
            unrouted.append(Unrouted(reference, str(exc)))
            continue
        if ref.digest:
            images.setdefault(
                f"{ref.name}:{ref.tag}@{ref.digest}" if ref.tag else f"{ref.name}@{ref.digest}", []
            )
        else:
            assert ref.tag is not None  # reference_problem: a tag or a digest
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
        lists = ImageLists(list(params.get(REFERENCES) or []), [])
        if not lists.references:
            lists = read_lists(self.directory)
        manifest, unrouted = run_manifest(self.manifest, lists.references)
        return RunScope(manifest, lists.bad_lines + unrouted, {REFERENCES: lists.references})

    def run_manifest(self, resolved: ResolvedTags) -> Manifest:
        return run_manifest(self.manifest, resolved()[REFERENCES])[0]
