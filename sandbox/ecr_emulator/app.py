"""The ASGI application: ECR JSON API on ``POST /``, registry on ``/v2/``, admin on ``/_emulator/``;
and the blob host's application, served from a second listener (``serve_both``)."""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import ops_cache, ops_layers, ops_repos
from .api import TARGET_PREFIX, Context, handle
from .behaviour import Behaviour, BehaviourError
from .blobhost import BlobHost
from .clock import Clock
from .errors import ApiError
from .faults import Faults
from .pullthrough import PullThroughCache, Settings
from .registry_plane import RegistryPlane
from .shapes import Violations, error_problems
from .store import Store

log = logging.getLogger(__name__)
AMZ_JSON = "application/x-amz-json-1.1"
HANDLERS = {**ops_cache.HANDLERS, **ops_repos.HANDLERS, **ops_layers.HANDLERS}
STAT_KEYS = (
    "manifest_gets",
    "manifest_heads",
    "upstream_manifest_fetches",
    "upstream_manifest_heads",
    "blob_gets",
    "blob_heads",
    "blob_redirects",
    "upstream_blob_fetches",
)


def create_app(
    state_dir: Path,
    settings: Settings,
    account: str = "123456789012",
    region: str = "us-east-1",
    clock: Clock | None = None,
    blob_url: str | None = None,
) -> Starlette:
    """The emulator; with ``blob_url`` (where ``app.state.blob_host.app()`` is served) blob GETs
    can be redirected there, as the ``blob_delivery`` behaviour says."""
    state_dir.mkdir(parents=True, exist_ok=True)
    store = Store(state_dir)
    clock = clock or Clock(float(store.get_meta("clock_offset") or 0.0))
    cache = PullThroughCache(store, clock, settings, region, account)
    registry = RegistryPlane(store, cache)
    violations = Violations(clock.now)
    faults = Faults()  # test-only: armed through /_emulator/faults, see faults.py
    blob_host = None
    if blob_url:
        blob_host = BlobHost(blob_url, region, clock, violations, cache.held_blob, cache.upstream_chunks)
        cache.blob_host = blob_host

    def context(request: Request) -> Context:
        endpoint = f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"
        return Context(store, clock, cache, account, region, endpoint)

    async def api(request: Request) -> Response:
        headers = {"x-amzn-RequestId": str(uuid.uuid4())}
        target = request.headers.get("x-amz-target", "")
        body = await request.body()
        try:
            if fault := faults.take(target.removeprefix(TARGET_PREFIX)):
                raise fault
            result = await run_in_threadpool(handle, HANDLERS, context(request), target, body, violations)
        except ApiError as exc:
            error = {"__type": exc.code, "message": exc.message}
            violations.record(
                "error-shape",
                target.removeprefix(TARGET_PREFIX),
                error_problems(target.removeprefix(TARGET_PREFIX), error),
            )
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

    async def behaviour_endpoint(request: Request) -> JSONResponse:
        """GET: the variants in force. POST ``{"profile": ..., "switches": {...}}``: a profile
        (default: the current one) with overrides replaces them all at once."""
        if request.method == "POST":
            body = await request.json()
            try:
                cache.behaviour = Behaviour.build(
                    body.get("profile", cache.behaviour.profile), body.get("switches") or {}
                )
            except BehaviourError as exc:
                return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse(cache.behaviour.doc())

    async def faults_endpoint(request: Request) -> JSONResponse:
        """Test-only (faults.py). GET: the armed faults; POST: arm one."""
        if request.method == "POST":
            faults.arm(await request.json())
        return JSONResponse(faults.doc())

    async def reset_faults(request: Request) -> JSONResponse:
        return JSONResponse(faults.reset())

    async def violations_endpoint(request: Request) -> JSONResponse:
        return JSONResponse({"violations": violations.items()})

    async def reset_violations(request: Request) -> JSONResponse:
        return JSONResponse({"violations": violations.reset()})

    async def blob_host_endpoint(request: Request) -> JSONResponse:
        if blob_host is None:
            return JSONResponse({"url": None, "requests": []})
        if request.method == "POST":
            blob_host.reset()
        return JSONResponse(blob_host.doc())

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse({key: cache.stats[key] for key in STAT_KEYS})

    async def reset_stats(request: Request) -> JSONResponse:
        cache.reset_stats()
        return JSONResponse({key: 0 for key in STAT_KEYS})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "ok": True,
                "account": account,
                "region": region,
                "profile": cache.behaviour.profile,
                "blob_url": blob_url,
            }
        )

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
        Route("/_emulator/behaviour", behaviour_endpoint, methods=["GET", "POST"]),
        Route("/_emulator/faults", faults_endpoint, methods=["GET", "POST"]),
        Route("/_emulator/faults/reset", reset_faults, methods=["POST"]),
        Route("/_emulator/violations", violations_endpoint, methods=["GET"]),
        Route("/_emulator/violations/reset", reset_violations, methods=["POST"]),
        Route("/_emulator/blob-host", blob_host_endpoint, methods=["GET"]),
        Route("/_emulator/blob-host/reset", blob_host_endpoint, methods=["POST"]),
        Route("/_emulator/stats", stats, methods=["GET"]),
        Route("/_emulator/stats/reset", reset_stats, methods=["POST"]),
        Route("/_emulator/health", health, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.blob_host = blob_host
    app.state.clock = clock
    return app


def dated(app: ASGIApp, clock: Clock) -> ASGIApp:
    """Every answer carries ``Date`` in the emulated clock, as AWS answers carry AWS's time (an
    origin server with a clock sends Date, RFC 9110 section 6.6.1): a client that times ECR's
    refresh window reads ECR's clock, which the tests move. Run uvicorn with ``date_header=False``."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_dated(message: Message) -> None:
            if message["type"] == "http.response.start":
                date = formatdate(clock.now(), usegmt=True).encode()
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"date"]
                message = {**message, "headers": [*headers, (b"date", date)]}
            await send(message)

        await app(scope, receive, send_dated)

    return wrapped


def serve_both(main: Starlette, blob: ASGIApp, blob_address: tuple[str, int]) -> ASGIApp:
    """One ASGI app for two listeners: requests that reached ``blob_address`` go to ``blob``
    (by port alone when the blob host listens on every address)."""
    wildcard = blob_address[0] in ("0.0.0.0", "::")

    def to_blob_host(server: tuple[str, int] | None) -> bool:
        if not server:
            return False
        return server[1] == blob_address[1] and (wildcard or server[0] == blob_address[0])

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and to_blob_host(scope.get("server")):
            await blob(scope, receive, send)
        else:
            await main(scope, receive, send)

    return app
