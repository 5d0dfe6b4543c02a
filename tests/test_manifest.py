import re
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from ecr_mirror.manifest import (
    Defaults,
    FieldError,
    Manifest,
    ManifestError,
    load_manifest,
    load_manifests,
)
from ecr_mirror.refs import UpstreamKind, parse_image

DIGEST = "sha256:" + "0123456789abcdef" * 4

FULL = f"""\
name: platform-base
description: Base images for the platform team
schedule: "0 */6 * * *"
owner: platform
target:
  region: eu-west-1
  registry_id: "012345678901"
  aws_conn_id: aws_mirror
defaults:
  retries: 5
  concurrency: 16
rules:
  - prefix: docker-hub
    upstream: docker-hub
    credential_secret: ecr-pullthroughcache/docker-hub
    template:
      tag_mutability: MUTABLE
      encryption_type: KMS
      kms_key: arn:aws:kms:eu-west-1:012345678901:key/abc
      resource_tags: {{team: platform}}
      custom_role_arn: arn:aws:iam::012345678901:role/ecr-template
  - prefix: quay
    upstream: quay
  - prefix: ghcr
    upstream: github-container-registry
    credential_secret: ecr-pullthroughcache/ghcr
    manage: false
  - prefix: acr
    upstream: azure-container-registry
    upstream_url: MyReg.azurecr.io
    credential_secret: ecr-pullthroughcache/acr
  - prefix: shared
    upstream: ecr
    upstream_url: 111122223333.dkr.ecr.us-east-1.amazonaws.com
    upstream_repository_prefix: team-a
    custom_role_arn: arn:aws:iam::012345678901:role/ecr-ptc
images:
  - image: docker.io/library/nginx
    tags: ["1.27", "1.27-alpine"]
  - image: bitnami/redis
    tags:
      exact: ["7.2"]
  - image: quay.io/prometheus/prometheus
    tags: [v2.53.0]
  - image: ghcr.io/org/app:1.0@{DIGEST}
  - image: myreg.azurecr.io/team/app
    tags: [latest]
  - image: 111122223333.dkr.ecr.us-east-1.amazonaws.com/team-a/svc
    tags: ["3"]
"""


