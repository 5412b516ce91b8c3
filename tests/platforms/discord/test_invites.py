"""Personal invites that Discord deletes or refuses: the member's code never changes, and
every refusal reaches the admins."""

from __future__ import annotations

from bot.engine import codes
from tests.platforms.discord.conftest import World, joins_of
from tests.platforms.discord.test_attribution import personal_invite
from tests.platforms.discord.test_rewards import dms


async def test_a_deleted_personal_invite_is_recreated_for_the_same_code(world: World) -> None:
    alice = await world.member("alice")
    first, referral = await personal_invite(world, alice)
    world.env.backend.delete_invite(first)  # an admin revokes it (INVITE_DELETE follows)
    await world.env.settle()
    second, again = await personal_invite(world, alice)
    assert second != first and again == referral  # a new invite, the same referral code
    status = (await alice.slash(world.general, "status")).response.content
    assert codes.display(referral) in status
    bob = world.join(second, "bob")
    await world.window()
    assert (await joins_of(world))[str(bob.id)]["referrer"] == str(alice.id)


async def test_an_invite_deleted_while_nobody_saw_it_is_recreated(world: World) -> None:
    alice = await world.member("alice")
    first, referral = await personal_invite(world, alice)
    await world.restart()
    del world.env.backend.invites[first]  # deleted while the bot was down: no event reached it
    await world.reattach()
    second, again = await personal_invite(world, alice)
    assert second != first and again == referral


async def test_the_invite_cap_reaches_the_member_the_admins_and_check(world: World) -> None:
    alice = await world.member("alice")
    world.env.inject_error(
        "POST",
        "/channels/*/invites",
        status=400,
        code=30016,
        message="Maximum number of invites reached (1000)",
    )
    r = await alice.slash(world.general, "invite")
    assert r.ephemeral and "limit of 1000 invites" in r.response.content
    told = [m for m in dms(world.guild.owner) if "1000 invites" in m]
    assert len(told) == 1
    check = (await world.admin.slash(world.general, "referral-admin check")).response.content
    assert "limit of 1000 invites" in check
    # the admins made room: the next /invite works and /check no longer says it
    r = await alice.slash(world.general, "invite")
    assert "discord.gg" in r.response.content
    check = (await world.admin.slash(world.general, "referral-admin check")).response.content
    assert "limit of 1000 invites" not in check


async def test_a_refused_invite_tells_the_admins_why(world: World) -> None:
    alice = await world.member("alice")
    world.env.inject_error(
        "POST", "/channels/*/invites", status=403, code=50013, message="Missing Permissions"
    )
    r = await alice.slash(world.general, "invite")
    assert r.ephemeral and "try again" in r.response.content
    check = (await world.admin.slash(world.general, "referral-admin check")).response.content
    assert "50013" in check


async def test_the_personal_invite_of_a_member_who_left_is_deleted(world: World) -> None:
    alice = await world.member("alice")
    invite, referral = await personal_invite(world, alice)
    world.guild.remove_member(alice)
    await world.env.settle()
    assert invite not in {i.code for i in world.guild.invites()}
    world.guild.add_member(alice.user)  # she comes back: a new invite, the same code
    await world.window()
    again_invite, again_referral = await personal_invite(world, alice)
    assert again_invite != invite and again_referral == referral


async def test_invites_of_members_who_left_while_the_bot_was_down_are_deleted(
    world: World,
) -> None:
    alice = await world.member("alice")
    invite, _ = await personal_invite(world, alice)
    await world.restart()
    world.guild.remove_member(alice)  # nobody hears it
    await world.env.settle()
    await world.reattach()
    assert invite not in {i.code for i in world.guild.invites()}
