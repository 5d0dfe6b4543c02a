"""Repositories, images and registry auth.

Behaviour sources: API_CreateRepository.html, API_DescribeRepositories.html,
API_DescribeImages.html, API_BatchDeleteImage.html, API_GetAuthorizationToken.html,
API_PutImageTagMutability.html.
"""

from __future__ import annotations

import base64
import re
import secrets
from typing import Any

from .api import Context, Handler, decode_token, encode_token, paginate
from .errors import ApiError
from .ops_cache import check_encryption, check_mutability
from .shapes import Facts
from .store import Image, Repository

TOKEN_LIFETIME = 12 * 3600  # "The authorization token is valid for 12 hours." (model documentation)
DIGEST = re.compile(r"sha256:[a-f0-9]{64}")


def repository_doc(ctx: Context, repo: Repository) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "repositoryArn": f"arn:aws:ecr:{ctx.region}:{ctx.account}:repository/{repo.name}",
        "registryId": ctx.account,
        "repositoryName": repo.name,
        "repositoryUri": f"{ctx.registry_host}/{repo.name}",
        "createdAt": repo.created_at,
        "imageTagMutability": repo.mutability,
        "imageScanningConfiguration": {"scanOnPush": repo.scan_on_push},
        "encryptionConfiguration": repo.encryption,
    }
    if repo.mutability_filters:
        doc["imageTagMutabilityExclusionFilters"] = repo.mutability_filters
    return doc


def get_repository(ctx: Context, name: str) -> Repository:
    repo = ctx.store.get_repository(name)
    if repo is None:
        raise ApiError(
            "RepositoryNotFoundException",
            f"The repository with name '{name}' does not exist in the registry with id '{ctx.account}'",
        )
    return repo


