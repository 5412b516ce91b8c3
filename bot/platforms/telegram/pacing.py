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
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
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
        """None if a send at ``t`` fits; else a later time that every full window lets pass."""
        slots = self.slots
        first = bisect_right(slots, t - self.width)
        later = None
        for start in [*slots[first : bisect_right(slots, t)], t]:
            inside = bisect_left(slots, start + self.width) - bisect_left(slots, start) + 1
            if inside > self.limit:
                later = start + self.width
        return later

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
        self._done: dict[int, float] = {}  # chat -> when its last send finished
        self._blocked: dict[int, float] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._reserved = 0

    def _group(self, chat_id: int) -> _Window:
        window = self._groups.get(chat_id)
        if window is None:
            grow = 1 + self.limits.margin
            window = _Window(self.limits.group_window * grow, self.limits.group_max)
            self._groups[chat_id] = window
        return window

    def _earliest(self, chat_id: int, group: bool) -> float:
        now = self.clock()
        done = self._done.get(chat_id)
        t = max(
            now, self._blocked.get(chat_id, now), now if done is None else done + self._interval
        )
        windows = [self._global, *([self._group(chat_id)] if group else [])]
        for _ in range(1000):
            moved = False
            for window in windows:
                later = window.conflict(t)
                if later is not None:
                    t, moved = max(t, later), True
            if not moved:
                break
        return t

    def wait(self, chat_id: int, group: bool) -> float:
        """Seconds until this chat may be sent to (nothing is reserved)."""
        busy = self._interval if self.lock(chat_id).locked() else 0.0
        return max(busy, self._earliest(chat_id, group) - self.clock())

    def reserve(self, chat_id: int, group: bool) -> float:
        """Reserve the earliest free slot; returns its time (``clock`` units)."""
        now = self.clock()
        t = self._earliest(chat_id, group)
        insort(self._global.slots, t)
        if group:
            insort(self._group(chat_id).slots, t)
        self._global.prune(now)
        self._reserved += 1
        if self._reserved % 1000 == 0:
            self._forget(now)
        return t

    def _forget(self, now: float) -> None:
        """Drop what no longer limits anything (chats idle for a while), so memory stays flat."""
        idle = now - max(self._interval, self.limits.group_window * 2)
        for chat_id, done in list(self._done.items()):
            lock = self._locks.get(chat_id)
            if done < idle and (lock is None or not lock.locked()):
                self._done.pop(chat_id, None)
                self._locks.pop(chat_id, None)
                self._groups.pop(chat_id, None)
        for chat_id, until in list(self._blocked.items()):
            if until < now:
                del self._blocked[chat_id]

    def lock(self, chat_id: int) -> asyncio.Lock:
        """One send at a time per chat: its spacing is measured from the previous send's end."""
        lock = self._locks.get(chat_id)
        if lock is None:
            lock = self._locks[chat_id] = asyncio.Lock()
        return lock

    @asynccontextmanager
    async def slot(self, chat_id: int, group: bool) -> AsyncIterator[None]:
        """Wait for this chat's next slot, then send inside the block."""
        async with self.lock(chat_id):
            t = self.reserve(chat_id, group)
            delay = t - self.clock()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                yield
            finally:
                self._done[chat_id] = max(t, self.clock())
                if group:
                    self._group(chat_id).prune(self.clock())

    def blocked(self, chat_id: int, seconds: float) -> None:
        """Telegram answered 429 for this chat: nothing more goes there for ``seconds``."""
        self._blocked[chat_id] = max(self._blocked.get(chat_id, 0.0), self.clock() + seconds)
