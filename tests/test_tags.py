import json

import pytest

from ecr_mirror.manifest import Manifest, ManifestError, TagSelector, load_manifest
from ecr_mirror.tags import TagRef, Unresolved, filter_tags, select_tags
from ecr_mirror.versions import parse_range, tag_version

DIGEST = "sha256:" + "0123456789abcdef" * 4
OTHER_DIGEST = "sha256:" + "fedcba9876543210" * 4
ECR_HOST = "111122223333.dkr.ecr.us-east-1.amazonaws.com"


def manifest(*images: dict) -> Manifest:
    return Manifest.model_validate(
        {
            "name": "demo",
            "target": {"region": "eu-west-1"},
            "rules": [
                {
                    "prefix": "docker-hub",
                    "upstream": "docker-hub",
                    "credential_secret": "ecr-pullthroughcache/dh",
                },
                {
                    "prefix": "ghcr",
                    "upstream": "github-container-registry",
                    "credential_secret": "ecr-pullthroughcache/gh",
                },
                {
                    "prefix": "shared",
                    "upstream": "ecr",
                    "upstream_url": ECR_HOST,
                    "upstream_repository_prefix": "team-a",
                },
            ],
            "images": list(images),
        }
    )


def test_exact_tags_and_pins_in_manifest_order():
    selected = select_tags(
        manifest(
            {"image": "nginx", "tags": ["1.27", "1.26"]},
            {"image": f"ghcr.io/org/app:1.0@{DIGEST}"},
            {"image": "bitnami/redis", "tags": {"exact": ["7.2"]}},
            {"image": f"{ECR_HOST}/team-a/svc@{OTHER_DIGEST}"},
        )
    ).tags
    assert [str(tag) for tag in selected] == [
        "docker.io/library/nginx:1.27",
        "docker.io/library/nginx:1.26",
        f"ghcr.io/org/app:1.0@{DIGEST}",
        "docker.io/bitnami/redis:7.2",
        f"{ECR_HOST}/team-a/svc@{OTHER_DIGEST}",
    ]
    assert selected[0] == TagRef(
        image="docker.io/library/nginx",
        registry="registry-1.docker.io",
        repository="library/nginx",
        tag="1.27",
        digest=None,
        cache_repository="docker-hub/library/nginx",
        rule_prefix="docker-hub",
    )
    # a pin written with a tag mirrors the tag (while it points at the digest); without, the digest
    assert [(tag.cache_repository, tag.rule_prefix, tag.reference) for tag in selected[2:5:2]] == [
        ("ghcr/org/app", "ghcr", "1.0"),
        ("shared/svc", "shared", OTHER_DIGEST),
    ]
    assert selected[3].repository == "bitnami/redis"


def test_a_tag_written_in_two_entries_of_one_image_is_refused_naming_both_lines(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(
        "name: demo\ntarget: {region: eu-west-1}\n"
        "rules: [{prefix: hub, upstream: docker-hub, credential_secret: ecr-pullthroughcache/dh}]\n"
        "images:\n"
        "  - image: nginx\n    tags: ['1.27', '1.26.2']\n"
        "  - image: redis\n    tags: ['7.4']\n"
        "  - image: docker.io/library/nginx\n    tags: ['1.25', '1.27']\n"
        f"  - image: docker.io/library/redis:7.4@{DIGEST}\n"
    )
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    assert str(caught.value).splitlines() == [
        f"{path}:10: images[2].tags[1]: tag '1.27' of docker.io/library/nginx is also selected by "
        "images[0] (line 5): remove it from one entry (a tag comes from one entry, "
        "so its settings are known)",
        f"{path}:11: images[3].image: tag '7.4' of docker.io/library/redis is also selected by "
        "images[1] (line 7): remove it from one entry (a tag comes from one entry, "
        "so its settings are known)",
    ]


def test_a_tag_two_filters_of_one_image_select_is_mirrored_by_neither_and_fails():
    m = manifest(
        {"image": "nginx", "tags": {"semver": "~1.27"}},
        {
            "image": "docker.io/library/nginx",
            "tags": {"exact": ["1.26.2"], "latest": 1},
            "platforms": ["linux/amd64"],
        },
        {"image": f"ghcr.io/org/app@{DIGEST}"},
    )
    selection = select_tags(m, {"docker.io/library/nginx": ["1.27.2", "1.27.1", "1.26.2"]})
    assert [tag.reference for tag in selection.tags] == ["1.27.1", "1.26.2", DIGEST]
    assert selection.unresolved == [
        Unresolved(
            1,
            "docker.io/library/nginx",
            "docker-hub/library/nginx",
            "overlap",
            "docker.io/library/nginx:1.27.2 is selected by images[0] and images[1]: not mirrored, as a tag "
            "comes from one entry (its settings); narrow one selector (e.g. exclude the tag) or merge "
            "the entries",
            "1.27.2",
        )
    ]


def test_tag_ref_round_trips_through_json():
    [tag] = select_tags(manifest({"image": f"ghcr.io/org/app:1.0@{DIGEST}"})).tags
    assert TagRef.from_dict(json.loads(json.dumps(tag.to_dict()))) == tag


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"extra": "x"}, r"unknown \['extra'\]"),
        ({"rule_prefix": None}, r"missing \['rule_prefix'\]"),
        ({"tag": None, "digest": None}, "needs a tag or a digest"),
    ],
)
def test_tag_ref_from_dict_rejects_what_it_cannot_trust(change, message):
    [tag] = select_tags(manifest({"image": "nginx", "tags": ["1.27"]})).tags
    data = tag.to_dict() | change
    data = {key: value for key, value in data.items() if not (key == "rule_prefix" and value is None)}
    with pytest.raises(ValueError, match=message):
        TagRef.from_dict(data)


