"""The emulated clock: wall time plus an offset that tests move through ``/_emulator/clock``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Clock:
    def __init__(self, offset: float = 0.0, source: Callable[[], float] = time.time) -> None:
        self._offset = offset
        self._source = source
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._source() + self._offset

    @property
    def offset(self) -> float:
        return self._offset

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._offset += seconds
            return self._offset
