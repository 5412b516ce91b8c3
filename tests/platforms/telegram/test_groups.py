"""Groups as they really behave: anonymous admins, restarts, pointers, join requests."""

import asyncio

from bot.engine.admin import Actor
from tests.platforms.telegram.conftest import World, texts
from tests.platforms.telegram.helpers import INVITE, group_with_member

ANONYMOUS = {"id": 1087968824, "is_bot": True, "first_name": "Group",
             "username": "GroupAnonymousBot"}  # fmt: skip


async def test_an_anonymous_admin_is_asked_to_post_as_themselves(world: World):
    fake = world.fake
    group, _owner, _alice = await group_with_member(world)
    fake.say(group, ANONYMOUS, "/set min-days 3", sender_chat=fake.chats[group].json())
    sent = await world.settle()
    [answer] = texts(sent, group)
    assert answer.startswith("You're posting as the group (anonymous admin)")


async def test_private_commands_know_the_members_group_after_a_restart(world: World):
    fake = world.fake
    owner = fake.user("Olga", started=True)
    others = [fake.add_group(f"Other {i}", owner) for i in range(30)]  # more than 25 groups
    group = fake.add_group("Fans", owner)
    alice = fake.user("Alice", started=True)
    fake.join(group, alice)
    await world.settle()
    await world.close()
    await world.open()  # nothing in memory: no group seen, no "last group"
    fake.say(alice["id"], alice, "/status")
    [answer] = texts(await world.settle(), alice["id"])
    assert answer.startswith("Referrals: 0 pending")
    asked = {p["chat_id"] for p in fake.called("getChatMember") if p["user_id"] == alice["id"]}
    assert not asked & set(others)  # went straight to her stored group


async def test_pointers_to_private_answers_are_gathered_so_the_group_keeps_its_budget(
    world: World,
):
    fake = world.fake
    group, _owner, alice = await group_with_member(world)
    others = [fake.user(name, started=True) for name in ("Bob", "Cleo", "Dan", "Eve")]
    for member in others:
        fake.join(group, member)
    await world.settle()
    for member in [alice, *others]:
        fake.say(group, member, "/status")
    await world.settle()
    await world.tg.pointers.drain()
    await world.settle()
    pointers = [s for s in fake.sent if s.chat_id == group and "private message" in s.text]
    assert pointers[0].text == "Alice, I sent you the answer in a private message."
    assert len(pointers) == 2  # five members asked: two messages in the group, not five
    assert pointers[1].text.startswith("I sent these members their answers")
    assert all(name in pointers[1].text for name in ("Bob", "Cleo", "Dan", "Eve"))
    for member in [alice, *others]:
        assert any(s.chat_id == member["id"] and s.text.startswith("Referrals:")
                   for s in fake.sent)  # fmt: skip


async def test_a_stuck_group_does_not_hold_up_the_others(world: World):
    fake = world.fake
    stuck, _owner, alice = await group_with_member(world, "Stuck")
    other, _owner2, bea = await group_with_member(world, "Other")
    fake.hanging_chats.add(stuck)  # every call about this group hangs
    world.tg.forget_member(stuck, alice["id"])
    fake.say(stuck, alice, "/status")
    fake.say(other, bea, "/rules")  # after the stuck one: a single queue would wait forever
    for _ in range(500):
        if any(text.startswith("Invite people") for text in fake.texts(other)):
            break
        await asyncio.sleep(0.01)
    assert any(text.startswith("Invite people") for text in fake.texts(other))
    fake.hanging_chats.clear()
    fake._release.set()  # the stuck calls fail now; the test ends cleanly


