"""The outbox worker: delivers queued messages and role changes, with retries and backoff.

An item is marked delivered only after its platform accepted it. Items are leased while being
delivered, so a second process (PostgreSQL) never sends the same item at the same time, and an
item whose process crashed mid-delivery is retried after its lease ends; the platform's dedupe
handling makes that retry harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from bot.engine.clock import Clock
from bot.engine.models import OutboxItem
from bot.engine.ports import Repository, Store
from bot.platforms.base import DeliveryError, Platform
from config.settings import OutboxSettings

log = logging.getLogger(__name__)
LEASE_SECONDS = 120


class OutboxWorker:
    def __init__(
        self,
        store: Store,
        platforms: Mapping[str, Platform],
        clock: Clock,
        settings: OutboxSettings,
        batch: int = 100,
    ) -> None:
        self.store = store
        self.platforms = platforms
        self.clock = clock
        self.settings = settings
        self.batch = batch
        self._wakeup = asyncio.Event()
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
        """Deliver everything due now; returns how many items were delivered."""
        total = 0
        while True:
            items = await self._claim()
            if not items:
                return total
            for item in items:
                total += await self._deliver(item)

    async def _deliver(self, item: OutboxItem) -> int:
        platform = self.platforms[item.platform]
        try:
            await platform.deliver(item)
        except DeliveryError as exc:
            await self._failed(item, str(exc), exc.retryable, exc.retry_after)
            return 0
        except Exception as exc:  # a bug or an outage: retry later, never lose the item
            log.exception("event=outbox.delivery_crashed id=%s kind=%s", item.id, item.kind)
            await self._failed(item, type(exc).__name__, True, None)
            return 0
        now = self.clock.now()
        await self.store.write(lambda repo: repo.mark_delivered(item.id, now))
        self.delivered += 1
        return 1

    async def _failed(
        self, item: OutboxItem, error: str, retryable: bool, retry_after: float | None
    ) -> None:
        attempts = item.attempts + 1
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
            return
        wait = int(retry_after) + 1 if retry_after is not None else self.backoff(attempts)
        log.info(
            "event=outbox.retry id=%s kind=%s attempts=%d in=%ds",
            item.id,
            item.kind,
            attempts,
            wait,
        )
        await self.store.write(lambda repo: repo.mark_retry(item.id, attempts, now + wait, error))

    async def run(self, poll_seconds: float) -> None:
        while True:
            try:
                await self.drain()
            except Exception:
                log.exception("event=outbox.drain_failed")
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=poll_seconds)
            except TimeoutError:
                pass
            self._wakeup.clear()