# -- selectors over an upstream tag list ----------------------------------------------------------

PROMETHEUS = [
    "v3.1.0",
    "v2.55.1",
    "v3.0.0",
    "v3.2.0-rc.0",
    "v2.50.0",
    "v2.49.1",
    "main",
    "latest",
    "sha-1a2b3c",
]
PYTHON = [
    "3.10.16-slim-bookworm",
    "3.11.11-slim-bookworm",
    "3.11.11-alpine",
    "3.12.8-slim-bookworm",
    "3.12.8",
    "3.12-slim-bookworm",
    "3.13.1-slim-bookworm",
    "3.13.0rc2-slim-bookworm",
    "3.14.0a3-slim-bookworm",
    "3.14.0-slim-bookworm",
    "latest",
    "slim",
]


def select(tags: list[str], **selector) -> list[str]:
    return filter_tags(TagSelector(**selector), tags)


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        # npm/cargo style, with a leading v on the tags: prereleases and non-versions never match
        ({"semver": "^2.50 || ^3"}, ["v3.1.0", "v3.0.0", "v2.55.1", "v2.50.0"]),
        ({"semver": "~2.55"}, ["v2.55.1"]),
        ({"semver": ">=3 <3.1"}, ["v3.0.0"]),
        ({"semver": "^v3"}, ["v3.1.0", "v3.0.0"]),
        # PEP 440 style
        ({"semver": ">=2.50,<3"}, ["v2.55.1", "v2.50.0"]),
        ({"semver": "!=3.0.0,>=3"}, ["v3.1.0"]),
        # prereleases only when asked for, tested as their release (v3.2.0-rc.0 as 3.2.0)
        ({"semver": "^3", "prerelease": True}, ["v3.2.0-rc.0", "v3.1.0", "v3.0.0"]),
        ({"semver": "<3.2", "prerelease": True, "latest": 1}, ["v3.1.0"]),
        # latest N alone ranks every version tag; non-version tags are never ranked
        ({"latest": 2}, ["v3.1.0", "v3.0.0"]),
        ({"latest": 1, "prerelease": True}, ["v3.2.0-rc.0"]),
        # regular expressions are searched (unanchored) unless the pattern anchors itself
        ({"include": ["2\\.5"]}, ["v2.55.1", "v2.50.0"]),
        ({"include": ["^v2\\.5\\d\\.\\d+$"]}, ["v2.55.1", "v2.50.0"]),
        ({"include": ["^main$", "^latest$"]}, ["latest", "main"]),
        ({"include": ["."], "exclude": ["^v", "sha-"]}, ["latest", "main"]),
        ({"include": ["a"]}, ["latest", "main", "sha-1a2b3c"]),
    ],
)
def test_selectors_over_an_upstream_tag_list(selector, expected):
    assert select(PROMETHEUS, **selector) == expected


