"""The Airflow assets a mirror run updates, so that downstream DAGs (scans, deploys) run on a
fresh mirror.

``record_audit`` has the manifest's asset as an outlet (``ecr-mirror://<manifest>``, named like the
DAG) and, with ``assets: {images: true}`` in the manifest, one asset per image
(``ecr-mirror://<manifest>/<image>``). When it succeeds (every tag of the run is mirrored, up to
date, or drifted without a failure) Airflow records one asset event per outlet; each carries the
run's summary as its extra (run_report.asset_extra / image_extra), so a downstream task reads what
changed from ``triggering_asset_events``. A failed run emits none. A dry run emits them with
``counts`` of ``planned`` tags only: a consumer that must not act on it checks the counts.
See config/examples/downstream_scan.py.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset

from ecr_mirror.manifest import Manifest
from ecr_mirror.run_report import RunReport, asset_extra, image_extra

SCHEME = "ecr-mirror"


def manifest_asset(manifest: Manifest) -> Asset:
    """The asset every run of the manifest updates (downstream DAGs schedule on it)."""
    return Asset(name=manifest.dag_id, uri=f"{SCHEME}://{manifest.name}")


def image_asset(manifest: Manifest, image: str) -> Asset:
    """The asset of one image of the manifest (``image`` as the audit names it, e.g.
    docker.io/library/nginx)."""
    return Asset(name=f"{manifest.dag_id}/{image}", uri=f"{SCHEME}://{manifest.name}/{image}")


def _images(manifest: Manifest) -> list[str]:
    return list(dict.fromkeys(spec.ref.name for spec in manifest.images)) if manifest.assets.images else []


def outlets(manifest: Manifest) -> list[Asset]:
    """record_audit's outlets."""
    return [manifest_asset(manifest), *(image_asset(manifest, image) for image in _images(manifest))]


def describe(outlet_events: Any, manifest: Manifest, report: RunReport) -> None:
    """Put the run's summary in the extra of each outlet's event (the task's ``outlet_events``)."""
    outlet_events[manifest_asset(manifest)].extra = asset_extra(report)
    for image in _images(manifest):
        outlet_events[image_asset(manifest, image)].extra = image_extra(report, image)
