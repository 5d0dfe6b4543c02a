"""ECR JSON API of the emulator, through a real boto3 client; every raw answer is checked
against the installed botocore model and the members clients rely on (sandbox/ecr_emulator/shapes.py)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from sandbox.ecr_emulator.process import EmulatorProcess, start_emulator
from sandbox.ecr_emulator.shapes import validate_error, validate_output
from sandbox.upstream import RegistryProcess, free_port, seed_image, start_registry

ACCOUNT = "123456789012"
SECRET = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:ecr-pullthroughcache/docker-hub-AbCdEf"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/ecr-template"


class CheckedClient:
    """A boto3 ECR client whose every raw answer is validated against the model."""

    def __init__(self, url: str, region: str = "us-east-1") -> None:
        self.client = boto3.client(
            "ecr",
            endpoint_url=url,
            region_name=region,
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        self.checked: list[str] = []
        self.problems: list[str] = []
        self.client.meta.events.register("after-call.ecr", self._check)

    def _check(self, http_response: Any, model: Any, **_: Any) -> None:
        try:
            if http_response.status_code == 200:
                validate_output(model.name, http_response.content)
            else:
                validate_error(model.name, http_response.content)
            self.checked.append(model.name)
        except AssertionError as exc:
            self.problems.append(str(exc))


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    registry = start_registry(tmp_path_factory.mktemp("upstream"))
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def emulator(
    tmp_path_factory: pytest.TempPathFactory, upstream: RegistryProcess
) -> Iterator[EmulatorProcess]:
    dead = f"http://127.0.0.1:{free_port()}"
    upstreams = {"registry-1.docker.io": upstream.url, "quay.io": upstream.url, "registry.k8s.io": dead}
    with start_emulator(tmp_path_factory.mktemp("ecr"), upstreams) as process:
        yield process
        assert process.violations() == []  # the emulator checks every answer it sends


@pytest.fixture
def checked(emulator: EmulatorProcess) -> Iterator[CheckedClient]:
    client = CheckedClient(emulator.url)
    yield client
    assert not client.problems, client.problems
    assert client.checked


@pytest.fixture
def ecr(checked: CheckedClient) -> Any:
    return checked.client


def registry_auth(ecr: Any) -> tuple[str, str]:
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, _, password = base64.b64decode(token).decode().partition(":")
    return user, password


def pull(emulator: EmulatorProcess, ecr: Any, name: str, reference: str) -> httpx.Response:
    return httpx.get(
        f"{emulator.url}/v2/{name}/manifests/{reference}",
        auth=registry_auth(ecr),
        headers={
            "Accept": "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"
        },
    )


def test_pull_through_cache_rule_round_trip(ecr: Any) -> None:
    created = ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="rt-hub", upstreamRegistryUrl="registry-1.docker.io", credentialArn=SECRET
    )
    assert created["upstreamRegistry"] == "docker-hub"
    assert created["registryId"] == ACCOUNT
    with pytest.raises(ecr.exceptions.PullThroughCacheRuleAlreadyExistsException):
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix="rt-hub", upstreamRegistryUrl="registry-1.docker.io", credentialArn=SECRET
        )
    ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="rt-quay", upstreamRegistryUrl="quay.io", upstreamRegistry="quay"
    )
    rules = ecr.describe_pull_through_cache_rules(ecrRepositoryPrefixes=["rt-quay"])["pullThroughCacheRules"]
    assert [(r["ecrRepositoryPrefix"], r["upstreamRegistryUrl"]) for r in rules] == [("rt-quay", "quay.io")]
    with pytest.raises(ecr.exceptions.PullThroughCacheRuleNotFoundException):
        ecr.describe_pull_through_cache_rules(ecrRepositoryPrefixes=["nope"])

    paginator = ecr.get_paginator("describe_pull_through_cache_rules")
    pages = list(paginator.paginate(PaginationConfig={"PageSize": 1}))
    prefixes = [r["ecrRepositoryPrefix"] for page in pages for r in page["pullThroughCacheRules"]]
    assert {"rt-hub", "rt-quay"} <= set(prefixes) and len(pages) >= 2

    new_secret = SECRET.replace("AbCdEf", "ZyXwVu")
    updated = ecr.update_pull_through_cache_rule(ecrRepositoryPrefix="rt-hub", credentialArn=new_secret)
    assert updated["credentialArn"] == new_secret and "updatedAt" in updated

    valid = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="rt-quay")
    assert valid["isValid"] is True and "failure" not in valid

    deleted = ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix="rt-quay")
    assert deleted["upstreamRegistryUrl"] == "quay.io"
    for call in (ecr.delete_pull_through_cache_rule, ecr.validate_pull_through_cache_rule):
        with pytest.raises(ecr.exceptions.PullThroughCacheRuleNotFoundException):
            call(ecrRepositoryPrefix="rt-quay")
    with pytest.raises(ecr.exceptions.PullThroughCacheRuleNotFoundException):
        ecr.update_pull_through_cache_rule(ecrRepositoryPrefix="rt-quay", credentialArn=SECRET)


def test_validate_reports_an_unreachable_upstream(ecr: Any) -> None:
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="k8s-dead", upstreamRegistryUrl="registry.k8s.io")
    result = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="k8s-dead")
    assert result["isValid"] is False
    assert "unreachable" in result["failure"]
    ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="ghcr-unmapped", upstreamRegistryUrl="ghcr.io", credentialArn=SECRET
    )
    result = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="ghcr-unmapped")
    assert result["isValid"] is False and "no --upstream mapping" in result["failure"]


@pytest.mark.parametrize(
    ("params", "error"),
    [
        (
            {"ecrRepositoryPrefix": "Bad_Prefix", "upstreamRegistryUrl": "quay.io"},
            "InvalidParameterException",
        ),
        ({"ecrRepositoryPrefix": "a" * 31, "upstreamRegistryUrl": "quay.io"}, "ValidationException"),
        (
            {"ecrRepositoryPrefix": "q1", "upstreamRegistryUrl": "quay.io", "upstreamRegistry": "nope"},
            "ValidationException",
        ),
        (
            {"ecrRepositoryPrefix": "q2", "upstreamRegistryUrl": "example.com"},
            "UnsupportedUpstreamRegistryException",
        ),
        (
            {"ecrRepositoryPrefix": "hub2", "upstreamRegistryUrl": "registry-1.docker.io"},
            "InvalidParameterException",
        ),
        (
            {
                "ecrRepositoryPrefix": "hub3",
                "upstreamRegistryUrl": "registry-1.docker.io",
                "credentialArn": "x" * 60,
            },
            "InvalidParameterException",
        ),
        (
            {
                "ecrRepositoryPrefix": "hub4",
                "upstreamRegistryUrl": "registry-1.docker.io",
                "credentialArn": SECRET.replace("us-east-1", "eu-west-1"),
            },
            "InvalidParameterException",
        ),
        ({"ecrRepositoryPrefix": "ROOT", "upstreamRegistryUrl": "quay.io"}, "InvalidParameterException"),
        (
            {"ecrRepositoryPrefix": "q3", "upstreamRegistryUrl": "quay.io", "upstreamRepositoryPrefix": "xy"},
            "InvalidParameterException",
        ),
    ],
)
def test_rule_input_validation(ecr: Any, params: dict[str, Any], error: str) -> None:
    with pytest.raises(getattr(ecr.exceptions, error)):
        ecr.create_pull_through_cache_rule(**params)


def test_ecr_to_ecr_rule_keeps_its_upstream_prefix(ecr: Any) -> None:
    upstream = {
        "upstreamRegistryUrl": "210987654321.dkr.ecr.us-west-2.amazonaws.com",
        "upstreamRegistry": "ecr",
        "customRoleArn": "arn:aws:iam::123456789012:role/ptc",
    }
    rule = ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="team-cache", upstreamRepositoryPrefix="team", **upstream
    )
    assert rule["upstreamRepositoryPrefix"] == "team"
    ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix="team-cache")
    # "You can set the upstream repository prefix only when the Amazon ECR repository prefix has a
    # non-ROOT value" (userguide/pull-through-cache-private-wildcards.html)
    with pytest.raises(ecr.exceptions.InvalidParameterException, match="not ROOT"):
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix="ROOT", upstreamRepositoryPrefix="team", **upstream
        )
    root = ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="ROOT", **upstream)
    assert root["upstreamRepositoryPrefix"] == "ROOT"
    ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix="ROOT")


def test_pull_through_cache_rules_are_refused_where_ptc_is_not_offered(tmp_path: Path) -> None:
    with start_emulator(tmp_path, {}, region="cn-north-1") as process:
        client = CheckedClient(process.url, region="cn-north-1")
        with pytest.raises(client.client.exceptions.ValidationException, match="not supported in cn-north-1"):
            client.client.create_pull_through_cache_rule(
                ecrRepositoryPrefix="quay", upstreamRegistryUrl="quay.io"
            )
        assert not client.problems


def test_repository_creation_template_round_trip(ecr: Any) -> None:
    created = ecr.create_repository_creation_template(
        prefix="tmpl-rt",
        appliedFor=["PULL_THROUGH_CACHE"],
        imageTagMutability="IMMUTABLE",
        resourceTags=[{"Key": "team", "Value": "platform"}],
    )["repositoryCreationTemplate"]
    assert created["encryptionConfiguration"] == {"encryptionType": "AES256"}
    with pytest.raises(ecr.exceptions.TemplateAlreadyExistsException):
        ecr.create_repository_creation_template(prefix="tmpl-rt", appliedFor=["PULL_THROUGH_CACHE"])
    found = ecr.describe_repository_creation_templates(prefixes=["tmpl-rt"])["repositoryCreationTemplates"]
    assert [t["prefix"] for t in found] == ["tmpl-rt"]
    updated = ecr.update_repository_creation_template(
        prefix="tmpl-rt", description="cache", imageTagMutability="MUTABLE"
    )
    assert updated["repositoryCreationTemplate"]["description"] == "cache"
    assert updated["repositoryCreationTemplate"]["imageTagMutability"] == "MUTABLE"
    with pytest.raises(ecr.exceptions.InvalidParameterException):
        ecr.update_repository_creation_template(
            prefix="tmpl-rt", imageTagMutability="IMMUTABLE_WITH_EXCLUSION"
        )
    ecr.delete_repository_creation_template(prefix="tmpl-rt")
    with pytest.raises(ecr.exceptions.TemplateNotFoundException):
        ecr.delete_repository_creation_template(prefix="tmpl-rt")
    with pytest.raises(ecr.exceptions.TemplateNotFoundException):
        ecr.update_repository_creation_template(prefix="tmpl-rt", description="x")


def test_repositories_round_trip(ecr: Any) -> None:
    repo = ecr.create_repository(repositoryName="apps/one", imageTagMutability="IMMUTABLE")["repository"]
    assert repo["repositoryUri"] == f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/apps/one"
    with pytest.raises(ecr.exceptions.RepositoryAlreadyExistsException):
        ecr.create_repository(repositoryName="apps/one")
    with pytest.raises(ecr.exceptions.InvalidParameterException):
        ecr.create_repository(repositoryName="Apps/Upper")
    for index in range(2, 6):
        ecr.create_repository(repositoryName=f"apps/n{index}")
    named = ecr.describe_repositories(repositoryNames=["apps/one"])["repositories"]
    assert [r["imageTagMutability"] for r in named] == ["IMMUTABLE"]
    with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
        ecr.describe_repositories(repositoryNames=["apps/missing"])
    pages = list(ecr.get_paginator("describe_repositories").paginate(PaginationConfig={"PageSize": 2}))
    names = [r["repositoryName"] for page in pages for r in page["repositories"]]
    assert len(pages) >= 3 and len(names) == len(set(names)) and "apps/n5" in names

    answer = ecr.put_image_tag_mutability(
        repositoryName="apps/one",
        imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "latest*"}],
    )
    assert answer["imageTagMutabilityExclusionFilters"][0]["filter"] == "latest*"
    with pytest.raises(ecr.exceptions.InvalidParameterException):
        ecr.put_image_tag_mutability(repositoryName="apps/one", imageTagMutability="MUTABLE_WITH_EXCLUSION")
    with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
        ecr.put_image_tag_mutability(repositoryName="apps/missing", imageTagMutability="MUTABLE")
    with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
        ecr.describe_images(repositoryName="apps/missing")


def test_authorization_token_and_registry_auth(emulator: EmulatorProcess, ecr: Any) -> None:
    data = ecr.get_authorization_token()["authorizationData"][0]
    assert data["proxyEndpoint"] == emulator.url
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    assert user == "AWS" and password
    lifetime = data["expiresAt"].timestamp() - emulator.admin("clock")["now"]
    assert 12 * 3600 - 60 < lifetime <= 12 * 3600

    anonymous = httpx.get(f"{emulator.url}/v2/")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith('Basic realm="')
    assert anonymous.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert httpx.get(f"{emulator.url}/v2/", auth=("AWS", "wrong")).status_code == 401
    assert httpx.get(f"{emulator.url}/v2/", auth=(user, password)).status_code == 200


def test_template_applies_on_pull_through_creation_only(
    emulator: EmulatorProcess, ecr: Any, upstream: RegistryProcess
) -> None:
    seed_image(upstream.url, "library/tmpl", "1.0", platforms=())
    ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="tpl-hub", upstreamRegistryUrl="registry-1.docker.io", credentialArn=SECRET
    )
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="tpl-root", upstreamRegistryUrl="quay.io")
    lifecycle = json.dumps(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "selection": {
                        "tagStatus": "untagged",
                        "countType": "imageCountMoreThan",
                        "countNumber": 5,
                    },
                    "action": {"type": "expire"},
                }
            ]
        }
    )
    ecr.create_repository_creation_template(
        prefix="tpl-hub",
        appliedFor=["PULL_THROUGH_CACHE"],
        imageTagMutability="IMMUTABLE",
        encryptionConfiguration={"encryptionType": "KMS"},
        resourceTags=[{"Key": "source", "Value": "docker-hub"}],
        lifecyclePolicy=lifecycle,
        customRoleArn=ROLE,  # tags and KMS need a custom role (repository-creation-templates-create.html)
    )
    ecr.create_repository_creation_template(
        prefix="ROOT",
        appliedFor=["PULL_THROUGH_CACHE"],
        resourceTags=[{"Key": "default", "Value": "yes"}],
        customRoleArn=ROLE,
    )
    ecr.create_repository_creation_template(
        prefix="tpl-root", appliedFor=["REPLICATION"], imageTagMutability="IMMUTABLE"
    )
    try:
        manual = ecr.create_repository(repositoryName="tpl-hub/library/manual")["repository"]
        assert manual["imageTagMutability"] == "MUTABLE"

        assert pull(emulator, ecr, "tpl-hub/library/tmpl", "1.0").status_code == 200
        repo = ecr.describe_repositories(repositoryNames=["tpl-hub/library/tmpl"])["repositories"][0]
        assert repo["imageTagMutability"] == "IMMUTABLE"
        assert repo["encryptionConfiguration"]["encryptionType"] == "KMS"
        assert ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"] == [
            {"Key": "source", "Value": "docker-hub"}
        ]
        assert (
            ecr.get_lifecycle_policy(repositoryName="tpl-hub/library/tmpl")["lifecyclePolicyText"]
            == lifecycle
        )
        with pytest.raises(ecr.exceptions.RepositoryPolicyNotFoundException):
            ecr.get_repository_policy(repositoryName="tpl-hub/library/tmpl")

        # the REPLICATION-only template does not apply; ROOT is the PULL_THROUGH_CACHE fallback
        assert pull(emulator, ecr, "tpl-root/library/tmpl", "1.0").status_code == 200
        repo = ecr.describe_repositories(repositoryNames=["tpl-root/library/tmpl"])["repositories"][0]
        assert repo["imageTagMutability"] == "MUTABLE"
        assert ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"] == [
            {"Key": "default", "Value": "yes"}
        ]

        # an existing repository is untouched by the template
        seed_image(upstream.url, "library/manual", "1.0", platforms=())
        assert pull(emulator, ecr, "tpl-hub/library/manual", "1.0").status_code == 200
        manual = ecr.describe_repositories(repositoryNames=["tpl-hub/library/manual"])["repositories"][0]
        assert manual["imageTagMutability"] == "MUTABLE"
        with pytest.raises(ecr.exceptions.LifecyclePolicyNotFoundException):
            ecr.get_lifecycle_policy(repositoryName="tpl-hub/library/manual")
    finally:
        for prefix in ("tpl-hub", "ROOT", "tpl-root"):
            ecr.delete_repository_creation_template(prefix=prefix)


@pytest.fixture(scope="module")
def cached_repo(emulator: EmulatorProcess, upstream: RegistryProcess) -> str:
    """A cache repository with 3 tags of a 2-platform index and 2 single images (11 images)."""
    client = CheckedClient(emulator.url).client
    client.create_pull_through_cache_rule(ecrRepositoryPrefix="img", upstreamRegistryUrl="quay.io")
    for tag in ("a", "b", "c"):
        seed_image(upstream.url, "org/app", tag, variant=tag)
    for tag in ("d", "e"):
        seed_image(upstream.url, "org/app", tag, platforms=(), variant=tag)
    for tag in ("a", "b", "c", "d", "e"):
        assert pull(emulator, client, "img/org/app", tag).status_code == 200
    return "img/org/app"


def test_describe_images_pages_and_filters(ecr: Any, cached_repo: str) -> None:
    pages = list(
        ecr.get_paginator("describe_images").paginate(
            repositoryName=cached_repo, PaginationConfig={"PageSize": 3}
        )
    )
    details = [d for page in pages for d in page["imageDetails"]]
    assert len(pages) == 4 and len(details) == 11
    assert sorted(t for d in details for t in d.get("imageTags", [])) == ["a", "b", "c", "d", "e"]
    index = next(d for d in details if d.get("imageTags") == ["a"])
    assert index["imageManifestMediaType"] == "application/vnd.oci.image.index.v1+json"
    single = next(d for d in details if d.get("imageTags") == ["d"])
    assert single["artifactMediaType"] == "application/vnd.oci.image.config.v1+json"
    assert single["imageSizeInBytes"] > 0 and "lastRecordedPullTime" in single

    untagged = ecr.describe_images(repositoryName=cached_repo, filter={"tagStatus": "UNTAGGED"})[
        "imageDetails"
    ]
    assert len(untagged) == 6 and all("imageTags" not in d for d in untagged)
    tagged = ecr.describe_images(repositoryName=cached_repo, filter={"tagStatus": "TAGGED"})["imageDetails"]
    assert len(tagged) == 5

    by_tag = ecr.describe_images(repositoryName=cached_repo, imageIds=[{"imageTag": "d"}])["imageDetails"]
    by_digest = ecr.describe_images(
        repositoryName=cached_repo, imageIds=[{"imageDigest": single["imageDigest"]}]
    )
    assert by_tag == by_digest["imageDetails"]
    with pytest.raises(ecr.exceptions.ImageNotFoundException):
        ecr.describe_images(repositoryName=cached_repo, imageIds=[{"imageTag": "zzz"}])
    with pytest.raises(ecr.exceptions.InvalidParameterException):
        ecr.describe_images(repositoryName=cached_repo, imageIds=[{"imageTag": "d"}], maxResults=5)
    with pytest.raises(ecr.exceptions.ClientError, match="ValidationException"):
        ecr.describe_images(repositoryName=cached_repo, maxResults=1001)


def test_batch_delete_image(ecr: Any, cached_repo: str, emulator: EmulatorProcess) -> None:
    child = ecr.describe_images(repositoryName=cached_repo, filter={"tagStatus": "UNTAGGED"})["imageDetails"][
        0
    ]
    result = ecr.batch_delete_image(
        repositoryName=cached_repo,
        imageIds=[
            {"imageTag": "e"},
            {"imageTag": "nope"},
            {"imageDigest": "sha256:1234"},
            {"imageDigest": child["imageDigest"]},
        ],
    )
    assert [i["imageTag"] for i in result["imageIds"]] == ["e"]
    codes = [f["failureCode"] for f in result["failures"]]
    assert codes == ["ImageNotFound", "InvalidImageDigest", "ImageReferencedByManifestList"]
    assert ecr.describe_images(repositoryName=cached_repo, filter={"tagStatus": "TAGGED"})["imageDetails"]
    with pytest.raises(ecr.exceptions.ImageNotFoundException):
        ecr.describe_images(repositoryName=cached_repo, imageIds=[{"imageTag": "e"}])
    with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
        ecr.batch_delete_image(repositoryName="img/none", imageIds=[{"imageTag": "x"}])
    # deleting the tag and pulling again re-imports it (the community "force refresh")
    before = emulator.stats()["upstream_manifest_fetches"]
    assert pull(emulator, ecr, cached_repo, "e").status_code == 200
    assert emulator.stats()["upstream_manifest_fetches"] == before + 1


def test_unknown_operation_and_bad_json(emulator: EmulatorProcess) -> None:
    headers = {
        "X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.NoSuchThing",
        "Content-Type": "application/x-amz-json-1.1",
    }
    answer = httpx.post(emulator.url, headers=headers, content=b"{}")
    assert answer.status_code == 400 and answer.json()["__type"] == "UnknownOperationException"
    headers["X-Amz-Target"] = "AmazonEC2ContainerRegistry_V20150921.DescribeRepositories"
    answer = httpx.post(emulator.url, headers=headers, content=b"{not json")
    assert answer.json()["__type"] == "SerializationException"


def test_every_answer_is_dated_on_the_emulated_clock(emulator: EmulatorProcess) -> None:
    emulator.advance_clock(3 * 86400)
    try:
        now = emulator.admin("clock")["now"]
        target = {"X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.DescribeRepositories"}
        answers = [
            httpx.post(
                emulator.url, headers={**target, "Content-Type": "application/x-amz-json-1.1"}, content=b"{}"
            ),
            httpx.get(f"{emulator.url}/v2/"),  # 401 without credentials: dated too
            httpx.get(f"{emulator.url}/_emulator/health"),
        ]
        for answer in answers:
            [date] = answer.headers.get_list("date")
            assert abs(parsedate_to_datetime(date).timestamp() - now) < 5, date
    finally:
        emulator.advance_clock(-3 * 86400)


def test_clock_admin_endpoint(emulator: EmulatorProcess) -> None:
    before = emulator.admin("clock")
    after = emulator.advance_clock(60)
    assert after["offset_seconds"] == before["offset_seconds"] + 60
    assert after["now"] - before["now"] >= 60
    assert after["now"] - time.time() >= 59
    emulator.advance_clock(-60)
