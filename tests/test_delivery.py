"""The outbox: retried with backoff, never lost, never shown twice."""

from bot.engine.clock import MINUTE
from bot.platforms.base import DeliveryError
from tests.conftest import Harness


class Flaky:
    """Fails the first ``failures`` deliveries of each item, then delivers."""

    def __init__(self, console, failures: int, retryable: bool = True):
        self.console, self.failures, self.retryable = console, failures, retryable
        self.seen: dict[str, int] = {}
        self.name, self.capabilities = console.name, console.capabilities

    async def start(self, app):
        pass

    async def stop(self):
        pass

    async def deliver(self, item):
        self.seen[item.dedupe_key] = self.seen.get(item.dedupe_key, 0) + 1
        if self.seen[item.dedupe_key] <= self.failures and (
            self.retryable or item.dedupe_key.startswith("welcome:1:1:")
        ):
            raise DeliveryError("platform unavailable", retryable=self.retryable)
        await self.console.deliver(item)


async def test_failed_deliveries_are_retried_with_backoff(harness: Harness):
    harness.app.outbox.platforms["console"] = Flaky(harness.console, failures=2)
    await harness.console.join("alice")
    welcome = "[bot -> #lounge] Welcome to lounge, @alice!"
    assert welcome not in await harness.settle()  # first attempt failed; waits 5 s
    harness.clock.advance(5)
    assert welcome not in await harness.settle()  # second attempt failed; waits 10 s
    harness.clock.advance(10)
    assert welcome in await harness.settle()


async def test_permanent_failures_stop_without_blocking_others(harness: Harness):
    harness.app.outbox.platforms["console"] = Flaky(harness.console, failures=1, retryable=False)
    await harness.console.join("alice")
    await harness.console.join("bob")
    said = await harness.settle()
    assert "[bot -> #lounge] Welcome to lounge, @alice!" not in said
    assert "[bot -> #lounge] Welcome to lounge, @bob!" in said
    harness.clock.advance(60 * MINUTE)
    assert await harness.settle() == []
    assert harness.app.outbox.failed == 1


async def test_a_crash_after_sending_does_not_show_a_message_twice(harness: Harness):
    await harness.console.join("alice")
    items = await harness.app.outbox._claim()
    for item in items:  # sent, then the process "dies" before marking it delivered
        await harness.console.deliver(item)
    harness.clock.advance(10 * MINUTE)  # the lease runs out; the item is claimed again
    again = await harness.app.outbox._claim()
    assert [i.dedupe_key for i in again] == [i.dedupe_key for i in items]
    for item in again:
        await harness.console.deliver(item)
    assert harness.lines.count("[bot -> #lounge] Welcome to lounge, @alice!") == 1
