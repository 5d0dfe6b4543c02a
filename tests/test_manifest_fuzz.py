"""Property-based: any manifest thrown at the loader gives a Manifest or a ManifestError, nothing else."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecr_mirror.manifest import Manifest, ManifestError, load_manifest

# Near-valid building blocks, so that most examples get past the first checks and reach the deep ones.
TAGS = st.sampled_from(["1.27", "v3.1.0", "latest", "3.10", "-bad", "", "a" * 129, "1.27-alpine"])
PATTERNS = st.sampled_from(["^v\\d+", "rc", "(", "*x", "[a-", ".*", "-alpine$"])
RANGES = st.sampled_from(["^2.50 || ^3", ">=3.11,<3.14", "^^2", "latest", "", "~=3.1", "^v2", ">=1 <2"])
SELECTOR = st.one_of(
    st.lists(TAGS, max_size=3),
    st.fixed_dictionaries(
        {},
        optional={
            "exact": st.lists(TAGS, max_size=3),
            "semver": st.one_of(RANGES, st.floats(allow_nan=False), st.integers()),
            "include": st.lists(PATTERNS, max_size=2),
            "exclude": st.lists(PATTERNS, max_size=2),
            "latest": st.integers(-1, 5),
            "prerelease": st.booleans(),
            "bogus": st.just(1),
        },
    ),
)
IMAGES = st.sampled_from(
    [
        "nginx",
        "quay.io/prometheus/prometheus",
        "ghcr.io/org/app@sha256:" + "a" * 64,
        "nginx:1.27@sha256:" + "b" * 64,
        "gcr.io/x/y",
        "Nginx",
        "nginx:1.27",
        "",
    ]
)
RULES = st.sampled_from(
    [
        {"prefix": "docker-hub", "upstream": "docker-hub", "credential_secret": "ecr-pullthroughcache/dh"},
        {"prefix": "quay", "upstream": "quay"},
        {"prefix": "q", "upstream": "quay"},
        {"prefix": "gh", "upstream": "github-container-registry"},
        {"prefix": "x", "upstream": "gcr"},
        {"prefix": "acr", "upstream": "azure-container-registry", "upstream_url": "r.azurecr.io"},
    ]
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5), st.just([]), st.just({}))


def manifests() -> st.SearchStrategy[dict[str, Any]]:
    image = st.fixed_dictionaries(
        {"image": IMAGES},
        optional={"tags": SELECTOR, "platforms": st.lists(st.sampled_from(["linux/amd64", "amd64"]))},
    )
    return st.fixed_dictionaries(
        {
            "name": st.sampled_from(["demo", "Demo", "a" * 70]),
            "target": st.fixed_dictionaries(
                {"region": st.sampled_from(["eu-west-1", "cn-north-1", "moon"])},
                optional={"registry_id": st.sampled_from(["123456789012", 123456789012, "x"])},
            ),
            "rules": st.lists(RULES, max_size=3),
            "images": st.lists(image, max_size=4),
        },
        optional={"defaults": st.fixed_dictionaries({}, optional={"retries": SCALARS}), "extra": SCALARS},
    )


def mutate(data: dict[str, Any], drawn: st.DataObject) -> Any:
    """Replace one value anywhere in the document by a random scalar (or keep it whole)."""
    if not drawn.draw(st.booleans()):
        return data
    paths: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
        for key, child in items:
            paths.append((node, key))
            walk(child)

    walk(data)
    if paths:
        node, key = drawn.draw(st.sampled_from(paths))
        node[key] = drawn.draw(SCALARS)
    return data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=manifests(), drawn=st.data())
def test_the_loader_returns_a_manifest_or_raises_manifest_error(data, drawn):
    text = yaml.safe_dump(mutate(data, drawn), sort_keys=False)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.yaml"
        path.write_text(text)
        try:
            loaded: Manifest | ManifestError = load_manifest(path)
        except ManifestError as exc:
            loaded = exc
        if isinstance(loaded, ManifestError):
            assert loaded.errors and all(str(path) in line for line in str(loaded).splitlines())
        else:
            assert isinstance(loaded, Manifest)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list("name: [{}]-'\"\n\t&*!|>#%@`,?")), max_size=60))
def test_random_yaml_text_never_escapes_as_another_error(text):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.yaml"
        path.write_text(text)
        with contextlib.suppress(ManifestError):
            load_manifest(path)
