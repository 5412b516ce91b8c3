"""Nothing Telegram considers delivered is lost: the inbox, replays, a real SIGKILL."""

import asyncio
import json
import socket

import pytest
from aiohttp import ClientSession

from benchmarks.telegram_crash import run as crash_trials
from tests.platforms.telegram.conftest import World, texts
from tests.platforms.telegram.helpers import group_with_member, invite_link


async def test_a_sigkill_mid_burst_loses_and_duplicates_no_join():
    result = await crash_trials(trials=2, joins=8, seed=3)
    assert (result["lost"], result["duplicated"]) == (0, 0), result["per_trial"]


async def test_a_stop_while_the_bot_api_hangs_keeps_the_update_for_the_next_start(world: World):
    fake = world.fake
    group, _owner, alice = await group_with_member(world)
    fake.hanging.add("getChatMember")  # Telegram stops answering in the middle of a command
    world.tg.forget_member(group, alice["id"])
    command = fake.say(group, alice, "/status")
    await _until_confirmed(world, command)  # stored, and confirmed to Telegram
    world.tg.inbox.stop_grace = 0.2
    await world.close()  # a clean stop gives up on the stuck handler
    assert [u for u in fake.updates if u["update_id"] == command] == []  # Telegram forgot it
    fake.hanging.clear()
    await world.open()
    sent = await world.settle()
    [status] = texts(sent, alice["id"])
    assert status.startswith("Referrals: 0 pending, 0 converted")


async def test_a_replayed_update_id_has_no_effect(world: World):
    fake = world.fake
    group, _owner, alice = await group_with_member(world)
    link = await invite_link(world, group, alice)
    bob = fake.user("Bob")
    fake.join(group, bob, link)
    sent = await world.settle()
    [update] = [
        u
        for u in fake.served
        if "chat_member" in u and u["chat_member"]["new_chat_member"]["user"]["id"] == bob["id"]
    ]
    fake.leave(group, bob)
    await world.settle()
    fake.updates.append(json.loads(json.dumps(update)))  # the same join, served again
    fake.say(group, alice, "/status")
    sent = await world.settle()
    assert "Welcome" not in " ".join(texts(sent, group))
    [status] = texts(sent, alice["id"])
    assert "0 pending, 0 converted, 1 left early" in status


async def _until_confirmed(world: World, update_id: int) -> None:
    for _ in range(500):
        if world.fake.handed_out >= update_id:
            break
        await asyncio.sleep(0.01)
    for _ in range(500):  # the next poll confirms it (a higher offset)
        if not [u for u in world.fake.updates if u["update_id"] == update_id]:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the update was never confirmed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def hooked(sqlite_url: str, fake, monkeypatch: pytest.MonkeyPatch):
    port = _free_port()
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", "s3cret")
    w = World(sqlite_url, fake)
    await w.open(mode="webhook", webhook_url=f"http://127.0.0.1:{port}/hook", webhook_port=port)
    try:
        yield w, f"http://127.0.0.1:{port}/hook"
    finally:
        await w.close()


async def test_a_webhook_post_sent_twice_is_handled_once(hooked):
    world, url = hooked
    fake = world.fake
    group, _owner, alice = await group_with_member(world)
    link = await invite_link(world, group, alice)
    fake.webhook = None  # from here the test posts the updates itself, as Telegram retrying
    bob = fake.user("Bob")
    fake.join(group, bob, link)
    [update] = [u for u in fake.updates if "chat_member" in u]
    headers = {"X-Telegram-Bot-Api-Secret-Token": "s3cret"}
    async with ClientSession() as session:
        for _ in range(2):
            async with session.post(url, json=update, headers=headers) as r:
                assert r.status == 200
    fake.updates.clear()
    await world.tg.inbox.idle()
    await world.app.outbox.drain()
    sent = world.take()
    assert texts(sent, group) == ["Welcome to Fans, Bob! You were invited by Alice."]
