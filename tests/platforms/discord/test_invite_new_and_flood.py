"""/invite new deletes the old personal invite; a member flooding slash commands is slowed down."""

from bot.engine.models import OutboxItem
from bot.engine.text import t, to_json
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
    # silence, yet acknowledged: the client shows no "interaction failed" and no message stays
    assert dropped.acknowledged
    assert dropped.response is None and dropped.followups == []
    world.clock.advance(10)
    again = await alice.slash(world.general, "status")
    assert "0 pending" in again.response.content


async def test_a_dropped_button_press_is_acknowledged_without_a_message(world: World) -> None:
    alice = await world.member("alice")
    await world.platform.deliver(
        OutboxItem(
            id=3,
            platform="discord",
            kind="message",
            payload={
                "community": str(world.guild.id),
                "channel": "announcements",
                "locale": "en",
                "text": to_json(t("check.ok", platform="discord")),
                "buttons": [{"label": to_json(t("check.ok", platform="x")), "command": "status"}],
            },
            dedupe_key="test:flood-button",
            attempts=0,
        )
    )
    await world.env.settle()
    message = world.announcements.last_message
    presses = [await alice.click(message, custom_id="rb:status") for _ in range(6)]
    assert presses[5].response.content.startswith("Slow down")
    dropped = await alice.click(message, custom_id="rb:status")
    assert dropped.acknowledged and dropped.followups == []
    # a silent update: the only "response" is the pressed post itself, unchanged
    assert dropped.response is not None and dropped.response.id == message.id
    assert world.announcements.last_message.content == message.content


async def test_slow_down_on_a_public_command_stays_private(world: World) -> None:
    alice = await world.member("alice")
    answers = [await alice.slash(world.general, "leaderboard") for _ in range(6)]
    assert not answers[0].ephemeral  # the leaderboard itself is posted for everyone...
    # ...but the refusal is for the flooder alone, not posted in the channel
    assert answers[5].response.content.startswith("Slow down")
    assert answers[5].ephemeral
    assert not world.general.last_message.content.startswith("Slow down")
