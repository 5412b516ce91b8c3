"""Joins attributed by the bot's own links: personal links, deep links, join requests."""

from bot.engine.admin import Actor
from tests.platforms.telegram.conftest import World, texts
from tests.platforms.telegram.helpers import INVITE, group_with_member, invite_link


async def test_a_join_through_a_personal_link_credits_its_owner(world: World):
    fake = world.fake
    group, _owner, alice = await group_with_member(world)
    link = await invite_link(world, group, alice)
    made = fake.called("createChatInviteLink")
    assert len(made) == 1 and "member_limit" not in made[0]
    code = fake.links[link].name
    assert code and len(code) <= 32

    assert await invite_link(world, group, alice) == link  # made once, then reused
    assert len(fake.called("createChatInviteLink")) == 1

    bob = fake.user("Bob")
    fake.join(group, bob, link)
    sent = await world.settle()
    assert texts(sent, group) == ["Welcome to Fans, Bob! You were invited by Alice."]
    [notice] = texts(sent, alice["id"])
    assert notice.startswith("Bob joined Fans with your code.")
    assert texts(sent, bob["id"]) == []  # Bob never started the bot: no DM is possible

    fake.say(group, alice, "/status")
    [status] = texts(await world.settle(), alice["id"])
    assert "Referrals: 1 pending, 0 converted" in status


async def test_a_join_without_a_link_or_with_another_admins_link_is_organic(world: World):
    fake = world.fake
    group, owner, alice = await group_with_member(world)
    await invite_link(world, group, alice)
    carol = fake.user("Carol")
    fake.join(group, carol)  # the public "Join" button: no invite_link in the update
    dave = fake.user("Dave")
    fake.join(group, dave, fake.admin_link(group, owner, alice_code := "ALICE"))
    sent = await world.settle()
    assert texts(sent, group) == ["Welcome to Fans, Carol!", "Welcome to Fans, Dave!"]
    assert texts(sent, alice["id"]) == [] and alice_code


async def test_a_member_who_leaves_is_recorded(world: World):
    fake = world.fake
    group, _owner, alice = await group_with_member(world)
    link = await invite_link(world, group, alice)
    bob = fake.user("Bob")
    fake.join(group, bob, link)
    await world.settle()
    fake.leave(group, bob)
    await world.settle()
    fake.say(group, alice, "/status")
    [status] = texts(await world.settle(), alice["id"])
    assert "0 pending, 0 converted, 1 left early" in status


async def test_deep_link_in_a_public_group_hands_out_a_single_use_link(world: World):
    fake = world.fake
    group, _owner, alice = await group_with_member(world, "Open Fans", username="openfans")
    link = await invite_link(world, group, alice)
    assert link.startswith("https://t.me/referral_test_bot?start=")
    assert fake.called("createChatInviteLink") == []  # public: nothing to make yet

    bob = fake.user("Bob")
    fake.say(bob["id"], bob, "/start " + link.split("start=")[1])
    [answer] = texts(await world.settle(), bob["id"])
    assert answer.startswith("Here is your personal invite to Open Fans: https://t.me/+")
    single = INVITE.search(answer).group(0)
    made = fake.links[single]
    assert made.member_limit == 1 and made.expire_date is not None

    fake.join(group, bob, single)
    sent = await world.settle()
    assert texts(sent, group) == ["Welcome to Open Fans, Bob! You were invited by Alice."]
    assert made.used_by == [bob["id"]]

    fake.say(bob["id"], bob, "/start " + link.split("start=")[1])
    [again] = texts(await world.settle(), bob["id"])
    assert again == "You're already a member of Open Fans, so there is nothing to join."


async def test_a_join_request_is_attributed_and_approved(world: World):
    fake = world.fake
    group, _owner, alice = await group_with_member(world)
    link = await invite_link(world, group, alice)
    fake.links[link].creates_join_request = True  # the group asks admins to approve joins
    bob = fake.user("Bob")
    fake.join(group, bob, link)  # becomes a chat_join_request
    sent = await world.settle()
    assert fake.approved == [(group, bob["id"])]
    assert texts(sent, group) == ["Welcome to Fans, Bob! You were invited by Alice."]


async def test_in_hold_mode_a_join_request_waits_for_a_moderator(world: World):
    fake = world.fake
    group, owner, alice = await group_with_member(world)
    await world.app.engine.set_setting(
        world.app.platforms["telegram"].ref(group), Actor("o", "Olga"), "risk-mode", "hold"
    )
    link = await invite_link(world, group, alice)
    fake.links[link].creates_join_request = True
    bob = fake.user("Bob")
    fake.join(group, bob, link)
    await world.settle()
    assert fake.approved == []  # held: Telegram keeps the request pending
    [ask] = [s for s in fake.sent if "asks to join" in s.text]
    assert "Bob asks to join Fans (through Alice's personal link)" in ask.text
    approve = ask.reply_markup["inline_keyboard"][0][0]["callback_data"]
    fake.press(ask, alice, approve)  # a member can't decide
    await world.settle()
    assert fake.approved == []
    fake.press(ask, owner, approve)  # the group's admin can
    sent = await world.settle()
    assert fake.approved == [(group, bob["id"])]
    assert "Welcome to Fans, Bob! You were invited by Alice." in texts(sent, group)
