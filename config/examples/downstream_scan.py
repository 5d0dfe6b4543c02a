"""An example downstream DAG: runs whenever the ``monitoring`` manifest's mirror run succeeds.

Copy it into your DAGs folder (it is not in dags/, so a deployment of ecr-mirror does not run it)
and point ``MIRROR`` at your manifest. Each mirror run's ``record_audit`` emits an asset event of
``ecr-mirror://<manifest>`` whose extra is the run's summary (see docs/ui.md, "Asset events"):

    {"dag_id": "ecr_mirror__monitoring", "run_id": "...", "manifest": "monitoring",
     "status": "success", "total": 12, "counts": {"ok": 10, "pulled": 2}, "failed": [],
     "audit": "/ecr-mirror/dags/ecr_mirror__monitoring/runs/..."}

With ``assets: {images: true}`` in the manifest, each image has an asset of its own too
(``ecr-mirror://monitoring/quay.io/prometheus/prometheus``), whose extra lists its tags with their
status and the digest ECR serves: schedule a per-image deploy on that one.
"""

from __future__ import annotations

import logging
from datetime import datetime

from airflow.sdk import DAG, Asset, task

#: the mirror DAG's asset: named like the DAG, URI ecr-mirror://<manifest name>
MIRROR = Asset(name="ecr_mirror__monitoring", uri="ecr-mirror://monitoring")

log = logging.getLogger(__name__)

with DAG(
    dag_id="scan_after_mirror__monitoring",
    description="Scan the images the monitoring mirror just refreshed",
    schedule=[MIRROR],
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["ecr-mirror-example"],
):

    @task
    def changed_tags(triggering_asset_events=None) -> list[str]:  # noqa: ANN001  (Airflow's context)
        """The runs that triggered this one, and whether each pulled anything new."""
        runs = []
        for event in (triggering_asset_events or {}).get(MIRROR, []):
            extra = event.extra or {}
            pulled = extra.get("counts", {}).get("pulled", 0)
            log.info(
                "mirror run %s: %s, %d pulled (%s)",
                extra.get("run_id"),
                extra.get("status"),
                pulled,
                extra.get("audit"),
            )
            runs.append(str(extra.get("run_id")))
        return runs

    changed_tags()
