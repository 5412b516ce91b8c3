"""Interactions as Discord users expect them: modals for long texts, Discord's own pickers,
and slow commands that defer and then complete that same reply."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.platforms.discord.conftest import World, joins_of


async def test_a_long_welcome_text_is_typed_in_a_modal(world: World) -> None:
    shown = await world.admin.slash(world.general, "referral-admin set", setting="welcome-text")
    assert shown.modal is not None
    box = shown.modal["components"][0]["components"][0]
    assert box["style"] == 2 and box["max_length"] == 1000  # a paragraph, the setting's limit
    text = "Welcome {member}!\n" + "Read the pinned rules first. " * 20 + "\nHave fun."
    assert len(text) > 200  # more than a single-line option allows
    saved = await world.admin.submit_modal(shown, {"value": text})
    assert saved.ephemeral and "saved" in saved.response.content.lower()
    bob = world.join(None, "bob")
    await world.window()
    await world.deliver()
    welcome = world.general.last_message.content
    assert welcome.startswith(f"Welcome <@{bob.id}>!\n") and welcome.endswith("\nHave fun.")


async def test_a_modal_is_prefilled_and_refuses_bad_templates(world: World) -> None:
    shown = await world.admin.slash(world.general, "referral-admin set", setting="welcome-text")
    bad = await world.admin.submit_modal(shown, {"value": "Hi {nobody}"})
    assert bad.ephemeral and "{member}" in bad.response.content  # what is allowed
    program = await world.app.engine.rules(world.platform.ref(world.platform.client.guilds[0]))
    assert program[0].welcome_text is None  # nothing written


async def test_members_channels_and_roles_use_discords_pickers(world: World) -> None:
    mod = world.env.backend.find_command("referral-mod", None)
    referrals = next(o for o in mod["options"] if o["name"] == "referrals")
    assert next(o for o in referrals["options"] if o["name"] == "member")["type"] == 6

    await world.admin.slash(
        world.general,
        "referral-admin set",
        setting="announce-channel",
        channel=world.announcements,
    )
    s, _ = await world.app.engine.rules(world.platform.ref(world.platform.client.guilds[0]))
    assert s.announce_channel == "announcements"
    champion = world.role("Champion", position=5)
    r = await world.admin.slash(
        world.general,
        "referral-admin tier-add",
        name="Gold",
        threshold=1,
        kind="role",
        role=champion,
    )
    assert "Champion" in r.response.content
    alice = await world.member("alice")
    mod = await world.member("mod", roles=[world.mod_role])
    shown = await mod.slash(world.general, "referral-mod referrals", member=alice)
    assert "alice" in shown.response.content


async def test_a_slow_public_command_completes_its_deferred_reply(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = world.app.engine
    real = engine.rules

    async def slow(*args: Any) -> Any:
        await asyncio.sleep(2)  # a busy database
        return await real(*args)

    monkeypatch.setattr(engine, "rules", slow)
    alice = await world.member("alice")
    r = await alice.slash(world.general, "rules")
    callbacks = [
        req.json["type"]
        for req in world.env.http_requests
        if req.method == "POST" and req.path.endswith("/callback")
    ]
    assert callbacks[-1] == 5  # deferred within the deadline...
    assert r.response is not None and not r.ephemeral  # ...then completed, for everyone
    assert "referral" in r.response.content.lower()


async def test_slow_commands_defer_first(world: World) -> None:
    alice = await world.member("alice")
    r = await alice.slash(world.general, "invite")
    callbacks = [
        req.json["type"]
        for req in world.env.http_requests
        if req.method == "POST" and req.path.endswith("/callback")
    ]
    assert callbacks[-1] == 5 and r.ephemeral and "discord.gg" in r.response.content
    assert (await joins_of(world))[str(alice.id)]["source"] == "unknown"
