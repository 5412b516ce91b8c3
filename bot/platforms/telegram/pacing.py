"""Send pacing for the Bot API: per chat, per group and overall, as a calendar of send slots.

Telegram's limits (about 1 message per second in one chat, 20 per minute in a group, 30 per
second overall) are sliding windows. Each send reserves the earliest slot that keeps every window
within its limit, so a busy chat never holds up the others, and a 429 for one chat only pauses
that chat.
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Limits:
    per_chat_interval: float = 1.0  # seconds between two messages in one chat
    group_max: int = 20  # messages in one group...
    group_window: float = 60.0  # ...per this many seconds
    global_max: int = 30  # messages overall...
    global_window: float = 1.0  # ...per this many seconds
    margin: float = 0.03  # keep this fraction clear of each limit (clock and network jitter)

    def scaled(self, factor: float) -> Limits:
        """The same limits with every time divided by ``factor`` (tests, benchmarks)."""
        return Limits(
            self.per_chat_interval / factor,
            self.group_max,
            self.group_window / factor,
            self.global_max,
            self.global_window / factor,
            self.margin,
        )


TELEGRAM_LIMITS = Limits()


@dataclass(slots=True)
class _Window:
    width: float
    limit: int
    slots: list[float] = field(default_factory=list)

    def conflict(self, t: float) -> float | None:
        """None if a send at ``t`` fits; else the earliest later time worth trying."""
        slots = self.slots
        first = bisect_right(slots, t - self.width)
        starts = [*slots[first : bisect_right(slots, t)], t]
        for start in starts:
            inside = bisect_left(slots, start + self.width) - bisect_left(slots, start) + 1
            if inside > self.limit:
                return start + self.width
        return None

    def prune(self, before: float) -> None:
        del self.slots[: bisect_left(self.slots, before - self.width)]


class Pacer:
    def __init__(
        self, limits: Limits = TELEGRAM_LIMITS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits
        self.clock = clock
        grow = 1 + limits.margin
        self._interval = limits.per_chat_interval * grow
        self._global = _Window(limits.global_window * grow, limits.global_max)
        self._groups: dict[int, _Window] = {}
        self._chats: dict[int, list[float]] = {}
        self._blocked: dict[int, float] = {}

    def _group(self, chat_id: int) -> _Window:
        window = self._groups.get(chat_id)
        if window is None:
            window = _Window(self.limits.group_window * (1 + self.limits.margin), self.limits.group_max)
            self._groups[chat_id] = window
        return window

    def _earliest(self, chat_id: int, group: bool) -> float:
        now = self.clock()
        t = max(now, self._blocked.get(chat_id, now))
        own = self._chats.get(chat_id, [])
        windows = [self._global, *([self._group(chat_id)] if group else [])]
        for _ in range(10_000):
            moved = False
            i = bisect_left(own, t - self._interval)
            if i < len(own) and own[i] < t + self._interval:
                t, moved = own[i] + self._interval, True
            for window in windows:
                later = window.conflict(t)
                if later is not None:
                    t, moved = max(t, later), True
            if not moved:
                return t
        return t  # unreachable in practice: every step moves forward

    def wait(self, chat_id: int, group: bool) -> float:
        """Seconds until this chat may be sent to (nothing is reserved)."""
        return max(0.0, self._earliest(chat_id, group) - self.clock())

    def reserve(self, chat_id: int, group: bool) -> float:
        """Reserve the earliest free slot; returns the seconds to wait for it."""
        now = self.clock()
        t = self._earliest(chat_id, group)
        insort(self._chats.setdefault(chat_id, []), t)
        insort(self._global.slots, t)
        if group:
            insort(self._group(chat_id).slots, t)
        self._prune(now)
        return max(0.0, t - now)

    async def acquire(self, chat_id: int, group: bool) -> None:
        delay = self.reserve(chat_id, group)
        if delay > 0:
            await asyncio.sleep(delay)

    def blocked(self, chat_id: int, seconds: float) -> None:
        """Telegram answered 429 for this chat: nothing more goes there for ``seconds``."""
        self._blocked[chat_id] = max(self._blocked.get(chat_id, 0.0), self.clock() + seconds)

    def _prune(self, now: float) -> None:
        self._global.prune(now)
        for window in self._groups.values():
            window.prune(now)
        for chat_id, own in list(self._chats.items()):
            del own[: bisect_left(own, now - self._interval)]
            if not own:
                del self._chats[chat_id]
