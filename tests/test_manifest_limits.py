"""Hostile manifests: each is refused within seconds by a clear error naming the file (and line),
by the loader, by ``ecr-mirror validate`` and in the DAG file, where every good manifest stays
loaded. On a00658c the alias bomb never finished (killed at 120 s), the NUL byte and the deep
nesting raised tracebacks, the 50 MB file did not validate in 120 s, and a backtracking pattern
held the loader forever: the timeouts below make those runs fail instead of hang.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ecr_mirror.manifest import ManifestError, load_manifest
from ecr_mirror.tags import select_tags
from tests.test_dag_factory import BASE, ROOT, dagbag, write
from tests.test_tags import manifest

HEAD = "name: hostile\ntarget: {region: eu-west-1}\n"
RULES = "rules: [{prefix: hub, upstream: docker-hub, credential_secret: ecr-pullthroughcache/hub}]\n"


def alias_bomb() -> str:
    """The "billion laughs": 9 levels of 9 aliases, 1.3 KB that expand to 9^9 strings."""
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for previous, level in zip("abcdefgh", "bcdefghi", strict=True):
        text += f"{level}: &{level} [" + ", ".join([f"*{previous}"] * 9) + "]\n"
    return HEAD + text + "images:\n  - image: nginx\n    tags:\n      exact: *i\n"


def nested(depth: int) -> str:
    return HEAD + "images: " + "[" * depth + "]" * depth + "\n"


def compact_nested(depth: int) -> str:
    """Block sequences nested on one line ("- - - x"): deep nesting with no bracket at all."""
    return HEAD + "images:\n" + "- " * depth + "x\n"


def many_images(count: int) -> str:
    return (
        HEAD
        + RULES
        + "images:\n"
        + "".join(f"  - {{image: acme/app{i}, tags: ['1']}}\n" for i in range(count))
    )


def big_file(path: Path) -> None:
    """A 50 MB manifest of valid entries."""
    line = "  - {image: acme/app, tags: ['1']}\n"
    with path.open("w") as out:
        out.write(HEAD + RULES + "images:\n")
        out.write(line * (50 * 1024 * 1024 // len(line)))


HOSTILE = {
    # file name -> (text, where the error is: "<name>.yaml:<line>: " or "<name>.yaml: ", what it says)
    "bomb": (
        alias_bomb(),
        "bomb.yaml:9: g: ",
        "YAML nodes through its aliases, over the limit of 1,000,000",
    ),
    "nul": (HEAD + "description: a\x00b\n" + RULES, "nul.yaml:3: ", "control character U+0000 at column 15"),
    "deep": (nested(5000), "deep.yaml:3: ", "nests deeper than the limit of 64"),
    "deep-block": (compact_nested(5000), "deep-block.yaml:4: ", "nests deeper than the limit of 64"),
    "deep-70": (nested(70), "deep-70.yaml:3: ", "nests deeper than the limit of 64"),
    "latin1": (None, "latin1.yaml:3: ", "not UTF-8: byte 0xe9 cannot be decoded"),
    "big": (None, "big.yaml: ", "bytes, over the limit of 4,194,304 (ECR_MIRROR_MANIFEST_MAX_BYTES)"),
    "crowd": (
        many_images(10_001),
        "crowd.yaml:4: images: ",
        "lists 10,001 images, over the limit of 10,000 (ECR_MIRROR_MANIFEST_MAX_IMAGES)",
    ),
}


def write_hostile(folder: Path, name: str) -> Path:
    path = folder / f"{name}.yaml"
    text = HOSTILE[name][0]
    if name == "big":
        big_file(path)
    elif name == "latin1":
        path.write_bytes((HEAD + "description: caf\xe9\n" + RULES).encode("latin-1"))
    else:
        assert text is not None
        path.write_text(text)
    return path


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_manifest_is_refused_within_a_second_naming_file_and_line(tmp_path, name):
    path = write_hostile(tmp_path, name)
    started = time.process_time()  # CPU time: the machine running the tests may be busy
    with pytest.raises(ManifestError) as refused:
        load_manifest(path)
    elapsed = time.process_time() - started
    _, where, what = HOSTILE[name]
    text = str(refused.value)
    assert text.startswith(str(tmp_path / where)) and what in text, text
    # the 10,001 images are composed before they are counted (400 KB: 0.5 s)
    assert elapsed < (3.0 if name == "crowd" else 1.0), elapsed


def test_the_alias_bomb_is_small(tmp_path):
    assert len(alias_bomb().encode()) < 1400


def test_the_limits_are_settings(tmp_path, monkeypatch):
    from ecr_mirror.settings import get_settings

    path = tmp_path / "three.yaml"
    path.write_text(many_images(3))
    load_manifest(path)
    monkeypatch.setenv("ECR_MIRROR_MANIFEST_MAX_IMAGES", "2")
    monkeypatch.setenv("ECR_MIRROR_MANIFEST_MAX_BYTES", "100000")
    get_settings.cache_clear()
    try:
        with pytest.raises(ManifestError, match=r"lists 3 images, over the limit of 2 \("):
            load_manifest(path)
        path.write_text(many_images(3) + "#" * 100_000)
        with pytest.raises(
            ManifestError, match=r"over the limit of 100,000 \(ECR_MIRROR_MANIFEST_MAX_BYTES\)"
        ):
            load_manifest(path)
    finally:
        get_settings.cache_clear()


def test_anchors_and_merge_keys_within_the_limits_still_load(tmp_path):
    path = tmp_path / "anchors.yaml"
    images = "".join(f"  - {{<<: *common, image: acme/app{i}}}\n" for i in range(200))
    path.write_text(
        HEAD + RULES + "x-common: &common {tags: ['1'], platforms: [linux/amd64]}\nimages:\n" + images
    )
    with pytest.raises(ManifestError, match="x-common: unknown key"):  # the model has no such key
        load_manifest(path)
    path.write_text(
        HEAD
        + RULES
        + "images:\n  - &first {image: acme/app, tags: ['1']}\n"
        + images.replace("*common", "*first")
    )
    loaded = load_manifest(path)
    assert len(loaded.images) == 201 and loaded.images[200].tags.exact == ["1"]


BACKTRACKING = "(a|aa)+$"  # exponential on "aaaa...a-" (the $ never matches, every split is tried)
RUNAWAY_TAG = "a" * 60 + "-"


@pytest.mark.timeout(60)
def test_a_backtracking_exclude_pattern_is_refused_naming_it(tmp_path):
    path = tmp_path / "regex.yaml"
    path.write_text(
        HEAD + RULES + "images:\n  - image: acme/app\n    tags:\n"
        f"      exact: ['{RUNAWAY_TAG}']\n      semver: '^1'\n      exclude: ['{BACKTRACKING}']\n"
    )
    started = time.monotonic()
    with pytest.raises(ManifestError) as refused:
        load_manifest(path)
    assert time.monotonic() - started < 5
    assert str(refused.value).startswith(
        f"{path}:9: images[0].tags.exclude[0]: pattern '{BACKTRACKING}' took over"
    )


@pytest.mark.timeout(60)
def test_a_backtracking_include_pattern_is_cut_off_for_its_image_only():
    m = manifest(
        {"image": "acme/app", "tags": {"include": [BACKTRACKING]}},
        {"image": "acme/other", "tags": {"include": ["^1"]}},
    )
    listings = {"docker.io/acme/app": ["1.0", RUNAWAY_TAG], "docker.io/acme/other": ["1.0", "2.0"]}
    started = time.monotonic()
    selection = select_tags(m, listings)
    assert time.monotonic() - started < 5
    assert [(t.image, t.reference) for t in selection.tags] == [("docker.io/acme/other", "1.0")]
    [cut] = selection.unresolved
    assert cut.image == "docker.io/acme/app" and cut.action == "failed"
    assert f"pattern '{BACKTRACKING}' took over" in cut.error and RUNAWAY_TAG in cut.error


@pytest.mark.timeout(120)
def test_validate_names_every_hostile_file_within_seconds(tmp_path):
    for name in HOSTILE:
        write_hostile(tmp_path, name)
    write(tmp_path, "platform-base", BASE)
    started = time.monotonic()
    validate = subprocess.run(
        [sys.executable, "-m", "ecr_mirror.cli", "validate", str(tmp_path)],
        env={**os.environ, "PYTHONPATH": str(ROOT / "plugins")},  # this tree's engine, as a shell runs it
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert time.monotonic() - started < 15
    assert validate.returncode == 2 and "Traceback" not in validate.stderr
    for name, (_, where, what) in HOSTILE.items():
        assert any(
            line.startswith(str(tmp_path / where)) and what in line for line in validate.stderr.splitlines()
        ), name


@pytest.mark.timeout(120)
def test_hostile_files_in_the_manifest_folder_leave_every_good_dag_loaded(tmp_path, monkeypatch):
    for name in HOSTILE:
        write_hostile(tmp_path, name)
    write(tmp_path, "platform-base", BASE)
    started = time.monotonic()
    bag = dagbag(tmp_path, monkeypatch)
    assert time.monotonic() - started < 30
    assert bag.import_errors == {}
    assert {"ecr_mirror__platform_base", "ecr_mirror__backfill"} <= set(bag.dag_ids)
    assert {f"ecr_mirror__invalid__{name.replace('-', '_')}" for name in HOSTILE} <= set(bag.dag_ids)


@pytest.mark.parametrize("text", [nested(999), compact_nested(5000), alias_bomb()])
def test_where_libyaml_has_no_nesting_cap_the_events_are_walked_first(tmp_path, text):
    """PyYAML built on a libyaml without its nesting cap (Debian's PyYAML 6.0.3) crashed composing
    100,000 levels: there, a file that may nest deeper than SAFE_C_DEPTH is walked event by event."""
    from ecr_mirror.manifest.limits import SAFE_C_DEPTH, Limits, check_events, may_nest_deeper_than

    path = tmp_path / "deep.yaml"
    limits = Limits.from_settings()
    if text == alias_bomb():
        assert not may_nest_deeper_than(text, SAFE_C_DEPTH)  # shallow: composed in C directly
        limits = Limits(limits.max_bytes, limits.max_depth, 50, limits.max_nodes, limits.max_images)
        with pytest.raises(ManifestError, match=r"deep\.yaml:9: uses more YAML aliases than the limit of 50"):
            check_events(path, text, limits)
        return
    assert may_nest_deeper_than(text, SAFE_C_DEPTH)
    with pytest.raises(ManifestError, match=r"deep\.yaml:[34]: nests deeper than the limit of 64"):
        check_events(path, text, limits)
    for example in (ROOT / "config" / "manifests").glob("*.yaml"):
        assert not may_nest_deeper_than(example.read_text(), SAFE_C_DEPTH)
