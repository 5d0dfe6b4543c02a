import json

import pytest

from ecr_mirror.manifest import Manifest
from ecr_mirror.tags import TagRef, select_tags

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
    )
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
    assert [(tag.cache_repository, tag.rule_prefix, tag.reference) for tag in selected[2:5:2]] == [
        ("ghcr/org/app", "ghcr", DIGEST),
        ("shared/svc", "shared", OTHER_DIGEST),
    ]
    assert selected[3].repository == "bitnami/redis"


def test_a_tag_selected_by_two_spellings_of_one_image_appears_once():
    selected = select_tags(
        manifest(
            {"image": "nginx", "tags": ["1.27"]},
            {"image": "docker.io/library/nginx", "tags": ["1.26", "1.27"]},
            {"image": f"ghcr.io/org/app@{DIGEST}"},
        )
    )
    assert [tag.reference for tag in selected] == ["1.27", "1.26", DIGEST]
    assert selected[2].tag is None


def test_tag_ref_round_trips_through_json():
    [tag] = select_tags(manifest({"image": f"ghcr.io/org/app:1.0@{DIGEST}"}))
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
    [tag] = select_tags(manifest({"image": "nginx", "tags": ["1.27"]}))
    data = tag.to_dict() | change
    data = {key: value for key, value in data.items() if not (key == "rule_prefix" and value is None)}
    with pytest.raises(ValueError, match=message):
        TagRef.from_dict(data)
