"""/invite new on Discord: the old personal invite is deleted on the server too."""

from tests.platforms.discord.conftest import World


async def test_a_new_code_deletes_the_old_personal_invite(world: World) -> None:
    alice = await world.member("alice")
    first = await alice.slash(world.general, "invite")
    [old] = [i for i in world.guild.invites() if i.code in first.response.content]
    world.clock.advance(60)
    second = await alice.slash(world.general, "invite", new="new")
    await world.app.outbox.drain()
    codes = {i.code for i in world.guild.invites()}
    assert old.code not in codes
    [new] = [i for i in world.guild.invites() if i.code in second.response.content]
    assert new.code != old.code
