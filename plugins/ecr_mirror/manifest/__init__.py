"""The manifest: a typed model of one YAML file, and loading that reports every error with its line.

- ``checks``: error helpers, ECR's patterns, shared field types (durations, platforms);
- ``routing``: pull through cache rules, their templates, which rule caches an image;
- ``selector``: an image's tag selector;
- ``supply``: ``artifacts:`` and ``verify:`` (signatures, SBOMs, referrers, the signature gate);
- ``model``: the other sections and ``Manifest`` with its cross-section checks;
- ``errors``: the errors a file gives;
- ``limits``: the limits a file is held to (size, depth, aliases, ...);
- ``loader``: YAML -> model with file and line per error;
- ``schema``: the JSON Schema editors use.
"""

from ecr_mirror.manifest.checks import PTC_UNAVAILABLE_REGIONS, Duration, Platforms
from ecr_mirror.manifest.errors import FieldError, Identity, ManifestError
from ecr_mirror.manifest.loader import (
    Document,
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
from ecr_mirror.manifest.supply import ArtifactsSpec, IdentitySpec, KeylessSpec, PruneSpec, VerifySpec
from ecr_mirror.states import DriftPolicy

__all__ = [
    "ALL_EVENTS",
    "PTC_UNAVAILABLE_REGIONS",
    "SECRET_REQUIRED",
    "ArtifactsSpec",
    "Assets",
    "Defaults",
    "Document",
    "DriftPolicy",
    "Duration",
    "FieldError",
    "Identity",
    "IdentitySpec",
    "ImageSettings",
    "ImageSpec",
    "KeylessSpec",
    "Manifest",
    "ManifestError",
    "NotifyEvent",
    "NotifyTarget",
    "Platforms",
    "PolicySource",
    "PruneSpec",
    "Rule",
    "Sla",
    "TagMutability",
    "TagSelector",
    "Target",
    "TemplateSpec",
    "VerifySpec",
    "load_manifest",
    "load_manifests",
    "load_paths",
    "manifest_files",
    "manifest_json_schema",
    "read_document",
]
