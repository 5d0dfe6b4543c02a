"""The api-server refuses a trigger conf with a key the DAG's form does not have.

Airflow validates each Param's value but lets any other key through, so ``{"dryrun": true}``
would start a real mirror. This ASGI middleware (registered by plugins/ecr_mirror_plugin.py as a
``fastapi_root_middlewares`` entry) looks at the requests that create runs of an ecr-mirror DAG
(tag ``ecr-mirror``) before Airflow does:

- ``POST /api/v2/dags/{dag_id}/dagRuns`` (the REST API and the UI's trigger dialog): ``conf``;
- ``POST /api/v2/backfills`` and ``/api/v2/backfills/dry_run``: ``dag_run_conf``.

A key that is not one of the DAG's params gets ``400`` with ``{"detail": "conf: unknown key
'dryrun' (did you mean 'dry_run'?)"}`` and no run is made. Every other request, and any request
Airflow itself would refuse (no valid token or session, no permission to run the DAG, a body that
is not JSON), passes through untouched, so the answer to those stays Airflow's own.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Collection, Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: the tag every ecr-mirror DAG carries (dag_factory)
DAG_TAG = "ecr-mirror"
_TRIGGER = re.compile(r"/api/v2/dags/(?P<dag_id>[^/]+)/dagRuns/?$")
_BACKFILL = re.compile(r"/api/v2/backfills(/dry_run)?/?$")


def unknown_keys(conf: Mapping[str, Any], valid: Collection[str]) -> list[str]:
    """One message per key of ``conf`` that is not in ``valid``, with the closest valid key."""
    problems = []
    for key in conf:
        if key in valid:
            continue
        close = difflib.get_close_matches(str(key), sorted(valid), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(sorted(valid)) or 'none'}"
        problems.append(f"unknown key {key!r} ({hint})")
    return problems


def _target(path: str, body: Mapping[str, Any]) -> tuple[str, Any] | None:
    """(dag_id, conf) of a request that creates runs, None for any other request."""
    if match := _TRIGGER.search(path):
        return match["dag_id"], body.get("conf")
    if _BACKFILL.search(path) and isinstance(body.get("dag_id"), str):
        return body["dag_id"], body.get("dag_run_conf")
    return None


def _form_keys(app: Any, dag_id: str) -> set[str] | None:
    """The param names of the DAG's latest version, None when it is no ecr-mirror DAG (or unknown)."""
    from airflow.utils.session import create_session

    with create_session(scoped=False) as session:
        dag = app.state.dag_bag.get_latest_version_of_dag(dag_id, session=session)
    if dag is None or DAG_TAG not in (dag.tags or ()):
        return None
    return set(dag.params.keys())


async def _may_trigger(request: Request, dag_id: str) -> bool:
    """Whether Airflow would let this request create a run of ``dag_id`` (same token sources)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    token = credentials if scheme.lower() == "bearer" else request.cookies.get(COOKIE_NAME_JWT_TOKEN)
    if not token:
        return False
    auth_manager = get_auth_manager()
    try:
        user = await auth_manager.get_user_from_token(token)
    except Exception:  # expired, forged or malformed: Airflow answers it
        return False
    return auth_manager.is_authorized_dag(
        method="POST", access_entity=DagAccessEntity.RUN, details=DagDetails(id=dag_id), user=user
    )


class ConfGuardMiddleware:
    """Pure ASGI middleware: reads a run-creating request's body, checks it, then replays it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not _might_create_runs(scope["path"]):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        refusal = await self._refusal(scope, b"".join(m.get("body", b"") for m in messages))
        if refusal is not None:
            await refusal(scope, replay, send)
            return
        await self.app(scope, replay, send)

    async def _refusal(self, scope: Scope, raw: bytes) -> JSONResponse | None:
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            return None
        target = _target(scope["path"], body) if isinstance(body, dict) else None
        if target is None or not isinstance(target[1], dict) or not target[1]:
            return None
        dag_id, conf = target
        if not await _may_trigger(Request(scope), dag_id):
            return None
        valid = await run_in_threadpool(_form_keys, scope["app"], dag_id)
        problems = unknown_keys(conf, valid) if valid is not None else []
        if not problems:
            return None
        return JSONResponse({"detail": "conf: " + "; ".join(problems)}, status_code=400)


def _might_create_runs(path: str) -> bool:
    return bool(_TRIGGER.search(path) or _BACKFILL.search(path))
