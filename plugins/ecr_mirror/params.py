"""The trigger form of every mirror DAG: Airflow Params, validated by JSON Schema at trigger time.

Each task turns the values into a ``RunOptions`` (``RunOptions.from_dict(context["params"])``); a
conf that breaks the schema is refused by the API (and the UI form) before a run exists.
"""

from __future__ import annotations

from typing import get_args

from airflow.sdk import Param

from ecr_mirror.states import DriftPolicy

#: a tag as the OCI distribution spec allows it
TAG_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"


def run_params() -> dict[str, Param]:
    return {
        "images": Param(
            [],
            type="array",
            items={"type": "string", "minLength": 1},
            title="Images",
            description="Only these images (globs on the name as written or in full, e.g. "
            "nginx, quay.io/prometheus/*); empty: every image of the manifest",
        ),
        "extra_tags": Param(
            [],
            type="array",
            items={"type": "string", "pattern": TAG_PATTERN},
            title="Extra tags",
            description="Tags to mirror too, for every selected image not pinned by digest",
        ),
        "dry_run": Param(
            False, type="boolean", title="Dry run", description="Compare and audit, pull nothing"
        ),
        "force": Param(
            False, type="boolean", title="Force", description="Pull even the tags that are up to date"
        ),
        "on_drift": Param(
            None,
            type=["null", "string"],
            enum=[None, *get_args(DriftPolicy)],
            title="On drift",
            description="Override the manifest's on_drift for this run (empty: the manifest's)",
        ),
        "retry_failed": Param(
            None,
            type=["null", "string"],
            minLength=1,
            title="Retry failed tags of run",
            description="A run id of this DAG (see its audit): mirror only the tags that failed in "
            "that run; empty: the whole selection",
        ),
        "warm_layers": Param(
            None,
            type=["null", "boolean"],
            title="Warm layers",
            description="Override the manifest's warm_layers for this run (empty: the manifest's)",
        ),
    }