def write(tmp_path: Path, text: str, name: str = "demo.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_full_manifest(tmp_path):
    manifest = load_manifest(write(tmp_path, FULL))
    assert manifest.dag_id == "ecr_mirror__platform_base"
    assert manifest.target.registry_id == "012345678901"
    assert manifest.defaults == Defaults(retries=5, concurrency=16)
    assert [rule.url for rule in manifest.rules] == [
        "registry-1.docker.io",
        "quay.io",
        "ghcr.io",
        "myreg.azurecr.io",
        "111122223333.dkr.ecr.us-east-1.amazonaws.com",
    ]
    assert manifest.rules[0].template is not None
    assert manifest.rules[0].template.resource_tags == {"team": "platform"}
    assert manifest.rules[2].manage is False
    assert manifest.images[2].tags is not None
    assert manifest.images[2].tags.exact == ["v2.53.0"]
    caches = [manifest.cache_repository(spec.ref) for spec in manifest.images]
    assert caches == [
        "docker-hub/library/nginx",
        "docker-hub/bitnami/redis",
        "quay/prometheus/prometheus",
        "ghcr/org/app",
        "acr/team/app",
        "shared/svc",
    ]
    assert manifest.rule_for(manifest.images[4].ref).upstream is UpstreamKind.AZURE


def test_rule_for_picks_the_most_specific_ecr_upstream_prefix(tmp_path):
    text = FULL.replace(
        "  - prefix: shared\n",
        "  - prefix: everything\n"
        "    upstream: ecr\n"
        "    upstream_url: 111122223333.dkr.ecr.us-east-1.amazonaws.com\n"
        "    custom_role_arn: arn:aws:iam::012345678901:role/ecr-ptc\n"
        "  - prefix: shared\n",
    )
    manifest = load_manifest(write(tmp_path, text))
    host = "111122223333.dkr.ecr.us-east-1.amazonaws.com"
    assert manifest.cache_repository(parse_image(f"{host}/team-a/svc")) == "shared/svc"
    assert manifest.cache_repository(parse_image(f"{host}/team-b/svc")) == "everything/team-b/svc"


def test_rule_for_an_image_outside_the_manifest_names_the_missing_upstream(tmp_path):
    manifest = load_manifest(write(tmp_path, FULL))
    with pytest.raises(
        LookupError,
        match=re.escape("no rule caches image 'registry.k8s.io/pause': add a rule with upstream: k8s"),
    ):
        manifest.rule_for(parse_image("registry.k8s.io/pause"))


# A small valid manifest; each bad case below edits one line (keeping line numbers) or appends lines.
BASE = """\
name: demo
target:
  region: eu-west-1
rules:
  - prefix: docker-hub
    upstream: docker-hub
    credential_secret: ecr-pullthroughcache/docker-hub
images:
  - image: nginx
    tags: ["1.27"]
"""


def case(name: str, old: str, new: str, loc: str, line: int, fragment: str):
    """Replace the `old` lines of BASE by `new` (append when `old` is ""); expect `loc` at `line`."""
    return pytest.param(old, new, loc, line, fragment, id=name)


BAD_CASES = [
    case(
        "unknown-top-key",
        "",
        "colour: blue",
        "colour",
        11,
        "unknown key; allowed keys: name, description, schedule",
    ),
    case(
        "unknown-nested-key",
        '    tags: ["1.27"]',
        '    tagz: ["1.27"]',
        "images[0].tagz",
        10,
        "allowed keys: image, tags",
    ),
    case(
        "unknown-selector-key",
        '    tags: ["1.27"]',
        "    tags: {exact: ['1'], semverr: x}",
        "images[0].tags.semverr",
        10,
        "unknown key; allowed keys: exact",
    ),
    case(
        "wrong-type-int",
        "",
        "defaults: {retries: many}",
        "defaults.retries",
        11,
        "defaults.retries: must be a whole number (got 'many')",
    ),
    case(
        "wrong-type-str",
        "  region: eu-west-1",
        "  region: [eu-west-1]",
        "target.region",
        3,
        "must be a string",
    ),
    case(
        "out-of-range",
        "",
        "defaults: {concurrency: 0}",
        "defaults.concurrency",
        11,
        "must be at least 1 (got 0)",
    ),
    case("missing-key", "target:\n  region: eu-west-1", "", "target", 1, "required key is missing"),
    case(
        "empty-images-list",
        'images:\n  - image: nginx\n    tags: ["1.27"]',
        "images: []",
        "images",
        8,
        "must list at least one entry",
    ),
    case(
        "empty-images",
        '  - image: nginx\n    tags: ["1.27"]',
        "",
        "images",
        8,
        "must list at least one entry",
    ),
    case(
        "duplicate-image",
        "",
        '  - image: docker.io/library/nginx\n    tags: ["1.27"]',
        "images[1].image",
        11,
        "duplicate of images[0] (line 9) ('nginx'): both are docker.io/library/nginx with the same tags",
    ),
    case(
        "bad-prefix",
        "  - prefix: docker-hub",
        "  - prefix: Docker_Hub",
        "rules[0].prefix",
        5,
        "ECR's prefix pattern",
    ),
    case(
        "prefix-too-long",
        "  - prefix: docker-hub",
        "  - prefix: " + "d" * 31,
        "rules[0].prefix",
        5,
        "2-30 characters",
    ),
    case(
        "prefix-trailing-slash",
        "  - prefix: docker-hub",
        "  - prefix: docker-hub/",
        "rules[0].prefix",
        5,
        "must not end with '/'",
    ),
    case(
        "duplicate-prefix",
        "images:",
        "  - prefix: docker-hub\n    upstream: quay\nimages:",
        "rules[1].prefix",
        8,
        "'docker-hub' is already used by rules[0]",
    ),
    case(
        "secret-without-prefix",
        "    credential_secret: ecr-pullthroughcache/docker-hub",
        "    credential_secret: docker-hub",
        "rules[0].credential_secret",
        7,
        "must start with 'ecr-pullthroughcache/'",
    ),
    case(
        "secret-missing",
        "    credential_secret: ecr-pullthroughcache/docker-hub",
        "    manage: true",
        "rules[0].credential_secret",
        5,
        "docker-hub needs credential_secret",
    ),
    case(
        "secret-unused",
        "images:",
        "  - prefix: quay\n    upstream: quay\n    credential_secret: ecr-pullthroughcache/q\nimages:",
        "rules[1].credential_secret",
        10,
        "quay takes no credentials",
    ),
    case(
        "ptc-less-region-cn",
        "  region: eu-west-1",
        "  region: cn-north-1",
        "target.region",
        3,
        "pull through cache is not available in cn-north-1",
    ),
    case(
        "ptc-less-region-gov",
        "  region: eu-west-1",
        "  region: us-gov-west-1",
        "target.region",
        3,
        "not available",
    ),
    case(
        "not-a-region",
        "  region: eu-west-1",
        "  region: europe",
        "target.region",
        3,
        "not an AWS region name",
    ),
    case(
        "registry-id-unquoted",
        "rules:",
        "  registry_id: 123456789012\nrules:",
        "target.registry_id",
        4,
        "quote it",
    ),
    case(
        "unknown-upstream",
        "    upstream: docker-hub",
        "    upstream: gcr",
        "rules[0].upstream",
        6,
        "must be one of 'docker-hub', 'ecr-public', 'k8s', 'quay'",
    ),
    case(
        "hosted-url-mismatch",
        "images:",
        "    upstream_url: docker.io\nimages:",
        "rules[0].upstream_url",
        8,
        "docker-hub is served from 'registry-1.docker.io': omit upstream_url",
    ),
    case(
        "azure-without-url",
        "images:",
        "  - prefix: acr\n    upstream: azure-container-registry\n"
        "    credential_secret: ecr-pullthroughcache/acr\nimages:",
        "rules[1].upstream_url",
        8,
        "needs upstream_url: <name>.azurecr.io",
    ),
    case(
        "ecr-bad-url",
        "images:",
        "  - prefix: up\n    upstream: ecr\n    upstream_url: myreg.azurecr.io\nimages:",
        "rules[1].upstream_url",
        10,
        "<account>.dkr.ecr.<region>.amazonaws.com",
    ),
    case(
        "upstream-prefix-not-ecr",
        "images:",
        "    upstream_repository_prefix: library\nimages:",
        "rules[0].upstream_repository_prefix",
        8,
        "applies to an ecr upstream only, not docker-hub",
    ),
    case(
        "kms-key-without-kms",
        "images:",
        "    template: {kms_key: arn:aws:kms:eu-west-1:1:key/x}\nimages:",
        "rules[0].template.kms_key",
        8,
        "needs encryption_type: KMS",
    ),
    case(
        "image-without-rule",
        "",
        '  - image: quay.io/prometheus/prometheus\n    tags: ["v2"]',
        "images[1].image",
        11,
        "no rule caches image 'quay.io/prometheus/prometheus': add a rule with upstream: quay",
    ),
    case(
        "image-unparsable",
        "  - image: nginx",
        "  - image: Nginx",
        "images[0].image",
        9,
        "invalid image reference 'Nginx': repository 'library/Nginx' must be lowercase",
    ),
    case(
        "image-unknown-host",
        "  - image: nginx",
        "  - image: gcr.io/distroless/static",
        "images[0].image",
        9,
        "registry host 'gcr.io' is not an upstream",
    ),
    case(
        "image-inline-tag",
        "  - image: nginx",
        "  - image: nginx:1.26",
        "images[0].image",
        9,
        "'nginx:1.26' carries a tag: write image: nginx and list '1.26' under tags:",
    ),
    case(
        "image-no-tags",
        '    tags: ["1.27"]',
        "    # no tags",
        "images[0].tags",
        9,
        "has no digest pin, so it needs tags",
    ),
    case(
        "image-digest-and-tags",
        "  - image: nginx",
        f"  - image: nginx@{DIGEST}",
        "images[0].tags",
        10,
        "a digest pin mirrors exactly that digest: remove tags",
    ),
    case("tags-empty", '    tags: ["1.27"]', "    tags: []", "images[0].tags", 10, "selects no tag"),
    case(
        "tag-yaml-float",
        '    tags: ["1.27"]',
        '    tags: ["1.27", 3.10]',
        "images[0].tags[1]",
        10,
        "YAML read 3.1 as a number: quote it",
    ),
    case(
        "tag-invalid",
        '    tags: ["1.27"]',
        '    tags: ["1.27", "-x"]',
        "images[0].tags[1]",
        10,
        "tag '-x' is invalid",
    ),
    case(
        "tag-twice",
        '    tags: ["1.27"]',
        '    tags: ["1.27", "1.27"]',
        "images[0].tags[1]",
        10,
        "listed twice",
    ),
    case(
        "prefix-double-separator",
        "  - prefix: docker-hub",
        "  - prefix: docker__hub",
        "rules[0].prefix",
        5,
        "separated by single '.', '_' or '-'",
    ),
    case(
        "bad-regex-include",
        '    tags: ["1.27"]',
        "    tags: {include: ['^1.(27']}",
        "images[0].tags.include[0]",
        10,
        "'^1.(27' is not a valid regular expression: missing ) at position 6",
    ),
    case(
        "bad-regex-exclude",
        '    tags: ["1.27"]',
        "    tags: {semver: '^1', exclude: ['*-rc']}",
        "images[0].tags.exclude[0]",
        10,
        "'*-rc' is not a valid regular expression: nothing to repeat at position 0",
    ),
    case(
        "bad-semver-npm",
        '    tags: ["1.27"]',
        "    tags: {semver: '^^1'}",
        "images[0].tags.semver",
        10,
        "'^^1' is not an npm style range (^2.50 || ^3)",
    ),
    case(
        "bad-semver-pep440",
        '    tags: ["1.27"]',
        "    tags: {semver: '>=1.27,,<2'}",
        "images[0].tags.semver",
        10,
        "'>=1.27,,<2' is not a PEP 440 style range (>=3.11,<3.14)",
    ),
    case(
        "semver-yaml-number",
        '    tags: ["1.27"]',
        "    tags: {semver: 1.10}",
        "images[0].tags.semver",
        10,
        "must be a string (YAML read 1.1 as a number: quote it)",
    ),
    case(
        "conflict-exclude-alone",
        '    tags: ["1.27"]',
        "    tags: {exclude: [rc]}",
        "images[0].tags.exclude",
        10,
        "exclude alone would mirror every other upstream tag",
    ),
    case(
        "conflict-prerelease-without-version",
        '    tags: ["1.27"]',
        "    tags: {include: ['^1'], prerelease: true}",
        "images[0].tags.prerelease",
        10,
        "applies to semver and latest only",
    ),
    case(
        "conflict-exact-excluded",
        '    tags: ["1.27"]',
        "    tags: {exact: ['1.27', '1.28-rc1'], semver: '^1', exclude: [rc]}",
        "images[0].tags.exact[1]",
        10,
        "exact tag '1.28-rc1' is also excluded by 'rc': remove one of them",
    ),
    case(
        "latest-zero",
        '    tags: ["1.27"]',
        "    tags: {semver: '^1', latest: 0}",
        "images[0].tags.latest",
        10,
        "must be at least 1",
    ),
    case(
        "selector-empty",
        '    tags: ["1.27"]',
        "    tags: {prerelease: false}",
        "images[0].tags.exact",
        10,
        "selects no tag: list exact tags, or give semver, include or latest",
    ),
    case(
        "duplicate-image-selector",
        '    tags: ["1.27"]',
        "    tags: {semver: '^1'}\n  - image: docker.io/nginx\n    tags: {semver: '^1'}",
        "images[1].image",
        11,
        "duplicate of images[0] (line 9) ('nginx'): both are docker.io/library/nginx with the same tags",
    ),
    case("bad-name", "name: demo", "name: Demo Images", "name", 1, "must be 1-63 lowercase letters"),
    # issue #11: a type error says what to write, never a class name, with a hint to quote
    case(
        "tags-a-number",
        '    tags: ["1.27"]',
        "    tags: 1.27",
        "images[0].tags",
        10,
        "must be a list of tags, e.g. tags: ['1.27'] (quote version-like tags: YAML reads 1.20 as the number "
        "1.2), or a selector mapping, e.g. tags: {semver: '^1.27', latest: 2}",
    ),
    case("tags-a-word", '    tags: ["1.27"]', "    tags: latest", "images[0].tags", 10, "tags: ['latest']"),
    case(
        "section-a-scalar",
        "target:\n  region: eu-west-1",
        "target: eu-west-1",
        "target",
        2,
        "must be a mapping with keys such as region, registry_id, aws_conn_id (got 'eu-west-1')",
    ),
    case(
        "variant-without-range",
        '    tags: ["1.27"]',
        "    tags: {include: ['^1'], variant: alpine}",
        "images[0].tags.variant",
        10,
        "applies to semver and latest only: add one of them or remove variant",
    ),
    case(
        "variant-bad-regex",
        '    tags: ["1.27"]',
        "    tags: {latest: 1, variant: 'alpine('}",
        "images[0].tags.variant",
        10,
        "'alpine(' is not a valid regular expression",
    ),
    case(
        "secret-arn-other-region",
        "    credential_secret: ecr-pullthroughcache/docker-hub",
        "    credential_secret: "
        "arn:aws:secretsmanager:us-east-1:111122223333:secret:ecr-pullthroughcache/hub-AbC123",
        "rules[0].credential_secret",
        7,
        "the ARN of secret 'ecr-pullthroughcache/hub' is in us-east-1/111122223333: ECR reads it in the "
        "target's region eu-west-1",
    ),
    case(
        "secret-arn-not-ptc",
        "    credential_secret: ecr-pullthroughcache/docker-hub",
        "    credential_secret: arn:aws:secretsmanager:eu-west-1:111122223333:secret:docker-hub-AbC123",
        "rules[0].credential_secret",
        7,
        "is not a usable secret: write its name",
    ),
    case("repeated-yaml-key", "", "name: other", "name", 11, "key repeated (first on line 1)"),
]


@pytest.mark.parametrize(("old", "new", "loc", "line", "fragment"), BAD_CASES)
def test_bad_manifest_names_file_field_and_line(tmp_path, old, new, loc, line, fragment):
    text = BASE + new + "\n" if not old else BASE.replace(old + "\n", new + "\n" if new else "", 1)
    assert text != BASE
    path = write(tmp_path, text)
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert info.value.path == path
    assert str(info.value).startswith(f"{path}:{line}: {loc}: ")
    assert len(info.value.errors) == 1
    assert fragment in str(info.value)


def test_every_error_is_reported_at_once(tmp_path):
    text = BASE.replace("  region: eu-west-1", "  region: cn-north-1").replace('["1.27"]', '["1.27", "-x"]')
    with pytest.raises(ManifestError) as info:
        load_manifest(write(tmp_path, text))
    assert [(error.loc, error.line) for error in info.value.errors] == [
        ("target.region", 3),
        ("images[0].tags[1]", 10),
    ]
    assert len(str(info.value).splitlines()) == 2


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("name: demo\ntarget:\n  region: [eu-west-1\nrules: []\n", 4, "invalid YAML: "),
        ("name: demo\n\ttarget: {}\n", 2, "invalid YAML: "),
        (
            "- name: demo\n- name: other\n",
            1,
            "expected a mapping with name, target, rules and images, found a list",
        ),
        ("just text\n", 1, "found a str"),
        ("", 1, "found nothing"),
    ],
    ids=["unclosed-flow", "tab-indent", "list", "scalar", "empty"],
)
def test_file_that_is_not_a_manifest_mapping(tmp_path, text, line, fragment):
    path = write(tmp_path, text)
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert fragment in str(info.value)


