"""When ECR will refresh a drifted tag, so that ``on_drift: repull`` pulls it only then.

ECR re-checks a cached tag upstream when the tag is pulled once its 24 h window has passed; the
user guide has said the window is "based off the last pull of the cached image", and no API
forces a refresh (docs/ecr-facts.md, "Refresh"). Under that reading every pull inside the window
starts it again: a schedule shorter than 24 h that pulls a drifted tag on each run would never see
the refresh. So a run pulls a drifted tag only once 24 h have passed since the last pull it knows
of (ECR's ``lastRecordedPullTime``, which may lag by up to 24 h, or this project's own pulls in the
audit, whichever is later); before that it records ``stale`` with the time the refresh can come.
Under the other reading (24 h from the last upstream check, which is no later than the last pull)
the refresh is due by then as well.

Every time here is ECR's: the ``Date`` of its answers, so a skewed worker clock does not matter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from ecr_mirror.ecr import ImageTimes

REFRESH_WINDOW = timedelta(hours=24)

_FACTS = "docs/ecr-facts.md, Refresh"


_WHEN_FORMAT = "%Y-%m-%d %H:%M UTC"
#: the refresh time in a stale row's note: the first "after <time>" the notes below write
_DUE_IN_NOTE = re.compile(r"after (\d{4}-\d\d-\d\d \d\d:\d\d UTC)")


def _when(moment: datetime) -> str:
    return moment.strftime(_WHEN_FORMAT)


def refresh_time(note: str | None) -> str | None:
    """When ECR will refresh a stale tag, as its audit note says (e.g. "2026-01-02 10:00 UTC")."""
    found = _DUE_IN_NOTE.search(note or "")
    return found.group(1) if found else None


@dataclass(frozen=True)
class RefreshTimer:
    """The last pull of a cached image the run knows of, and ECR's clock now."""

    last_pull: datetime | None
    #: where ``last_pull`` comes from, for the audit note
    source: str
    ecr_now: datetime

    @property
    def due_at(self) -> datetime | None:
        """The earliest time a pull makes ECR re-check the tag (None: no pull known, due now)."""
        return None if self.last_pull is None else self.last_pull + REFRESH_WINDOW

    @property
    def due(self) -> bool:
        return self.due_at is None or self.ecr_now >= self.due_at

    def known(self) -> str:
        if self.last_pull is None:
            return "no earlier pull known"
        return f"last pull known {_when(self.last_pull)}, {self.source}"

    def waiting_note(self, cached: str | None, upstream: str | None) -> str:
        """Why a drifted tag was not pulled (status ``stale``)."""
        assert self.due_at is not None
        return (
            f"ECR serves {cached} while upstream has {upstream}; not pulled: ECR re-checks a cached tag "
            "upstream only on a pull 24 h after the image's last pull, and a pull before that starts "
            f"the 24 h again ({_FACTS}). With the {self.known()}, the refresh comes with the first run "
            f"after {_when(self.due_at)} (ECR's clock). Clients that pull this image more often than "
            "daily keep ECR from refreshing it: on_drift: evict-and-repull refreshes at once"
        )

    def refreshed_note(self) -> str:
        """A drifted tag pulled once its window had passed, and refreshed by ECR."""
        return f"ECR refreshed the tag on this pull, 24 h after the {self.known()}"

    def still_stale_note(self, cached: str | None, upstream: str | None, pulled_at: datetime) -> str:
        """A drifted tag pulled once its window had passed, and ECR still serves the old image."""
        return (
            f"ECR serves {cached} while upstream has {upstream}, although this run pulled the tag at "
            f"{_when(pulled_at)} with the {self.known()}: a pull within the 24 h before restarted ECR's "
            "wait (lastRecordedPullTime lags by up to 24 h), or ECR re-checks later than its guide says "
            f"({_FACTS}). The next pull comes with the first run after {_when(pulled_at + REFRESH_WINDOW)}; "
            "on_drift: evict-and-repull refreshes at once"
        )


def refresh_timer(times: ImageTimes, own_pull: datetime | None) -> RefreshTimer:
    """The timer of a cached image from what ECR reports and this project's own last pull of it."""
    known = [
        (moment, source)
        for moment, source in (
            (times.pushed_at, "when ECR cached it"),
            (times.last_recorded_pull, "ECR's lastRecordedPullTime"),
            (own_pull, "this project's pull"),
        )
        if moment is not None
    ]
    if not known:
        return RefreshTimer(None, "", times.ecr_now)
    last, source = max(known, key=lambda pair: pair[0])
    return RefreshTimer(last, source, times.ecr_now)


def stale_after_pull_note(cached: str | None, upstream: str | None, pulled_at: datetime) -> str:
    """A drifted tag pulled without waiting for its window (the run forced it), still stale."""
    return (
        f"ECR serves {cached} while upstream has {upstream}: the pull at {_when(pulled_at)} (forced) did "
        f"not bring the refresh and started ECR's 24 h wait again ({_FACTS}); the refresh comes with the "
        f"first pull after {_when(pulled_at + REFRESH_WINDOW)}; on_drift: evict-and-repull refreshes at once"
    )
