"""Groups as they really behave: anonymous admins, restarts, pointers, join requests."""

from tests.platforms.telegram.conftest import World, texts
from tests.platforms.telegram.helpers import group_with_member

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
