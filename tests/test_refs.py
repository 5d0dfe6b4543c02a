import pickle

import pytest
import yaml

from ecr_mirror.manifest import SECRET_REQUIRED, Manifest, ManifestError, load_manifest
from ecr_mirror.refs import (
    DEFAULT_UPSTREAM_URL,
    ImageRef,
    InvalidReference,
    UpstreamKind,
    cache_repository,
    parse_image,
)

DIGEST = "sha256:" + "0123456789abcdef" * 4
ECR_HOST = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


@pytest.mark.parametrize(
    ("text", "shown", "kind"),
    [
        ("nginx", "docker.io/library/nginx", UpstreamKind.DOCKER_HUB),
        ("nginx:1.27", "docker.io/library/nginx:1.27", UpstreamKind.DOCKER_HUB),
        ("bitnami/redis", "docker.io/bitnami/redis", UpstreamKind.DOCKER_HUB),
        ("docker.io/library/nginx", "docker.io/library/nginx", UpstreamKind.DOCKER_HUB),
        ("docker.io/nginx", "docker.io/library/nginx", UpstreamKind.DOCKER_HUB),
        ("index.docker.io/bitnami/redis:7.2", "docker.io/bitnami/redis:7.2", UpstreamKind.DOCKER_HUB),
        ("registry-1.docker.io/library/python", "docker.io/library/python", UpstreamKind.DOCKER_HUB),
        ("quay.io/prometheus/prometheus:v2.53.0", "quay.io/prometheus/prometheus:v2.53.0", UpstreamKind.QUAY),
        (f"ghcr.io/o/r@{DIGEST}", f"ghcr.io/o/r@{DIGEST}", UpstreamKind.GHCR),
        ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10", UpstreamKind.K8S),
        ("public.ecr.aws/nginx/nginx", "public.ecr.aws/nginx/nginx", UpstreamKind.ECR_PUBLIC),
        ("registry.gitlab.com/g/p/img", "registry.gitlab.com/g/p/img", UpstreamKind.GITLAB),
        ("myreg.azurecr.io/team/app", "myreg.azurecr.io/team/app", UpstreamKind.AZURE),
        (
            "myreg-d7hbdyfsgah3ceac.azurecr.io/app",
            "myreg-d7hbdyfsgah3ceac.azurecr.io/app",
            UpstreamKind.AZURE,
        ),
        (f"{ECR_HOST}/team/app", f"{ECR_HOST}/team/app", UpstreamKind.ECR),
        ("cgr.dev/chainguard/static", "cgr.dev/chainguard/static", UpstreamKind.CHAINGUARD),
        (f"nginx:1.27@{DIGEST}", f"docker.io/library/nginx:1.27@{DIGEST}", UpstreamKind.DOCKER_HUB),
        ("Quay.IO/org/x", "quay.io/org/x", UpstreamKind.QUAY),
        ("quay.io/a__b/c-d.e---f_g:V1_x-y.z", "quay.io/a__b/c-d.e---f_g:V1_x-y.z", UpstreamKind.QUAY),
    ],
)
def test_parse_image_accepts_every_upstream_form(text, shown, kind):
    ref = parse_image(text)
    assert ref.kind is kind
    assert str(ref) == shown
    assert parse_image(shown) == ref


def test_docker_hub_fields_use_the_host_ecr_rules_point_at():
    ref = parse_image(f"nginx:1.27@{DIGEST}")
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        "registry-1.docker.io",
        "library/nginx",
        "1.27",
        DIGEST,
    )
    assert parse_image("bitnami/redis").repository == "bitnami/redis"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Nginx", "repository 'library/Nginx' must be lowercase"),
        ("docker.io/Bitnami/redis", "must be lowercase"),
        ("ghcr.io/o/r@sha256:abc", "digest 'sha256:abc' is invalid"),
        ("ghcr.io/o/r@sha256:" + "A" * 64, "64 lowercase hex"),
        ("ghcr.io/o/r@sha512:" + "a" * 128, "expected 'sha256:'"),
        ("ghcr.io/o/r@", "digest '' is invalid"),
        ("gcr.io/x/y", "registry host 'gcr.io' is not an upstream"),
        ("localhost:5000/x", "registry host 'localhost:5000'"),
        ("localhost/x", "registry host 'localhost'"),
        ("quay.io:443/x/y", "registry host 'quay.io:443'"),
        ("myreg.azurecr.io.evil.com/x", "registry host 'myreg.azurecr.io.evil.com'"),
        ("12345.dkr.ecr.eu-west-1.amazonaws.com/x", "registry host '12345.dkr.ecr.eu-west-1.amazonaws.com'"),
        ("nginx:", "tag '' is invalid"),
        ("nginx:-rc", "tag '-rc' is invalid"),
        ("nginx:" + "a" * 129, "is invalid"),
        ("quay.io//x", "empty path component"),
        ("quay.io/x/", "empty path component"),
        ("quay.io/a--/b", "component 'a--' is invalid"),
        ("quay.io/a_-b/c", "component 'a_-b' is invalid"),
        ("", "empty"),
        (" nginx", "whitespace"),
    ],
)
def test_parse_image_rejects_with_text_and_reason(text, reason):
    with pytest.raises(InvalidReference) as info:
        parse_image(text)
    assert str(info.value).startswith(f"invalid image reference {text!r}: ")
    assert reason in str(info.value)
    assert isinstance(info.value, ValueError)


