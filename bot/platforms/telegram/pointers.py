"""Pointers in a group ("I sent you the answer in private"), coalesced per group.

A group may receive 20 messages a minute, and they are meant for welcomes and announcements.
The first pointer in a quiet group goes out at once; the ones that follow within ``interval``
seconds are gathered into one message naming everyone, sent when the interval is up. So
pointers take at most one message per interval in each group, however many members ask.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from bot.engine.text import Mention, Text, t

Say = Callable[[int, Text], Awaitable[object]]


class Pointers:
    def __init__(self, say: Say, interval: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.say = say
        self.interval = interval
        self.clock = clock
        self._last: dict[int, float] = {}
        self._waiting: dict[int, dict[str, Mention]] = {}
        self._tasks: set[asyncio.Task] = set()

    async def sent(self, chat_id: int, member: Mention) -> None:
        """Tell the group that ``member``'s answer went to their private chat."""
        waiting = self._waiting.get(chat_id)
        last = self._last.get(chat_id)
        if waiting is None and (last is None or self.clock() - last >= self.interval):
            self._last[chat_id] = self.clock()
            await self.say(chat_id, t("telegram.pointer.sent", member=member))
            return
        if waiting is None:
            waiting = self._waiting[chat_id] = {}
            task = asyncio.create_task(self._flush(chat_id), name=f"pointers:{chat_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        waiting[member.user_id] = member

    async def _flush(self, chat_id: int) -> None:
        due = self._last.get(chat_id, self.clock()) + self.interval
        await asyncio.sleep(max(0.0, due - self.clock()))
        members = list(self._waiting.pop(chat_id, {}).values())
        self._last[chat_id] = self.clock()
        if len(members) == 1:
            await self.say(chat_id, t("telegram.pointer.sent", member=members[0]))
        elif members:
            await self.say(chat_id, t("telegram.pointer.sent_many", members=members))

    async def flush(self) -> None:
        """Send what is waiting now (a clean stop; tests)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for chat_id in list(self._waiting):
            self._last[chat_id] = -self.interval
            members = list(self._waiting.pop(chat_id).values())
            if members:
                await self.say(chat_id, t("telegram.pointer.sent_many", members=members))

    async def drain(self) -> None:
        """Wait until every gathered pointer has gone out at its time."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
