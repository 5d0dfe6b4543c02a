"""Airflow's authentication and authorization, enforced by the audit view itself.

Airflow 3 mounts a plugin's FastAPI app without any check: a route answers whoever asks unless
it checks. Here every page depends on ``current_user``, which accepts exactly what Airflow's own
REST API accepts: a ``Authorization: Bearer <JWT>`` header, else the ``_token`` cookie the UI's
login sets (Airflow's ``get_user`` does the validation, through the configured auth manager). A
request without a valid one is refused: a browser is sent to the auth manager's login page, a
machine gets 401. What the user may see is the auth manager's answer to "may this user GET this
DAG", so DAG-level permissions (FAB roles, a Keycloak or custom auth manager's policies) hide
audit rows exactly as they hide the DAG in Airflow.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser

_bearer = HTTPBearer(auto_error=False)


class NotAuthenticated(Exception):
    """No valid Airflow session or token: answered by ``refuse``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def current_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> BaseUser:
    """FastAPI dependency: the Airflow user of the request (bearer token, else the UI's cookie)."""
    # imported here: the plugin module is loaded by every Airflow component, this only serves pages
    from airflow.api_fastapi.core_api.security import get_user

    try:
        return await get_user(request, None, credentials)
    except HTTPException as exc:  # no token, an expired one, or one that does not verify
        raise NotAuthenticated(str(exc.detail)) from None


CurrentUser = Annotated[Any, Depends(current_user)]


def wants_html(request: Request) -> bool:
    """A browser asking for a page (not ``?format=json``, no bearer token, accepts HTML)."""
    if request.query_params.get("format") == "json" or "authorization" in request.headers:
        return False
    return "text/html" in request.headers.get("accept", "")


async def refuse(request: Request, exc: Exception) -> Response:
    """Exception handler of ``NotAuthenticated``: the login page for a browser, 401 for a machine."""
    assert isinstance(exc, NotAuthenticated)
    if wants_html(request):
        from airflow.api_fastapi.app import get_auth_manager

        login = get_auth_manager().get_url_login(next_url=str(request.url))
        return RedirectResponse(login, status_code=status.HTTP_303_SEE_OTHER)
    return JSONResponse(
        {"detail": f"Not authenticated: {exc.reason}"},
        status_code=status.HTTP_401_UNAUTHORIZED,
        headers={"WWW-Authenticate": "Bearer"},
    )


def readable_dag_ids(user: BaseUser, dag_ids: Collection[str]) -> set[str]:
    """The DAGs among ``dag_ids`` the auth manager lets ``user`` read (method GET).

    DAGs Airflow knows go through ``get_authorized_dag_ids`` (one query for FAB, team-aware in
    multi-team mode); audit rows of a DAG Airflow no longer has (a removed manifest) are shown only
    to a user the auth manager lets read that DAG id.
    """
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    wanted = set(dag_ids)
    if not wanted:
        return set()
    manager = get_auth_manager()
    with create_session() as session:
        known = set(session.scalars(sa.select(DagModel.dag_id).where(DagModel.dag_id.in_(sorted(wanted)))))
        allowed = manager.get_authorized_dag_ids(user=user, method="GET", session=session) & wanted
    for dag_id in sorted(wanted - known):
        if manager.is_authorized_dag(method="GET", details=DagDetails(id=dag_id), user=user):
            allowed.add(dag_id)
    return allowed


def require_dag(user: BaseUser, dag_id: str) -> None:
    """403 unless ``user`` may read ``dag_id``."""
    if dag_id not in readable_dag_ids(user, {dag_id}):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"You may not read the DAG {dag_id}")
