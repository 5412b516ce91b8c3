"""Slash commands generated from the registry, under SimCord (real discord.py)."""

from __future__ import annotations

import pytest
import simcord

from tests.platforms.discord.conftest import World


async def test_every_member_command_through_the_slash_path(world: World) -> None:
    alice = await world.member("alice")
    ch = world.general

    help_ = await alice.slash(ch, "help")
    assert help_.ephemeral and "/invite" in help_.response.content
    assert "tier-add" not in help_.response.content  # admin commands are not listed

    invite = await alice.slash(ch, "invite")
    assert invite.ephemeral
    links = [i for i in world.guild.invites() if i.code in invite.response.content]
    assert len(links) == 1 and links[0].max_age == 0 and links[0].channel_id == world.invites.id
    again = await alice.slash(ch, "invite")  # the stored link is reused: no second invite
    assert len([i for i in world.guild.invites() if i.inviter_id != alice.id]) == 1
    assert links[0].code in again.response.content

    status = await alice.slash(ch, "status")
    assert status.ephemeral and "0 pending" in status.response.content

    redeem = await alice.slash(ch, "redeem")
    assert redeem.ephemeral

    world.clock.advance(10)  # a member gets 5 commands per 10 s (flood budget)
    rules = await alice.slash(ch, "rules")
    assert not rules.ephemeral  # rules are for everyone in the channel

    board = await alice.slash(ch, "leaderboard", period="week")
    assert board.response is not None

    bob = world.join(None, "bob")
    await world.window()
    code = await bob.slash(ch, "code", code="not-a-code")
    assert code.ephemeral and code.response.content


async def test_options_are_typed(world: World) -> None:
    with pytest.raises(simcord.OptionError):
        await world.admin.slash(
            world.general, "referral-admin tier-add", name="Gold", threshold="x", kind="role"
        )
    with pytest.raises(simcord.OptionError):
        await (await world.member("m")).slash(world.general, "leaderboard", period="year")


async def test_admin_commands_live_in_one_group_and_autocomplete_tier_names(world: World) -> None:
    r = await world.admin.slash(
        world.general,
        "referral-admin tier-add",
        name="Gold",
        threshold=3,
        kind="points",
        value="100",
    )
    assert r.ephemeral and "Gold" in r.response.content
    choices = await world.admin.autocomplete(
        world.general, "referral-admin tier-remove", "name", "go"
    )
    assert [c["value"] for c in choices] == ["Gold"]


async def test_redeem_autocompletes_reward_names(world: World) -> None:
    alice = await world.member("alice")
    assert await alice.autocomplete(world.general, "redeem", "reward", "") == []


async def test_a_non_admin_cannot_run_admin_commands(world: World) -> None:
    mallory = await world.member("mallory")
    assert not any(
        c.startswith("referral-admin") for c in mallory.available_commands(world.general)
    )
    with pytest.raises(simcord.SetupError):
        await mallory.slash(world.general, "referral-admin set", setting="min-days", value="0")
    # Even if a server admin lets everyone see the command, the bot checks real permissions.
    command = world.env.backend.find_command("referral-admin", None)
    world.guild.set_command_permissions(int(command["id"]), {world.guild.default_role: True})
    r = await mallory.slash(world.general, "referral-admin set", setting="min-days", value="0")
    assert r.ephemeral and "admin" in r.response.content.lower()
    program = await world.app.engine.overview(world.platform.ref(world.platform.client.guilds[0]))
    assert program.settings.min_days == world.app.ctx.defaults.min_days != 0


async def test_commands_sync_once_and_again_only_when_changed(world: World) -> None:
    puts = [r for r in world.env.http_requests if r.method == "PUT" and "commands" in r.path]
    assert len(puts) == 1
    await world.platform.sync_commands()
    puts = [r for r in world.env.http_requests if r.method == "PUT" and "commands" in r.path]
    assert len(puts) == 1  # same tree, same hash: nothing sent
    world.platform.state.save_command_hash(f"{world.platform.client.application_id}:global", "x")
    await world.platform.sync_commands()
    puts = [r for r in world.env.http_requests if r.method == "PUT" and "commands" in r.path]
    assert len(puts) == 2


async def test_check_lists_what_is_missing_with_how_to_fix(world: World) -> None:
    world.role("Champion", position=80)  # above the bot's role
    await world.admin.slash(
        world.general,
        "referral-admin tier-add",
        name="Champ",
        threshold=1,
        kind="role",
        value="Champion",
    )
    await world.admin.slash(
        world.general, "referral-admin set", setting="announce-channel", value="#news"
    )
    world.set_bot_permissions(manage_guild=False, manage_roles=False)
    await world.env.settle()
    r = await world.admin.slash(world.general, "referral-admin check")
    text = r.response.content
    assert r.ephemeral
    assert "Manage Server" in text and "Manage Roles" in text
    assert "news" in text  # the announcement channel does not exist
    world.set_bot_permissions(manage_roles=True)
    await world.env.settle()
    text = (await world.admin.slash(world.general, "referral-admin check")).response.content
    assert "drag the bot's role above Champion" in text


async def test_check_reports_a_missing_members_intent(world: World) -> None:
    world.platform.members_intent = False
    text = (await world.admin.slash(world.general, "referral-admin check")).response.content
    assert "Server Members Intent" in text


def test_help_shows_how_commands_are_typed_on_discord():
    from bot.platforms.discord.slash import usage_on_discord
    from commands import REGISTRY

    assert usage_on_discord(REGISTRY.get("status")) == "/status"
    assert usage_on_discord(REGISTRY.get("tier-remove")).startswith("/referral-admin tier-remove")
    assert usage_on_discord(REGISTRY.get("fraud-queue")).startswith("/referral-mod fraud-queue")


async def test_a_kick_only_moderator_given_the_command_as_the_docs_say_can_use_it(
    world: World,
) -> None:
    import discord

    kickers = world.guild.create_role("Kickers", permissions=discord.Permissions(kick_members=True))
    kicker = await world.member("kicker", roles=[kickers])
    assert not any(c.startswith("referral-mod") for c in kicker.available_commands(world.general))
    command = world.env.backend.find_command("referral-mod", None)
    world.guild.set_command_permissions(int(command["id"]), {kickers: True})  # Integrations
    r = await kicker.slash(world.general, "referral-mod fraud-queue")
    assert r.ephemeral and "role only" not in r.response.content  # accepted as a moderator
