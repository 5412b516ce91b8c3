"""The outbox: retried with backoff, never lost, never shown twice."""

from bot.engine import notify
from bot.engine.clock import MINUTE
from bot.engine.models import Community
from bot.engine.text import t
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


class Lanes:
    """A platform whose lanes are users: bob's first note fails once."""

    name = "console"

    def __init__(self, console):
        self.console, self.capabilities = console, console.capabilities
        self.sent: list[str] = []
        self.failed_once = False

    async def start(self, app):
        pass

    async def stop(self):
        pass

    def lane(self, item):
        return item.payload.get("user", "")

    async def deliver(self, item):
        if item.dedupe_key == "note:bob:1" and not self.failed_once:
            self.failed_once = True
            raise DeliveryError("busy", retry_after=3, counts_as_attempt=False)
        self.sent.append(f"{item.payload.get('user')}:{item.dedupe_key}")


async def test_a_lane_keeps_its_order_while_other_lanes_go_on(harness: Harness):
    lanes = Lanes(harness.console)
    harness.app.outbox.platforms["console"] = lanes
    for user in ("alice", "bob"):
        await harness.console.join(user)  # each gets a welcome DM, then a code reminder
        await harness.say(user, "/invite")
    community = Community(1, "console", "lounge", "lounge", 1)
    await harness.engine.store.write(
        lambda repo: repo.add_outbox(
            [
                notify.to_user(community, who, t("days", count=n), "en", f"note:{who}:{n}", 0)
                for who in ("alice", "bob")
                for n in (1, 2, 3)
            ]
        )
    )
    await harness.app.outbox.drain()
    bobs = [s for s in lanes.sent if s.startswith("bob:note")]
    assert [s for s in lanes.sent if s.startswith("alice:note")] == [
        "alice:note:alice:1",
        "alice:note:alice:2",
        "alice:note:alice:3",
    ]
    assert bobs == []  # bob's lane waits for its first item's retry, in order
    harness.clock.advance(3)
    await harness.app.outbox.drain()
    assert [s for s in lanes.sent if s.startswith("bob:note")] == [
        "bob:note:bob:1",
        "bob:note:bob:2",
        "bob:note:bob:3",
    ]
