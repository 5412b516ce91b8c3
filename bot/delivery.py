"""The outbox worker: delivers queued messages and role changes, with retries and backoff.

An item is marked delivered only after its platform accepted it. Items are leased while being
delivered, so a second process (PostgreSQL) never sends the same item at the same time, and an
item whose process crashed mid-delivery is retried after its lease ends; the platform's dedupe
handling makes that retry harmless.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Mapping

from bot.engine import observe
from bot.engine.clock import Clock
from bot.engine.models import OutboxItem
from bot.engine.ports import Repository, Store
from bot.platforms.base import DeliveryError, Platform, lane_of
from config.settings import OutboxSettings

log = logging.getLogger(__name__)
# A claimed item is another process's to take only after this: long enough for a claim's
# slowest lane (500 items, paced at a chat's 1/s, would be the extreme).
LEASE_SECONDS = 600


class OutboxWorker:
    def __init__(
        self,
        store: Store,
        platforms: Mapping[str, Platform],
        clock: Clock,
        settings: OutboxSettings,
        batch: int = 500,
        max_lanes: int = 32,
    ) -> None:
        self.store = store
        self.platforms = platforms
        self.clock = clock
        self.settings = settings
        self.batch = batch
        self._wakeup = asyncio.Event()
        self._lanes = asyncio.Semaphore(max_lanes)
        self.delivered = 0
        self.failed = 0

    def wake(self) -> None:
        self._wakeup.set()

    def backoff(self, attempts: int) -> int:
        return min(
            self.settings.max_backoff_seconds,
            self.settings.base_backoff_seconds * 2 ** max(0, attempts - 1),
        )

    async def _claim(self) -> list[OutboxItem]:
        async def op(repo: Repository) -> list[OutboxItem]:
            now = self.clock.now()
            items = await repo.due_outbox(now, self.batch, list(self.platforms))
            await repo.lease_outbox([i.id for i in items], now + LEASE_SECONDS)
            return items

        return await self.store.write(op)

    async def drain(self) -> int:
        """Deliver everything due now; returns how many items were delivered.

        Items are split into lanes (``Platform.lane``): in order within a lane, lanes in
        parallel (at most ``max_lanes`` at once), each lane fed as soon as new items are
        claimed, so one slow chat never holds the others back. A lane stops at its first
        failure and the rest of it waits for that item's retry: a chat's messages never
        overtake each other. At most ``2 * batch`` claimed items wait in memory.
        """
        before = self.delivered
        queues: dict[str, deque[OutboxItem]] = {}
        lanes: dict[str, asyncio.Task] = {}
        while True:
            waiting = sum(len(q) for q in queues.values())
            items = await self._claim() if waiting < 2 * self.batch else []
            for item in items:
                key = lane_of(self.platforms[item.platform], item)
                queues.setdefault(key, deque()).append(item)
                if key not in lanes or lanes[key].done():
                    lanes[key] = asyncio.create_task(self._lane(queues[key]))
            busy = [task for task in lanes.values() if not task.done()]
            if not busy and not items:
                for task in lanes.values():
                    task.result()  # surface a crashed lane
                return self.delivered - before
            if not items and busy:
                await asyncio.wait(busy, return_when=asyncio.FIRST_COMPLETED)

    async def _lane(self, queue: deque[OutboxItem]) -> None:
        async with self._lanes:
            while queue:
                retry_at = await self._deliver(queue.popleft())
                if retry_at is None:
                    continue
                rest = [item.id for item in queue]
                queue.clear()
                if rest:  # keep the lane's order: the rest waits for the failed item
                    await self.store.write(
                        lambda repo, r=rest, at=retry_at: repo.lease_outbox(r, at)
                    )
                return

    async def _deliver(self, item: OutboxItem) -> int | None:
        """None when delivered (or given up for good); else when the item is tried again."""
        platform = self.platforms[item.platform]
        connected = getattr(platform, "is_connected", None)
        if connected is not None and not connected():  # still being started or reconnecting
            return await self._failed(item, f"{item.platform} is not connected", True, 5, False)
        try:
            await platform.deliver(item)
        except DeliveryError as exc:
            _observe_delivery(item, exc)
            return await self._failed(
                item, str(exc), exc.retryable, exc.retry_after, exc.counts_as_attempt
            )
        except Exception as exc:  # a bug or an outage: retry later, never lose the item
            log.exception("event=outbox.delivery_crashed id=%s kind=%s", item.id, item.kind)
            _observe_delivery(item, exc)
            return await self._failed(item, type(exc).__name__, True, None, True)
        _observe_delivery(item, None)
        now = self.clock.now()
        await self.store.write(lambda repo: repo.mark_delivered(item.id, now))
        self.delivered += 1
        return None

    async def _failed(
        self,
        item: OutboxItem,
        error: str,
        retryable: bool,
        retry_after: float | None,
        counts: bool,
    ) -> int | None:
        attempts = item.attempts + (1 if counts else 0)
        now = self.clock.now()
        if not retryable or attempts >= self.settings.max_attempts:
            log.warning(
                "event=outbox.failed id=%s kind=%s attempts=%d error=%s",
                item.id,
                item.kind,
                attempts,
                error,
            )
            self.failed += 1
            await self.store.write(lambda repo: repo.mark_failed(item.id, attempts, now, error))
            return None
        wait = max(1, math.ceil(retry_after)) if retry_after is not None else self.backoff(attempts)
        log.info(
            "event=outbox.retry id=%s kind=%s attempts=%d in=%ds",
            item.id,
            item.kind,
            attempts,
            wait,
        )
        await self.store.write(lambda repo: repo.mark_retry(item.id, attempts, now + wait, error))
        return now + wait

    async def run(self, poll_seconds: float) -> None:
        while True:
            self._wakeup.clear()  # wakes during this drain are served by the next loop
            try:
                await self.drain()
            except Exception:
                log.exception("event=outbox.drain_failed")
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that
            # arrives as the wake-up does, and the worker then never stops (a hung shutdown).
            try:
                async with asyncio.timeout(poll_seconds):
                    await self._wakeup.wait()
            except TimeoutError:
                pass


def _observe_delivery(item: OutboxItem, exc: Exception | None) -> None:
    """Metrics: an attempt reached the platform (local pacing waits are not attempts)."""
    if isinstance(exc, DeliveryError) and not exc.counts_as_attempt and not exc.rate_limited:
        return
    observe.emit("delivery.attempt", platform=item.platform)
    if exc is not None:
        retryable = not isinstance(exc, DeliveryError) or exc.retryable
        rate_limited = isinstance(exc, DeliveryError) and exc.rate_limited
        observe.emit(
            "delivery.failure",
            platform=item.platform,
            retryable=str(retryable).lower(),
            rate_limited=str(rate_limited).lower(),
        )
