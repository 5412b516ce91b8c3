"""The outbox under faults: a platform call that hangs, a platform down for hours, items that
run out of attempts, and a stop in the middle of delivery. Nothing stalls, nothing is lost."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from bot.engine.clock import MINUTE
from bot.platforms.base import DeliveryError
from tests.conftest import Harness
from tests.test_delivery import Flaky

# A drain that does not finish within this is a stalled worker (the bug these tests guard).
STALLED = 30


class Hanging:
    """Lanes per recipient; the first delivery of ``key`` never answers until cancelled."""

    def __init__(self, console, key: str, forever: bool = False) -> None:
        self.console, self.key, self.forever = console, key, forever
        self.name, self.capabilities = console.name, console.capabilities
        self.entered = asyncio.Event()
        self.cancelled = False
        self.hung = 0

    async def start(self, app):
        pass

    async def stop(self):
        pass

    def lane(self, item):
        return item.payload.get("user") or "channel"

    async def deliver(self, item):
        if item.dedupe_key.startswith(self.key) and (self.forever or not self.hung):
            self.hung += 1
            self.entered.set()
            try:
                await asyncio.Event().wait()  # a platform call that never returns
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        await self.console.deliver(item)


def _quick_timeout(h: Harness, seconds: int = 1) -> None:
    h.app.outbox.settings = replace(h.app.outbox.settings, delivery_timeout_seconds=seconds)


async def test_a_hung_platform_call_is_a_retry_and_other_lanes_go_on(harness: Harness):
    _quick_timeout(harness)
    hanging = Hanging(harness.console, "dm-newcomer:")
    harness.app.outbox.platforms["console"] = hanging
    await harness.console.join("alice")
    await asyncio.wait_for(harness.app.outbox.drain(), STALLED)
    said = list(harness.lines)
    assert "[bot -> #lounge] Welcome to lounge, @alice!" in said  # the channel lane went on
    assert not any("(private)" in line for line in said)  # the hung DM was not shown
    assert hanging.cancelled  # the hung call was given up, not left running
    harness.clock.advance(5)  # the first retry's wait
    said = await asyncio.wait_for(harness.settle(), STALLED)
    assert sum("[bot -> @alice (private)]" in line for line in said) == 1


async def test_a_two_hour_outage_loses_nothing(harness: Harness):
    outage_ends = harness.clock.now() + 2 * 3600

    class Down(Flaky):
        async def deliver(self, item):
            if harness.clock.now() < outage_ends:
                raise DeliveryError("platform unavailable")
            await self.console.deliver(item)

    down = Down(harness.console, failures=0)
    harness.app.outbox.platforms["console"] = down
    await harness.console.join("alice")
    for name in ("bob", "carol", "dave"):
        await harness.console.join(name, via="alice")
    queued = await harness.app.db.read(lambda repo: repo.outbox_keys(_all_keys()))
    for _ in range(4 * 12):  # four hours in five-minute steps
        harness.clock.advance(5 * MINUTE)
        await harness.app.outbox.drain()
    assert harness.app.outbox.failed > 0  # items did run out of attempts during the outage
    delivered = set(harness.console.delivered_keys)
    assert delivered == queued  # ...and every one of them was delivered afterwards
    assert len(queued) == 11  # 4 welcomes, 4 newcomer DMs, 3 notices to the referrer
    bob = "[bot -> #lounge] Welcome to lounge, @bob! You were invited by @alice."
    assert harness.lines.count(bob) == 1
    assert await harness.engine.dead_letters(harness.console.community("lounge").ref) == []


def _all_keys() -> list[str]:
    keys = [f"welcome:1:{n}:1" for n in range(1, 5)]
    keys += [f"dm-newcomer:{n}" for n in range(1, 5)]
    keys += [f"referrer-joined:{n}" for n in range(1, 5)]
    return keys


async def test_dead_letters_are_shown_to_admins_and_retried(harness: Harness):
    # The platform refuses alice's welcome once, for good ("cannot help to retry").
    harness.app.outbox.platforms["console"] = Flaky(harness.console, failures=1, retryable=False)
    await harness.console.join("alice")
    await harness.console.set_role("alice", "admin")
    await harness.settle()
    [check] = await harness.say("alice", "/check")
    assert "queued item could not be delivered: see /outbox" in check
    [shown] = await harness.say("alice", "/outbox")
    assert "Not delivered (1)" in shown
    assert "channel message — refused by the platform" in shown
    assert "platform unavailable" in shown
    said = await harness.say("alice", "/outbox retry")
    assert "1 item is back in the queue." in said[0]
    said += await harness.settle()
    assert "[bot -> #lounge] Welcome to lounge, @alice!" in said
    [after] = await harness.say("alice", "/outbox")
    assert "Nothing is stuck" in after


async def test_a_role_never_applied_is_named_in_check(harness: Harness):
    await harness.console.join("alice")
    await harness.console.set_role("alice", "admin")
    await harness.say("alice", "/tier-add Bronze 1 role bronze")

    class RolesDown(Flaky):
        async def deliver(self, item):
            if item.kind == "grant_role":
                raise DeliveryError("missing permission to manage roles")
            await self.console.deliver(item)

    harness.app.outbox.platforms["console"] = RolesDown(harness.console, failures=0)
    await harness.console.join("bob", via="alice")
    for _ in range(3):
        await harness.say("bob", "hello")
    await harness.advance(4 * 86400)
    for _ in range(12):  # the role change's attempts run out
        await harness.advance(3600)
    [check] = await harness.say("alice", "/check")
    assert "1 role change was never applied on the platform: see /outbox." in check


async def test_a_clean_stop_releases_what_it_claimed(harness: Harness):
    await harness.console.join("alice")
    claimed = await harness.app.outbox._claim()
    assert claimed
    await harness.app.outbox.stop()  # stopping before these were sent
    again = await harness.app.outbox._claim()  # due at once, not after a lease
    assert sorted(i.dedupe_key for i in again) == sorted(i.dedupe_key for i in claimed)
    assert all(i.attempts == 0 for i in again)  # no attempt spent


async def test_close_cancels_a_lane_hung_on_a_platform(db_url: str):
    h = Harness(db_url)
    await h.app.open()
    await h.console.add_community("lounge")
    hanging = Hanging(h.console, "welcome:", forever=True)
    h.app.outbox.platforms["console"] = hanging
    h.app.outbox.start(0.05)
    await h.console.join("alice")
    await asyncio.wait_for(hanging.entered.wait(), STALLED)
    await asyncio.wait_for(h.app.close(), STALLED)
    assert hanging.cancelled  # no lane left running against a stopped platform

    again = Harness(db_url)  # the next process sends the welcome at once
    await again.app.open()
    await again.console.add_community("lounge")
    try:
        said = await again.settle()
    finally:
        await again.app.close()
    assert "[bot -> #lounge] Welcome to lounge, @alice!" in said


async def test_an_item_that_takes_its_process_down_runs_out_of_attempts(harness: Harness):
    """Each attempt is recorded before the platform is called, so a crash counts too."""
    from bot.delivery import OutboxWorker

    hanging = Hanging(harness.console, "welcome:", forever=True)
    await harness.console.join("alice")
    settings = harness.app.outbox.settings
    for _ in range(settings.max_attempts):
        worker = OutboxWorker(harness.app.db, {"console": hanging}, harness.clock, settings)
        hanging.entered.clear()
        drain = asyncio.create_task(worker.drain())
        await asyncio.wait_for(hanging.entered.wait(), STALLED)
        drain.cancel()  # the process dies while sending: no stop, no release
        await asyncio.gather(drain, return_exceptions=True)
        harness.clock.advance(settings.lease_seconds + 1)
    calls = hanging.hung
    worker = OutboxWorker(harness.app.db, {"console": hanging}, harness.clock, settings)
    await asyncio.wait_for(worker.drain(), STALLED)
    assert hanging.hung == calls  # not sent once more
    [dead] = [d for d in await harness.engine.dead_letters(_lounge(harness)) if d.kind == "message"]
    assert dead.reason == "refused" and "stopped while sending" in dead.error


def _lounge(h: Harness):
    return h.console.community("lounge").ref
