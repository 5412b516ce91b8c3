"""The inbox on both backends: stored once per update_id, handled once, in order per lane."""

import asyncio

import pytest

from bot.engine.clock import ManualClock
from bot.engine.models import InboxItem
from bot.inbox import KEEP_SECONDS, Inbox
from storage.database import Database


@pytest.fixture
async def db(db_url):
    database = Database(db_url)
    await database.open(migrate=False)
    yield database
    await database.close()


async def test_an_update_is_stored_and_handled_once_in_lane_order(db):
    clock = ManualClock()
    handled: list[tuple[str, int]] = []
    done = asyncio.Event()

    async def handle(item: InboxItem) -> None:
        handled.append((item.lane, item.update_id))
        if len(handled) == 4:
            done.set()

    inbox = Inbox(db, clock, "telegram", handle)
    runner = asyncio.create_task(inbox.run(poll_seconds=0.05))
    try:
        first = [(1, "chat:a", {"update_id": 1}), (2, "chat:b", {"update_id": 2}),
                 (3, "chat:a", {"update_id": 3})]  # fmt: skip
        assert await inbox.receive(first) == 3
        assert await inbox.receive([first[0], (4, "chat:b", {"update_id": 4})]) == 1  # replay
        await asyncio.wait_for(done.wait(), 10)
        await asyncio.wait_for(inbox.idle(), 10)
        assert await inbox.receive([first[1]]) == 0  # already handled: stored once, ever
        await asyncio.sleep(0.2)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    assert sorted(handled) == [("chat:a", 1), ("chat:a", 3), ("chat:b", 2), ("chat:b", 4)]
    assert [u for lane, u in handled if lane == "chat:a"] == [1, 3]  # one chat: in order
    assert await db.read(lambda r: r.pending_inbox("telegram", 10)) == []


async def test_unhandled_updates_wait_for_the_next_start_and_old_ones_are_pruned(db):
    clock = ManualClock()
    await Inbox(db, clock, "telegram", _ignore).receive([(7, "chat:a", {"update_id": 7})])
    [pending] = await db.read(lambda r: r.pending_inbox("telegram", 10))
    assert (pending.update_id, pending.payload) == (7, {"update_id": 7})
    await db.write(lambda r: r.mark_inbox_processed("telegram", [7], clock.now()))
    clock.advance(KEEP_SECONDS + 1)
    await db.write(lambda r: r.prune_inbox("telegram", clock.now() - KEEP_SECONDS))
    again = Inbox(db, clock, "telegram", _ignore)
    assert await again.receive([(7, "chat:a", {"update_id": 7})]) == 1  # pruned: stored anew


async def _ignore(_item: InboxItem) -> None:
    return None
