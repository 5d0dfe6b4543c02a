"""Per-image settings, durations, platforms and the SLA section of a manifest."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from ecr_mirror.manifest import ManifestError, load_manifest

BASE = """
name: settings
target: {region: eu-west-1}
rules: [{prefix: quay, upstream: quay}]
"""


def load(tmp_path: Path, text: str):
    path = tmp_path / "m.yaml"
    path.write_text(BASE + text)
    return load_manifest(path)


def test_images_inherit_defaults_and_override_them_one_by_one(tmp_path):
    manifest = load(
        tmp_path,
        """
defaults: {platforms: [linux/amd64, linux/arm64], on_drift: report, retries: 4, concurrency: 2}
images:
  - {image: quay.io/a/b, tags: ["1"]}
  - {image: quay.io/a/c, tags: ["1"], platforms: [linux/arm64/v8], warm_layers: true, retries: 0}
""",
    )
    first, second = manifest.image_settings(0), manifest.image_settings(1)
    assert (first.platforms, first.on_drift, first.warm_layers) == (
        ["linux/amd64", "linux/arm64"],
        "report",
        False,
    )
    assert (second.platforms, second.on_drift, second.warm_layers) == (["linux/arm64/v8"], "report", True)
    assert (manifest.image_retries(0), manifest.image_retries(1)) == (4, 0)
    assert manifest.image_concurrency(1) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("45m", timedelta(minutes=45)),
        ("1h30m", timedelta(minutes=90)),
        ("1d", timedelta(days=1)),
        (90, timedelta(seconds=90)),
    ],
)
def test_sla_and_timeouts_take_short_durations(tmp_path, text, expected):
    manifest = load(
        tmp_path,
        f"sla: {{within: {text}}}\ndefaults: {{execution_timeout: {text}}}\n"
        "images: [{image: quay.io/a/b, tags: ['1']}]\n",
    )
    assert manifest.sla.within == expected and manifest.defaults.execution_timeout == expected
    assert manifest.sla.notify == ["log"]


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("sla: {within: soon}", "sla.within", "not a duration"),
        ("sla: {within: 0s}", "sla.within", "longer than zero"),
        ("sla: {within: 1h, notify: [email]}", "sla.notify[0]", "SNS topic ARN"),
        ("defaults: {platforms: [amd64]}", "defaults.platforms[0]", "os/architecture"),
        ("defaults: {platforms: []}", "defaults.platforms", "whole index"),
        ("defaults: {on_drift: delete}", "defaults.on_drift", "report"),
    ],
)
def test_bad_settings_name_the_field(tmp_path, text, field, message):
    with pytest.raises(ManifestError) as caught:
        load(tmp_path, text + "\nimages: [{image: quay.io/a/b, tags: ['1']}]\n")
    assert field in str(caught.value) and message in str(caught.value)
    assert "m.yaml" in str(caught.value)
