"""The query string of the audit pages -> a ``TagFilter``; a bad value is a 400 naming the parameter."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import HTTPException, Query, status

from ecr_mirror.web.queries import STATUSES, TagFilter

#: the "last" choices of the filter form
LAST = {
    "1h": timedelta(hours=1),
    "24h": timedelta(days=1),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
_FORMATS = "YYYY-MM-DD or YYYY-MM-DDTHH:MM, UTC"


def _bad(parameter: str, value: str, expected: str) -> HTTPException:
    return HTTPException(status.HTTP_400_BAD_REQUEST, f"{parameter}: {value!r} is not {expected}")


def _moment(parameter: str, value: str, *, end_of_day: bool = False) -> datetime | None:
    value = value.strip()
    if not value:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            # a date alone as the end of a range means the whole day
            return moment + timedelta(days=1) - timedelta(microseconds=1) if end_of_day else moment
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _bad(parameter, value, f"a time ({_FORMATS})") from None
    # the audit stores UTC (SQLite keeps no offset): compare in UTC
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def tag_filter(
    status_: Annotated[list[str] | None, Query(alias="status")] = None,
    image: str = "",
    since: str = "",
    until: str = "",
    last: str = "",
) -> TagFilter:
    """FastAPI dependency: ``?status=failed&status=stale&image=quay.io/*&since=2025-01-01&last=7d``.

    ``last`` (``1h``, ``24h``, ``7d``, ``30d``) counts back from now and is ignored when ``since``
    is given.
    """
    statuses = frozenset(s for s in status_ or [] if s)
    unknown = sorted(statuses - set(STATUSES))
    if unknown:
        raise _bad("status", unknown[0], f"one of {', '.join(STATUSES)}")
    start = _moment("since", since)
    if start is None and last:
        if last not in LAST:
            raise _bad("last", last, f"one of {', '.join(LAST)}")
        start = datetime.now(UTC) - LAST[last]
    end = _moment("until", until, end_of_day=True)
    if start and end and start > end:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"since ({since or last}) is after until ({until})")
    return TagFilter(statuses=statuses, image=image.strip(), since=start, until=end)
