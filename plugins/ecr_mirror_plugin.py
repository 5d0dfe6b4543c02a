"""The ecr-mirror Airflow plugin: what the package adds to Airflow's own components.

- the audit view's FastAPI app in the api-server (``/ecr-mirror``), a navigation entry, and a tab
  on every DAG and DAG run page that opens that DAG's or run's audit; the app checks Airflow's
  authentication and DAG permissions itself (``ecr_mirror.web.auth``);
- a listener (ecr_mirror/listeners.py): when the scheduler starts a run, the ``ecr_mirror__*``
  pools its tasks use exist (missing ones are created with their configured slots);
- a listener (ecr_mirror/run_notes.py): when a run ends, its note and record_audit's task note
  say what the run did (counts, failed tags with their errors, stale tags with ECR's refresh time);
- an api-server middleware (ecr_mirror/conf_guard.py): a trigger conf with a key the DAG's form
  does not have is refused with 400 when the run is created, naming the closest valid key.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from airflow.configuration import conf
from airflow.plugins_manager import AirflowPlugin

from ecr_mirror import listeners as pool_listener
from ecr_mirror import run_notes
from ecr_mirror.conf_guard import ConfGuardMiddleware
from ecr_mirror.web.app import MOUNT, app

# The UI loads external views from these paths as they are: they must carry the api-server's root
# path when it serves under one ([api] base_url such as https://example.com/airflow).
_BASE = urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/") + MOUNT


class EcrMirrorPlugin(AirflowPlugin):
    name = "ecr_mirror"
    listeners = [pool_listener, run_notes]
    fastapi_root_middlewares = [
        {"middleware": ConfGuardMiddleware, "args": [], "kwargs": {}, "name": "ecr-mirror trigger conf guard"}
    ]
    fastapi_apps = [{"app": app, "url_prefix": MOUNT, "name": "ECR mirror audit"}]
    external_views = [
        {
            "name": "ECR audit",
            "href": f"{_BASE}/",
            "url_route": "ecr-mirror",
            "destination": "nav",
            "nav_top_level": True,
            "icon": f"{_BASE}/static/icon.svg",
        },
        {
            "name": "Tag audit",
            "href": f"{_BASE}/dags/{{DAG_ID}}",
            "url_route": "ecr-mirror-dag",
            "destination": "dag",
        },
        {
            "name": "Tag audit",
            "href": f"{_BASE}/dags/{{DAG_ID}}/runs/{{RUN_ID}}",
            "url_route": "ecr-mirror-run",
            "destination": "dag_run",
        },
    ]
