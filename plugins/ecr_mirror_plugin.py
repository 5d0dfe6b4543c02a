"""The ecr-mirror Airflow plugin: what the package adds to Airflow's own components.

- a listener (ecr_mirror/listeners.py): when the scheduler starts a run, the ``ecr_mirror__*``
  pools its tasks use exist (missing ones are created with their configured slots);
- an api-server middleware (ecr_mirror/conf_guard.py): a trigger conf with a key the DAG's form
  does not have is refused with 400 when the run is created, naming the closest valid key.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from ecr_mirror import listeners as pool_listener
from ecr_mirror.conf_guard import ConfGuardMiddleware


class EcrMirrorPlugin(AirflowPlugin):
    name = "ecr_mirror"
    listeners = [pool_listener]
    fastapi_root_middlewares = [
        {"middleware": ConfGuardMiddleware, "args": [], "kwargs": {}, "name": "ecr-mirror trigger conf guard"}
    ]
