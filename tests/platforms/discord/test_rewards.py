"""Role rewards, announcements, leaves and safe mentions, under SimCord (real discord.py)."""

from __future__ import annotations

import pytest

from bot.engine.models import OutboxItem
from bot.engine.text import t, to_json
from bot.platforms.base import DeliveryError
from tests.platforms.discord.conftest import World, joins_of
from tests.platforms.discord.test_attribution import personal_invite


async def configure(world: World, **settings: str) -> None:
    for key, value in settings.items():
        r = await world.admin.slash(
            world.general, "referral-admin set", setting=key.replace("_", "-"), value=value
        )
        assert "saved" in r.response.content.lower() or r.response.content


async def test_a_tier_reached_grants_the_role_and_is_announced_once(world: World) -> None:
    champion = world.role("Champion", position=5)
    await configure(world, min_days="0", min_messages="0", announce_channel="#announcements")
    await world.admin.slash(
        world.general,
        "referral-admin tier-add",
        name="Gold",
        threshold=1,
        kind="role",
        value="Champion",
    )
    alice = await world.member("alice")
    invite, _ = await personal_invite(world, alice)
    world.join(invite, "bob")
    await world.window()
    await world.jobs(60)
    await world.deliver()
    member = world.env.backend.guilds[world.guild.id].members[alice.id]
    assert champion.id in member.role_ids
    said = [m.content for m in world.announcements.history()]
    assert len([s for s in said if "Gold" in s]) == 1
    await world.jobs(3600)  # later sweeps and redeliveries change nothing
    await world.deliver()
    said = [m.content for m in world.announcements.history()]
    assert len([s for s in said if "Gold" in s]) == 1
    role_calls = [r for r in world.env.http_requests if "/roles/" in r.path and r.method == "PUT"]
    assert len(role_calls) == 1


async def test_a_member_who_leaves_and_comes_back_gets_the_role_again(world: World) -> None:
    """Discord drops a member's roles when they leave; the bot gives a role reward back."""
    champion = world.role("Champion", position=5)
    await configure(world, min_days="0", min_messages="0")
    await world.admin.slash(
        world.general,
        "referral-admin tier-add",
        name="Gold",
        threshold=1,
        kind="role",
        value="Champion",
    )
    alice = await world.member("alice")
    invite, _ = await personal_invite(world, alice)
    world.join(invite, "bob")
    await world.window()
    await world.jobs(60)
    await world.deliver()
    members = world.env.backend.guilds[world.guild.id].members
    assert champion.id in members[alice.id].role_ids
    world.guild.remove_member(alice)
    await world.env.settle()
    world.guild.add_member(alice.user)
    await world.window()
    await world.deliver()
    assert champion.id in members[alice.id].role_ids
    await world.jobs(3600)  # later sweeps and redeliveries add no call
    await world.deliver()
    role_calls = [r for r in world.env.http_requests if "/roles/" in r.path and r.method == "PUT"]
    assert len(role_calls) == 2


async def test_a_role_above_the_bot_fails_loudly_not_silently(world: World) -> None:
    world.role("Legend", position=90)
    item = OutboxItem(
        id=1,
        platform="discord",
        kind="grant_role",
        payload={"community": str(world.guild.id), "user": str(world.admin.id), "role": "Legend"},
        dedupe_key="test:legend",
        attempts=0,
    )
    with pytest.raises(DeliveryError) as failure:
        await world.platform.deliver(item)
    # It waits for the fix (without using up attempts) instead of failing for good.
    assert failure.value.retryable and not failure.value.counts_as_attempt
    assert failure.value.retry_after is not None and failure.value.retry_after >= 60
    check = (await world.admin.slash(world.general, "referral-admin check")).response.content
    assert "Legend" in check and "drag the bot's role above" in check


def dms(who) -> list[str]:
    """What the bot said to someone in DMs (nothing yet: no DM channel)."""
    user = getattr(who, "user", who)
    if user.id not in user._env.backend.dm_channels:
        return []
    return [m.content for m in user.dm_channel.history()]


async def outbox_failed(world: World) -> int:
    import sqlalchemy as sa

    async def op(repo) -> int:
        rows = await repo.conn.execute(
            sa.text("SELECT COUNT(*) FROM outbox WHERE failed_at IS NOT NULL")
        )
        return int(rows.scalar())

    return await world.app.db.read(op)


