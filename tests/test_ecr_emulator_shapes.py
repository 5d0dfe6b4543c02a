"""The checks every ECR answer of the emulator goes through (sandbox/ecr_emulator/shapes.py), and the
DescribeImages pages they guard: omissions are errors, input-only minimums are not applied to
answers, and a page with more to come carries a nextToken."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from sandbox.ecr_emulator import ops_repos
from sandbox.ecr_emulator.api import Context, handle
from sandbox.ecr_emulator.clock import Clock
from sandbox.ecr_emulator.process import EmulatorProcess, start_emulator
from sandbox.ecr_emulator.pullthrough import PullThroughCache, Settings
from sandbox.ecr_emulator.shapes import (
    Facts,
    ShapeError,
    Violations,
    error_problems,
    output_problems,
    validate_output,
)
from sandbox.ecr_emulator.store import Image, Repository, Store

DIGEST = "sha256:" + "a" * 64
TARGET = "AmazonEC2ContainerRegistry_V20150921."


def test_a_member_clients_rely_on_is_required() -> None:
    detail = {"registryId": "123456789012", "repositoryName": "team/app", "imagePushedAt": 1.0}
    problems = output_problems("DescribeImages", {"imageDetails": [detail]})
    assert problems == ["DescribeImages: imageDetails[0].imageDigest is missing"]
    with pytest.raises(ShapeError, match="imageDigest is missing"):
        validate_output("DescribeImages", {"imageDetails": [detail]})

    assert output_problems("ValidatePullThroughCacheRule", {"ecrRepositoryPrefix": "quay"}) == [
        "ValidatePullThroughCacheRule: isValid is missing"
    ]
    assert output_problems(
        "ValidatePullThroughCacheRule", {"ecrRepositoryPrefix": "quay", "isValid": False}
    ) == ["ValidatePullThroughCacheRule: isValid is false but no failure says why"]
    token = {"authorizationToken": "QVdTOng=", "expiresAt": 1.0}
    assert output_problems("GetAuthorizationToken", {"authorizationData": [token]}) == [
        "GetAuthorizationToken: authorizationData[0].proxyEndpoint is missing"
    ]
    repo = {"repositoryName": "team/app", "imageTagMutability": "IMMUTABLE_WITH_EXCLUSION"}
    assert output_problems("DescribeRepositories", {"repositories": [repo]}) == [
        "DescribeRepositories: repositories[0]: IMMUTABLE_WITH_EXCLUSION without its exclusion filters"
    ]


def test_a_missing_next_token_is_an_error_when_more_pages_exist() -> None:
    page = {"imageDetails": []}
    assert output_problems("DescribeImages", page) == []
    assert output_problems("DescribeImages", page, Facts(more_pages=True)) == [
        "DescribeImages: more results exist but the answer has no nextToken"
    ]
    assert output_problems("DescribeImages", {**page, "nextToken": "t"}, Facts(more_pages=True)) == []


def test_input_minimums_are_not_applied_to_answers() -> None:
    # BatchDeleteImage's imageIds list has min 1 in the model (for the request); an answer that
    # deleted nothing lists none
    only_failures = {
        "imageIds": [],
        "failures": [
            {
                "imageId": {"imageTag": "x"},
                "failureCode": "ImageNotFound",
                "failureReason": "Requested image not found",
            }
        ],
    }
    assert output_problems("BatchDeleteImage", only_failures) == []
    # what describes values still applies to answers: enums, patterns, types, unknown members
    wrong = {
        **only_failures,
        "failures": [{**only_failures["failures"][0], "failureCode": "Gone"}],
        "extra": 1,
    }
    problems = output_problems("BatchDeleteImage", wrong)
    assert any("unknown members ['extra']" in p for p in problems)
    assert any("'Gone' is not in the ImageFailureCode enum" in p for p in problems)
    assert output_problems("BatchDeleteImage", {**only_failures, "imageIds": [{"imageDigest": 5}]}) == [
        "BatchDeleteImage.imageIds[0].imageDigest: expected a string for ImageDigest, got int"
    ]


def test_error_answers_name_an_error_of_the_operation() -> None:
    assert error_problems("DescribeImages", {"__type": "RepositoryNotFoundException", "message": "m"}) == []
    assert error_problems("DescribeImages", {"__type": "AccessDeniedException", "message": "m"}) == []
    assert error_problems("DescribeImages", {"__type": "TemplateNotFoundException", "message": "m"})
    assert error_problems("DescribeImages", {"__type": "ServerException"})


def test_the_emulator_records_problems_of_its_own_answers(tmp_path: Path) -> None:
    store, clock = Store(tmp_path), Clock()
    cache = PullThroughCache(store, clock, Settings(upstreams={}))
    ctx = Context(store, clock, cache, "123456789012", "us-east-1", "http://127.0.0.1")
    store.insert_repository(Repository("team/app", created_at=0.0))
    violations = Violations()

    def forgetful(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        answer = ops_repos.describe_images(ctx, params)
        answer.pop("nextToken", None)
        return {
            "imageDetails": [
                {k: v for k, v in d.items() if k != "imageDigest"} for d in answer["imageDetails"]
            ]
        }

    for index in range(3):
        store.put_image(
            Image("team/app", f"sha256:{index:064x}", "application/json", None, 1, float(index), None, b"{}"),
            [],
        )
    body = b'{"repositoryName": "team/app", "maxResults": 2}'
    handle({"DescribeImages": ops_repos.describe_images}, ctx, f"{TARGET}DescribeImages", body, violations)
    assert violations.items() == []
    ctx.facts = Facts()
    handle({"DescribeImages": forgetful}, ctx, f"{TARGET}DescribeImages", body, violations)
    assert sorted(v["problem"] for v in violations.reset()) == [
        "DescribeImages: imageDetails[0].imageDigest is missing",
        "DescribeImages: imageDetails[1].imageDigest is missing",
        "DescribeImages: more results exist but the answer has no nextToken",
    ]
    store.close()


# -- DescribeImages pages over HTTP ----------------------------------------------------------


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """An emulator whose repository ``big/app`` holds 30 images, every third one untagged, some
    pushed at the same second (the page key must break ties)."""
    state = tmp_path_factory.mktemp("ecr")
    store = Store(state)
    store.insert_repository(Repository("big/app", created_at=0.0))
    for index in range(30):
        body = f'{{"n":{index}}}'.encode()
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        store.put_image(
            Image("big/app", digest, "application/json", None, 1, float(index // 4), None, body), []
        )
        if index % 3:
            store.set_tag("big/app", f"t{index:02d}", digest, 0.0)
    store.close()
    with start_emulator(state, {}) as process:
        yield process
        assert process.violations() == []


def client(url: str) -> Any:
    return boto3.client(
        "ecr", endpoint_url=url, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
    )


@pytest.mark.parametrize(("status", "count"), [("ANY", 30), ("TAGGED", 20), ("UNTAGGED", 10)])
def test_describe_images_pages_list_every_image_once(many: EmulatorProcess, status: str, count: int) -> None:
    ecr = client(many.url)
    pages = list(
        ecr.get_paginator("describe_images").paginate(
            repositoryName="big/app", filter={"tagStatus": status}, PaginationConfig={"PageSize": 7}
        )
    )
    digests = [d["imageDigest"] for page in pages for d in page["imageDetails"]]
    assert len(digests) == len(set(digests)) == count
    assert [len(page["imageDetails"]) for page in pages[:-1]] == [7] * (len(pages) - 1)
    assert all("nextToken" in page for page in pages[:-1]) and "nextToken" not in pages[-1]
    whole = ecr.describe_images(repositoryName="big/app", filter={"tagStatus": status}, maxResults=1000)
    assert [d["imageDigest"] for d in whole["imageDetails"]] == digests  # the same order
    pushed = [d["imagePushedAt"] for d in whole["imageDetails"]]
    assert pushed == sorted(pushed)


def test_a_token_that_is_not_one_is_refused(many: EmulatorProcess) -> None:
    ecr = client(many.url)
    with pytest.raises(ecr.exceptions.InvalidParameterException):
        ecr.describe_images(repositoryName="big/app", nextToken="bm90IGEgdG9rZW4=")
    first = ecr.describe_images(repositoryName="big/app", maxResults=5)
    again = ecr.describe_images(repositoryName="big/app", maxResults=5, nextToken=first["nextToken"])
    assert again["imageDetails"][0]["imageDigest"] not in {d["imageDigest"] for d in first["imageDetails"]}
    assert DIGEST not in {d["imageDigest"] for d in again["imageDetails"]}
