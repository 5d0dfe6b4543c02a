"""Rules and creation templates kept in ECR as code: the emulator, moto's Secrets Manager and the
Amazon provider's hooks, through the sandbox connection."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from ecr_mirror.ecr import EcrTarget
from ecr_mirror.mirror import RunInfo, RunOptions
from ecr_mirror.rules import RuleError, check_shared_rules, ensure_rules
from ecr_mirror.settings import get_settings
from ecr_mirror.states import Action
from sandbox.upstream import seed_image, start_registry
from tests.ptc_helpers import REGION, aws, engine, hub_rule, manifest, per_profile, put_secret

IMAGES = [{"image": "nginx", "tags": ["1.27"]}]
ROLE = "arn:aws:iam::123456789012:role/ecr-template"
OTHER_ROLE = "arn:aws:iam::123456789012:role/ecr-template-2"
RUN = RunInfo("run-tagged", "ecr_mirror__r_tagged", "r-tagged")
LIFECYCLE = {
    "rules": [
        {
            "rulePriority": 1,
            "selection": {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 5},
            "action": {"type": "expire"},
        }
    ]
}


@pytest.fixture
def target(sandbox_env):
    ecr = EcrTarget("aws_default", REGION)
    yield ecr
    ecr.close()


def rule_in_ecr(sandbox, prefix: str) -> dict:
    rules = aws(sandbox, "ecr").describe_pull_through_cache_rules(ecrRepositoryPrefixes=[prefix])
    return rules["pullThroughCacheRules"][0]


def test_a_missing_rule_is_created_then_left_alone_and_a_new_credential_is_updated(sandbox, target):
    m = manifest("r-create", [hub_rule("r-create")], IMAGES)
    [check] = ensure_rules(m, target)
    assert (check.action, check.valid) == ("created", True)
    assert ":secret:ecr-pullthroughcache/docker-hub-" in rule_in_ecr(sandbox, "r-create")["credentialArn"]

    [again] = ensure_rules(m, target)
    assert (again.action, again.changes) == ("unchanged", [])

    put_secret(sandbox, "ecr-pullthroughcache/docker-hub-team", {"username": "t", "accessToken": "tok"})
    rotated = manifest(
        "r-create", [hub_rule("r-create", credential_secret="ecr-pullthroughcache/docker-hub-team")], IMAGES
    )
    [updated] = ensure_rules(rotated, target)
    assert updated.action == "updated"
    assert updated.changes == [
        "credential 'ecr-pullthroughcache/docker-hub' -> 'ecr-pullthroughcache/docker-hub-team'"
    ]
    assert (
        ":secret:ecr-pullthroughcache/docker-hub-team-" in rule_in_ecr(sandbox, "r-create")["credentialArn"]
    )


def test_a_secret_created_again_under_the_same_name_is_pointed_at_anew(sandbox, target):
    name = "ecr-pullthroughcache/recreated"
    put_secret(sandbox, name, {"username": "u", "accessToken": "a"})
    m = manifest("r-recreate", [hub_rule("r-recreate", credential_secret=name)], IMAGES)
    ensure_rules(m, target)
    old_arn = rule_in_ecr(sandbox, "r-recreate")["credentialArn"]

    secrets = aws(sandbox, "secretsmanager")
    secrets.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
    put_secret(sandbox, name, {"username": "u", "accessToken": "a"})
    [check] = ensure_rules(m, target)

    new_arn = secrets.describe_secret(SecretId=name)["ARN"]
    assert new_arn != old_arn
    assert (check.action, check.valid) == ("updated", True)
    assert check.changes == [f"credential {name!r} was recreated: its ARN changed"]
    assert rule_in_ecr(sandbox, "r-recreate")["credentialArn"] == new_arn


def test_a_changed_upstream_is_refused_unless_the_rule_allows_replacing_it(sandbox, target):
    ensure_rules(
        manifest(
            "r-move",
            [{"prefix": "r-move", "upstream": "quay"}],
            [{"image": "quay.io/a/b", "tags": ["1"]}],
        ),
        target,
    )
    moved = [hub_rule("r-move")]

    with pytest.raises(
        RuleError, match=r"different upstream URL 'quay\.io' -> 'registry-1\.docker\.io'.*allow_replace: true"
    ):
        ensure_rules(manifest("r-move", moved, IMAGES), target)
    assert rule_in_ecr(sandbox, "r-move")["upstreamRegistryUrl"] == "quay.io"

    [check] = ensure_rules(manifest("r-move", [{**moved[0], "allow_replace": True}], IMAGES), target)
    assert (check.action, check.valid) == ("replaced", True)
    assert rule_in_ecr(sandbox, "r-move")["upstreamRegistryUrl"] == "registry-1.docker.io"


def test_a_dry_run_reports_what_would_change_and_changes_nothing(sandbox, target):
    m = manifest("r-dry", [hub_rule("r-dry", template={"tag_mutability": "IMMUTABLE"})], IMAGES)
    [check] = ensure_rules(m, target, dry_run=True)
    assert (check.action, check.dry_run, check.valid) == ("created", True, None)
    assert check.changes == [
        "create the rule (docker-hub -> registry-1.docker.io)",
        "create repository creation template 'r-dry'",
    ]
    ecr = aws(sandbox, "ecr")
    with pytest.raises(ecr.exceptions.PullThroughCacheRuleNotFoundException):
        ecr.describe_pull_through_cache_rules(ecrRepositoryPrefixes=["r-dry"])
    assert ecr.describe_repository_creation_templates(prefixes=["r-dry"])["repositoryCreationTemplates"] == []


@pytest.mark.parametrize("emulator_profile", ["documented", "strict"], indirect=True)
def test_a_rule_without_credentials_is_checked_where_ecr_validates_it(
    sandbox, target, emulator_profile, request
):
    """AWS documents the validation for upstreams that require authentication; where ECR refuses
    to validate a rule without credentials, the run goes on and says so."""
    prefix = per_profile("r-anon", request)
    m = manifest(prefix, [{"prefix": prefix, "upstream": "quay"}], [{"image": "quay.io/a/b", "tags": ["1"]}])
    [check] = ensure_rules(m, target)
    if emulator_profile["validate_unauthenticated"] == "answers":
        assert (check.valid, check.warnings) == (True, [])
        return
    assert check.valid is None
    assert check.warnings == [
        f"rule '{prefix}' was not validated: its upstream (quay) takes no credentials and ECR refused "
        f"to validate it (The pull through cache rule with prefix '{prefix}' has an upstream registry "
        "(quay) that does not require authentication: there is nothing to validate); ECR documents the "
        "validation for upstreams that require authentication only"
    ]


@pytest.mark.parametrize("emulator_profile", ["documented"], indirect=True)
def test_an_unauthenticated_rule_ecr_finds_invalid_still_fails(sandbox, target, emulator_profile):
    # The sandbox has no registry.k8s.io upstream: ECR's validation cannot reach it.
    m = manifest(
        "r-k8s", [{"prefix": "r-k8s", "upstream": "k8s"}], [{"image": "registry.k8s.io/pause", "tags": ["3"]}]
    )
    with pytest.raises(
        RuleError, match=r"r-k8s.*not valid according to ECR: no --upstream mapping for registry\.k8s\.io"
    ):
        ensure_rules(m, target)


def test_a_rule_ecr_finds_invalid_fails_with_ecrs_failure_text(sandbox, target):
    # The sandbox has no ghcr.io upstream: ECR's validation cannot reach it.
    rule = {
        "prefix": "r-ghcr",
        "upstream": "github-container-registry",
        "credential_secret": "ecr-pullthroughcache/docker-hub",
    }
    with pytest.raises(
        RuleError, match=r"r-ghcr.*not valid according to ECR: no --upstream mapping for ghcr\.io"
    ):
        ensure_rules(manifest("r-ghcr", [rule], [{"image": "ghcr.io/org/app", "tags": ["1"]}]), target)


@pytest.mark.parametrize(
    ("secret", "value", "message"),
    [
        (
            "ecr-pullthroughcache/r-nokey",
            {"username": "bot"},
            "secret 'ecr-pullthroughcache/r-nokey' has no 'accessToken' key",
        ),
        (
            "ecr-pullthroughcache/r-text",
            "hunter2-not-json",
            "secret 'ecr-pullthroughcache/r-text' is not a JSON object",
        ),
        (
            "ecr-pullthroughcache/r-absent",
            None,
            "secret 'ecr-pullthroughcache/r-absent' does not exist in eu-west-1",
        ),
    ],
)
def test_an_unusable_secret_fails_naming_the_secret_and_the_problem_never_the_value(
    sandbox, target, secret, value, message
):
    if value is not None:
        put_secret(sandbox, secret, value)
    prefix = secret.rsplit("/", 1)[1]
    with pytest.raises(RuleError) as failure:
        ensure_rules(manifest(prefix, [hub_rule(prefix, credential_secret=secret)], IMAGES), target)
    assert message in str(failure.value)
    assert "bot" not in str(failure.value) and "hunter2" not in str(failure.value)
    ecr = aws(sandbox, "ecr")
    with pytest.raises(ecr.exceptions.PullThroughCacheRuleNotFoundException):
        ecr.describe_pull_through_cache_rules(ecrRepositoryPrefixes=[prefix])


def test_templates_are_created_updated_recreated_and_immutability_is_warned(sandbox, target, tmp_path):
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "lifecycle.json").write_text(json.dumps(LIFECYCLE))
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Sid": "pull", "Effect": "Allow", "Principal": "*", "Action": "ecr:BatchGetImage"}],
    }
    template = {
        "tag_mutability": "IMMUTABLE_WITH_EXCLUSION",
        "tag_mutability_exclusions": ["latest*"],
        "encryption_type": "KMS",
        "kms_key": "arn:aws:kms:eu-west-1:123456789012:key/abc",
        "lifecycle_policy": "policies/lifecycle.json",
        "repository_policy": policy,
        "resource_tags": {"team": "platform"},
        "description": "docker hub cache",
        "custom_role_arn": ROLE,
    }
    m = manifest("r-tpl", [hub_rule("r-tpl", template=template)], IMAGES)
    [check] = ensure_rules(m, target, manifest_dir=tmp_path)
    assert "create repository creation template 'r-tpl'" in check.changes
    assert "IMMUTABLE_WITH_EXCLUSION" in check.warnings[0] and "blocked_immutable" in check.warnings[0]
    ecr = aws(sandbox, "ecr")
    [doc] = ecr.describe_repository_creation_templates(prefixes=["r-tpl"])["repositoryCreationTemplates"]
    assert doc["appliedFor"] == ["PULL_THROUGH_CACHE"]
    assert doc["imageTagMutabilityExclusionFilters"] == [{"filterType": "WILDCARD", "filter": "latest*"}]
    assert doc["encryptionConfiguration"] == {"encryptionType": "KMS", "kmsKey": template["kms_key"]}
    assert json.loads(doc["lifecyclePolicy"]) == LIFECYCLE and json.loads(doc["repositoryPolicy"]) == policy
    assert (doc["resourceTags"], doc["description"], doc["customRoleArn"]) == (
        [{"Key": "team", "Value": "platform"}],
        "docker hub cache",
        ROLE,
    )

    [same] = ensure_rules(m, target, manifest_dir=tmp_path)
    assert same.changes == []

    retagged = manifest(
        "r-tpl", [hub_rule("r-tpl", template={**template, "resource_tags": {"team": "infra"}})], IMAGES
    )
    [check] = ensure_rules(retagged, target, manifest_dir=tmp_path)
    assert check.changes == ["update repository creation template 'r-tpl': resourceTags"]

    rerolled = {**template, "resource_tags": {"team": "infra"}, "custom_role_arn": OTHER_ROLE}
    [check] = ensure_rules(
        manifest("r-tpl", [hub_rule("r-tpl", template=rerolled)], IMAGES), target, manifest_dir=tmp_path
    )
    assert check.changes == ["update repository creation template 'r-tpl': customRoleArn"]

    plain = {
        k: v
        for k, v in template.items()
        if k not in ("lifecycle_policy", "tag_mutability", "tag_mutability_exclusions")
    }
    [check] = ensure_rules(
        manifest("r-tpl", [hub_rule("r-tpl", template=plain)], IMAGES), target, manifest_dir=tmp_path
    )
    assert check.changes == [
        "recreate repository creation template 'r-tpl': resourceTags, imageTagMutability, "
        "imageTagMutabilityExclusionFilters, lifecyclePolicy, customRoleArn"
    ]
    assert check.warnings == []
    [doc] = ecr.describe_repository_creation_templates(prefixes=["r-tpl"])["repositoryCreationTemplates"]
    assert doc["imageTagMutability"] == "MUTABLE" and "lifecyclePolicy" not in doc


def test_a_missing_policy_file_is_named(sandbox, target, tmp_path):
    m = manifest("r-nofile", [hub_rule("r-nofile", template={"lifecycle_policy": "nope.json"})], IMAGES)
    with pytest.raises(RuleError, match=f"lifecycle_policy file {tmp_path / 'nope.json'} cannot be read"):
        ensure_rules(m, target, manifest_dir=tmp_path)


def test_manifests_sharing_a_rule_must_agree_on_it():
    base = manifest("a", [hub_rule("shared"), {"prefix": "quay", "upstream": "quay"}], IMAGES)
    same = manifest("b", [hub_rule("shared")], IMAGES)
    other = manifest("c", [hub_rule("shared", credential_secret="ecr-pullthroughcache/other")], IMAGES)
    unmanaged = manifest(
        "d", [hub_rule("shared", credential_secret="ecr-pullthroughcache/x", manage=False)], IMAGES
    )
    a, b, c, d = (Path(f"/m/{name}.yaml") for name in "abcd")
    assert check_shared_rules([(a, base), (b, same), (d, unmanaged)]) == []
    [refused] = check_shared_rules([(a, base), (c, other)])
    assert str(refused) == (
        "/m/c.yaml: rules[0]: rule 'shared' in eu-west-1 conflicts with the same rule in a.yaml "
        "(credential_secret differ): manifests sharing a rule must agree on it"
    )


def test_upstream_digest_checks_log_in_with_the_rules_secret(sandbox, sandbox_env, monkeypatch, tmp_path):
    private = start_registry(tmp_path / "ghcr", htpasswd={"bot": "s3cret"})
    try:
        seeded = seed_image(private.url, "org/app", "1.0", platforms=(), auth=("bot", "s3cret"))
        monkeypatch.setenv("ECR_MIRROR_UPSTREAM_ENDPOINTS", json.dumps({"ghcr.io": private.url}))
        get_settings.cache_clear()
        rule = {
            "prefix": "r-priv",
            "upstream": "github-container-registry",
            "credential_secret": "ecr-pullthroughcache/r-priv",
        }
        m = manifest("r-priv", [rule], [{"image": "ghcr.io/org/app", "tags": ["1.0"]}])
        audit = f"sqlite:///{tmp_path / 'audit.db'}"

        put_secret(sandbox, "ecr-pullthroughcache/r-priv", {"username": "bot", "accessToken": "wrong"})
        with engine(m, audit) as mirror:
            [item] = mirror.compare(mirror.resolve(RunOptions()).tags)
        assert item.action is Action.FAILED and "access denied" in item.error

        put_secret(sandbox, "ecr-pullthroughcache/r-priv", {"username": "bot", "accessToken": "s3cret"})
        with engine(m, audit) as mirror:
            [item] = mirror.compare(mirror.resolve(RunOptions()).tags)
        assert (item.action, item.upstream_digest) == (Action.MISSING, seeded.digest)
        assert httpx.head(f"{private.url}/v2/org/app/manifests/1.0").status_code == 401
    finally:
        private.stop()


@pytest.mark.parametrize("emulator_profile", ["documented", "strict"], indirect=True)
def test_a_template_with_tags_and_kms_takes_its_role_and_pulls_create_tagged_repositories(
    sandbox, sandbox_env, emulator_profile, request
):
    """Without a role, pulls through such a template are reported to fail (the emulator's
    ``template_custom_role``: ``pull-fails`` in both profiles); the manifest insists on one."""
    prefix = per_profile("r-tagged", request)
    seed_image(sandbox.upstreams["registry-1.docker.io"], f"acme/{prefix}", "1", platforms=())
    template = {
        "encryption_type": "KMS",
        "kms_key": "arn:aws:kms:eu-west-1:123456789012:key/abc",
        "resource_tags": {"team": "platform"},
        "custom_role_arn": ROLE,
    }
    m = manifest(prefix, [hub_rule(prefix, template=template)], [{"image": f"acme/{prefix}", "tags": ["1"]}])
    with engine(m, f"sqlite:///{sandbox_env / 'audit.db'}") as mirror:
        ensure_rules(m, mirror.target)
        rows = mirror.pull(mirror.compare(mirror.resolve(RunOptions()).tags), RUN)
    assert [(r.action, r.status) for r in rows] == [("missing", "pulled")]
    ecr = aws(sandbox, "ecr")
    [repository] = ecr.describe_repositories(repositoryNames=[f"{prefix}/acme/{prefix}"])["repositories"]
    assert repository["encryptionConfiguration"] == {"encryptionType": "KMS", "kmsKey": template["kms_key"]}
    tags = ecr.list_tags_for_resource(resourceArn=repository["repositoryArn"])["tags"]
    assert tags == [{"Key": "team", "Value": "platform"}]