def test_unknown_host_lists_the_supported_upstreams():
    with pytest.raises(
        InvalidReference, match=r"supported: docker\.io, public\.ecr\.aws, .*<name>\.azurecr\.io"
    ):
        parse_image("gcr.io/distroless/static")


def test_image_ref_built_directly_is_normalised_like_parsed():
    assert ImageRef("docker.io", "nginx", "1.27") == parse_image("nginx:1.27")
    with pytest.raises(InvalidReference, match="must be lowercase"):
        ImageRef("quay.io", "Org/x")


def test_name_and_with_tag():
    ref = parse_image(f"nginx:1.27@{DIGEST}")
    assert ref.name == "docker.io/library/nginx"
    moved = ref.with_tag("1.28")
    assert (moved.tag, moved.digest, str(moved)) == ("1.28", None, "docker.io/library/nginx:1.28")
    with pytest.raises(InvalidReference, match="tag '1 28'"):
        ref.with_tag("1 28")


def test_default_urls_cover_every_hosted_upstream():
    assert set(UpstreamKind) - set(DEFAULT_UPSTREAM_URL) == {UpstreamKind.AZURE, UpstreamKind.ECR}
    for kind, url in DEFAULT_UPSTREAM_URL.items():
        assert parse_image(f"{url}/org/x").kind is kind


@pytest.mark.parametrize(
    ("image", "prefix", "upstream_prefix", "expected"),
    [
        ("nginx", "docker-hub", None, "docker-hub/library/nginx"),
        ("bitnami/redis", "docker-hub", None, "docker-hub/bitnami/redis"),
        ("public.ecr.aws/nginx/nginx", "ecr-public", None, "ecr-public/nginx/nginx"),
        ("registry.k8s.io/pause", "k8s", None, "k8s/pause"),
        ("quay.io/prometheus/prometheus", "quay", None, "quay/prometheus/prometheus"),
        ("ghcr.io/o/r", "ghcr", None, "ghcr/o/r"),
        ("registry.gitlab.com/g/p/img", "gitlab", None, "gitlab/g/p/img"),
        ("myreg.azurecr.io/team/app", "acr", None, "acr/team/app"),
        ("cgr.dev/chainguard/static", "cgr/mirror", None, "cgr/mirror/chainguard/static"),
        (f"{ECR_HOST}/team-a/app", "prod", None, "prod/team-a/app"),
        (f"{ECR_HOST}/team-a/app", "prod", "ROOT", "prod/team-a/app"),
        (f"{ECR_HOST}/team-a/app", "prod", "team-a", "prod/app"),
        (f"{ECR_HOST}/team-a/sub/app", "prod", "team-a/sub", "prod/app"),
        (f"{ECR_HOST}/team-a/app", "ROOT", None, "team-a/app"),
    ],
)
def test_cache_repository(image, prefix, upstream_prefix, expected):
    assert cache_repository(parse_image(image), prefix, upstream_prefix) == expected


@pytest.mark.parametrize("repository", ["team-b/app", "team-abc/app", "team-a"])
def test_cache_repository_needs_the_upstream_prefix(repository):
    with pytest.raises(InvalidReference, match="upstream repository prefix 'team-a'"):
        cache_repository(parse_image(f"{ECR_HOST}/{repository}"), "prod", "team-a")


def test_upstream_prefix_is_for_ecr_upstreams_only():
    with pytest.raises(ValueError, match="ECR upstreams only"):
        cache_repository(parse_image("quay.io/org/x"), "quay", "org")


def test_cache_repository_longer_than_ecr_allows():
    ref = parse_image("quay.io/" + "/".join(["abcdefghij"] * 22))
    with pytest.raises(InvalidReference, match="longer than 256"):
        cache_repository(ref, "quay-mirror-long-prefix")


