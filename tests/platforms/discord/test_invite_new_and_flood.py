"""/invite new deletes the old personal invite; a member flooding slash commands is slowed down."""

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


async def test_a_member_flooding_slash_commands_gets_one_slow_down(world: World) -> None:
    alice = await world.member("alice")
    answers = [await alice.slash(world.general, "status") for _ in range(6)]
    assert all("0 pending" in a.response.content for a in answers[:5])
    assert answers[5].ephemeral
    assert answers[5].response.content.startswith("Slow down: you are sending commands too fast.")
    dropped = await alice.slash(world.general, "status")
    assert not dropped.acknowledged  # silence: no REST call at all for the flooder
    world.clock.advance(10)
    again = await alice.slash(world.general, "status")
    assert "0 pending" in again.response.content