def test_evaluation_order_semver_include_exclude_then_latest():
    selector = {
        "semver": ">=3.11,<3.14",
        "variant": "slim-bookworm",
        "include": ["^3\\.1"],
        "exclude": ["^3\\.11\\."],
        "latest": 2,
        "prerelease": False,
    }
    # semver keeps the 3.11 to 3.13 releases of the slim-bookworm line (3.12-slim-bookworm is a
    # floating alias of 3.12.8-slim-bookworm, 3.13.0rc2 a prerelease), include those of 3.1x,
    # exclude 3.11, latest the two highest left
    assert select(PYTHON, **selector) == ["3.13.1-slim-bookworm", "3.12.8-slim-bookworm"]
    # latest counts versions of the chosen variant: without one, only 3.12.8 has a plain tag
    assert select(PYTHON, semver="~=3.12.0", latest=1) == ["3.12.8"]
    assert select(PYTHON, semver="~=3.12.0", latest=1, variant="any") == ["3.12.8", "3.12.8-slim-bookworm"]
    # latest ranks by version, whatever the order of the upstream list
    assert select(list(reversed(PYTHON)), variant="slim-bookworm", latest=3) == [
        "3.14.0-slim-bookworm",
        "3.13.1-slim-bookworm",
        "3.12.8-slim-bookworm",
    ]


@pytest.mark.parametrize(
    ("tag", "version", "prerelease"),
    [
        ("v3.1.0", "3.1.0", False),
        ("3.12", "3.12.0", False),
        ("7", "7.0.0", False),
        ("3.12.8-slim-bookworm", "3.12.8", False),
        ("1.27-alpine", "1.27.0", False),
        ("v3.2.0-rc.0", "3.2.0-rc.0", True),
        ("3.13.0rc2-slim-bookworm", "3.13.0-rc.2", True),
        ("3.14.0a3", "3.14.0-a.3", True),
        ("1.0.0-beta", "1.0.0-beta", True),
    ],
)
def test_tag_versions(tag, version, prerelease):
    parsed = tag_version(tag)
    assert parsed is not None
    assert str(parsed.version) == version
    assert parsed.is_prerelease is prerelease


@pytest.mark.parametrize("tag", ["latest", "mainline", "sha-1a2b3c", "1a2b3c", "1.2.3.4", "stable-v1"])
def test_tags_that_are_no_version_never_match_a_range(tag):
    assert tag_version(tag) is None
    assert select([tag], semver=">=0") == []
    assert select([tag], latest=5) == []


@pytest.mark.parametrize("text", ["", "latest", "^^2", ">=3.11,,<3", "abc || ^3"])
def test_bad_ranges_are_refused(text):
    with pytest.raises(ValueError, match=r"range|empty"):
        parse_range(text)


def test_select_tags_adds_exact_tags_and_reports_what_resolves_to_nothing():
    m = manifest(
        {"image": "nginx", "tags": ["1"]},
        {"image": "bitnami/redis", "tags": {"exact": ["latest"], "semver": "^7", "latest": 1}},
        {"image": "bitnami/kafka", "tags": {"semver": "^9"}},
        {"image": "bitnami/mongodb", "tags": {"include": ["^8"]}},
    )
    listings = {
        "docker.io/bitnami/redis": ["7.2.4", "7.4.1", "latest", "6.2"],
        "docker.io/bitnami/kafka": ["3.9.0", "3.8.1"],
        "docker.io/bitnami/mongodb": RuntimeError("401 Unauthorized"),
    }
    selection = select_tags(m, listings)
    assert [str(tag) for tag in selection.tags] == [
        "docker.io/library/nginx:1",
        "docker.io/bitnami/redis:latest",
        "docker.io/bitnami/redis:7.4.1",
    ]
    assert selection.unresolved == [
        Unresolved(
            2,
            "docker.io/bitnami/kafka",
            "docker-hub/bitnami/kafka",
            "no_match",
            "docker.io/bitnami/kafka: selector semver '^9' matched none of the 2 upstream tags",
        ),
        Unresolved(
            3,
            "docker.io/bitnami/mongodb",
            "docker-hub/bitnami/mongodb",
            "failed",
            "docker.io/bitnami/mongodb: selector include ['^8']: listing upstream tags failed "
            "(0 upstream tags seen): 401 Unauthorized",
        ),
    ]
    assert all(item.tag == "(selector)" for item in selection.unresolved)
    # narrowed to some images, only those are selected (and need a listing)
    assert [str(t) for t in select_tags(m, {}, only=[0]).tags] == ["docker.io/library/nginx:1"]
