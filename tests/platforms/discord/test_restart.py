"""A restart: members reconciled with what is stored, buttons and command sync survive."""

from __future__ import annotations

from bot.engine.models import OutboxItem
from bot.engine.text import t, to_json
from tests.platforms.discord.conftest import World, joins_of
from tests.platforms.discord.test_attribution import personal_invite


async def test_restart_reconciles_members_and_keeps_buttons(world: World) -> None:
    alice = await world.member("alice")
    invite, referral = await personal_invite(world, alice)
    bob = world.join(invite, "bob")
    await world.window()
    await world.platform.deliver(
        OutboxItem(
            id=1,
            platform="discord",
            kind="message",
            payload={
                "community": str(world.guild.id),
                "channel": None,
                "locale": "en",
                "text": to_json(t("check.ok", platform="discord")),
                "buttons": [{"label": to_json(t("help.status")), "command": "status"}],
            },
            dedupe_key="test:restart-button",
            attempts=0,
        )
    )
    await world.env.settle()
    button_message = world.general.last_message

    await world.restart()  # the bot is down from here...
    world.guild.remove_member(bob)
    carl = world.join(None, "carl")
    dana = world.join(invite, "dana")  # through a personal invite, but nobody saw it
    await world.env.settle()
    await world.reattach()  # ...and back: a new process, same database and state

    joined = await joins_of(world)
    assert joined[str(bob.id)]["status"] == "left"
    assert joined[str(carl.id)]["source"] == "unknown"
    assert joined[str(dana.id)]["referrer"] is None  # a missed join is never credited late
    # the personal invite map came back from the state file: new joins credit again
    assert world.platform.state.invite_codes(str(world.guild.id))[invite] == referral
    erin = world.join(invite, "erin")
    await world.window()
    assert (await joins_of(world))[str(erin.id)]["referrer"] == str(alice.id)
    # the button sent before the restart still works
    pressed = await alice.click(button_message, custom_id="rb:status")
    assert pressed.ephemeral and "1 pending" in pressed.response.content
    # the command tree did not change: no second sync
    puts = [r for r in world.env.http_requests if r.method == "PUT" and "commands" in r.path]
    assert len(puts) == 1
