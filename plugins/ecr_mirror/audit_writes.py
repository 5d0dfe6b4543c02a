"""Audit writes that survive a busy database: each write is retried while the database is locked
(another SQLite writer) or the connection dropped (PostgreSQL restarting), for up to
``ECR_MIRROR_AUDIT_WRITE_SECONDS``; a write that still fails raises AuditWriteError, which stops
the run before it pulls anything more (a pulled tag always gets its row, or the run says it could
not write it). ``check_writable`` proves a row can be written before a run changes anything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_delay, wait_exponential

from ecr_mirror.settings import get_settings

log = logging.getLogger(__name__)

#: words of a database error another try may cure: a lock held by another writer, a dropped
#: connection (sqlite3's "database is locked", psycopg's "server closed the connection", ...)
_PASSING = ("locked", "busy", "could not connect", "server closed", "connection", "terminating")


class AuditWriteError(Exception):
    """The audit store refused a write (read-only, no space, locked for longer than the retries):
    the run stops pulling. The message names the store (without its password) and what to do."""


def store_name(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _passing(exc: BaseException) -> bool:
    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    return exc.connection_invalidated or any(word in str(exc.orig).lower() for word in _PASSING)


def durably(engine: sa.Engine, write: Callable[[], None], what: str) -> None:
    """Run ``write`` (one transaction), again while the database is locked or unreachable."""
    seconds = get_settings().audit_write_seconds

    def waiting(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("audit store %s: %s: %s; trying again", store_name(engine), what, _first_line(exc))

    retrying = Retrying(
        retry=retry_if_exception(_passing),
        wait=wait_exponential(multiplier=0.25, max=5),
        stop=stop_after_delay(seconds),
        before_sleep=waiting,
        reraise=True,
    )
    try:
        retrying(write)
    except sa.exc.DBAPIError as exc:
        cause = _first_line(exc)
        after = f" for {seconds:g} s" if _passing(exc) else ""
        raise AuditWriteError(
            f"audit store {store_name(engine)}: {what} failed{after}: {cause}; the run stops here, "
            "before it pulls anything more: make the store writable (ECR_MIRROR_AUDIT_URL) and run again"
        ) from None


def check_writable(engine: sa.Engine, table: sa.Table) -> None:
    """Write a row into ``table`` and roll it back; AuditWriteError when the store refuses."""

    def probe() -> None:
        with engine.connect() as conn, conn.begin() as transaction:
            row = {c.name: _probe_value(c) for c in table.columns}
            conn.execute(table.insert(), [row])
            transaction.rollback()

    durably(engine, probe, "checking that the store takes writes")


def _probe_value(column: sa.Column[object]) -> object:
    if isinstance(column.type, sa.DateTime):
        return datetime.now(UTC)
    if isinstance(column.type, sa.Integer):
        return 0
    return "ecr-mirror-write-check"


def _first_line(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    orig = getattr(exc, "orig", None) or exc
    return str(orig).splitlines()[0] if str(orig) else type(orig).__name__
