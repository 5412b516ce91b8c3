"""Time comes from an injected clock so scenarios and tests can move it."""

from __future__ import annotations

import time
from typing import Protocol

MINUTE = 60
HOUR = 3600
DAY = 86400


class Clock(Protocol):
    def now(self) -> int:
        """Current time in whole seconds since the epoch (UTC)."""
        ...


class SystemClock:
    def now(self) -> int:
        return int(time.time())


class ManualClock:
    """A clock that only moves when told to (scenarios, tests, benchmarks)."""

    def __init__(self, start: int = 1_767_225_600) -> None:  # 2026-01-01T00:00:00Z
        self._now = start

    def now(self) -> int:
        return self._now

    def advance(self, seconds: int) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._now += seconds

    def set(self, ts: int) -> None:
        self._now = ts