def test_unreadable_file(tmp_path):
    path = tmp_path / "missing.yaml"
    with pytest.raises(ManifestError, match="cannot read the file"):
        load_manifest(path)


def test_manifest_error_format_without_line_or_loc():
    error = ManifestError(Path("m.yaml"), [FieldError("images[0]", "bad"), FieldError("", "worse", 3)])
    assert str(error) == "m.yaml: images[0]: bad\nm.yaml:3: worse"


def test_validating_without_a_file_gives_pydantic_errors_at_the_field():
    data = {
        "name": "demo",
        "target": {"region": "eu-west-1"},
        "rules": [{"prefix": "quay", "upstream": "quay"}],
        "images": [{"image": "nginx", "tags": ["1"]}],
    }
    with pytest.raises(ValidationError) as info:
        Manifest.model_validate(data)
    [error] = info.value.errors()
    assert error["loc"] == ("images", 0, "image")
    assert "add a rule with upstream: docker-hub" in error["msg"]


def test_load_manifests_keeps_good_files_when_one_is_bad(tmp_path):
    write(tmp_path, BASE, "a.yaml")
    write(tmp_path, BASE.replace("name: demo", "name: broken").replace("eu-west-1", "cn-north-1"), "b.yaml")
    write(tmp_path, BASE.replace("name: demo", "name: third"), "c.yml")
    write(tmp_path, "not: a manifest", "notes.txt")
    write(tmp_path, "- editor swap file", ".a.yaml")
    loaded, failed = load_manifests(tmp_path)
    assert [(path.name, manifest.name) for path, manifest in loaded] == [
        ("a.yaml", "demo"),
        ("c.yml", "third"),
    ]
    assert [error.path.name for error in failed] == ["b.yaml"]
    assert "target.region" in str(failed[0])


