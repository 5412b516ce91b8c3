"""Joins through invites, attributed by the adapter under SimCord (real discord.py)."""

from __future__ import annotations

from bot.engine import codes
from bot.platforms.discord import account_created_at
from tests.fakes import discord_invites
from tests.platforms.discord.conftest import World, joins_of


async def personal_invite(world: World, member) -> tuple[str, str]:
    """(invite code, referral code) of the member's /invite link."""
    result = await member.slash(world.general, "invite")
    assert result.ephemeral
    invite = next(i for i in world.guild.invites() if i.code in result.response.content)
    referral = world.platform.state.invite_codes(str(world.guild.id))[invite.code]
    return invite.code, referral


async def test_join_via_personal_invite_credits_its_owner(world: World) -> None:
    alice = await world.member("alice")
    invite, referral = await personal_invite(world, alice)
    assert codes.display(referral) in (await alice.slash(world.general, "status")).response.content

    bob = world.join(invite, "bob")
    await world.window()

    joined = (await joins_of(world))[str(bob.id)]
    assert joined == {
        "source": "invite-link",
        "candidates": [],
        "referrer": str(alice.id),
        "status": "pending",
    }
    await world.deliver()
    welcome = world.general.last_message
    assert f"<@{bob.id}>" in welcome.content and f"<@{alice.id}>" in welcome.content


async def test_join_via_member_created_invite_credits_the_member(world: World) -> None:
    carol = await world.member("carol")
    code = discord_invites.member_invite(world.env, world.general, carol)
    await world.env.settle()
    dave = world.join(code, "dave")
    await world.window()
    joined = (await joins_of(world))[str(dave.id)]
    assert (joined["source"], joined["referrer"]) == ("invite-link", str(carol.id))


async def test_join_via_vanity_url_is_organic(world: World) -> None:
    world.guild.set_vanity_url("lounge")
    await world.platform.tracker.fill(world.platform.client.get_guild(world.guild.id), {})
    erin = world.join("lounge", "erin")
    await world.window()
    joined = (await joins_of(world))[str(erin.id)]
    assert (joined["source"], joined["referrer"]) == ("organic", None)


async def test_max_use_invite_that_vanished_one_short_credits_its_owner(world: World) -> None:
    frank = await world.member("frank")
    code = discord_invites.member_invite(world.env, world.general, frank, max_uses=1)
    await world.env.settle()
    gina = world.join(code, "gina")  # the invite is deleted by its last use; delete comes after
    await world.window()
    assert code not in {i.code for i in world.guild.invites()}
    joined = (await joins_of(world))[str(gina.id)]
    assert (joined["source"], joined["referrer"]) == ("invite-link", str(frank.id))


async def test_join_without_an_invite_is_unknown(world: World) -> None:
    hank = world.join(None, "hank")
    await world.window()
    assert (await joins_of(world))[str(hank.id)]["source"] == "unknown"


async def test_twenty_simultaneous_joins_over_three_invites_are_never_guessed(
    world: World,
) -> None:
    owners = [await world.member(f"owner{i}") for i in range(3)]
    invites = [(await personal_invite(world, o)) for o in owners]
    fetches = world.fetches()
    truth: dict[str, str] = {}
    # Wave 1 (one window): 20 joins spread over the three invites -> nobody can tell who
    # used which invite: all ambiguous, with exactly the three codes as candidates.
    for i in range(20):
        owner, (invite, _ref) = owners[i % 3], invites[i % 3]
        truth[str(world.join(invite).id)] = str(owner.id)
    await world.window()
    assert world.fetches() == fetches + 1  # ONE invite fetch served the whole burst
    joined = await joins_of(world)
    expected = sorted(ref for _code, ref in invites)
    for user_id in truth:
        assert joined[user_id]["source"] == "ambiguous"
        assert joined[user_id]["candidates"] == expected
        assert joined[user_id]["referrer"] is None

    # Wave 2: 20 joins in three windows; two windows carry one invite only -> credited.
    waves = [[0] * 7, [1, 2] * 3, [2] * 7]
    determinable: dict[str, str] = {}
    ambiguous: set[str] = set()
    for wave in waves:
        for k in wave:
            user_id = str(world.join(invites[k][0]).id)
            if len(set(wave)) == 1:
                determinable[user_id] = str(owners[k].id)
            else:
                ambiguous.add(user_id)
        await world.window()
    joined = await joins_of(world)
    for user_id, owner in determinable.items():
        assert (joined[user_id]["source"], joined[user_id]["referrer"]) == ("invite-link", owner)
    for user_id in ambiguous:
        assert joined[user_id]["source"] == "ambiguous"
        assert joined[user_id]["candidates"] == sorted([invites[1][1], invites[2][1]])
    wrong = [u for u, j in joined.items() if j["referrer"] and u in truth]
    assert not wrong


async def test_without_manage_server_joins_fall_back_to_typed_codes(world: World) -> None:
    world.set_bot_permissions(manage_guild=False)
    await world.env.settle()
    ivan = world.join(None, "ivan")
    await world.window()
    assert (await joins_of(world))[str(ivan.id)]["source"] == "unknown"
    problems = await world.platform.diagnose(world.platform.client.get_guild(world.guild.id))
    assert any(p.key == "check.discord.manage_server" for p in problems)
    # the owner was told once
    notice = world.guild.owner.dm_channel.history()
    assert len([m for m in notice if "Manage Server" in m.content]) == 1
    world.join(None, "jack")
    await world.window()
    assert len([m for m in world.guild.owner.dm_channel.history() if "Manage" in m.content]) == 1


async def test_rejoin_flag_is_never_credited_and_account_age_comes_from_the_id(
    world: World,
) -> None:
    alice = await world.member("alice")
    invite, _ = await personal_invite(world, alice)
    back = world.join(invite, "back", rejoined=True)
    await world.window()
    assert (await joins_of(world))[str(back.id)]["referrer"] is None
    assert account_created_at(175928847299117063) == 1462015105
