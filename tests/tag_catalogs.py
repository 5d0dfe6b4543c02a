"""Upstream tag lists shaped like real repositories (Docker Official Images, quay.io, a CI-built
application): releases, variants, floating aliases, prereleases, named and date-stamped tags.

Each is a list as a registry returns it (the order does not matter to the selection).
"""

from __future__ import annotations


def _with(versions: list[str], variants: list[str]) -> list[str]:
    return [f"{v}-{variant}" if variant else v for v in versions for variant in ["", *variants]]


NGINX = [
    *_with(["1.27.2", "1.27.1", "1.27.0"], ["alpine", "alpine3.20", "alpine-slim", "perl", "alpine-perl"]),
    *_with(["1.27.2"], ["otel", "alpine-otel", "bookworm", "bookworm-perl"]),
    *_with(["1.26.2", "1.26.1", "1.26.0", "1.25.5"], ["alpine", "perl", "alpine-perl"]),
    # floating aliases and channels
    *_with(["1.27", "1.26", "1.25", "1"], ["alpine", "perl"]),
    *["mainline", "mainline-alpine", "stable", "stable-alpine", "latest", "alpine", "perl", "bookworm"],
]

PYTHON = [
    *_with(
        ["3.13.1", "3.13.0", "3.12.8", "3.12.7", "3.11.11"],
        ["slim", "slim-bookworm", "bookworm", "alpine", "alpine3.21", "windowsservercore-ltsc2022"],
    ),
    *_with(["3.13.0rc1", "3.14.0a3"], ["slim-bookworm", "alpine"]),
    *_with(["3.13", "3.12", "3.11", "3"], ["slim", "slim-bookworm", "alpine"]),
    *["3.14-rc", "3.14-rc-alpine", "latest", "slim", "alpine", "bookworm", "slim-bookworm"],
]

REDIS = [
    *_with(["7.4.1", "7.4.0", "7.2.6", "7.2.5", "6.2.16"], ["alpine", "alpine3.20", "bookworm"]),
    *_with(["7.4", "7.2", "7", "6.2", "6"], ["alpine", "bookworm"]),
    # redis 8 milestones are written 8.0-M02, which reads as a variant: never a release
    *_with(["8.0-M02", "8.0-M01"], ["alpine", "bookworm"]),
    *["latest", "alpine", "bookworm"],
]

NODE = [
    *_with(
        ["23.4.0", "22.12.0", "22.11.0", "20.18.1"],
        ["alpine", "alpine3.21", "bookworm", "bookworm-slim", "slim"],
    ),
    *_with(["23.4", "23", "22.12", "22", "20.18", "20"], ["alpine", "slim"]),
    *[
        "lts",
        "lts-alpine",
        "lts-slim",
        "jod",
        "iron",
        "current",
        "current-alpine",
        "latest",
        "alpine",
        "slim",
    ],
]

# postgres has written two numbers since 10 (17.2), three before (9.6.24)
POSTGRES = [
    *_with(["17.2", "17.1", "17.0", "16.6", "16.5", "15.10", "9.6.24"], ["alpine", "alpine3.21", "bookworm"]),
    *_with(["17rc1", "17beta3"], ["alpine", "bookworm"]),
    *_with(["17", "16", "15", "9.6", "9"], ["alpine", "bookworm"]),
    *["latest", "alpine", "bookworm"],
]

GOLANG = [
    *_with(
        ["1.23.4", "1.23.3", "1.22.10"],
        ["bookworm", "alpine", "alpine3.21", "windowsservercore-ltsc2022", "nanoserver-ltsc2022"],
    ),
    *_with(["1.24rc1"], ["bookworm", "alpine"]),
    *_with(["1.23", "1.22", "1"], ["bookworm", "alpine"]),
    *["latest", "alpine", "bookworm", "tip", "tip-20241210", "tip-alpine"],
]

PROMETHEUS = [
    *["v3.1.0", "v3.0.1", "v3.0.0", "v3.1.0-rc.0", "v3.0.0-beta.0", "v2.55.1", "v2.53.0", "v2.53.3"],
    *["main", "latest", "sha-1a2b3c", "sha-9f8e7d"],
]

# what a CI pipeline pushes: releases, build dates, commit hashes, a branch
APP = [
    "1.5.0",
    "1.4.2",
    "1.4.1",
    "20240101",
    "20240215",
    "20240215-1",
    "sha-1a2b3c",
    "1a2b3c4",
    "main",
    "latest",
]
