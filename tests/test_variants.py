"""What each selector picks from tag lists shaped like real repositories (tests/tag_catalogs.py).

A range or ``latest N`` selects the releases of one variant line: tags without a variant unless
the selector names one (``variant: alpine``, a regular expression, or ``any``); floating aliases
(``7.4`` beside ``7.4.1``), channels (``mainline``, ``lts``), prereleases, build dates and commit
tags are never releases.
"""

from __future__ import annotations

import random

import pytest

from ecr_mirror.manifest import Manifest, TagSelector
from ecr_mirror.tags import filter_tags, select_tags
from tests.tag_catalogs import APP, GOLANG, NGINX, NODE, POSTGRES, PROMETHEUS, PYTHON, REDIS


def select(catalog: list[str], **selector: object) -> list[str]:
    shuffled = list(catalog)
    random.Random(7).shuffle(shuffled)  # a registry's order says nothing
    return filter_tags(TagSelector.model_validate(selector), shuffled)


CASES = [
    # -- the defaults: releases without a variant --------------------------------------------------
    (REDIS, {"semver": ">=7.4"}, ["7.4.1", "7.4.0"]),
    (NGINX, {"semver": ">=1.26,<1.28", "latest": 2}, ["1.27.2", "1.27.1"]),
    (NGINX, {"latest": 1}, ["1.27.2"]),
    (NGINX, {"semver": "~1.26"}, ["1.26.2", "1.26.1", "1.26.0"]),
    (PYTHON, {"semver": "~3.13"}, ["3.13.1", "3.13.0"]),
    (PYTHON, {"semver": ">=3.12", "latest": 3}, ["3.13.1", "3.13.0", "3.12.8"]),
    (NODE, {"semver": "^22"}, ["22.12.0", "22.11.0"]),
    (NODE, {"semver": ">=20 <23", "latest": 1}, ["22.12.0"]),
    (POSTGRES, {"semver": "^17"}, ["17.2", "17.1", "17.0"]),  # 17 is an alias of 17.2
    (POSTGRES, {"semver": "<10"}, ["9.6.24"]),
    (POSTGRES, {"latest": 2}, ["17.2", "17.1"]),
    (GOLANG, {"semver": "~1.23"}, ["1.23.4", "1.23.3"]),
    (PROMETHEUS, {"semver": "^2.53 || ^3"}, ["v3.1.0", "v3.0.1", "v3.0.0", "v2.55.1", "v2.53.3", "v2.53.0"]),
    (PROMETHEUS, {"latest": 2}, ["v3.1.0", "v3.0.1"]),
    (APP, {"latest": 2}, ["1.5.0", "1.4.2"]),  # build dates and commits are not versions
    (APP, {"semver": ">=1"}, ["1.5.0", "1.4.2", "1.4.1"]),
    # -- a named variant: its own line ---------------------------------------------------------------
    (REDIS, {"semver": ">=7.4", "variant": "alpine"}, ["7.4.1-alpine", "7.4.0-alpine"]),
    (NGINX, {"semver": ">=1.26,<1.28", "latest": 2, "variant": "alpine"}, ["1.27.2-alpine", "1.27.1-alpine"]),
    (NGINX, {"latest": 1, "variant": "perl"}, ["1.27.2-perl"]),
    (NGINX, {"latest": 1, "variant": "otel"}, ["1.27.2-otel"]),
    (
        PYTHON,
        {"semver": "~3.12", "variant": "slim-bookworm"},
        ["3.12.8-slim-bookworm", "3.12.7-slim-bookworm"],
    ),
    (PYTHON, {"latest": 1, "variant": "windowsservercore-ltsc2022"}, ["3.13.1-windowsservercore-ltsc2022"]),
    (NODE, {"semver": "^22", "latest": 1, "variant": "bookworm-slim"}, ["22.12.0-bookworm-slim"]),
    (POSTGRES, {"latest": 1, "variant": "alpine"}, ["17.2-alpine"]),
    (
        GOLANG,
        {"semver": "~1.23", "latest": 1, "variant": "nanoserver-ltsc2022"},
        ["1.23.4-nanoserver-ltsc2022"],
    ),
    # -- a regular expression matches the whole variant ----------------------------------------------
    (
        NGINX,
        {"latest": 1, "variant": "alpine.*"},
        [
            "1.27.2-alpine",
            "1.27.2-alpine-otel",
            "1.27.2-alpine-perl",
            "1.27.2-alpine-slim",
            "1.27.2-alpine3.20",
        ],
    ),
    (POSTGRES, {"latest": 1, "variant": "alpine3\\.\\d+"}, ["17.2-alpine3.21"]),
    (GOLANG, {"latest": 1, "variant": "(alpine)?"}, ["1.23.4", "1.23.4-alpine"]),
    (
        PYTHON,
        {"latest": 1, "variant": "windowsservercore-.*|nanoserver-.*"},
        ["3.13.1-windowsservercore-ltsc2022"],
    ),
    # -- any: every variant, latest still counts versions ------------------------------------------------
    (
        REDIS,
        {"semver": "~7.4.1", "variant": "any"},
        ["7.4.1", "7.4.1-alpine", "7.4.1-alpine3.20", "7.4.1-bookworm"],
    ),
    (POSTGRES, {"latest": 1, "variant": "any"}, ["17.2", "17.2-alpine", "17.2-alpine3.21", "17.2-bookworm"]),
    # -- prereleases only when asked for, in their variant line ------------------------------------------
    (PYTHON, {"semver": ">=3.13", "prerelease": True}, ["3.14.0a3", "3.13.1", "3.13.0", "3.13.0rc1"]),
    (PYTHON, {"latest": 1, "prerelease": True, "variant": "slim-bookworm"}, ["3.14.0a3-slim-bookworm"]),
    (GOLANG, {"semver": "^1.24", "prerelease": True}, ["1.24rc1"]),
    (
        POSTGRES,
        {"semver": "^17", "prerelease": True, "variant": "alpine"},
        ["17.2-alpine", "17.1-alpine", "17.0-alpine", "17rc1-alpine", "17beta3-alpine"],
    ),
    (PROMETHEUS, {"latest": 1, "prerelease": True}, ["v3.1.0"]),  # 3.1.0-rc.0 comes before 3.1.0
    (PROMETHEUS, {"semver": "~3.0", "prerelease": True}, ["v3.0.1", "v3.0.0", "v3.0.0-beta.0"]),
    # redis 8 milestones read as a variant (M02), so no range reaches them by default
    (REDIS, {"semver": ">=8"}, []),
    # -- include and exclude are regular expressions on the whole tag, variants and aliases included ---
    (
        NGINX,
        {"include": ["^1\\.27\\.2-alpine"]},
        [
            "1.27.2-alpine",
            "1.27.2-alpine-otel",
            "1.27.2-alpine-perl",
            "1.27.2-alpine-slim",
            "1.27.2-alpine3.20",
        ],
    ),
    (REDIS, {"include": ["^7\\.4(-alpine)?$"]}, ["7.4", "7.4-alpine"]),
    (APP, {"include": ["^\\d{8}"]}, ["20240101", "20240215", "20240215-1"]),
    (NODE, {"include": ["^lts"], "exclude": ["slim"]}, ["lts", "lts-alpine"]),
    (
        NGINX,
        {"semver": "^1.27", "variant": "any", "exclude": ["perl|otel|slim|bookworm"]},
        [
            "1.27.2",
            "1.27.2-alpine",
            "1.27.2-alpine3.20",
            "1.27.1",
            "1.27.1-alpine",
            "1.27.1-alpine3.20",
            "1.27.0",
            "1.27.0-alpine",
            "1.27.0-alpine3.20",
        ],
    ),
]


