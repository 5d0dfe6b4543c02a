"""Every behaviour AWS leaves open, one test per variant, over real HTTP: a Distribution registry as
the upstream, the emulator as a subprocess switched at runtime through ``/_emulator/behaviour``,
boto3 and skopeo as clients. Then the documented profile's fixes (Accept negotiation, registryId,
Chainguard, regions) and the profiles themselves."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from sandbox import signing
from sandbox.ecr_emulator.behaviour import PROFILES, SWITCHES
from sandbox.ecr_emulator.process import EmulatorProcess, start_emulator
from sandbox.ecr_emulator.shapes import validate_error, validate_output
from sandbox.upstream import DOCKER_MANIFEST, OCI_MANIFEST, RegistryProcess, seed_image, start_registry

ACCOUNT = "123456789012"
OTHER_ACCOUNT = "210987654321"
SECRET = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:ecr-pullthroughcache/docker-hub-AbCdEf"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/ecr-template"
DAY = 24 * 3600
ACCEPT_ALL = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        OCI_MANIFEST,
        "application/vnd.docker.distribution.manifest.list.v2+json",
        DOCKER_MANIFEST,
    )
)
needs_skopeo = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")


def ecr_client(url: str, region: str = "us-east-1") -> Any:
    """boto3 ECR client whose every raw answer is checked against the model on the client side too."""
    client = boto3.client(
        "ecr", endpoint_url=url, region_name=region, aws_access_key_id="t", aws_secret_access_key="t"
    )

    def check(http_response: Any, model: Any, **_: Any) -> None:
        if http_response.status_code == 200:
            validate_output(model.name, http_response.content)
        else:
            validate_error(model.name, http_response.content)

    client.meta.events.register("after-call.ecr", check)
    return client


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    registry = start_registry(tmp_path_factory.mktemp("hub"))
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory, hub: RegistryProcess) -> Iterator[EmulatorProcess]:
    upstreams = {"registry-1.docker.io": hub.url, "quay.io": hub.url}
    with start_emulator(tmp_path_factory.mktemp("ecr"), upstreams) as process:
        ecr = ecr_client(process.url)
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix="hub", upstreamRegistryUrl="registry-1.docker.io", credentialArn=SECRET
        )
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="quay", upstreamRegistryUrl="quay.io")
        yield process
        assert process.violations() == []


@pytest.fixture
def ecr(emulator: EmulatorProcess) -> Any:
    return ecr_client(emulator.url)


@contextmanager
def switched(emulator: EmulatorProcess, profile: str | None = None, **switches: str) -> Iterator[None]:
    before = emulator.behaviour()
    emulator.set_behaviour(profile, **switches)
    try:
        yield
    finally:
        emulator.set_behaviour(before["profile"], **before["overrides"])


def login(emulator: EmulatorProcess) -> tuple[str, str]:
    data = ecr_client(emulator.url).get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    return user, password


def get(emulator: EmulatorProcess, path: str, accept: str = ACCEPT_ALL, **kwargs: Any) -> httpx.Response:
    headers = {"Accept": accept, **kwargs.pop("headers", {})}
    return httpx.get(f"{emulator.url}/v2/{path}", auth=login(emulator), headers=headers, **kwargs)


def digest_of(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def skopeo(emulator: EmulatorProcess, *args: str) -> subprocess.CompletedProcess[str]:
    user, password = login(emulator)
    command = args[0]
    side = "--src-" if command == "copy" else "--"
    argv = [
        "skopeo",
        "--insecure-policy",
        command,
        f"{side}tls-verify=false",
        f"{side}creds",
        f"{user}:{password}",
    ]
    return subprocess.run([*argv, *args[1:]], capture_output=True, text=True, timeout=120)


def ref(emulator: EmulatorProcess, name: str) -> str:
    return f"docker://{emulator.url.removeprefix('http://')}/{name}"


# -- digest_first_pull -----------------------------------------------------------------------


@needs_skopeo
def test_digest_first_pull_imports(emulator: EmulatorProcess, hub: RegistryProcess, ecr: Any) -> None:
    seeded = seed_image(hub.url, "library/dig-imports", "1")
    child = seeded.children["linux/arm64"]
    with switched(emulator, digest_first_pull="imports"):
        inspected = skopeo(emulator, "inspect", "--raw", ref(emulator, f"hub/library/dig-imports@{child}"))
    assert inspected.returncode == 0, inspected.stderr
    assert digest_of(inspected.stdout.encode()) == child
    details = ecr.describe_images(repositoryName="hub/library/dig-imports")["imageDetails"]
    assert [(d["imageDigest"], d.get("imageTags")) for d in details] == [(child, None)]


@needs_skopeo
def test_digest_first_pull_not_found(emulator: EmulatorProcess, hub: RegistryProcess, ecr: Any) -> None:
    seeded = seed_image(hub.url, "library/dig-missing", "1")
    with switched(emulator, digest_first_pull="not-found"):
        first = get(emulator, f"hub/library/dig-missing/manifests/{seeded.digest}")
        assert first.status_code == 404 and first.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
        refused = skopeo(
            emulator, "inspect", "--raw", ref(emulator, f"hub/library/dig-missing@{seeded.digest}")
        )
        assert refused.returncode != 0 and "manifest unknown" in refused.stderr
        with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
            ecr.describe_repositories(repositoryNames=["hub/library/dig-missing"])
        # a pull by tag caches the image; the digest then answers
        assert get(emulator, "hub/library/dig-missing/manifests/1").status_code == 200
        again = get(emulator, f"hub/library/dig-missing/manifests/{seeded.digest}")
        assert again.status_code == 200 and again.headers["docker-content-digest"] == seeded.digest


# -- the referrers API: ptc_referrers_sync x ptc_referrers_upstream x ptc_pulled_referrers_listed --


@pytest.mark.parametrize(
    ("sync", "upstream", "pulled", "before", "after"),
    [
        # what the referrers API lists before and after the referrer is pulled by digest; the
        # upstream (Distribution 2.8) has no referrers API, only the tag schema index
        ("referrers-api", "tag-schema", "listed", True, True),
        ("referrers-api", "tag-schema", "not-listed", True, True),  # synced by the request itself
        ("referrers-api", "api-only", "not-listed", False, False),
        ("none", "tag-schema", "listed", False, True),
        ("none", "api-only", "not-listed", False, False),
    ],
)
def test_referrers_api_of_a_pull_through_cache_repository(
    emulator: EmulatorProcess,
    hub: RegistryProcess,
    sync: str,
    upstream: str,
    pulled: str,
    before: bool,
    after: bool,
) -> None:
    repository = f"library/refs-{sync}-{upstream}-{pulled}"
    seeded = seed_image(hub.url, repository, "1")
    index = httpx.get(f"{hub.url}/v2/{repository}/manifests/1", headers={"Accept": seeded.media_type})
    subject = {"mediaType": seeded.media_type, "digest": seeded.digest, "size": len(index.content)}
    spdx = "application/spdx+json"
    referrer = signing.attach_referrer(hub.url, repository, subject, spdx, b"{}", spdx)
    switches = {"ptc_referrers_sync": sync, "ptc_referrers_upstream": upstream}
    with switched(emulator, ptc_pulled_referrers_listed=pulled, digest_first_pull="imports", **switches):
        assert get(emulator, f"hub/{repository}/manifests/1").status_code == 200

        def listed(**params: str) -> set[str]:
            answer = get(emulator, f"hub/{repository}/referrers/{seeded.digest}", params=params)
            assert answer.status_code == 200
            assert answer.headers["content-type"] == "application/vnd.oci.image.index.v1+json"
            return {m["digest"] for m in answer.json()["manifests"]}

        assert listed() == ({referrer} if before else set())
        assert get(emulator, f"hub/{repository}/manifests/{referrer}").status_code == 200
        assert listed() == ({referrer} if after else set())
        assert listed(artifactType="application/vnd.example.other") == set()


# -- refresh_timer x refresh_bound -----------------------------------------------------------


@pytest.mark.parametrize(
    ("timer", "bound", "expected"),
    [
        # pulls at 0 h (import), 1 h, 23 h, 25 h, 49 h; upstream re-pushed after the import
        ("last-check", "up-to-once", ["old", "old", "old", "new", "new"]),
        ("last-pull", "up-to-once", ["old", "old", "old", "old", "new"]),
        ("last-check", "at-least-once", ["old", "new", "new", "new", "new"]),
        ("last-pull", "at-least-once", ["old", "new", "new", "new", "new"]),
    ],
)
def test_refresh_timer_and_bound(
    emulator: EmulatorProcess, hub: RegistryProcess, timer: str, bound: str, expected: list[str]
) -> None:
    name = f"library/refresh-{timer}-{bound}"
    old = seed_image(hub.url, name, "1", platforms=())
    with switched(emulator, refresh_timer=timer, refresh_bound=bound):
        assert get(emulator, f"hub/{name}/manifests/1").headers["docker-content-digest"] == old.digest
        new = seed_image(hub.url, name, "1", platforms=(), variant="re-pushed")
        seen = ["old"]
        for advance in (3600, 22 * 3600, 2 * 3600, DAY):
            emulator.advance_clock(advance)
            answer = get(emulator, f"hub/{name}/manifests/1")
            assert answer.status_code == 200
            seen.append({old.digest: "old", new.digest: "new"}[answer.headers["docker-content-digest"]])
    assert seen == expected


# -- blob_delivery ---------------------------------------------------------------------------


def first_blob(emulator: EmulatorProcess, hub: RegistryProcess, name: str) -> tuple[str, str]:
    """Cache a single-platform image; (its ECR repository, its layer digest, never fetched by ECR)."""
    seeded = seed_image(hub.url, f"library/{name}", "1", platforms=())
    assert get(emulator, f"hub/library/{name}/manifests/1").status_code == 200
    return f"hub/library/{name}", seeded.blobs[1]


def test_blob_delivery_direct(emulator: EmulatorProcess, hub: RegistryProcess) -> None:
    repository, layer = first_blob(emulator, hub, "blob-direct")
    with switched(emulator, blob_delivery="direct"):
        answer = get(emulator, f"{repository}/blobs/{layer}")
    assert answer.status_code == 200 and digest_of(answer.content) == layer


def test_blob_delivery_presigned_redirect(emulator: EmulatorProcess, hub: RegistryProcess, ecr: Any) -> None:
    repository, layer = first_blob(emulator, hub, "blob-presigned")
    with switched(emulator, blob_delivery="presigned-redirect"):
        answer = get(emulator, f"{repository}/blobs/{layer}")
        assert answer.status_code == 307
        location = httpx.URL(answer.headers["location"])
        assert location.host == "127.0.0.2"  # another host than the registry endpoint
        assert location.path.startswith("/prod-us-east-1-starport-layer-bucket/")
        assert "X-Amz-Signature" in location.params
        fetched = httpx.get(location)
        assert fetched.status_code == 200 and digest_of(fetched.content) == layer
        assert emulator.stats()["upstream_blob_fetches"] >= 1

        # S3 refuses a pre-signed request that also carries credentials; the emulator records it
        leaked = httpx.get(location, auth=login(emulator))
        assert leaked.status_code == 400 and "<Code>InvalidArgument</Code>" in leaked.text
        assert [v["kind"] for v in emulator.admin("violations/reset", {})["violations"]] == [
            "credential-leak"
        ]
        assert emulator.blob_host()["requests"][-1] == {
            "method": "GET",
            "path": location.path,
            "authorization": True,
            "status": 400,
        }
        forged = httpx.get(location.copy_set_param("X-Amz-Signature", "0" * 64))
        assert forged.status_code == 403 and "SignatureDoesNotMatch" in forged.text

        # GetDownloadUrlForLayer hands out the same kind of URL
        url = ecr.get_download_url_for_layer(repositoryName=repository, layerDigest=layer)["downloadUrl"]
        assert digest_of(httpx.get(url).content) == layer
        with pytest.raises(ecr.exceptions.LayersNotFoundException):
            ecr.get_download_url_for_layer(repositoryName=repository, layerDigest="sha256:" + "0" * 64)

        emulator.advance_clock(3601)
        expired = httpx.get(location)
        assert expired.status_code == 403 and "Request has expired" in expired.text


def test_blob_delivery_upstream_redirect_first_pull(emulator: EmulatorProcess, hub: RegistryProcess) -> None:
    repository, layer = first_blob(emulator, hub, "blob-upstream")
    with switched(emulator, blob_delivery="upstream-redirect-first-pull"):
        first = get(emulator, f"{repository}/blobs/{layer}")
        assert first.status_code == 307
        location = httpx.URL(first.headers["location"])
        assert location.host == "127.0.0.2" and location.path.startswith(
            "/registry-v2/docker/registry/v2/blobs/"
        )
        from_upstream = httpx.get(location)
        assert from_upstream.status_code == 200 and digest_of(from_upstream.content) == layer
        # ECR fetched the layer meanwhile: the next GET is sent to ECR's own storage
        second = get(emulator, f"{repository}/blobs/{layer}")
        assert second.status_code == 307
        assert httpx.URL(second.headers["location"]).path.startswith("/prod-us-east-1-starport-layer-bucket/")
        assert digest_of(httpx.get(second.headers["location"]).content) == layer


@needs_skopeo
@pytest.mark.parametrize("variant", next(s for s in SWITCHES if s.name == "blob_delivery").variants)
def test_skopeo_copies_under_each_blob_delivery(
    emulator: EmulatorProcess, hub: RegistryProcess, tmp_path: Path, variant: str
) -> None:
    seeded = seed_image(hub.url, f"library/copy-{variant}", "1")
    emulator.admin("blob-host/reset", {})
    with switched(emulator, blob_delivery=variant):
        done = skopeo(
            emulator, "copy", "--all", ref(emulator, f"hub/library/copy-{variant}:1"), f"dir:{tmp_path}"
        )
    assert done.returncode == 0, done.stderr
    for blob in seeded.blobs:
        assert digest_of((tmp_path / blob.removeprefix("sha256:")).read_bytes()) == blob
    # skopeo (Go) drops the Authorization header on a redirect to another host
    requests = emulator.blob_host()["requests"]
    assert not any(r["authorization"] for r in requests)
    assert (len(requests) > 0) == (variant != "direct")


# -- template_custom_role --------------------------------------------------------------------


def template_case(
    emulator: EmulatorProcess, hub: RegistryProcess, ecr: Any, prefix: str, **extra: Any
) -> None:
    seed_image(hub.url, "org/tmpl", "1", platforms=())
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=prefix, upstreamRegistryUrl="quay.io")
    ecr.create_repository_creation_template(
        prefix=prefix,
        appliedFor=["PULL_THROUGH_CACHE"],
        resourceTags=[{"Key": "team", "Value": "platform"}],
        encryptionConfiguration={"encryptionType": "KMS"},
        imageTagMutability="IMMUTABLE",
        **extra,
    )


def repository(ecr: Any, name: str) -> tuple[dict[str, Any], list[dict[str, str]]]:
    repo = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    return repo, ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]


def test_template_without_role_applied(emulator: EmulatorProcess, hub: RegistryProcess, ecr: Any) -> None:
    with switched(emulator, template_custom_role="applied"):
        template_case(emulator, hub, ecr, "tr-applied")
        assert get(emulator, "tr-applied/org/tmpl/manifests/1").status_code == 200
    repo, tags = repository(ecr, "tr-applied/org/tmpl")
    assert repo["encryptionConfiguration"]["encryptionType"] == "KMS" and tags == [
        {"Key": "team", "Value": "platform"}
    ]


def test_template_without_role_fails_the_pull(
    emulator: EmulatorProcess, hub: RegistryProcess, ecr: Any
) -> None:
    with switched(emulator, template_custom_role="pull-fails"):
        template_case(emulator, hub, ecr, "tr-fails")
        failed = get(emulator, "tr-fails/org/tmpl/manifests/1")
        assert failed.status_code == 404 and failed.json()["errors"][0]["code"] == "NAME_UNKNOWN"
        with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
            ecr.describe_repositories(repositoryNames=["tr-fails/org/tmpl"])
        # with a custom role the same template applies
        ecr.update_repository_creation_template(prefix="tr-fails", customRoleArn=ROLE)
        assert get(emulator, "tr-fails/org/tmpl/manifests/1").status_code == 200
    repo, tags = repository(ecr, "tr-fails/org/tmpl")
    assert repo["imageTagMutability"] == "IMMUTABLE" and tags == [{"Key": "team", "Value": "platform"}]


def test_template_without_role_skips_tags_and_kms(
    emulator: EmulatorProcess, hub: RegistryProcess, ecr: Any
) -> None:
    with switched(emulator, template_custom_role="skipped"):
        template_case(emulator, hub, ecr, "tr-skipped")
        assert get(emulator, "tr-skipped/org/tmpl/manifests/1").status_code == 200
    repo, tags = repository(ecr, "tr-skipped/org/tmpl")
    assert repo["imageTagMutability"] == "IMMUTABLE"  # what needs no role still applies
    assert repo["encryptionConfiguration"] == {"encryptionType": "AES256"} and tags == []


def test_template_without_role_refused(emulator: EmulatorProcess, hub: RegistryProcess, ecr: Any) -> None:
    with switched(emulator, template_custom_role="refused"):
        with pytest.raises(ecr.exceptions.InvalidParameterException, match="customRoleArn"):
            template_case(emulator, hub, ecr, "tr-refused")
        template_case_with_role = ecr.create_repository_creation_template(
            prefix="tr-refused-role",
            appliedFor=["PULL_THROUGH_CACHE"],
            resourceTags=[{"Key": "team", "Value": "platform"}],
            customRoleArn=ROLE,
        )
        assert template_case_with_role["repositoryCreationTemplate"]["customRoleArn"] == ROLE
        # neither tags nor KMS: no role needed
        ecr.create_repository_creation_template(prefix="tr-refused-plain", appliedFor=["PULL_THROUGH_CACHE"])


# -- hub_missing_repository ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variant", "status", "code"), [("not-found", 404, "NAME_UNKNOWN"), ("auth-failed", 403, "DENIED")]
)
def test_missing_docker_hub_repository(
    emulator: EmulatorProcess, hub: RegistryProcess, variant: str, status: int, code: str
) -> None:
    seed_image(hub.url, "library/present", "1", platforms=())
    with switched(emulator, hub_missing_repository=variant):
        missing = get(emulator, "hub/nobody/missing-repository/manifests/1")
        assert (missing.status_code, missing.json()["errors"][0]["code"]) == (status, code)
        if variant == "auth-failed":
            assert "authentication to the upstream registry failed" in missing.json()["errors"][0]["message"]
        # only Docker Hub, and only a missing repository: a missing tag or a quay repository is 404
        assert get(emulator, "hub/library/present/manifests/nope").status_code == 404
        assert get(emulator, "quay/nobody/missing-repository/manifests/1").status_code == 404


# -- validate_unauthenticated ----------------------------------------------------------------


def test_validate_on_an_unauthenticated_upstream_answers(emulator: EmulatorProcess, ecr: Any) -> None:
    with switched(emulator, validate_unauthenticated="answers"):
        assert ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="quay")["isValid"] is True


def test_validate_on_an_unauthenticated_upstream_refuses(emulator: EmulatorProcess, ecr: Any) -> None:
    with switched(emulator, validate_unauthenticated="refuses"):
        with pytest.raises(ecr.exceptions.ClientError, match="ValidationException"):
            ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="quay")
        # a rule with a credential is still validated
        assert ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="hub")["isValid"] is True


# -- last_recorded_pull_time -----------------------------------------------------------------


@pytest.mark.parametrize("variant", ["exact", "lagging"])
def test_last_recorded_pull_time(
    emulator: EmulatorProcess, hub: RegistryProcess, ecr: Any, variant: str
) -> None:
    name = f"library/pulltime-{variant}"
    seed_image(hub.url, name, "1", platforms=())

    def recorded() -> float:
        [detail] = ecr.describe_images(repositoryName=f"hub/{name}", imageIds=[{"imageTag": "1"}])[
            "imageDetails"
        ]
        return detail["lastRecordedPullTime"].timestamp()

    with switched(emulator, last_recorded_pull_time=variant):
        assert get(emulator, f"hub/{name}/manifests/1").status_code == 200
        first = recorded()
        emulator.advance_clock(3600)
        get(emulator, f"hub/{name}/manifests/1")
        second_pull = emulator.admin("clock")["now"]
        if variant == "exact":
            assert second_pull - 5 < recorded() <= second_pull
        else:
            assert recorded() == first  # within 24 h of the recorded pull: not refreshed
            emulator.advance_clock(DAY)
            get(emulator, f"hub/{name}/manifests/1")
            assert recorded() - first >= DAY


# -- fixes: Accept negotiation ---------------------------------------------------------------


def test_accept_negotiation(emulator: EmulatorProcess, hub: RegistryProcess) -> None:
    oci = seed_image(hub.url, "library/neg-oci", "1", platforms=())
    docker = seed_image(hub.url, "library/neg-docker", "1", platforms=(), oci=False)
    index = seed_image(hub.url, "library/neg-index", "1")
    docker_list = seed_image(hub.url, "library/neg-list", "1", oci=False)
    for image in (oci, docker, index, docker_list):
        assert get(emulator, f"hub/{image.repository}/manifests/1").status_code == 200

    # by tag, an OCI manifest for a client that accepts Docker schema 2 only is translated (ECR)
    translated = get(emulator, "hub/library/neg-oci/manifests/1", accept=DOCKER_MANIFEST)
    assert translated.status_code == 200 and translated.headers["content-type"] == DOCKER_MANIFEST
    body = translated.json()
    assert body["mediaType"] == DOCKER_MANIFEST
    assert body["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
    assert translated.headers["docker-content-digest"] == digest_of(translated.content) != oci.digest
    head = httpx.head(
        f"{emulator.url}/v2/hub/library/neg-oci/manifests/1",
        auth=login(emulator),
        headers={"Accept": DOCKER_MANIFEST},
    )
    assert head.headers["docker-content-digest"] == translated.headers["docker-content-digest"]
    # and a Docker manifest for an OCI-only client
    to_oci = get(emulator, "hub/library/neg-docker/manifests/1", accept=OCI_MANIFEST)
    assert to_oci.headers["content-type"] == OCI_MANIFEST and to_oci.json()["layers"][0][
        "mediaType"
    ].startswith("application/vnd.oci.image.layer")
    # by digest there is no translation
    refused = get(emulator, f"hub/library/neg-oci/manifests/{oci.digest}", accept=DOCKER_MANIFEST)
    assert refused.status_code == 404 and refused.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    # an index the client does not accept (Distribution's answer)
    no_index = get(emulator, "hub/library/neg-index/manifests/1", accept=OCI_MANIFEST)
    assert no_index.status_code == 404 and "OCI index found" in no_index.json()["errors"][0]["message"]
    # a Docker manifest list asked for by tag: its linux/amd64 image
    amd64 = get(emulator, "hub/library/neg-list/manifests/1", accept=DOCKER_MANIFEST)
    assert amd64.headers["docker-content-digest"] == docker_list.children["linux/amd64"]
    # no Accept header, or */*: what is stored
    for accept in ("*/*", ""):
        plain = get(emulator, "hub/library/neg-index/manifests/1", accept=accept)
        assert plain.headers["docker-content-digest"] == index.digest
    # one Accept header per type (containers/image sends them so) counts as their union
    several = httpx.get(
        f"{emulator.url}/v2/hub/library/neg-index/manifests/1",
        auth=login(emulator),
        headers=[("Accept", OCI_MANIFEST), ("Accept", "application/vnd.oci.image.index.v1+json")],
    )
    assert several.headers["docker-content-digest"] == index.digest


# -- fixes: the API --------------------------------------------------------------------------


def test_another_accounts_registry_is_access_denied(emulator: EmulatorProcess, ecr: Any) -> None:
    calls = [
        lambda ids: ecr.describe_repositories(**ids),
        lambda ids: ecr.describe_images(repositoryName="hub/library/present", **ids),
        lambda ids: ecr.describe_pull_through_cache_rules(**ids),
        lambda ids: ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix="other", upstreamRegistryUrl="quay.io", **ids
        ),
    ]
    for call in calls:
        with pytest.raises(ecr.exceptions.ClientError) as denied:
            call({"registryId": OTHER_ACCOUNT})
        assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
        assert f":{OTHER_ACCOUNT}:" in denied.value.response["Error"]["Message"]
    # its own registry id is the default registry
    assert ecr.describe_pull_through_cache_rules(registryId=ACCOUNT)["pullThroughCacheRules"]


def test_chainguard_rules_need_a_secret(ecr: Any) -> None:
    with pytest.raises(ecr.exceptions.InvalidParameterException, match="credentialArn"):
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="cg", upstreamRegistryUrl="cgr.dev")
    rule = ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="cg", upstreamRegistryUrl="cgr.dev", credentialArn=SECRET
    )
    assert rule["upstreamRegistry"] == "chainguard"
    ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix="cg")


def test_templates_are_refused_where_they_are_not_offered(tmp_path: Path) -> None:
    with start_emulator(tmp_path, {}, region="us-gov-west-1") as process:
        ecr = ecr_client(process.url, region="us-gov-west-1")
        with pytest.raises(ecr.exceptions.ClientError, match="not supported in us-gov-west-1"):
            ecr.create_repository_creation_template(prefix="team", appliedFor=["PULL_THROUGH_CACHE"])
        assert ecr.describe_repository_creation_templates()["repositoryCreationTemplates"] == []
        assert process.violations() == []


# -- profiles --------------------------------------------------------------------------------


def test_profiles_from_the_command_line_and_at_runtime(tmp_path: Path) -> None:
    with start_emulator(tmp_path, {}, profile="strict", behaviour={"blob_delivery": "direct"}) as process:
        state = process.behaviour()
        assert state["profile"] == "strict"
        assert state["switches"] == {**PROFILES["strict"], "blob_delivery": "direct"}
        assert state["overrides"] == {"blob_delivery": "direct"}
        assert process.admin("health")["profile"] == "strict"

        assert process.set_behaviour("documented")["switches"] == dict(PROFILES["documented"])
        assert process.set_behaviour(refresh_bound="at-least-once")["overrides"] == {
            "refresh_bound": "at-least-once"
        }
        refused = httpx.post(
            f"{process.url}/_emulator/behaviour", json={"switches": {"refresh_bound": "sometimes"}}
        )
        assert refused.status_code == 400 and "up-to-once" in refused.json()["error"]
        assert (
            httpx.post(f"{process.url}/_emulator/behaviour", json={"profile": "lenient"}).status_code == 400
        )


def test_the_strict_profile_differs_where_a_variant_is_harder() -> None:
    # documented and strict disagree exactly where AWS documents the kinder variant
    differing = {
        name for name in PROFILES["strict"] if PROFILES["strict"][name] != PROFILES["documented"][name]
    }
    assert differing == {
        "digest_first_pull",
        "blob_delivery",
        "validate_unauthenticated",
        "ptc_referrers_sync",
        "ptc_referrers_upstream",
        "ptc_pulled_referrers_listed",
    }
    for switch in SWITCHES:
        assert switch.documented in switch.variants and switch.strict in switch.variants
        assert switch.sources, switch.name


def test_an_unknown_command_line_variant_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            *(sys.executable, "-m", "sandbox.ecr_emulator", "--state-dir", str(tmp_path)),
            *("--digest-first-pull", "maybe"),
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=60,
    )
    assert done.returncode == 2 and "invalid choice: 'maybe'" in done.stderr


def test_the_docs_table_lists_every_switch_as_the_code_has_it() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "emulator.md").read_text()
    section = doc.split("## Behaviours AWS leaves open", 1)[1].split("\n## ", 1)[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| `")]
    table = {
        row[0].strip("| `"): (
            [v.split(":", 1)[0].strip("`") for v in row[3].split("<br>")],
            row[4].strip("`"),
            row[5].strip(" |`"),
        )
        for row in rows
    }
    assert table == {s.name: (list(s.variants), s.documented, s.strict) for s in SWITCHES}
