"""Airflow listener (registered by plugins/ecr_mirror_plugin.py): a run never waits on a missing pool.

The scheduler leaves a task whose pool does not exist in "scheduled" for ever, saying so only in
its own log. So when the scheduler starts a run (``on_dag_run_running``), every ``ecr_mirror__*``
pool that one of the run's tasks uses and that does not exist is created with the slots
``ECR_MIRROR_POOLS``/``ECR_MIRROR_POOL_SLOTS`` give it, and the scheduler log says so. Other
pools are left alone.

The hook runs inside the scheduler's transaction, which the scheduler alone may commit (a
savepoint's release counts as a commit there): the pools are inserted in the run's own session
and committed with the run's new state, by an insert that skips a pool another scheduler (or
``ecr-mirror-pools``) created at the same moment instead of failing the scheduler's transaction.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow.listeners import hookimpl
from sqlalchemy import CursorResult, Insert, insert, select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.orm import Session, object_session

from ecr_mirror.pools import configured_slots

if TYPE_CHECKING:
    from airflow.models.dagrun import DagRun

log = logging.getLogger(__name__)

POOL_PREFIX = "ecr_mirror__"


def pools_of_run(dag_run: DagRun) -> set[str]:
    """The ecr-mirror pools the tasks of the run's DAG (as the scheduler serialized it) use."""
    dag = dag_run.dag
    if dag is None:
        return set()
    return {task.pool for task in dag.tasks if (task.pool or "").startswith(POOL_PREFIX)}


def _insert_unless_exists(session: Session, table: Any, values: dict[str, Any]) -> bool:
    """Insert a row unless its unique key exists (the databases Airflow supports); True if inserted."""
    dialect = session.get_bind().dialect.name
    statement: Insert
    if dialect == "postgresql":
        statement = postgresql.insert(table).values(values).on_conflict_do_nothing()
    elif dialect == "sqlite":
        statement = sqlite.insert(table).values(values).on_conflict_do_nothing()
    elif dialect == "mysql":
        statement = mysql.insert(table).values(values).prefix_with("IGNORE")
    else:
        statement = insert(table).values(values)
    result: CursorResult[Any] = session.execute(statement)  # type: ignore[assignment]
    return bool(result.rowcount)


def create_missing_pools(session: Session, names: set[str], reason: str) -> dict[str, int]:
    """Add each pool of ``names`` that does not exist; pool name -> slots of those created."""
    from airflow.models.pool import Pool

    existing = set(session.scalars(select(Pool.pool).where(Pool.pool.in_(names))))
    created = {}
    for name in sorted(names - existing):
        slots = configured_slots(name)
        row = {
            "pool": name,
            "slots": slots,
            "description": f"ecr-mirror: created by the scheduler when {reason} found it missing",
            "include_deferred": False,
        }
        if _insert_unless_exists(session, Pool.__table__, row):
            created[name] = slots
    return created


@hookimpl
def on_dag_run_running(dag_run: DagRun, msg: str) -> None:
    names = pools_of_run(dag_run)
    session = object_session(dag_run)
    if not names or session is None:
        return
    reason = f"run {dag_run.run_id} of {dag_run.dag_id}"
    for name, slots in create_missing_pools(session, names, reason).items():
        log.warning(
            "Pool %s did not exist: created it with %d slots so %s does not wait for ever "
            "(size it with ECR_MIRROR_POOLS / ECR_MIRROR_POOL_SLOTS and `ecr-mirror-pools`)",
            name,
            slots,
            reason,
        )
