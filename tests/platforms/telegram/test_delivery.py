"""Outbox delivery on Telegram: announcements, rewards, buttons, pacing, 429s, restarts."""

import socket

import pytest

from bot.engine.clock import DAY
from bot.engine.notify import to_channel
from bot.engine.text import t
from tests.platforms.telegram.conftest import World, texts
from tests.platforms.telegram.helpers import INVITE, group_with_member, invite_link


async def converted_referral(world: World, *admin_lines: str) -> tuple[int, dict, dict]:
    """Alice brings Bob, Bob posts once and stays a day: the referral converts."""
    fake = world.fake
    group, owner, alice = await group_with_member(world)
    for line in ("/set min-days 0", "/set min-messages 1", *admin_lines):
        fake.say(group, owner, line)
    await world.settle()
    link = await invite_link(world, group, alice)
    bob = fake.user("Bob")
    fake.join(group, bob, link)
    fake.say(group, bob, "hello everyone")
    await world.settle()
    return group, owner, alice


async def test_a_tier_reached_is_announced_once(world: World):
    group, _owner, alice = await converted_referral(
        world, "/tier_add Bronze 1 points 10", "/set announce-channel general"
    )
    sent = await world.advance(DAY)
    assert texts(sent, group) == ["🎉 Alice reached Bronze! Reward: 10 points."]
    dms = texts(sent, alice["id"])
    assert any(m.startswith("Bob now counts as your referral.") for m in dms)
    assert any(m.startswith("You reached Bronze: 10 points.") for m in dms)
    assert texts(await world.advance(DAY), group) == []  # never announced twice
    announcement = next(s for s in world.fake.sent if s.text.startswith("🎉"))
    assert f'<a href="tg://user?id={alice["id"]}">Alice</a>' in announcement.html


async def test_channel_access_reward_is_a_single_use_link_by_private_message(world: World):
    fake = world.fake
    vip = fake.add_channel("VIP lounge", username="viplounge")
    group, _owner, alice = await converted_referral(world, f"/tier_add VIP 1 channel_access {vip}")
    await world.advance(DAY)
    fake.say(group, alice, "/redeem")
    sent = await world.settle()
    [confirm, link_dm] = texts(sent, alice["id"])
    assert "your personal invite to" in confirm
    assert link_dm.startswith(f"Your personal invite to {vip}: https://t.me/+")
    link = fake.links[INVITE.search(link_dm).group(0)]
    assert link.chat_id == vip and link.member_limit == 1
    fake.say(group, alice, "/redeem")
    assert texts(await world.settle(), alice["id"]) == [
        "You have no rewards to redeem yet. Check your progress with /status."
    ]
    assert len([s for s in fake.sent if s.text.startswith("Your personal invite")]) == 1


async def test_a_tag_reward_is_applied_in_every_group_and_taken_back_on_revoke(world: World):
    """Telegram has no roles: its applied reward is a member tag (setChatMemberTag), given in
    every group of the program the member is in, never claimed, and removed on a revoke."""
    fake = world.fake
    group, owner, alice = await converted_referral(world, "/tier_add Ambassador 1 tag Ambassador")
    second = fake.add_group("Fans 2", owner)
    await world.settle()
    fake.say(group, owner, "/link_program")
    [token_dm] = texts(await world.settle(), owner["id"])
    token = token_dm.split("Link token: ", 1)[1].split(" ", 1)[0]
    fake.say(second, owner, f"/link_program {token}")
    fake.join(second, alice)
    await world.settle()
    sent = await world.advance(DAY)
    assert fake.tag_of(group, alice["id"]) == "Ambassador"
    assert fake.tag_of(second, alice["id"]) == "Ambassador"  # every group of the program
    assert any("you now carry the tag Ambassador" in m for m in texts(sent, alice["id"]))
    fake.say(group, alice, "/redeem")  # applied, not claimed
    assert texts(await world.settle(), alice["id"]) == [
        "You have no rewards to redeem yet. Check your progress with /status."
    ]
    fake.say(group, owner, "/referral_revoke 1")
    await world.settle()
    assert fake.tag_of(group, alice["id"]) is None
    assert fake.tag_of(second, alice["id"]) is None