def create_repository(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    # A repository created with CreateRepository gets no creation template: templates apply to
    # repositories ECR creates for pull through cache, replication or create on push.
    check_mutability(params)
    check_encryption(params.get("encryptionConfiguration"))
    repo = Repository(
        name=params["repositoryName"],
        created_at=ctx.clock.now(),
        mutability=params.get("imageTagMutability", "MUTABLE"),
        mutability_filters=params.get("imageTagMutabilityExclusionFilters", []),
        scan_on_push=params.get("imageScanningConfiguration", {}).get("scanOnPush", False),
        encryption=params.get("encryptionConfiguration", {"encryptionType": "AES256"}),
        tags=params.get("tags", []),
    )
    if not ctx.store.insert_repository(repo):
        raise ApiError(
            "RepositoryAlreadyExistsException",
            f"The repository with name '{repo.name}' already exists in the registry with id '{ctx.account}'",
        )
    return {"repository": repository_doc(ctx, repo)}


def describe_repositories(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    names = params.get("repositoryNames")
    if names and params.get("maxResults"):
        raise ApiError("InvalidParameterException", "maxResults cannot be used with repositoryNames")
    repos = [get_repository(ctx, name) for name in names] if names else ctx.store.repositories()
    page, token = paginate(ctx, repos, params)
    return {"repositories": [repository_doc(ctx, repo) for repo in page], **token}


def delete_repository(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    repo = get_repository(ctx, params["repositoryName"])
    images = ctx.store.images(repo.name)
    if images and not params.get("force"):
        raise ApiError(
            "RepositoryNotEmptyException",
            f"The repository with name '{repo.name}' in registry with id '{ctx.account}' cannot be deleted "
            "because it still contains images",
        )
    for image in images:
        ctx.store.delete_image(repo.name, image.digest)
    ctx.store.delete_repository(repo.name)
    return {"repository": repository_doc(ctx, repo)}


def put_image_tag_mutability(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    repo = get_repository(ctx, params["repositoryName"])
    check_mutability(params)
    repo.mutability = params["imageTagMutability"]
    repo.mutability_filters = params.get("imageTagMutabilityExclusionFilters", [])
    ctx.store.put_repository(repo)
    return {
        "registryId": ctx.account,
        "repositoryName": repo.name,
        "imageTagMutability": repo.mutability,
        "imageTagMutabilityExclusionFilters": repo.mutability_filters or None,
    }


def image_doc(ctx: Context, image: Image) -> dict[str, Any]:
    return {
        "registryId": ctx.account,
        "repositoryName": image.repo,
        "imageDigest": image.digest,
        "imageTags": image.tags or None,
        "imageSizeInBytes": image.size,
        "imagePushedAt": image.pushed_at,
        "imageManifestMediaType": image.media_type,
        "artifactMediaType": image.artifact_media_type,
        "lastRecordedPullTime": image.last_pull,
    }


def _find_image(ctx: Context, repo: str, image_id: dict[str, str]) -> Image | None:
    """The image an imageId names (digest, tag, or both, which must agree)."""
    digest, tag = image_id.get("imageDigest"), image_id.get("imageTag")
    if digest is not None:
        image = ctx.store.get_image(repo, digest)
        return image if image and (tag is None or tag in image.tags) else None
    return ctx.store.image_by_tag(repo, tag) if tag is not None else None


def _page_after(params: dict[str, Any]) -> tuple[float, str] | None:
    """The (imagePushedAt, imageDigest) key a DescribeImages nextToken continues after."""
    if not params.get("nextToken"):
        return None
    try:
        pushed_at, digest = decode_token(params["nextToken"])["after"]
        return float(pushed_at), str(digest)
    except (KeyError, TypeError, ValueError) as exc:
        raise ApiError("InvalidParameterException", "Invalid parameter at 'nextToken'") from exc


def describe_images(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """One page costs one page: the store reads ``maxResults`` + 1 images after the token's key
    (ordered by push time, then digest), so a client paging through 2,000 images does not make the
    emulator read the repository 2,000 / maxResults times over. Every call counts in the stats
    (``describe_images``), a listing page and a call by ``imageIds`` alike."""
    ctx.cache.count("describe_images")
    repo = get_repository(ctx, params["repositoryName"])
    status = (params.get("filter") or {}).get("tagStatus", "ANY")
    if params.get("imageIds"):
        if params.get("maxResults"):
            raise ApiError("InvalidParameterException", "maxResults cannot be used with imageIds")
        found: list[Image] = []
        for image_id in params["imageIds"]:
            image = _find_image(ctx, repo.name, image_id)
            if image is None:
                raise ApiError(
                    "ImageNotFoundException",
                    f"The image with imageId {{imageDigest:'{image_id.get('imageDigest')}', "
                    f"imageTag:'{image_id.get('imageTag')}'}} does not exist within the repository with name "
                    f"'{repo.name}' in the registry with id '{ctx.account}'",
                )
            if image.digest not in {f.digest for f in found}:
                found.append(image)
        if status != "ANY":
            found = [image for image in found if bool(image.tags) == (status == "TAGGED")]
        return {"imageDetails": [image_doc(ctx, image) for image in found]}
    limit = params.get("maxResults") or 100
    page, more = ctx.store.images_page(repo.name, _page_after(params), limit, status)
    answer: dict[str, Any] = {"imageDetails": [image_doc(ctx, image) for image in page]}
    if more:
        ctx.facts = Facts(more_pages=True)
        answer["nextToken"] = encode_token({"after": [page[-1].pushed_at, page[-1].digest]})
    return answer


def _delete_one(ctx: Context, repo: str, image_id: dict[str, str]) -> tuple[list[dict[str, str]], str, str]:
    """Delete what ``image_id`` names; returns (deleted ids, failure code, failure reason)."""
    digest, tag = image_id.get("imageDigest"), image_id.get("imageTag")
    if not digest and not tag:
        return [], "MissingDigestAndTag", "Missing image digest and image tag"
    if digest and not DIGEST.fullmatch(digest):
        return [], "InvalidImageDigest", "Invalid image digest"
    image = _find_image(ctx, repo, {"imageDigest": digest} if digest else {"imageTag": tag})
    if image is None:
        return [], "ImageNotFound", "Requested image not found"
    if tag and tag not in image.tags:
        return [], "ImageTagDoesNotMatchDigest", "Invalid tag for image digest"
    if tag and len(image.tags) > 1:
        ctx.store.delete_tag(repo, tag)
        return [{"imageDigest": image.digest, "imageTag": tag}], "", ""
    if ctx.store.parents(repo, image.digest):
        return [], "ImageReferencedByManifestList", "Requested image is referenced by a manifest list"
    ctx.store.delete_image(repo, image.digest)
    return (
        [{"imageDigest": image.digest, "imageTag": t} for t in image.tags] or [{"imageDigest": image.digest}],
        "",
        "",
    )


def batch_delete_image(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    repo = get_repository(ctx, params["repositoryName"])
    deleted: list[dict[str, str]] = []
    failures: list[dict[str, Any]] = []
    for image_id in params["imageIds"]:
        ids, code, reason = _delete_one(ctx, repo.name, image_id)
        deleted.extend(ids)
        if code:
            failures.append({"imageId": image_id, "failureCode": code, "failureReason": reason})
    return {"imageIds": deleted, "failures": failures}


def get_authorization_token(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    expires_at = ctx.clock.now() + TOKEN_LIFETIME
    data = []
    for _ in params.get("registryIds") or [ctx.account]:
        token = secrets.token_urlsafe(48)
        ctx.store.add_token(token, expires_at)
        encoded = base64.b64encode(f"AWS:{token}".encode()).decode()
        data.append({"authorizationToken": encoded, "expiresAt": expires_at, "proxyEndpoint": ctx.endpoint})
    return {"authorizationData": data}


def list_tags_for_resource(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    prefix = f"arn:aws:ecr:{ctx.region}:{ctx.account}:repository/"
    if not params["resourceArn"].startswith(prefix):
        raise ApiError(
            "InvalidParameterException", f"Invalid parameter at 'resourceArn': {params['resourceArn']}"
        )
    return {"tags": get_repository(ctx, params["resourceArn"].removeprefix(prefix)).tags}


def get_lifecycle_policy(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    repo = get_repository(ctx, params["repositoryName"])
    if repo.lifecycle_policy is None:
        raise ApiError(
            "LifecyclePolicyNotFoundException",
            f"Lifecycle policy does not exist for the repository with name '{repo.name}' "
            f"in the registry with id '{ctx.account}'",
        )
    return {
        "registryId": ctx.account,
        "repositoryName": repo.name,
        "lifecyclePolicyText": repo.lifecycle_policy,
    }


def get_repository_policy(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    repo = get_repository(ctx, params["repositoryName"])
    if repo.repository_policy is None:
        raise ApiError(
            "RepositoryPolicyNotFoundException",
            f"Repository policy does not exist for the repository with name '{repo.name}' in the registry "
            f"with id '{ctx.account}'",
        )
    return {"registryId": ctx.account, "repositoryName": repo.name, "policyText": repo.repository_policy}


HANDLERS: dict[str, Handler] = {
    "CreateRepository": create_repository,
    "DescribeRepositories": describe_repositories,
    "DeleteRepository": delete_repository,
    "PutImageTagMutability": put_image_tag_mutability,
    "DescribeImages": describe_images,
    "BatchDeleteImage": batch_delete_image,
    "GetAuthorizationToken": get_authorization_token,
    "ListTagsForResource": list_tags_for_resource,
    "GetLifecyclePolicy": get_lifecycle_policy,
    "GetRepositoryPolicy": get_repository_policy,
}
