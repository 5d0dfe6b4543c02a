"""Layers through the API: GetDownloadUrlForLayer.

API_GetDownloadUrlForLayer.html: "Retrieves the pre-signed Amazon S3 download URL corresponding to
an image layer. You can only get URLs for image layers that are referenced in an image." Its errors
include UnableToGetUpstreamLayerException ("There was an issue getting the upstream layer matching
the pull through cache rule"): a layer of a cached image that ECR has not fetched yet is fetched
from upstream first, as a registry-endpoint blob GET does.
"""

from __future__ import annotations

from typing import Any

from .api import Context, Handler
from .errors import ApiError, RegistryError
from .ops_repos import DIGEST, get_repository


def get_download_url_for_layer(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    repo = get_repository(ctx, params["repositoryName"])
    digest = params["layerDigest"]
    if not DIGEST.fullmatch(digest):
        raise ApiError("InvalidParameterException", f"Invalid parameter at 'layerDigest': {digest}")
    ref = ctx.store.find_ref(repo.name, digest)
    if ref is None or ref.kind != "blob":
        raise ApiError(
            "LayersNotFoundException",
            f"The layer with digest '{digest}' does not exist within the repository with name '{repo.name}' "
            f"in the registry with id '{ctx.account}'",
        )
    if ctx.cache.blob_host is None:
        raise ApiError("ServerException", "The emulator runs without a blob host (no --blob-host)", 500)
    if not ctx.store.has_blob(digest):
        try:
            ctx.cache.fetch_blob(repo.name, digest)
        except RegistryError as exc:
            raise ApiError("UnableToGetUpstreamLayerException", exc.message) from exc
    return {
        "downloadUrl": ctx.cache.blob_host.presigned_url(ctx.account, repo.name, digest),
        "layerDigest": digest,
    }


HANDLERS: dict[str, Handler] = {"GetDownloadUrlForLayer": get_download_url_for_layer}
