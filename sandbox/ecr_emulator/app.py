"""The ASGI application: ECR JSON API on ``POST /``, registry on ``/v2/``, admin on ``/_emulator/``."""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import ops_cache, ops_repos
from .api import Context, handle
from .clock import Clock
from .errors import ApiError
from .pullthrough import PullThroughCache, Settings
from .registry_plane import RegistryPlane
from .store import Store

log = logging.getLogger(__name__)
AMZ_JSON = "application/x-amz-json-1.1"
HANDLERS = {**ops_cache.HANDLERS, **ops_repos.HANDLERS}
STAT_KEYS = (
    "manifest_gets",
    "manifest_heads",
    "upstream_manifest_fetches",
    "upstream_manifest_heads",
    "blob_gets",
    "blob_heads",
    "upstream_blob_fetches",
)


def create_app(
    state_dir: Path,
    settings: Settings,
    account: str = "123456789012",
    region: str = "us-east-1",
    clock: Clock | None = None,
) -> Starlette:
    state_dir.mkdir(parents=True, exist_ok=True)
    store = Store(state_dir)
    clock = clock or Clock(float(store.get_meta("clock_offset") or 0.0))
    cache = PullThroughCache(store, clock, settings, region)
    registry = RegistryPlane(store, cache)

    def context(request: Request) -> Context:
        endpoint = f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"
        return Context(store, clock, cache, account, region, endpoint)

    async def api(request: Request) -> Response:
        headers = {"x-amzn-RequestId": str(uuid.uuid4())}
        target = request.headers.get("x-amz-target", "")
        body = await request.body()
        try:
            result = await run_in_threadpool(handle, HANDLERS, context(request), target, body)
        except ApiError as exc:
            error = {"__type": exc.code, "message": exc.message}
            return Response(json.dumps(error), exc.status, headers=headers, media_type=AMZ_JSON)
        except Exception:
            log.exception("unhandled error in %s", target)
            error = {"__type": "ServerException", "message": "Internal error in the ECR emulator"}
            return Response(json.dumps(error), 500, headers=headers, media_type=AMZ_JSON)
        return Response(json.dumps(result), 200, headers=headers, media_type=AMZ_JSON)

    def clock_doc() -> dict[str, Any]:
        return {"now": clock.now(), "offset_seconds": clock.offset}

    async def clock_endpoint(request: Request) -> JSONResponse:
        if request.method == "POST":
            body = await request.json()
            offset = clock.advance(float(body.get("advance_seconds", 0)))
            await run_in_threadpool(store.set_meta, "clock_offset", str(offset))
        return JSONResponse(clock_doc())

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse({key: cache.stats[key] for key in STAT_KEYS})

    async def reset_stats(request: Request) -> JSONResponse:
        cache.reset_stats()
        return JSONResponse({key: 0 for key in STAT_KEYS})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "account": account, "region": region})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        cache.close()
        store.close()

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
    routes = [
        Route("/", api, methods=["POST"]),
        Route("/v2/", registry.handle, methods=methods),
        Route("/v2/{path:path}", registry.handle, methods=methods),
        Route("/_emulator/clock", clock_endpoint, methods=["GET", "POST"]),
        Route("/_emulator/stats", stats, methods=["GET"]),
        Route("/_emulator/stats/reset", reset_stats, methods=["POST"]),
        Route("/_emulator/health", health, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
