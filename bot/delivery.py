"""The outbox worker: delivers queued messages and role changes, with retries and backoff.

An item is marked delivered only after its platform accepted it. Claimed items are leased
(``outbox.lease_seconds``, renewed while this process still holds them), so a second process
(PostgreSQL) never sends the same item at the same time; a clean stop releases what was
claimed but not sent, and an item whose process crashed comes due again when its lease ends.

Every platform call has a timeout (``outbox.delivery_timeout_seconds``): a hung call is a
retryable failure, never a stalled worker. An item whose attempts run out is a dead letter,
not a loss: it is tried again once the platform delivers again (or at the latest every
``outbox.revive_seconds``), and admins see and retry dead letters with ``/outbox``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Mapping

from bot.engine import observe
from bot.engine.clock import Clock
from bot.engine.models import OutboxItem, OutboxRoute
from bot.engine.ports import Repository, Store
from bot.engine.tasks import cancel_and_wait
from bot.platforms.base import DeliveryError, Platform, lane_of
from config.settings import OutboxSettings

log = logging.getLogger(__name__)
# A claim is another process's to take only after the lease (outbox.lease_seconds, 60 s) unless
# renewed: this process renews the leases of everything it still holds every third of it (and a
# clean stop releases them), so the lease only matters after a crash: the crashed process's
# unsent items wait this long.
# After a success, dead letters of that platform are revived at most this often.
REVIVE_AFTER_SUCCESS_SECONDS = 60


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
        self._claimed: dict[int, OutboxItem] = {}  # claimed here, not yet finished
        self._renewed = 0.0  # loop time of the last lease renewal
        # Dead letters that may exist per platform (True at start: from an earlier run).
        self._dead_known: dict[str, bool] = {}
        self._revived_at: dict[str, int] = {}
        self._task: asyncio.Task | None = None
        self.lease = max(3, settings.lease_seconds)
        self.delivered = 0
        self.failed = 0
        self.unreachable = 0  # expected refusals (members who can't be messaged), in total

    def wake(self) -> None:
        self._wakeup.set()

    def backoff(self, attempts: int) -> int:
        return min(
            self.settings.max_backoff_seconds,
            self.settings.base_backoff_seconds * 2 ** max(0, attempts - 1),
        )

    def routes(self) -> dict[str, OutboxRoute | None]:
        """Per platform, the communities or shards this process serves (None: all)."""
        out: dict[str, OutboxRoute | None] = {}
        for name, platform in self.platforms.items():
            route = getattr(platform, "route", None)
            out[name] = route() if route is not None else None
        return out

    async def _claim(self) -> list[OutboxItem]:
        routes = self.routes()

        async def op(repo: Repository) -> list[OutboxItem]:
            now = self.clock.now()
            items = await repo.due_outbox(now, self.batch, list(self.platforms), routes)
            await repo.lease_outbox([i.id for i in items], now + self.lease)
            return items

        items = await self.store.write(op)
        self._claimed.update((i.id, i) for i in items)
        return items

    async def _renew(self) -> None:
        """Keep the leases of what this process still holds (queued or in flight)."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._renewed < self.lease / 3:
            return
        self._renewed = loop.time()
        ids = list(self._claimed)
        if ids:
            until = self.clock.now() + self.lease
            await self.store.write(lambda repo: repo.lease_outbox(ids, until))

    async def drain(self) -> int:
        """Deliver everything due now; returns how many items were delivered.

        Items are split into lanes (``Platform.lane``): in order within a lane, lanes in
        parallel (at most ``max_lanes`` at once), each lane fed as soon as new items are
        claimed, so one slow chat never holds the others back. A lane stops at its first
        failure and the rest of it waits for that item's retry: a chat's messages never
        overtake each other. At most ``2 * batch`` claimed items wait in memory. Cancelling
        a drain cancels its lanes and waits for them.
        """
        unreachable_before = self.unreachable
        try:
            return await self._drain()
        finally:
            if self.unreachable > unreachable_before:
                log.info(
                    "event=outbox.unreachable count=%d total=%d; members who never started "
                    "the bot or blocked it (shown in /outbox)",
                    self.unreachable - unreachable_before,
                    self.unreachable,
                )

    async def _drain(self) -> int:
        before = self.delivered
        await self._revive_on_schedule()
        queues: dict[str, deque[OutboxItem]] = {}
        lanes: dict[str, asyncio.Task] = {}
        try:
            while True:
                await self._renew()
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
                    await asyncio.wait(
                        busy, timeout=self.lease / 3, return_when=asyncio.FIRST_COMPLETED
                    )
        except BaseException:
            for task in lanes.values():
                task.cancel()
            await asyncio.gather(*lanes.values(), return_exceptions=True)
            raise

    async def _lane(self, queue: deque[OutboxItem]) -> None:
        async with self._lanes:
            while queue:
                retry_at = await self._deliver(queue.popleft())
                if retry_at is None:
                    continue
                rest = [item.id for item in queue]
                queue.clear()
                for outbox_id in rest:
                    self._claimed.pop(outbox_id, None)
                if rest:  # keep the lane's order: the rest waits for the failed item
                    await self.store.write(
                        lambda repo, r=rest, at=retry_at: repo.lease_outbox(r, at)
                    )
                return

    async def _deliver(self, item: OutboxItem) -> int | None:
        """None when delivered (or dead-lettered); else when the item is tried again."""
        platform = self.platforms[item.platform]
        connected = getattr(platform, "is_connected", None)
        if connected is not None and not connected():  # still being started or reconnecting
            return await self._failed(item, f"{item.platform} is not connected", True, 5, False)
        timeout = self.settings.delivery_timeout_seconds
        if item.attempts >= self.settings.max_attempts:
            # Every attempt was recorded and none came back: the process stopped (crashed)
            # while sending it, again and again. Not once more, and not automatically again:
            # a dead letter an admin retries (/outbox retry).
            return await self._failed(
                item, "the process stopped while sending it", False, None, False
            )
        # Recorded before sending: an item that takes its process down still runs out of
        # attempts, and a crash re-sends only the items that were in flight.
        sending = item.attempts + 1
        await self.store.write(lambda repo: repo.record_attempt(item.id, sending))
        try:
            if item.kind == "revoke_link":
                # A neutral hook with a safe default: a platform without it has nothing to
                # retire (the code behind the link no longer credits anyway).
                revoke = getattr(platform, "revoke_referral_link", None)
                if revoke is not None:
                    async with asyncio.timeout(timeout):
                        await revoke(item.payload["community"], item.payload["url"])
            else:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel.
                async with asyncio.timeout(timeout):
                    await platform.deliver(item)
        except DeliveryError as exc:
            _observe_delivery(item, exc)
            if exc.quiet and not exc.retryable:
                return await self._unreachable(item, str(exc))
            return await self._failed(
                item, str(exc), exc.retryable, exc.retry_after, exc.counts_as_attempt
            )
        except TimeoutError:
            log.warning("event=outbox.timeout id=%s kind=%s after=%ss", item.id, item.kind, timeout)
            return await self._failed(item, f"no answer within {timeout} s", True, None, True)
        except Exception as exc:  # a bug or an outage: retry later, never lose the item
            log.exception("event=outbox.delivery_crashed id=%s kind=%s", item.id, item.kind)
            _observe_delivery(item, exc)
            return await self._failed(item, type(exc).__name__, True, None, True)
        _observe_delivery(item, None)
        now = self.clock.now()
        self._claimed.pop(item.id, None)
        await self.store.write(lambda repo: repo.mark_delivered(item.id, now))
        self.delivered += 1
        await self._revive_after_success(item.platform, now)
        return None

    async def _unreachable(self, item: OutboxItem, error: str) -> None:
        """An expected refusal (a member who never started the bot): set aside as
        "unreachable" (kept, shown grouped in /outbox), counted for one line per drain, no
        warning per item, and never revived on its own (retrying cannot help)."""
        now = self.clock.now()
        self._claimed.pop(item.id, None)
        self.unreachable += 1
        await self.store.write(
            lambda repo: repo.mark_failed(item.id, item.attempts + 1, now, error, "unreachable")
        )

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
        self._claimed.pop(item.id, None)
        if not retryable or attempts >= self.settings.max_attempts:
            reason = "attempts" if retryable else "refused"
            log.warning(
                "event=outbox.dead_letter id=%s kind=%s attempts=%d reason=%s error=%s",
                item.id,
                item.kind,
                attempts,
                reason,
                error,
            )
            if item.kind in ("grant_role", "revoke_role"):
                log.warning(
                    "event=outbox.role_not_applied id=%s platform=%s; shown to admins in "
                    "/check and /outbox",
                    item.id,
                    item.platform,
                )
            self.failed += 1
            self._dead_known[item.platform] = True
            await self.store.write(
                lambda repo: repo.mark_failed(item.id, attempts, now, error, reason)
            )
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

    async def _revive(self, platforms: list[str], now: int, why: str) -> int:
        """Dead letters given up after their attempts get one more try, due now."""
        for name in platforms:
            self._dead_known[name] = False
            self._revived_at[name] = now
        last_try = max(0, self.settings.max_attempts - 1)
        count = await self.store.write(lambda repo: repo.revive_outbox(platforms, now, last_try))
        if count:
            log.info(
                "event=outbox.revived count=%d platforms=%s why=%s",
                count,
                ",".join(platforms),
                why,
            )
            self.wake()
        return count

    async def _revive_after_success(self, platform: str, now: int) -> None:
        if not self._dead_known.get(platform, True):
            return
        if now - self._revived_at.get(platform, -REVIVE_AFTER_SUCCESS_SECONDS) < (
            REVIVE_AFTER_SUCCESS_SECONDS
        ):
            return
        await self._revive([platform], now, "platform delivers again")

    async def _revive_on_schedule(self) -> None:
        """At the latest every ``revive_seconds``: a platform with no new traffic is probed."""
        now = self.clock.now()
        due = [
            name
            for name in self.platforms
            if now - self._revived_at.setdefault(name, now) >= self.settings.revive_seconds
        ]
        if due:
            await self._revive(due, now, "scheduled")

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

    def start(self, poll_seconds: float) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(poll_seconds), name="outbox-worker")

    async def stop(self) -> None:
        """Cancel the worker and its lanes, wait for them, and release what was claimed but
        not sent, so the next process sends it at once (not after a lease)."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self.release()

    async def release(self) -> None:
        ids = list(self._claimed)
        self._claimed.clear()
        if ids:
            now = self.clock.now()
            await self.store.write(lambda repo: repo.release_outbox(ids, now))
            log.info("event=outbox.released count=%d", len(ids))


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
