"""Broadcast channels as communities: subscribers join through personal links, a referral
converts on time stayed alone (nobody but the admins can post), nothing is posted to every
subscriber, and the admin who added the bot is told so in private."""

from collections.abc import AsyncIterator

import pytest

from bot.engine.clock import DAY
from tests.fakes.telegram_api import FakeTelegram
from tests.platforms.telegram.conftest import World, texts
from tests.platforms.telegram.helpers import INVITE


@pytest.fixture
async def any_world(db_url: str, fake: FakeTelegram) -> AsyncIterator[World]:
    """The bot against the fake Bot API, on SQLite and on PostgreSQL."""
    w = World(db_url, fake)
    await w.open()
    try:
        yield w
    finally:
        await w.close()


async def test_a_subscriber_through_a_personal_link_converts_on_time_stayed(any_world: World):
    world, fake = any_world, any_world.fake
    owner = fake.user("Olga", started=True)
    channel = fake.add_broadcast_channel("News", owner)
    sent = await world.settle()
    assert texts(sent, channel) == []  # a channel post would reach every subscriber
    [told] = texts(sent, owner["id"])
    assert told.startswith("I'm set up in the channel News.")
    assert "stayed subscribed 3 days" in told and "/program" in told

    alice = fake.user("Alice", started=True)
    fake.join(channel, alice)
    await world.settle()
    fake.say(alice["id"], alice, "/invite")  # subscribers can't type in the channel
    [dm] = texts(await world.settle(), alice["id"])
    found = INVITE.search(dm)
    assert found, dm

    bob = fake.user("Bob", started=True)
    fake.join(channel, bob, found.group(0))
    sent = await world.settle()
    assert texts(sent, channel) == []  # no welcome post in the channel
    [notice] = [m for m in texts(sent, alice["id"]) if "with your code" in m]
    assert notice == (
        "Bob joined the channel News with your code. "
        "It counts once they have stayed subscribed 3 days."
    )  # nothing about messages a subscriber can't post
    [welcome] = texts(sent, bob["id"])  # Bob started the bot: his own code, in private
    assert "once they have stayed subscribed 3 days" in welcome and "posted" not in welcome

    sent = await world.advance(2 * DAY)
    assert not any("now counts as your referral" in m for m in texts(sent, alice["id"]))
    sent = await world.advance(DAY + 60)  # three days stayed, zero messages posted
    assert any(m.startswith("Bob now counts as your referral.") for m in texts(sent, alice["id"]))
    assert texts(sent, channel) == []

    fake.say(alice["id"], alice, "/status")
    [status] = texts(await world.settle(), alice["id"])
    assert "Referrals: 0 pending, 1 converted" in status

    fake.say(alice["id"], alice, "/rules")
    [rules] = texts(await world.settle(), alice["id"])
    assert "In the channel News (telegram) a referral counts on time stayed alone" in rules
    assert "posted" not in rules

    fake.say(owner["id"], owner, "/program")
    [program] = texts(await world.settle(), owner["id"])
    assert "In the channel News (telegram) a referral counts on time stayed alone: 3 days" in (
        program
    )


async def test_the_channel_notice_is_given_once_not_on_every_rights_change(world: World):
    fake = world.fake
    owner = fake.user("Olga", started=True)
    channel = fake.add_broadcast_channel("News", owner)
    assert len(texts(await world.settle(), owner["id"])) == 1
    fake.set_bot_status(channel, "administrator", owner, can_invite_users=False)
    sent = await world.settle()
    assert texts(sent, channel) == []
    [needs] = texts(sent, owner["id"])  # only what the bot now lacks, privately
    assert "Invite Users via Link" in needs
    fake.set_bot_status(channel, "administrator", owner, can_invite_users=True)
    sent = await world.settle()
    assert texts(sent, channel) == [] and texts(sent, owner["id"]) == []


async def test_in_a_group_a_silent_referral_still_needs_its_messages(world: World):
    """The time-only rule is the channel's: a group's silent newcomer does not convert."""
    fake = world.fake
    owner = fake.user("Olga", started=True)
    group = fake.add_group("Fans", owner)
    alice = fake.user("Alice", started=True)
    fake.join(group, alice)
    await world.settle()
    fake.say(group, alice, "/invite")
    [dm] = texts(await world.settle(), alice["id"])
    found = INVITE.search(dm)
    assert found, dm
    fake.join(group, fake.user("Bob"), found.group(0))
    await world.settle()
    sent = await world.advance(3 * DAY + 60)
    assert not any("now counts as your referral" in m for m in texts(sent, alice["id"]))
