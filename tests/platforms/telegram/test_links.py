"""/invite new on Telegram: the old chat invite link is revoked on the platform too."""

import sqlalchemy as sa

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
