"""The manifest: a typed model of one YAML file, and loading that reports every error with its line.

- ``checks``: error helpers, ECR's patterns, shared field types (durations, platforms);
- ``routing``: pull through cache rules, their templates, which rule caches an image;
- ``selector``: an image's tag selector;
- ``model``: the other sections and ``Manifest`` with its cross-section checks;
- ``loader``: YAML -> model with file and line per error;
- ``schema``: the JSON Schema editors use.
"""

from ecr_mirror.manifest.checks import PTC_UNAVAILABLE_REGIONS, Duration, Platforms
from ecr_mirror.manifest.loader import (
    Document,
    FieldError,
    ManifestError,
    load_manifest,
    load_manifests,
    load_paths,
    manifest_files,
    read_document,
)
from ecr_mirror.manifest.model import Assets, Defaults, ImageSettings, ImageSpec, Manifest, Sla, Target
from ecr_mirror.manifest.notify import ALL_EVENTS, NotifyEvent, NotifyTarget
from ecr_mirror.manifest.routing import SECRET_REQUIRED, PolicySource, Rule, TagMutability, TemplateSpec
from ecr_mirror.manifest.schema import manifest_json_schema
from ecr_mirror.manifest.selector import TagSelector
from ecr_mirror.states import DriftPolicy

__all__ = [
    "ALL_EVENTS",
    "PTC_UNAVAILABLE_REGIONS",
    "SECRET_REQUIRED",
    "Assets",
    "Defaults",
    "Document",
    "DriftPolicy",
    "Duration",
    "FieldError",
    "ImageSettings",
    "ImageSpec",
    "Manifest",
    "ManifestError",
    "NotifyEvent",
    "NotifyTarget",
    "Platforms",
    "PolicySource",
    "Rule",
    "Sla",
    "TagMutability",
    "TagSelector",
    "Target",
    "TemplateSpec",
    "load_manifest",
    "load_manifests",
    "load_paths",
    "manifest_files",
    "manifest_json_schema",
    "read_document",
]