@pytest.mark.parametrize(("catalog", "selector", "expected"), CASES)
def test_what_each_selector_picks(catalog, selector, expected):
    assert select(catalog, **selector) == expected


def test_latest_counts_versions_within_the_variant_line():
    # 1.27.3-alpine came out before 1.27.3: the alpine line's newest is 1.27.3, the plain line's 1.27.2
    catalog = [*NGINX, "1.27.3-alpine"]
    assert select(catalog, latest=1) == ["1.27.2"]
    assert select(catalog, latest=1, variant="alpine") == ["1.27.3-alpine"]
    assert select(catalog, latest=2, variant="alpine") == ["1.27.3-alpine", "1.27.2-alpine"]


def test_a_floating_alias_is_a_release_when_nothing_longer_exists():
    # a repository that only ever writes two numbers (postgres) keeps them as releases
    assert select(["17.2", "17.1", "17", "16.6", "16"], semver=">=16") == ["17.2", "17.1", "16.6"]
    assert select(["1.27", "1.26", "mainline"], latest=1) == ["1.27"]


def test_no_match_because_of_the_variant_says_which_variant_to_name():
    manifest = Manifest.model_validate(
        {
            "name": "demo",
            "target": {"region": "eu-west-1"},
            "rules": [
                {"prefix": "hub", "upstream": "docker-hub", "credential_secret": "ecr-pullthroughcache/h"}
            ],
            "images": [{"image": "redis", "tags": {"semver": "^7.4", "include": ["alpine"]}}],
        }
    )
    [problem] = select_tags(manifest, {"docker.io/library/redis": REDIS}).unresolved
    assert problem.action == "no_match"
    assert problem.error == (
        "docker.io/library/redis: selector semver '^7.4', include ['alpine'] matched none of the "
        f"{len(REDIS)} upstream tags; 4 tags would match with another variant (e.g. 7.4.1-alpine; "
        "variants 'alpine', 'alpine3.20'): name one with variant: <name>, or write variant: any"
    )