def test_a_trailing_newline_is_not_a_valid_tag():
    with pytest.raises(InvalidReference, match="tag 'v1\\\\n' is invalid"):
        ImageRef("quay.io", "org/x", tag="v1\n")


def test_invalid_reference_survives_pickling():
    error = pickle.loads(pickle.dumps(InvalidReference("Nginx", "must be lowercase")))
    assert str(error) == "invalid image reference 'Nginx': must be lowercase"
    assert (error.text, error.reason) == ("Nginx", "must be lowercase")


# Every upstream ECR documents (CreatePullThroughCacheRule, "Sync an upstream registry"): the rule
# a manifest needs, the repository ECR caches an image in, and the credential the rule takes.
UPSTREAMS = [
    # (image, rule, ECR repository)
    ("nginx", {"upstream": "docker-hub", "credential_secret": "ecr-pullthroughcache/dh"}, "up/library/nginx"),
    ("public.ecr.aws/nginx/nginx", {"upstream": "ecr-public"}, "up/nginx/nginx"),
    ("registry.k8s.io/pause", {"upstream": "k8s"}, "up/pause"),
    ("quay.io/prometheus/prometheus", {"upstream": "quay"}, "up/prometheus/prometheus"),
    (
        "ghcr.io/org/app",
        {"upstream": "github-container-registry", "credential_secret": "ecr-pullthroughcache/gh"},
        "up/org/app",
    ),
    (
        "registry.gitlab.com/group/project/img",
        {"upstream": "gitlab-container-registry", "credential_secret": "ecr-pullthroughcache/gl"},
        "up/group/project/img",
    ),
    (
        "myreg.azurecr.io/team/app",
        {
            "upstream": "azure-container-registry",
            "upstream_url": "myreg.azurecr.io",
            "credential_secret": "ecr-pullthroughcache/acr",
        },
        "up/team/app",
    ),
    (
        f"{ECR_HOST}/team-a/app",
        {
            "upstream": "ecr",
            "upstream_url": ECR_HOST,
            "upstream_repository_prefix": "team-a",
            "custom_role_arn": "arn:aws:iam::123456789012:role/ptc",
        },
        "up/app",
    ),
    (
        "cgr.dev/chainguard/static",
        {"upstream": "chainguard", "credential_secret": "ecr-pullthroughcache/cg"},
        "up/chainguard/static",
    ),
]


def _manifest(image: str, rules: list[dict]) -> dict:
    return {
        "name": "upstreams",
        "target": {"region": "eu-west-1"},
        "rules": rules,
        "images": [{"image": image, "tags": ["1"]}],
    }


@pytest.mark.parametrize(
    ("image", "rule", "repository"), UPSTREAMS, ids=[r["upstream"] for _, r, _ in UPSTREAMS]
)
def test_every_upstream_maps_as_ecr_does(image, rule, repository):
    manifest = Manifest.model_validate(_manifest(image, [{"prefix": "up", **rule}]))
    assert manifest.cache_repository(manifest.images[0].ref) == repository
    assert manifest.rules[0].url == (
        rule.get("upstream_url") or DEFAULT_UPSTREAM_URL[UpstreamKind(rule["upstream"])]
    )


def test_the_upstreams_that_take_a_secret_are_those_ecr_documents():
    # ECR Public, k8s and Quay need no authentication; a private ECR upstream uses an IAM role
    assert {kind.value for kind in SECRET_REQUIRED} == {
        "docker-hub",
        "github-container-registry",
        "gitlab-container-registry",
        "azure-container-registry",
        "chainguard",
    }
    assert {rule["upstream"] for _, rule, _ in UPSTREAMS} == {kind.value for kind in UpstreamKind}


@pytest.mark.parametrize(
    ("image", "rule", "repository"), UPSTREAMS, ids=[r["upstream"] for _, r, _ in UPSTREAMS]
)
def test_an_image_whose_upstream_has_no_rule_is_a_manifest_error(tmp_path, image, rule, repository):
    other = (
        {"prefix": "up", "upstream": "quay"}
        if rule["upstream"] != "quay"
        else {"prefix": "up", "upstream": "k8s"}
    )
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(_manifest(image, [other]), sort_keys=False))
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    needs = f"add a rule with upstream: {rule['upstream']}"
    if rule.get("upstream_url"):
        needs += f" and upstream_url: {rule['upstream_url']}"
    assert str(info.value) == (
        f"{path}:8: images[0].image: no rule caches image {parse_image(image).name!r}: {needs}"
    )
