"""The audit view: a FastAPI app that the plugin mounts in Airflow's api-server (``MOUNT``).

Pages (each also as JSON with ``?format=json`` or ``Accept: application/json``):

- ``/``: per manifest (DAG) its latest runs with counts per status, and the chart;
- ``/dags/{dag_id}``: one manifest's runs and chart;
- ``/dags/{dag_id}/runs/{run_id}``: every tag of a run with its digests, error or note;
- ``/tags``: tag rows across runs (e.g. every failed tag of the last 7 days);
- ``/history?repository=&tag=``: one ECR ``repository:tag``'s digests across runs.

All take the filters ``status`` (repeatable), ``image`` (substring or glob) and ``since``/``until``
or ``last``. Every route depends on ``current_user`` and shows only DAGs the user may read.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import jinja2
import sqlalchemy as sa
from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from ecr_mirror.audit import AuditStore
from ecr_mirror.settings import get_settings
from ecr_mirror.web import chart, queries
from ecr_mirror.web.auth import (
    CurrentUser,
    NotAuthenticated,
    readable_dag_ids,
    refuse,
    require_dag,
    wants_html,
)
from ecr_mirror.web.filters import LAST, tag_filter

#: where the plugin mounts the app in the api-server
MOUNT = "/ecr-mirror"
HERE = Path(__file__).parent
#: query parameters that are filters (kept when following a link from one page to another)
FILTER_PARAMS = ("status", "image", "since", "until", "last")

Format = Annotated[Literal["html", "json"] | None, Query()]
Filter = Annotated[queries.TagFilter, Depends(tag_filter)]


@lru_cache(maxsize=4)
def _engine(url: str) -> sa.Engine:
    # AuditStore owns the schema (it creates the tables a fresh store lacks); the view only reads.
    return AuditStore(url).engine


def audit_connection() -> Iterator[sa.Connection]:
    """FastAPI dependency: a connection to the audit store (``ECR_MIRROR_AUDIT_URL``)."""
    with _engine(get_settings().resolved_audit_url()).connect() as conn:
        yield conn


Audit = Annotated[sa.Connection, Depends(audit_connection)]


def _short(digest: str | None) -> str:
    """``sha256:`` and the first 12 hex digits, as registries and docker print digests."""
    if not digest:
        return ""
    algorithm, _, hexdigits = digest.partition(":")
    return f"{algorithm}:{hexdigits[:12]}" if hexdigits else digest[:19]


def _size(value: int | None) -> str:
    if value is None:
        return ""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else ""


@jinja2.pass_context
def _link(context: Any, name: str, query: dict[str, Any] | None = None, **params: Any) -> str:
    """The path of route ``name`` (under the api-server's root path) with ``query``."""
    path = context["request"].url_for(name, **params).path
    kept = {k: v for k, v in (query or {}).items() if v not in (None, "", [])}
    return f"{path}?{urlencode(kept, doseq=True)}" if kept else path


templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters.update(short=_short, size=_size, when=_when)
templates.env.globals.update(
    link=_link, statuses=queries.STATUSES, last_choices=list(LAST), provenance_labels=queries.PROVENANCE
)

app = FastAPI(title="ecr-mirror audit", docs_url=None, redoc_url=None, openapi_url=None)
app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
app.add_exception_handler(NotAuthenticated, refuse)


@app.exception_handler(HTTPException)
async def _http_error(request: Request, exc: HTTPException) -> Response:
    if wants_html(request):
        context = {"status": exc.status_code, "detail": exc.detail, **_page_context(request)}
        return templates.TemplateResponse(request, "error.html", context, exc.status_code)
    return await http_exception_handler(request, exc)


def _airflow_root(request: Request) -> str:
    """The api-server's root path (the Airflow UI's links start with it)."""
    return str(request.scope.get("root_path", "")).removesuffix(MOUNT)


def _page_context(request: Request) -> dict[str, Any]:
    """What ``base.html`` needs besides the page's data."""
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "format"]
    return {
        "filters": {k: request.query_params.getlist(k) for k in FILTER_PARAMS if request.query_params.get(k)},
        "airflow": _airflow_root(request),
        "json_link": f"{request.url.path}?{urlencode([*query, ('format', 'json')])}",
    }


def _respond(
    request: Request, template: str, data: dict[str, Any], fmt: str | None, **html_only: Any
) -> Response:
    """``data`` as JSON (``?format=json``, or an Accept header that asks for JSON, not HTML), else
    the page rendered from it (plus ``html_only``)."""
    accept = request.headers.get("accept", "")
    if fmt == "json" or (fmt is None and "application/json" in accept and "text/html" not in accept):
        return JSONResponse(jsonable_encoder(data))
    return templates.TemplateResponse(request, template, {**data, **html_only, **_page_context(request)})


def _readable(user: Any, conn: sa.Connection) -> set[str]:
    return readable_dag_ids(user, queries.audited_dag_ids(conn))


@app.get("/", name="overview")
def overview(
    request: Request,
    user: CurrentUser,
    conn: Audit,
    flt: Filter,
    runs: Annotated[int, Query(ge=1, le=200)] = 10,
    format: Format = None,
) -> Response:
    dag_ids = _readable(user, conn)
    series = queries.status_series(conn, dag_ids, flt, datetime.now(UTC))
    data = {
        "manifests": queries.latest_runs(conn, dag_ids, flt, runs),
        "series": series,
        "filter": flt,
    }
    return _respond(request, "overview.html", data, format, chart=chart.layout(series))


@app.get("/dags/{dag_id}", name="dag")
def dag_runs(
    request: Request,
    dag_id: str,
    user: CurrentUser,
    conn: Audit,
    flt: Filter,
    runs: Annotated[int, Query(ge=1, le=500)] = 50,
    format: Format = None,
) -> Response:
    require_dag(user, dag_id)
    found = queries.latest_runs(conn, {dag_id}, flt, runs)
    series = queries.status_series(conn, {dag_id}, flt, datetime.now(UTC))
    data = {"dag_id": dag_id, "runs": found[0].runs if found else [], "series": series, "filter": flt}
    return _respond(request, "dag.html", data, format, chart=chart.layout(series))


@app.get("/dags/{dag_id}/runs/{run_id}", name="run")
def run_tags(
    request: Request,
    dag_id: str,
    run_id: str,
    user: CurrentUser,
    conn: Audit,
    flt: Filter,
    format: Format = None,
) -> Response:
    require_dag(user, dag_id)
    run = queries.run_overview(conn, dag_id, run_id)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"The audit has no row of run {run_id} of {dag_id}")
    data = {"run": run, "tags": queries.run_tags(conn, dag_id, run_id, flt), "filter": flt}
    return _respond(request, "run.html", data, format)


@app.get("/tags", name="tags")
def tag_search(
    request: Request,
    user: CurrentUser,
    conn: Audit,
    flt: Filter,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    format: Format = None,
) -> Response:
    rows = queries.search_tags(conn, _readable(user, conn), flt, limit + 1)
    data = {"tags": rows[:limit], "truncated": len(rows) > limit, "limit": limit, "filter": flt}
    return _respond(request, "tags.html", data, format)


@app.get("/history", name="history")
def tag_history(
    request: Request,
    repository: str,
    tag: str,
    user: CurrentUser,
    conn: Audit,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    format: Format = None,
) -> Response:
    rows = queries.tag_history(conn, _readable(user, conn), repository, tag, limit)
    data = {"repository": repository, "tag": tag, "history": rows}
    return _respond(request, "history.html", data, format)