@pytest.mark.parametrize("blocked", ["above", "no-manage-roles", "deleted"])
async def test_a_blocked_role_waits_tells_the_admin_once_and_is_given_once_fixed(
    world: World, blocked: str
) -> None:
    legend = world.role("Legend", position=90 if blocked == "above" else 5)
    await configure(world, min_days="0", min_messages="0")
    await world.admin.slash(
        world.general,
        "referral-admin tier-add",
        name="Gold",
        threshold=1,
        kind="role",
        value="Legend",
    )
    if blocked == "no-manage-roles":
        world.set_bot_permissions(manage_roles=False)
    elif blocked == "deleted":
        world.env.backend.delete_role(world.guild.id, legend.id)
    await world.env.settle()
    alice = await world.member("alice")
    invite, _ = await personal_invite(world, alice)
    world.join(invite, "bob")
    await world.window()
    await world.jobs(60)
    await world.deliver()
    await world.jobs(3600)  # re-checks while nothing changed
    await world.deliver()

    member = world.env.backend.guilds[world.guild.id].members[alice.id]
    told_owner = [m for m in dms(world.guild.owner) if "role reward" in m and "waiting" in m]
    assert len(told_owner) == 1  # what to fix, once
    assert not [m for m in dms(alice) if "you now have the Legend role" in m]
    assert await outbox_failed(world) == 0  # nothing given up

    # The admin fixes it; the change event alone brings the reward.
    if blocked == "above":
        world.raise_bot_role(95)
    elif blocked == "no-manage-roles":
        world.set_bot_permissions(manage_roles=True)
    else:
        legend = world.role("Legend", position=5)
    await world.env.settle()
    await world.deliver()
    await world.jobs(10)  # the worker's next poll
    await world.deliver()
    member = world.env.backend.guilds[world.guild.id].members[alice.id]
    assert legend.id in member.role_ids
    assert len([m for m in dms(alice) if "you now have the Legend role" in m]) == 1


async def test_leave_before_conversion_ends_the_referral(world: World) -> None:
    await configure(world, min_days="3")
    alice = await world.member("alice")
    invite, _ = await personal_invite(world, alice)
    bob = world.join(invite, "bob")
    await world.window()
    assert (await joins_of(world))[str(bob.id)]["status"] == "pending"
    world.guild.remove_member(bob)
    await world.env.settle()
    assert (await joins_of(world))[str(bob.id)]["status"] == "left"


async def test_a_display_name_with_everyone_pings_nobody_but_that_member(world: World) -> None:
    await configure(world, welcome_text="Hello {member}! @everyone @here <@&1> **bold**")
    sneaky = world.join(None, "@everyone")
    await world.window()
    await world.deliver()
    posts = [
        r
        for r in world.env.http_requests
        if r.method == "POST" and r.path == f"/channels/{world.general.id}/messages"
    ]
    assert posts
    mentions = posts[-1].json["allowed_mentions"]
    assert mentions["parse"] == [] and [int(u) for u in mentions["users"]] == [sneaky.id]
    assert not mentions.get("roles") and not mentions.get("replied_user")
    content = world.general.last_message.content
    assert "@everyone" not in content.replace("@\u200beveryone", "")
    assert "@here" not in content.replace("@\u200bhere", "")
    assert "\\*\\*bold\\*\\*" in content
    assert world.general.last_message.mention_everyone is False


async def test_buttons_run_the_command_as_the_presser(world: World) -> None:
    item = OutboxItem(
        id=2,
        platform="discord",
        kind="message",
        payload={
            "community": str(world.guild.id),
            "channel": "announcements",
            "locale": "en",
            "text": to_json(t("check.ok", platform="discord")),
            "buttons": [{"label": to_json(t("check.ok", platform="x")), "command": "status"}],
        },
        dedupe_key="test:button",
        attempts=0,
    )
    await world.platform.deliver(item)
    await world.env.settle()
    message = world.announcements.last_message
    pressed = await world.admin.click(message, custom_id="rb:status")
    assert pressed.ephemeral and "pending" in pressed.response.content


async def test_tier_add_warns_at_once_about_a_role_the_bot_cannot_give(world: World) -> None:
    world.role("Legend", position=90)
    for n, (role, expected) in enumerate(
        (("Ghost", "no role called Ghost"), ("Legend", "drag the bot's role"))
    ):
        r = await world.admin.slash(
            world.general,
            "referral-admin tier-add",
            name=f"T-{role}",
            threshold=2 + n,
            kind="role",
            value=role,
        )
        said = [r.response.content, *(f.content for f in r.followups)]
        assert any(expected in s for s in said), said
    fine = world.role("Fine", position=5)
    assert fine is not None
    r = await world.admin.slash(
        world.general,
        "referral-admin tier-add",
        name="T-fine",
        threshold=9,
        kind="role",
        value="Fine",
    )
    assert r.followups == []  # nothing to warn about
