"""The committed JSON Schema is the one the model generates, and the examples satisfy it."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from ecr_mirror.manifest import manifest_json_schema

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "config" / "manifest.schema.json"
EXAMPLES = sorted((ROOT / "config" / "manifests").glob("*.yaml"))


def test_the_committed_schema_is_up_to_date():
    assert json.loads(SCHEMA.read_text()) == manifest_json_schema(), (
        "config/manifest.schema.json is out of date: run "
        "`.venv/bin/ecr-mirror schema > config/manifest.schema.json`"
    )


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_name_the_schema_and_satisfy_it(path):
    assert path.read_text().startswith("# yaml-language-server: $schema=../manifest.schema.json\n")
    jsonschema.validate(yaml.safe_load(path.read_text()), json.loads(SCHEMA.read_text()))


@pytest.mark.parametrize(
    ("tags", "valid"),
    [
        (["1.27"], True),
        ({"semver": "^1", "latest": 2}, True),
        ({"semverr": "^1"}, False),
        ({"latest": 0}, False),
        ("1.27", False),
    ],
)
def test_the_schema_takes_the_tags_shorthand_and_refuses_unknown_keys(tags, valid):
    document = {
        "name": "demo",
        "target": {"region": "eu-west-1"},
        "rules": [{"prefix": "quay", "upstream": "quay"}],
        "images": [{"image": "quay.io/a/b", "tags": tags}],
        "sla": {"within": "1h30m"},
    }
    validator = jsonschema.Draft202012Validator(manifest_json_schema())
    assert validator.is_valid(document) is valid