@pytest.mark.parametrize("second_name", ["demo", "demo_images"])
def test_load_manifests_rejects_a_name_or_dag_id_used_twice(tmp_path, second_name):
    write(tmp_path, BASE.replace("name: demo", "name: demo-images"), "a.yaml")
    later = write(tmp_path, BASE.replace("name: demo", f"name: {second_name}"), "b.yaml")
    write(tmp_path, BASE.replace("name: demo", "name: demo"), "c.yaml")
    loaded, failed = load_manifests(tmp_path)
    names = [manifest.name for _, manifest in loaded]
    if second_name == "demo":
        assert names == ["demo-images", "demo"]
        assert [error.path.name for error in failed] == ["c.yaml"]
        assert (
            str(failed[0])
            == f"{tmp_path / 'c.yaml'}:1: name: 'demo' gives DAG id ecr_mirror__demo, already used by b.yaml"
        )
    else:
        assert names == ["demo-images", "demo"]
        assert [error.path for error in failed] == [later]
        assert "DAG id ecr_mirror__demo_images, already used by a.yaml" in str(failed[0])


def test_load_manifests_on_a_missing_directory(tmp_path):
    loaded, failed = load_manifests(tmp_path / "nope")
    assert loaded == []
    assert str(failed[0]) == f"{tmp_path / 'nope'}: not a directory"


