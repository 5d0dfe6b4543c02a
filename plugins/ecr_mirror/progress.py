"""The progress display of ``ecr-mirror plan`` and ``sync`` on a terminal: tags checked and
pulled, their rate per second and the time left, drawn by ``rich`` on stderr.

Off (every method a no-op) when stderr is not a terminal or the output is JSON, so pipes and
files never receive it. The engine reports through plain callbacks (``Mirror.compare``'s
``on_compared``), so it knows nothing of the display.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from ecr_mirror.states import Action

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgress
    from rich.progress import Task, TaskID
    from rich.text import Text

    from ecr_mirror.plan import PlanItem

#: the actions after which a run pulls a tag (the others are settled by the comparison)
_TO_PULL = frozenset({Action.MISSING, Action.DRIFTED})


class Outcome(Protocol):
    """What a pulled tag reports back (an audit record)."""

    @property
    def action(self) -> str: ...


class Progress:
    """Counts tags as they are checked (compared) and pulled; draws them while open, if enabled."""

    def __init__(self, total: int, *, enabled: bool, force: bool = False) -> None:
        self.total = total
        self.enabled = enabled
        self.force = force
        #: while open and enabled: the display, its "checked" and its "pulled" line
        self._lines: tuple[RichProgress, TaskID, TaskID] | None = None
        self._to_pull = 0
        self._lock = threading.Lock()

    @classmethod
    def for_terminal(cls, total: int, *, json_output: bool, force: bool = False) -> Progress:
        """A display that is on only where a person watches it: stderr a terminal, no JSON."""
        return cls(total, enabled=sys.stderr.isatty() and not json_output and total > 0, force=force)

    def __enter__(self) -> Progress:
        if self.enabled:
            bar = _display()
            bar.start()
            checked = bar.add_task("checked", total=self.total)
            self._lines = (bar, checked, bar.add_task("pulled", total=0, visible=False))
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._lines is not None:
            self._lines[0].stop()
            self._lines = None

    def compared(self, item: PlanItem) -> None:
        """One tag checked; a tag the run will pull adds to the pull's total. Called from threads
        (rich's updates take its lock)."""
        if self._lines is None:
            return
        bar, checked, pulled = self._lines
        bar.advance(checked)
        if self.force or item.action in _TO_PULL:
            with self._lock:
                self._to_pull += 1
                bar.update(pulled, total=self._to_pull, visible=True)

    def pulled(self, outcomes: Iterable[Outcome]) -> None:
        """A batch pulled: counts the tags of it that needed a pull."""
        if self._lines is None:
            return
        bar, _, pulled = self._lines
        bar.advance(pulled, sum(1 for o in outcomes if self.force or o.action in _TO_PULL))


def _display() -> RichProgress:
    """rich's display on stderr: label, bar, n/total, tags per second, time left; erased at the end.

    Imported here: rich costs import time that validate, schema and --json never need.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as RichProgress
    from rich.text import Text

    class Rate(ProgressColumn):
        """Tags per second (rich's own speed columns count bytes)."""

        def render(self, task: Task) -> Text:
            return Text(f"{task.speed:6.1f}/s" if task.speed else "     -/s")

    return RichProgress(
        TextColumn("{task.description:>7}"),
        BarColumn(),
        MofNCompleteColumn(),
        Rate(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
