"""The JSON Schema of a manifest file (config/manifest.schema.json), generated from the model."""

from __future__ import annotations

from typing import Any

from ecr_mirror.manifest.model import Manifest


def manifest_json_schema() -> dict[str, Any]:
    """The schema editors use through `# yaml-language-server: $schema=...`.

    The loader stays the authority: cross-field checks such as rules vs images are not in the schema.
    """
    schema = Manifest.model_json_schema()
    selector = {"$ref": "#/$defs/TagSelector"}
    shorthand = {"type": "array", "items": {"type": "string"}, "description": "shorthand for {exact: [...]}"}
    schema["$defs"]["ImageSpec"]["properties"]["tags"] = {
        "anyOf": [shorthand, selector, {"type": "null"}],
        "description": "the tags to mirror: a list of exact tags, or a selector",
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
    }
