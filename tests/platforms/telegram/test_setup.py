"""The bot joins a group: registered, told what rights it lacks, commands published by scope."""

from bot.platforms.telegram import ALLOWED_UPDATES
from tests.platforms.telegram.conftest import World, texts


async def test_start_publishes_commands_and_asks_for_every_update_kind(world: World):
    fake = world.fake
    await world.settle()
    polls = fake.called("getUpdates")
    assert polls and set(polls[-1]["allowed_updates"]) == set(ALLOWED_UPDATES)
    assert fake.called("deleteWebhook")[0].get("drop_pending_updates") in (None, False)
    members = {c["command"] for c in fake.commands["all_group_chats"]}
    assert members == {"help", "invite", "status", "redeem", "rules", "leaderboard", "code"}
    assert {c["command"] for c in fake.commands["all_private_chats"]} == members
    admins = {c["command"] for c in fake.commands["all_chat_administrators"]}
    assert {"tier_add", "referral_revoke", "check", "set"} <= admins and members <= admins
    assert all("-" not in c["command"] for c in fake.commands["all_chat_administrators"])


async def test_added_as_admin_with_invite_right_says_it_is_ready(world: World):
    owner = world.fake.user("Olga")
    group = world.fake.add_group("Fans", owner)
    sent = await world.settle()
    assert texts(sent, group) == [
        "I'm set up in Fans. Members get their personal invite link with /invite; "
        "see the rules with /rules."
    ]
    assert world.app is not None
    community = world.app.ctx.communities[("telegram", str(group))]
    assert community.name == "Fans"


async def test_added_without_rights_tells_the_admins_what_to_grant(world: World):
    fake = world.fake
    owner = fake.user("Olga", started=True)
    group = fake.add_group("Fans", owner, bot_status="member")
    [said] = texts(await world.settle(), group)
    assert "Make the bot an administrator" in said and "Invite Users via Link" in said
    assert "privacy mode" in said

    fake.say(group, owner, "/check")
    sent = await world.settle()
    [private] = texts(sent, owner["id"])
    assert private.startswith("The bot is missing something here:")
    assert "Make the bot an administrator" in private
    assert texts(sent, group) == ["Olga, I sent you the answer in a private message."]

    fake.set_bot_status(group, "administrator", owner, can_invite_users=False)
    [said] = texts(await world.settle(), group)
    assert "can_invite_users" in said

    fake.set_bot_status(group, "administrator", owner, can_invite_users=True)
    assert texts(await world.settle(), group)[0].startswith("I'm set up in Fans.")
    fake.say(group, owner, "/check@referral_test_bot")
    sent = await world.settle()
    assert texts(sent, owner["id"]) == ["Everything the bot needs on telegram is in place."]