async def test_a_tag_reward_without_the_right_is_advised_by_check(world: World):
    fake = world.fake
    group, owner, alice = await converted_referral(world, "/tier_add Ambassador 1 tag Ambassador")
    fake.set_bot_status(group, "administrator", owner, can_manage_tags=False)
    await world.advance(DAY)
    assert fake.tag_of(group, alice["id"]) is None  # Telegram refused: no can_manage_tags
    fake.say(group, owner, "/check")
    [private] = texts(await world.settle(), owner["id"])
    assert "Manage Tags" in private and "can_manage_tags" in private


async def test_a_tag_too_long_for_telegram_is_refused_with_the_limit(world: World):
    fake = world.fake
    group, owner, _alice = await group_with_member(world)
    fake.say(group, owner, "/tier_add Ambassador 1 tag Ambassador of the year")
    [answer] = texts(await world.settle(), owner["id"])
    assert "16" in answer
    fake.say(group, owner, "/tier_add Ambassador 1 tag Star ⭐")
    assert texts(await world.settle(), owner["id"]) == [
        "A member tag is 1 to 16 letters, digits, spaces or punctuation; Telegram allows no "
        "emoji in it."
    ]
    fake.say(group, owner, "/program")
    [program] = texts(await world.settle(), owner["id"])
    assert "Ambassador" not in program


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_a_429_delays_only_the_affected_item(world: World):
    fake = world.fake
    owner = fake.user("Olga", started=True)
    first = fake.add_group("First", owner)
    second = fake.add_group("Second", owner)
    await world.settle()
    fake.fail_next(first, retry_after=3)
    fake.join(first, fake.user("Ann"))
    fake.join(second, fake.user("Ben"))
    sent = await world.settle()
    assert texts(sent, first) == [] and texts(sent, second) == ["Welcome to Second, Ben!"]
    assert fake.forced_answered == [(first, 3)]
    world.clock.advance(2)
    assert texts(await world.settle(), first) == []  # still waiting out the 429
    world.clock.advance(2)
    assert texts(await world.settle(), first) == ["Welcome to First, Ann!"]
    world.clock.advance(600)
    assert await world.settle() == []
    assert [s.text for s in fake.sent].count("Welcome to First, Ann!") == 1
    assert [s.text for s in fake.sent].count("Welcome to Second, Ben!") == 1


async def test_a_burst_to_one_group_is_paced_under_the_group_limit(world: World):
    fake = world.fake
    group, _owner, _alice = await group_with_member(world)
    assert world.app is not None
    community = await world.app.engine.community(world.tg.ref(group))
    now = world.clock.now()
    rows = [
        to_channel(community, None, t("leaderboard.empty"), "en", f"burst:{i}", now)
        for i in range(22)
    ]
    await world.app.db.write(lambda repo: repo.add_outbox(rows))
    sent = await world.settle()
    assert len(texts(sent, group)) == 20 - 2  # the set-up message and the welcome came first
    world.clock.advance(5)  # the group's window has passed (its limit is 20 per "minute")
    sent = await world.settle()
    assert len(texts(sent, group)) == 4
    assert fake.too_many == []