async def test_a_held_join_request_says_whose_link_and_then_who_decided(world: World):
    fake = world.fake
    group, owner, alice = await group_with_member(world)
    await world.app.engine.set_setting(world.tg.ref(group), Actor("o", "Olga"), "risk-mode", "hold")
    fake.say(group, alice, "/invite")
    [dm] = texts(await world.settle(), alice["id"])
    link = INVITE.search(dm).group(0)
    fake.links[link].creates_join_request = True
    bob = fake.user("Bob")
    fake.join(group, bob, link)
    await world.settle()
    [ask] = [s for s in fake.sent if "asks to join" in s.text]
    assert "Bob asks to join Fans (through Alice's personal link). Approve or decline?" in ask.text
    labels = [row[0]["text"] for row in ask.reply_markup["inline_keyboard"]]
    assert labels == ["Approve", "Decline"]
    fake.press(ask, owner, ask.reply_markup["inline_keyboard"][1][0]["callback_data"])
    await world.settle()
    assert ask.reply_markup is None  # the buttons are gone...
    assert "❌ Declined by Olga on " in ask.text  # ...replaced by who decided, and when
    assert ask.text.startswith("Bob asks to join Fans")


async def test_a_group_that_becomes_a_supergroup_keeps_its_program(world: World):
    fake = world.fake
    owner = fake.user("Olga", started=True)
    old = fake.add_group("Fans", owner, kind="group")
    alice = fake.user("Alice", started=True)
    fake.join(old, alice)
    await world.settle()
    fake.say(old, alice, "/invite")
    [dm] = texts(await world.settle(), alice["id"])
    link = INVITE.search(dm).group(0)
    fake.join(old, fake.user("Ann"), link)  # credited; the welcome waits in the outbox
    await world.updates_handled()
    new = fake.migrate(old, owner)
    sent = await world.settle()  # the migration, then the outbox
    assert texts(sent, new)[0].startswith("Fans is a supergroup now.")
    assert "Welcome to Fans, Ann! You were invited by Alice." in texts(sent, new)
    assert texts(sent, old) == []
    bob = fake.user("Bob")
    fake.join(new, bob, link)  # the same personal link, in the supergroup
    sent = await world.settle()
    assert "Welcome to Fans, Bob! You were invited by Alice." in texts(sent, new)
    fake.say(new, alice, "/status")
    [status] = texts(await world.settle(), alice["id"])
    assert "Referrals: 2 pending" in status  # the same program and counts
    world.tg.migrated.clear()  # as after a restart: only Telegram's answer knows the new id
    await world.tg.say(old, "still here")
    assert fake.texts(new)[-1] == "still here"


async def _two_quick_referrals(world: World, group: int, alice: dict) -> None:
    fake = world.fake
    fake.say(group, alice, "/invite")
    [dm] = texts(await world.settle(), alice["id"])
    link = INVITE.search(dm).group(0)
    for name in ("Bob", "Cid", "Dee"):
        fake.join(group, fake.user(name), link)
    await world.settle()


async def test_moderator_posts_never_go_to_the_main_group(world: World):
    fake = world.fake
    group, owner, alice = await group_with_member(world)
    fake.say(group, owner, "/set velocity 1/10m")
    fake.say(group, owner, "/set moderator-channel mods")  # a name: on Telegram, this group
    sent = await world.settle()
    assert any(m.startswith("A Telegram group has no private channels") for m in texts(sent, group))
    ref, admin = world.tg.ref(group), Actor(str(owner["id"]), "Olga")
    await world.app.engine.set_setting(ref, admin, "moderator-channel", "mods")  # as set before
    await _two_quick_referrals(world, group, alice)
    assert not [m for m in fake.texts(group) if m.startswith("Flag #")]

    mods = fake.add_group("Mods", owner)
    await world.settle()
    fake.say(mods, owner, "/set moderators-chat")  # typed inside the private chat
    [done] = [m for m in texts(await world.settle(), mods) if m.startswith("Done")]
    assert done == "Done: this chat now receives the moderator-channel messages of Fans."
    await _two_quick_referrals(world, group, alice)
    assert [m for m in fake.texts(mods) if m.startswith("Flag #")]
    assert not [m for m in fake.texts(group) if m.startswith("Flag #")]
