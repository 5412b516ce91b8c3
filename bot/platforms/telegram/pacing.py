"""Send pacing for the Bot API: per chat, per group and overall.

Telegram's limits (about 1 message per second in one chat, 20 per minute in a group, 30 per
second overall) are sliding windows. Each send reserves its chat's earliest slot (spacing and
group window, a calendar), then passes the overall gate, which counts requests from their start
until a window after their answer, so network jitter can never make a window overflow. A busy
chat never holds up the others, and a 429 for one chat only pauses that chat.
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left, bisect_right, insort
from collections import deque
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


@dataclass(slots=True)
class Ticket:
    """A reserved send slot; ``release`` gives it back when Telegram refused the send."""

    pacer: Pacer
    chat_id: int
    group: bool
    at: float
    released: bool = False

    def release(self) -> None:
        self.released = True
        self.pacer.release(self.chat_id, self.group, self.at)


class _Gate:
    """The overall limit, whatever the network does: a request may start only while fewer
    than ``limit`` requests are in flight or finished within the last ``width`` seconds.

    Telegram counts a request when it arrives, somewhere between our start and the answer.
    Counting each one from its start until ``width`` after its answer therefore over-counts
    every window Telegram can see, however late or early any request arrives: latency jitter
    can slow us down, never cause a 429. A request Telegram refused (429) is not counted.
    """

    def __init__(self, width: float, limit: int, clock: Callable[[], float]) -> None:
        self.width, self.limit, self.clock = width, limit, clock
        self.in_flight = 0
        self.finished: deque[float] = deque()
        self._turn = asyncio.Lock()  # first come, first served
        self._changed = asyncio.Event()

    def _used(self) -> int:
        now = self.clock()
        while self.finished and self.finished[0] <= now - self.width:
            self.finished.popleft()
        return self.in_flight + len(self.finished)

    def free_in(self) -> float:
        """Seconds until a request could start (0 if now)."""
        used = self._used()
        if used < self.limit:
            return 0.0
        k = used - self.limit  # the finished request whose window end frees a place
        if k < len(self.finished):
            return max(0.0, self.finished[k] + self.width - self.clock())
        return self.width  # all in flight: at least until one answers

    async def enter(self) -> None:
        async with self._turn:
            while self._used() >= self.limit:
                self._changed.clear()
                wait = self.finished[0] + self.width - self.clock() if self.finished else None
                try:
                    await asyncio.wait_for(self._changed.wait(), wait)
                except TimeoutError:
                    pass
            self.in_flight += 1

    def leave(self, counted: bool) -> None:
        self.in_flight -= 1
        if counted:
            self.finished.append(self.clock())
        self._changed.set()


class Pacer:
    def __init__(
        self, limits: Limits = TELEGRAM_LIMITS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits
        self.clock = clock
        grow = 1 + limits.margin
        self._interval = limits.per_chat_interval * grow
        self._gate = _Gate(limits.global_window * grow, limits.global_max, clock)
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
        if group:
            window = self._group(chat_id)
            for _ in range(1000):
                later = window.conflict(t)
                if later is None:
                    break
                t = max(t, later)
        return t

    def wait(self, chat_id: int, group: bool) -> float:
        """Seconds until this chat may be sent to (nothing is reserved)."""
        busy = self._interval if self.lock(chat_id).locked() else 0.0
        return max(busy, self._earliest(chat_id, group) - self.clock(), self._gate.free_in())

    def reserve(self, chat_id: int, group: bool) -> float:
        """Reserve this chat's earliest slot (per-chat spacing and group window); returns its
        time (``clock`` units). The overall limit is the gate's, taken when the send starts."""
        now = self.clock()
        t = self._earliest(chat_id, group)
        if group:
            insort(self._group(chat_id).slots, t)
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

    def release(self, chat_id: int, group: bool, t: float) -> None:
        """A reserved slot that Telegram refused (429) counts against no group window."""
        if group:
            window = self._group(chat_id)
            i = bisect_left(window.slots, t)
            if i < len(window.slots) and window.slots[i] == t:
                del window.slots[i]

    @asynccontextmanager
    async def slot(self, chat_id: int, group: bool) -> AsyncIterator[Ticket]:
        """Wait for this chat's next slot and the overall gate, then send inside the block."""
        async with self.lock(chat_id):
            t = self.reserve(chat_id, group)
            delay = t - self.clock()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._gate.enter()
            ticket = Ticket(self, chat_id, group, t)
            try:
                yield ticket
            finally:
                self._gate.leave(counted=not ticket.released)
                self._done[chat_id] = max(t, self.clock())
                if group:
                    self._group(chat_id).prune(self.clock())

    @asynccontextmanager
    async def call(self) -> AsyncIterator[Ticket]:
        """The overall gate only: Bot API calls that send no message (no per-chat order or
        spacing, so nothing else is held while the call runs)."""
        await self._gate.enter()
        ticket = Ticket(self, 0, False, self.clock())
        try:
            yield ticket
        finally:
            self._gate.leave(counted=not ticket.released)

    def blocked(self, chat_id: int, seconds: float) -> None:
        """Telegram answered 429 for this chat: nothing more goes there for ``seconds``."""
        self._blocked[chat_id] = max(self._blocked.get(chat_id, 0.0), self.clock() + seconds)
