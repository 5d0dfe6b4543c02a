"""AWS errors said plainly, and ECR's registry login renewed: the ECR emulator answers errors a
test arms through its test-only fault switch (``/_emulator/faults``, sandbox/ecr_emulator/faults.py)
and moves its clock past the 12 h life of an authorization token."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ecr_mirror.aws_errors import AwsError
from ecr_mirror.cli import main
from ecr_mirror.ecr import EcrTarget
from ecr_mirror.rules import RuleError, ensure_rules
from sandbox.upstream import seed_image
from tests.ptc_helpers import REGION, hub_rule, manifest

IMAGES = [{"image": "alpine", "tags": ["3.20"]}]


@pytest.fixture
def target(sandbox_env) -> Iterator[EcrTarget]:
    ecr = EcrTarget("aws_default", REGION)
    yield ecr
    ecr.close()


@pytest.fixture
def faults(sandbox) -> Iterator[object]:
    """Arm a fault: ``arm(operation, code, count=...)``; every fault is disarmed afterwards."""

    def arm(operation: str, code: str, count: int = 100) -> None:
        sandbox.emulator("faults", {"operation": operation, "code": code, "count": count})

    yield arm
    sandbox.emulator("faults/reset", {})


@pytest.mark.parametrize(
    ("operation", "code", "says"),
    [
        (
            "DescribePullThroughCacheRules",
            "ThrottlingException",
            "AWS throttled the call after botocore's retries",
        ),
        ("ValidatePullThroughCacheRule", "AccessDeniedException", "grant ecr:ValidatePullThroughCacheRule"),
        ("CreatePullThroughCacheRule", "AccessDeniedException", "grant ecr:CreatePullThroughCacheRule"),
        ("CreateRepositoryCreationTemplate", "ValidationException", "ECR refused the request's values"),
    ],
)
def test_an_aws_error_of_the_rules_is_a_rule_error_naming_the_call_and_the_fix(
    target: EcrTarget, faults, operation: str, code: str, says: str, request: pytest.FixtureRequest
) -> None:
    prefix = f"err-{request.node.callspec.id.split('-')[0].lower()[:20]}"
    rule = hub_rule(prefix, template={"tag_mutability": "MUTABLE"})
    faults(operation, code)
    with pytest.raises(RuleError) as error:  # a00658c: botocore's ClientError, a traceback
        ensure_rules(manifest(prefix, [rule], IMAGES), target)
    message = str(error.value)
    assert operation in message and code in message and says in message
    if operation != "DescribePullThroughCacheRules":  # the listing is of the whole registry
        assert f"rule '{prefix}'" in message


def test_a_throttled_listing_names_the_repository(target: EcrTarget, faults) -> None:
    faults("DescribeImages", "ThrottlingException")
    with pytest.raises(
        AwsError, match=r"DescribeImages on repository 'err/library/alpine'.*throttled"
    ) as error:
        target.cached_images("err/library/alpine")
    assert error.value.transient


def test_the_cli_prints_a_throttled_rule_listing_as_one_line(
    sandbox_env, faults, capsys: pytest.CaptureFixture[str]
) -> None:
    path = sandbox_env / "manifests" / "throttled.yaml"
    path.write_text(
        "name: throttled\ntarget: {region: eu-west-1}\ndefaults: {retries: 0}\n"
        "rules:\n  - prefix: throttled\n    upstream: docker-hub\n"
        "    credential_secret: ecr-pullthroughcache/docker-hub\n"
        "images:\n  - {image: alpine, tags: ['3.20']}\n"
    )
    faults("DescribePullThroughCacheRules", "ThrottlingException")
    code = main(["sync", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err and "ClientError" not in err
    assert "DescribePullThroughCacheRules" in err and "adaptive" in err


@pytest.mark.own_clock
def test_an_expired_ecr_login_is_renewed_instead_of_failing(sandbox, target: EcrTarget) -> None:
    image = seed_image(sandbox.upstreams["registry-1.docker.io"], "library/alpine", "3.20")
    ensure_rules(manifest("relogin", [hub_rule("relogin")], IMAGES), target)
    registry = target.registry()
    assert registry.get_manifest("relogin/library/alpine", "3.20").digest == image.digest  # cached
    before = registry.head_manifest("relogin/library/alpine", "3.20")
    assert before is not None and before.digest == image.digest
    sandbox.emulator("clock", {"advance_seconds": 13 * 3600})  # ECR's token lives 12 h
    after = registry.head_manifest("relogin/library/alpine", "3.20")  # a00658c: AuthError, HTTP 403
    assert after == before
    assert target.registry() is registry  # the same client, logged in again
