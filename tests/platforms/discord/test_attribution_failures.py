"""Attribution when something goes wrong: failed or hung fetches, leaves inside the window,
vanity joins, permissions that come back, early commands, downtime, a missing intent."""

from __future__ import annotations

import asyncio
from typing import Any

import discord
import pytest

from tests.fakes import discord_invites
from tests.platforms.discord.conftest import World, joins_of
from tests.platforms.discord.test_attribution import personal_invite

INVITES = "/guilds/*/invites"


async def test_a_failed_invite_fetch_never_credits_the_next_window(world: World) -> None:
    alice = await world.member("alice")
    invite, _ = await personal_invite(world, alice)
    world.env.inject_error("GET", INVITES, status=500)
    bob = world.join(invite, "bob")  # his use lands in the window whose fetch fails
    await world.window()
    carl = world.join(None, "carl")  # no invite at all, in the very next window
    await world.window()
    joined = await joins_of(world)
    assert joined[str(bob.id)]["source"] == "unknown"
    assert (joined[str(carl.id)]["source"], joined[str(carl.id)]["referrer"]) == ("unknown", None)
    await world.env.advance_time(60)  # the baseline is rebuilt...
    await world.env.settle()
    dana = world.join(invite, "dana")  # ...and attribution resumes
    await world.window()
    assert (await joins_of(world))[str(dana.id)]["referrer"] == str(alice.id)


async def test_a_hung_invite_fetch_times_out_and_credits_nobody_wrongly(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await world.member("alice")
    invite, _ = await personal_invite(world, alice)
    real = discord.Guild.invites
    hangs = [1]

    async def invites(self: discord.Guild) -> Any:
        if hangs:
            hangs.pop()
            await asyncio.sleep(3600)  # Discord never answers this one
        return await real(self)

    monkeypatch.setattr(discord.Guild, "invites", invites)
    bob = world.join(invite, "bob")
    await world.env.advance_time(world.platform.tracker.fetch_timeout + 5)
    await world.env.settle()
    carl = world.join(None, "carl")
    await world.window()
    joined = await joins_of(world)
    assert joined[str(bob.id)]["source"] == "unknown"
    assert joined[str(carl.id)]["referrer"] is None


async def test_a_join_and_leave_within_the_window_ends_left(world: World) -> None:
    alice = await world.member("alice")
    invite, _ = await personal_invite(world, alice)
    bob = world.join(invite, "bob")
    world.guild.remove_member(bob)  # gone 0 s later, long before the window closes
    await world.window()
    joined = (await joins_of(world))[str(bob.id)]
    assert (joined["referrer"], joined["status"]) == (str(alice.id), "left")


async def test_vanity_joins_missing_from_the_invite_list_are_organic(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    discord_invites.list_without_vanity(monkeypatch)  # only the vanity endpoint reports it
    world.guild.set_vanity_url("lounge")
    guild = world.platform.client.get_guild(world.guild.id)
    await world.platform.tracker.fill(guild, {})
    erin = world.join("lounge", "erin")
    await world.window()
    joined = (await joins_of(world))[str(erin.id)]
    assert (joined["source"], joined["referrer"]) == ("organic", None)


async def test_manage_server_given_back_resumes_attribution_and_check(world: World) -> None:
    alice = await world.member("alice")
    invite, _ = await personal_invite(world, alice)
    world.set_bot_permissions(manage_guild=False)
    await world.env.settle()
    world.join(invite, "bob")
    await world.window()
    assert (
        "Manage Server"
        in (await world.admin.slash(world.general, "referral-admin check")).response.content
    )
    world.set_bot_permissions(manage_guild=True)  # no restart
    await world.env.settle()
    carl = world.join(invite, "carl")
    await world.window()
    assert (await joins_of(world))[str(carl.id)]["referrer"] == str(alice.id)
    check = (await world.admin.slash(world.general, "referral-admin check")).response.content
    assert "Manage Server" not in check


async def test_a_command_right_after_joining_keeps_the_member_a_newcomer(world: World) -> None:
    alice = await world.member("alice")
    invite, _ = await personal_invite(world, alice)
    bob = world.join(invite, "bob")
    result = await bob.slash(world.general, "invite")  # inside his join's burst window
    assert result.response is not None and "discord.gg" in result.response.content
    joined = (await joins_of(world))[str(bob.id)]
    assert (joined["source"], joined["referrer"], joined["status"]) == (
        "invite-link",
        str(alice.id),
        "pending",
    )


async def test_a_newcomer_missed_during_an_outage_may_still_type_a_code(world: World) -> None:
    alice = await world.member("alice")
    _, referral = await personal_invite(world, alice)
    await world.restart()  # down from here
    old = world.guild.add_member(world.user("before-the-bot"))
    # there before the bot was added, first seen now: never a newcomer
    world.env.backend.guilds[world.guild.id].members[old.id].joined_at = "2025-06-01T00:00:00+00:00"
    late = world.guild.add_member(world.user("late"))
    await world.env.settle()
    await world.reattach()
    joined = await joins_of(world)
    assert joined[str(late.id)]["source"] == "unknown" and joined[str(late.id)]["referrer"] is None
    ok = await late.slash(world.general, "code", code=referral)
    assert "alice" in ok.response.content
    refused = await old.slash(world.general, "code", code=referral)
    assert "alice" not in refused.response.content
    assert (await joins_of(world))[str(late.id)]["referrer"] == str(alice.id)


async def test_guild_available_after_an_outage_reconciles_like_ready(world: World) -> None:
    from simcord.backend import serializers

    alice = await world.member("alice")
    invite, _ = await personal_invite(world, alice)
    bob = world.join(invite, "bob")
    await world.window()
    backend = world.env.backend
    gid = world.guild.id
    backend.emit("GUILD_DELETE", {"id": str(gid), "unavailable": True})  # a Discord outage
    await world.env.settle()
    del backend.guilds[gid].members[bob.id]  # bob leaves meanwhile: no event reaches the bot
    payload = dict(serializers.guild_create_payload(backend, backend.guilds[gid]))
    payload["unavailable"] = False
    backend.emit("GUILD_CREATE", payload)  # the guild is back
    await world.env.settle()
    assert (await joins_of(world))[str(bob.id)]["status"] == "left"


async def test_a_missing_members_intent_is_told_once(world_unopened: World) -> None:
    world = world_unopened
    world.platform, world.app = world._make(members_intent=False)
    await world.connect()
    try:
        await world.build()
        await world.platform.ready()
        await world.platform.ready()
        told = [
            m
            for m in world.guild.owner.dm_channel.history()
            if "Server Members intent" in m.content
        ]
        assert len(told) == 1
    finally:
        await world.close()
