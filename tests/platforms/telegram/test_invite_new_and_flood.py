"""/invite new revokes the old chat invite link; a member flooding commands is slowed down."""

import sqlalchemy as sa

from bot.engine.notify import to_channel
from bot.engine.text import t
from storage.tables import outbox
from tests.platforms.telegram.conftest import World, texts
from tests.platforms.telegram.helpers import INVITE, group_with_member, invite_link


async def test_a_new_code_revokes_the_old_chat_invite_link(world: World):
    fake = world.fake
    group, _owner, alice = await group_with_member(world)
    old = await invite_link(world, group, alice)
    world.clock.advance(60)
    fake.say(group, alice, "/invite new")
    [dm] = texts(await world.settle(), alice["id"])
    new = INVITE.search(dm)
    assert new is not None and new.group(0) != old
    [revoked] = fake.called("revokeChatInviteLink")
    assert revoked["invite_link"] == old and int(revoked["chat_id"]) == group
    assert fake.links[old].revoked and not fake.links[new.group(0)].revoked

    bob = fake.user("Bob")
    fake.join(group, bob, new.group(0))
    sent = await world.settle()
    assert texts(sent, group) == ["Welcome to Fans, Bob! You were invited by Alice."]


async def test_a_link_already_gone_on_telegram_is_not_an_error(world: World):
    fake = world.fake
    group, _owner, alice = await group_with_member(world)
    old = await invite_link(world, group, alice)
    del fake.links[old]  # an admin revoked it by hand meanwhile
    world.clock.advance(60)
    fake.say(group, alice, "/invite new")
    [dm] = texts(await world.settle(), alice["id"])
    assert "Your referral code:" in dm
    assert len(fake.called("revokeChatInviteLink")) == 1
    assert world.app is not None
    assert await world.app.db.read(_failed_outbox) == 0


async def _failed_outbox(repo) -> int:
    stmt = sa.select(sa.func.count()).select_from(outbox).where(outbox.c.failed_at.is_not(None))
    return (await repo.conn.execute(stmt)).scalar_one()


async def test_a_member_flooding_commands_gets_one_slow_down_then_silence(world: World):
    fake = world.fake
    group, _owner, alice = await group_with_member(world)
    for _ in range(7):
        fake.say(group, alice, "/status")
    sent = await world.settle()
    private = texts(sent, alice["id"])
    assert len([p for p in private if p.startswith("Referrals:")]) == 5
    assert [p for p in private if p.startswith("Slow down")] == [
        "Slow down: you are sending commands too fast. Try again in 10 seconds."
    ]
    assert len(private) == 6  # the seventh is dropped without a word


async def test_a_member_pressing_a_moderator_button_is_refused_and_logged(world: World, caplog):
    caplog.set_level("WARNING", logger="commands.guard")
    fake = world.fake
    group, _owner, alice = await group_with_member(world)
    assert world.app is not None
    community = await world.app.engine.community(world.tg.ref(group))
    buttons = ((t("fraud.button.approve"), "fraud-approve 1"),)
    row = to_channel(
        community, None, t("leaderboard.empty"), "en", "b:1", world.clock.now(), buttons
    )
    await world.app.db.write(lambda repo: repo.add_outbox([row]))
    await world.settle()
    message = fake.sent[-1]
    fake.press(message, alice, message.reply_markup["inline_keyboard"][0][0]["callback_data"])
    await world.settle()
    assert fake.answered[-1]["text"] == "Only the group's administrators can use this button."
    [event] = [r.getMessage() for r in caplog.records if "command.forbidden" in r.getMessage()]
    assert f"user={alice['id']}" in event and "command=fraud-approve attempts=1" in event
