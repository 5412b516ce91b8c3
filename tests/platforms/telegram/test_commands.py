"""Commands in groups and in private: answers, pointers, authorization, escaping."""

import pytest

from tests.platforms.telegram.conftest import World, texts
from tests.platforms.telegram.helpers import DEEP, group_with_member

# command line -> the start of the answer (private answers land in the private chat)
MEMBER_COMMANDS = {
    "/help": ("private", "Commands:\n/help — list the commands you can use"),
    "/invite": ("private", "Your referral code: "),
    "/status": ("private", "Referrals: 0 pending, 0 converted"),
    "/redeem": ("private", "You have no rewards to redeem yet."),
    "/rules": ("public", "Invite people who will enjoy this community."),
    "/leaderboard week": ("public", "Top referrers (this week):"),
    "/code ABCDE-FGHJK": ("private", "ABCDE-FGHJK is not a referral code here."),
}


@pytest.mark.parametrize("line", MEMBER_COMMANDS)
async def test_member_commands_in_the_group_and_in_private(world: World, line: str):
    fake = world.fake
    group, _owner, alice = await group_with_member(world)
    where, start = MEMBER_COMMANDS[line]

    fake.say(group, alice, line)
    sent = await world.settle()
    if where == "public":
        assert texts(sent, group)[0].startswith(start)
        assert texts(sent, alice["id"]) == []
    else:
        [answer] = texts(sent, alice["id"])
        assert answer.startswith(start)
        assert texts(sent, group) == ["Alice, I sent you the answer in a private message."]

    fake.say(alice["id"], alice, line)  # the same command in the private chat
    sent = await world.settle()
    [answer] = texts(sent, alice["id"])
    assert answer.startswith(start)
    assert texts(sent, group) == []


async def test_help_lists_admin_commands_only_for_admins(world: World):
    fake = world.fake
    group, owner, alice = await group_with_member(world)
    fake.say(group, alice, "/help")
    fake.say(group, owner, "/help@referral_test_bot")
    sent = await world.settle()
    [member_help] = texts(sent, alice["id"])
    [admin_help] = texts(sent, owner["id"])
    assert "/tier_add" not in member_help
    assert "/tier_add <name> <threshold>" in admin_help and "/tier-add" not in admin_help


async def test_admin_commands_are_refused_to_members(world: World):
    fake = world.fake
    group, owner, alice = await group_with_member(world)
    fake.say(group, alice, "/tier_add Gold 1 points 100")
    fake.say(group, alice, "/set min-days 0")
    sent = await world.settle()
    assert texts(sent, alice["id"]) == [
        "/tier_add is for the admin role only.",
        "/set is for the admin role only.",
    ]
    fake.say(group, owner, "/tier_add Gold 1 points 100")
    [added] = texts(await world.settle(), owner["id"])
    assert added == "Added tier Gold: 1 referral → 100 points."
    fake.promote(group, alice)  # now an administrator of the group: allowed (after the cache)
    world.tg.forget_member(group, alice["id"])
    fake.say(group, alice, "/tier_remove Gold")
    assert texts(await world.settle(), alice["id"])[0].startswith("Removed tier Gold.")
    assert fake.too_many == []


async def test_a_member_who_never_started_the_bot_gets_a_deep_link(world: World):
    fake = world.fake
    group, _owner, _alice = await group_with_member(world)
    bob = fake.user("Bob")
    fake.join(group, bob)
    await world.settle()
    fake.say(group, bob, "/status")
    sent = await world.settle()
    [pointer] = texts(sent, group)
    assert pointer.startswith("Bob, I can't write to you privately until you start a chat")
    link = DEEP.search(pointer).group(0)
    assert link.endswith(f"start=g{group}_status")

    fake.say(bob["id"], bob, "/start " + link.split("start=")[1])  # Bob presses Start
    [answer] = texts(await world.settle(), bob["id"])
    assert answer.startswith("Referrals: 0 pending, 0 converted")


async def test_private_commands_need_a_group(world: World):
    fake = world.fake
    stranger = fake.user("Sam")
    fake.say(stranger["id"], stranger, "/status")
    [answer] = texts(await world.settle(), stranger["id"])
    assert answer.startswith("I don't know which group you mean yet.")
    fake.say(stranger["id"], stranger, "/start")
    [hello] = texts(await world.settle(), stranger["id"])
    assert hello.startswith("Hi! I run the referral program")


async def test_html_in_names_is_shown_as_typed_and_never_parsed(world: World):
    fake = world.fake
    owner = fake.user("Olga", started=True)
    group = fake.add_group("<i>Fans</i> & co", owner)
    await world.settle()
    evil = fake.user('<b>Evil</b> <a href="tg://user?id=1">x</a> &amp;', started=True)
    fake.join(group, evil)
    await world.settle()
    [welcome] = [s for s in fake.sent if s.chat_id == group][-1:]
    assert welcome.text == (
        'Welcome to <i>Fans</i> & co, <b>Evil</b> <a href="tg://user?id=1">x</a> &amp;!'
    )
    assert "&lt;b&gt;Evil&lt;/b&gt;" in welcome.html and "&amp;amp;" in welcome.html
    [link] = welcome.entities  # the mention is the only entity: nothing from the name
    assert link["type"] == "text_link" and link["url"] == f"tg://user?id={evil['id']}"