async def test_moderator_buttons_run_their_command_for_admins_only(world: World):
    fake = world.fake
    group, owner, alice = await group_with_member(world)
    assert world.app is not None
    community = await world.app.engine.community(world.tg.ref(group))
    long_line = "code " + "ABCDE-FGHJK " * 6
    buttons = ((t("leaderboard.period.week"), "leaderboard week"), (t("program.off"), long_line))
    row = to_channel(community, None, t("leaderboard.empty"), "en", "buttons:1",
                     world.clock.now(), buttons)  # fmt: skip
    await world.app.db.write(lambda repo: repo.add_outbox([row]))
    await world.settle()
    message = fake.sent[-1]
    keyboard = message.reply_markup["inline_keyboard"]
    assert [row[0]["text"] for row in keyboard] == ["this week", "off"]
    assert keyboard[0][0]["callback_data"] == "leaderboard week"
    assert len(keyboard[1][0]["callback_data"].encode()) <= 64

    fake.press(message, alice, "leaderboard week")
    sent = await world.settle()
    assert texts(sent, group) == []
    assert fake.answered[-1]["text"] == "Only the group's administrators can use this button."

    fake.press(message, owner, "leaderboard week")
    sent = await world.settle()
    assert texts(sent, group)[0].startswith("Top referrers (this week):")
    assert "text" not in fake.answered[-1]

    fake.press(message, owner, keyboard[1][0]["callback_data"])
    sent = await world.settle()
    assert texts(sent, owner["id"]) == [  # the long line ran, as the presser
        "ABCDE-FGHJK ABCDE-FGHJK ABCDE-FGHJK ABCD is not a referral code here. "
        "Check it and try again: codes look like ABCDE-FGHJK."
    ]


async def test_updates_that_arrive_while_stopped_are_processed_after_a_restart(world: World):
    fake = world.fake
    group, _owner, alice = await group_with_member(world)
    link = await invite_link(world, group, alice)
    await world.close()
    bob = fake.user("Bob")
    fake.join(group, bob, link)
    fake.say(group, bob, "anyone here?")
    await world.open()
    sent = await world.settle()
    assert texts(sent, group) == ["Welcome to Fans, Bob! You were invited by Alice."]
    assert [m for m, p in fake.calls if m == "deleteWebhook"]
    assert all(not p.get("drop_pending_updates") for p in fake.called("deleteWebhook"))


async def test_webhook_mode_receives_updates_with_the_secret(
    sqlite_url: str, fake, monkeypatch: pytest.MonkeyPatch
):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", "s3cret")
    world = World(sqlite_url, fake)
    await world.open(
        mode="webhook",
        webhook_url=f"http://127.0.0.1:{port}/telegram/hook",
        webhook_port=port,
    )
    try:
        owner = fake.user("Olga")
        group = fake.add_group("Hooked", owner)
        sent = await world.settle()
        assert texts(sent, group)[0].startswith("I'm set up in Hooked.")
        assert fake.webhook is not None and fake.webhook["secret_token"] == "s3cret"
        assert fake.called("getUpdates") == []
    finally:
        await world.close()


async def test_members_who_cant_be_messaged_are_counted_not_warned_about_per_join(
    world: World, caplog: pytest.LogCaptureFixture
):
    """Alice stops the bot after taking her link, and the newcomers never started it: each
    join's private messages (to Alice, to the newcomer) are refused by Telegram (403). Those
    refusals are expected: counted in one line per delivery round and set aside as one
    /outbox line, never a warning per join, and the group is still served."""
    fake = world.fake
    group, _owner, alice = await group_with_member(world)
    link = await invite_link(world, group, alice)
    fake.started.discard(alice["id"])  # she blocked the bot / never opened it again
    caplog.clear()
    with caplog.at_level("DEBUG", logger="bot.delivery"):
        for name in ("Bob", "Cid", "Dan"):
            fake.join(group, fake.user(name), link)
        sent = await world.settle()
    assert texts(sent, group) == [
        f"Welcome to Fans, {n}! You were invited by Alice." for n in ("Bob", "Cid", "Dan")
    ]
    delivery = [r for r in caplog.records if r.name == "bot.delivery"]
    assert [r for r in delivery if r.levelname == "WARNING"] == []
    [summary] = [r.getMessage() for r in delivery if "outbox.unreachable" in r.getMessage()]
    assert "count=6" in summary  # 3 notices to Alice, 3 newcomer guides
    assert world.app is not None and world.app.outbox.unreachable == 6
    world.clock.advance(7 * DAY)  # never revived on its own: retrying cannot help
    assert texts(await world.settle(), alice["id"]) == []
    assert world.app.outbox.unreachable == 6
    assert world.tg is not None
    letters = await world.app.engine.dead_letters(world.tg.ref(group))
    assert [(d.kind, d.reason, d.count) for d in letters] == [("dm", "unreachable", 6)]