@pytest.mark.parametrize(
    ("role", "message"),
    [
        (None, "rules[4].custom_role_arn: the upstream registry is in another account than 012345678901"),
        (
            "arn:aws:iam::111122223333:role/ecr-ptc",
            "rules[4].custom_role_arn: the role must be in the target account 012345678901",
        ),
    ],
)
def test_a_cross_account_ecr_upstream_needs_a_role_of_the_target_account(tmp_path, role, message):
    old = "    custom_role_arn: arn:aws:iam::012345678901:role/ecr-ptc\n"
    text = FULL.replace(old, f"    custom_role_arn: {role}\n" if role else "")
    with pytest.raises(ManifestError) as info:
        load_manifest(write(tmp_path, text))
    assert message in str(info.value)
    assert str(info.value).startswith(f"{tmp_path / 'demo.yaml'}:")


@pytest.mark.parametrize(
    ("role", "message"),
    [
        (
            None,
            "rules[0].template.custom_role_arn: a template with resource_tags and KMS needs custom_role_arn, "
            "an IAM role of the target account that ECR assumes to create the repository: ECR's "
            "service-linked role for templates may only create repositories, and pulls through such a "
            "template fail without a role (https://docs.aws.amazon.com/AmazonECR/latest/userguide/"
            "repository-creation-templates-create.html)",
        ),
        (
            "arn:aws:iam::111122223333:role/ecr-template",
            "rules[0].template.custom_role_arn: the role must be in the target account 012345678901",
        ),
        ("ecr-template", "rules[0].template.custom_role_arn: 'ecr-template' is not an IAM role ARN"),
    ],
)
def test_a_template_with_tags_or_kms_needs_a_role_of_the_target_account(tmp_path, role, message):
    old = "      custom_role_arn: arn:aws:iam::012345678901:role/ecr-template\n"
    text = FULL.replace(old, f"      custom_role_arn: {role}\n" if role else "")
    with pytest.raises(ManifestError) as info:
        load_manifest(write(tmp_path, text))
    assert message in str(info.value)
    assert f"{tmp_path / 'demo.yaml'}:" in str(info.value)


