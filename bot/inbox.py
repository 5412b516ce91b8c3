"""The inbox: platform updates are stored before the platform is told they arrived.

A platform that redelivers until confirmed (Telegram's ``getUpdates`` offset, a webhook's 200)
loses nothing if the confirmation waits for ``receive``: the update is then in the ``inbox``
table, UNIQUE by (platform, update_id), so a replayed or duplicated update is stored once.
``run`` hands stored updates to the platform's handler, one lane (a chat) in order and
different lanes concurrently, and marks each one processed once it has been handled. After a
crash, whatever was stored and not yet marked is handled at the next start. A crash in the
instant between handling and marking hands that one update over again; the handlers that
change state (joins, leaves) treat a repeat as a no-op.

Generic over platforms: the adapter supplies the lane of an update and the handler.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from bot.engine.clock import Clock
from bot.engine.models import InboxItem
from bot.engine.ports import Repository, Store

log = logging.getLogger(__name__)
KEEP_SECONDS = 3 * 86400  # processed updates are kept this long, so late replays still dedupe
PRUNE_EVERY = 3600

Handler = Callable[[InboxItem], Awaitable[None]]


class Inbox:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        platform: str,
        handle: Handler,
        *,
        max_concurrent: int = 16,
        batch: int = 200,
        on_processed: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.platform = platform
        self.handle = handle
        self.batch = batch
        self.on_processed = on_processed
        self._slots = asyncio.Semaphore(max_concurrent)
        self._wakeup = asyncio.Event()
        self._taken: set[int] = set()  # update ids queued or being handled in this process
        self._finished: dict[int, int] = {}  # marked processed -> reads begun by then
        self._reads = 0
        self._lanes: dict[str, deque[InboxItem]] = {}
        self._workers: dict[str, asyncio.Task] = {}
        self._idle = asyncio.Event()  # set while nothing stored is waiting or being handled
        self._pruned_at = 0
        self.stop_grace = 5.0  # a clean stop waits this long for the updates being handled

    async def receive(self, items: list[tuple[int, str, dict]]) -> int:
        """Store (update_id, lane, payload) items; returns once they are committed."""
        if not items:
            return 0
        now = self.clock.now()
        rows = [
            {
                "platform": self.platform,
                "update_id": update_id,
                "lane": lane[:60],
                "payload": json.dumps(payload, separators=(",", ":")),
                "received_at": now,
            }
            for update_id, lane, payload in items
        ]
        added: int = await self.store.write(lambda repo: repo.add_inbox(rows))
        if added < len(rows):
            log.info("event=inbox.duplicates platform=%s skipped=%d", self.platform,
                     len(rows) - added)  # fmt: skip
        self._idle.clear()
        self._wakeup.set()
        return added

    # -- handing stored updates to the handler ----------------------------------------------

    async def run(self, poll_seconds: float = 5.0) -> None:
        """Until cancelled: take what is stored and not processed, lane by lane."""
        while True:
            self._wakeup.clear()
            try:
                taken = await self._take()
            except Exception:  # the database is away: what is stored waits for it
                log.exception("event=inbox.read_failed platform=%s", self.platform)
                await asyncio.sleep(poll_seconds)
                continue
            self._prune()
            if not taken and not self._workers:
                self._idle.set()
            if not taken:
                try:
                    await asyncio.wait_for(self._wakeup.wait(), poll_seconds)
                except TimeoutError:
                    pass

    async def _take(self) -> int:
        self._reads += 1
        started = self._reads
        platform, limit = self.platform, self.batch + len(self._taken) + len(self._finished)
        pending: list[InboxItem] = await self.store.read(
            lambda repo: repo.pending_inbox(platform, limit)
        )
        # A read that began before a mark committed still sees that update as pending: it is
        # remembered as finished until a read that began after the commit.
        fresh = [
            item
            for item in pending
            if item.update_id not in self._taken and item.update_id not in self._finished
        ]
        for update_id, seen_by in list(self._finished.items()):
            if seen_by < started:
                del self._finished[update_id]
        if fresh:
            self._idle.clear()
        for item in fresh:
            self._taken.add(item.update_id)
            self._lanes.setdefault(item.lane, deque()).append(item)
            if item.lane not in self._workers:
                self._workers[item.lane] = asyncio.create_task(
                    self._lane(item.lane), name=f"inbox:{item.lane}"
                )
        return len(fresh)

    async def _lane(self, lane: str) -> None:
        queue = self._lanes[lane]
        try:
            while queue:
                item = queue[0]
                async with self._slots:
                    try:
                        await self.handle(item)
                    except Exception:  # a poison update must not block its chat forever
                        log.exception(
                            "event=inbox.handler_failed platform=%s update=%s",
                            self.platform,
                            item.update_id,
                        )
                await self._mark(item.update_id)
                self._finished[item.update_id] = self._reads
                queue.popleft()
                self._taken.discard(item.update_id)
                if self.on_processed is not None:
                    self.on_processed(item.update_id)
        finally:
            self._workers.pop(lane, None)
            if not queue:
                self._lanes.pop(lane, None)
            self._wakeup.set()

    async def _mark(self, update_id: int) -> None:
        platform, now = self.platform, self.clock.now()

        async def op(repo: Repository) -> None:
            await repo.mark_inbox_processed(platform, [update_id], now)

        delay = 0.5
        while True:  # handled already: keep trying to say so rather than handle it again
            try:
                await self.store.write(op)
                return
            except Exception:
                log.exception("event=inbox.mark_failed platform=%s update=%s", platform,
                              update_id)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _prune(self) -> None:
        now = self.clock.now()
        if now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        platform, before = self.platform, now - KEEP_SECONDS
        task = asyncio.create_task(
            self.store.write(lambda repo: repo.prune_inbox(platform, before)), name="inbox-prune"
        )
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def idle(self) -> None:
        """Wait until everything stored so far has been handled (tests)."""
        await self._idle.wait()

    async def stop(self) -> None:
        """Let the updates being handled finish (within ``stop_grace``); the rest stay stored
        and are handled at the next start."""
        for queue in self._lanes.values():
            while len(queue) > 1:
                self._taken.discard(queue.pop().update_id)
        workers = list(self._workers.values())
        if workers:
            _done, late = await asyncio.wait(workers, timeout=self.stop_grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