def test_a_same_account_ecr_upstream_needs_no_role(tmp_path):
    text = FULL.replace("111122223333.dkr.ecr.us-east-1", "012345678901.dkr.ecr.us-east-1").replace(
        "    custom_role_arn: arn:aws:iam::012345678901:role/ecr-ptc\n", ""
    )
    manifest = load_manifest(
        write(tmp_path, text.replace("  - image: 111122223333", "  - image: 012345678901"))
    )
    assert manifest.rules[4].custom_role_arn is None


def test_selectors_load_with_their_filters(tmp_path):
    text = BASE.replace(
        '    tags: ["1.27"]',
        "    tags:\n      exact: [mainline]\n      semver: '>=1.26,<2'\n"
        "      include: ['-alpine$']\n      exclude: ['perl']\n      latest: 2\n      prerelease: true",
    )
    selector = load_manifest(write(tmp_path, text)).images[0].tags
    assert selector is not None and selector.needs_listing
    assert selector.describe() == (
        "semver '>=1.26,<2', include ['-alpine$'], exclude ['perl'], latest 2, prerelease true"
    )


def test_a_secret_arn_as_the_console_shows_it_is_accepted_and_used_by_its_name(tmp_path):
    arn = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:ecr-pullthroughcache/docker-hub-AbC123"
    path = write(tmp_path, BASE.replace("ecr-pullthroughcache/docker-hub", arn))
    manifest = load_manifest(path)
    assert manifest.rules[0].credential_secret == "ecr-pullthroughcache/docker-hub"
    # the same secret, by name or by ARN, is one rule state for manifests sharing the rule
    assert manifest.rules[0].model_dump() == load_manifest(write(tmp_path, BASE)).rules[0].model_dump()


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('    tags: ["1.27"]', "    tags: 1.27"),
        ('    tags: ["1.27"]', "    tags: {exact: 1.27}"),
        ('    tags: ["1.27"]', "    tags: {semver: [1]}"),
        ('    tags: ["1.27"]', "    tags: [[1.27]]"),
        ('  - image: nginx\n    tags: ["1.27"]', "  - nginx:1.27"),
        ("  region: eu-west-1", "  region: {name: eu-west-1}"),
        ("target:\n  region: eu-west-1", "target: [eu-west-1]"),
        ("  - prefix: docker-hub", "  - prefix: [docker-hub]"),
        ("    credential_secret: ecr-pullthroughcache/docker-hub", "    credential_secret: {name: x}"),
        ("name: demo", "name: demo\ndefaults: 3"),
        ("name: demo", "name: demo\nsla: 45m"),
        ("name: demo", "name: demo\ndefaults: {platforms: linux/amd64}"),
        ("    upstream: docker-hub", "    upstream: docker-hub\n    template: IMMUTABLE"),
        ("images:", "images: nginx\nold_images:"),
    ],
)
def test_type_errors_speak_manifest_not_python(tmp_path, old, new):
    # issue #11: "Input should be a valid dictionary or instance of TagSelector (got 1.27)"
    text = BASE.replace(old, new, 1)
    assert text != BASE
    with pytest.raises(ManifestError) as info:
        load_manifest(write(tmp_path, text))
    message = str(info.value)
    assert not re.search(
        r"Input should|instance of|TagSelector|ImageSpec|Rule\b|Target\b|Defaults|Sla\b", message
    )
    assert re.search(r"must be|unknown key", message), message
