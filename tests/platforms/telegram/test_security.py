"""Nothing lets a stranger in: deep links, payloads anyone can type, pointers to private groups."""

from bot.engine.events import UserRef
from tests.platforms.telegram.conftest import World, texts
from tests.platforms.telegram.helpers import INVITE, group_with_member, invite_link

REFUSED = (
    "This invite link doesn't work: it may be out of date, or the group only takes members' "
    "personal invite links. Ask the member who sent it for their current link."
)


async def test_a_typed_deep_link_never_opens_a_private_group(world: World):
    fake = world.fake
    group, _owner, alice = await group_with_member(world, "Secret Club")  # no @username
    link = await invite_link(world, group, alice)  # Alice's real code, as a private-group link
    code = fake.links[link].name
    made_before = len(fake.called("createChatInviteLink"))

    mallory = fake.user("Mallory")
    for payload in (f"{code}_{group}", f"ABCDE_{group}"):  # a real code, then an invented one
        fake.say(mallory["id"], mallory, f"/start {payload}")
        assert texts(await world.settle(), mallory["id"]) == [REFUSED]
    assert len(fake.called("createChatInviteLink")) == made_before  # no invite was made
    assert not INVITE.search(" ".join(fake.texts(mallory["id"])))


async def test_a_deep_link_to_a_public_group_needs_an_active_code_of_its_program(world: World):
    fake = world.fake
    group, _owner, alice = await group_with_member(world, "Open Fans", username="openfans")
    link = await invite_link(world, group, alice)
    payload = link.split("start=")[1]
    code = payload.rsplit("_", 1)[0]

    bob = fake.user("Bob")
    fake.say(bob["id"], bob, f"/start ZZZZZZZZ_{group}")  # no such code
    assert texts(await world.settle(), bob["id"]) == [REFUSED]

    ref = world.tg.ref(group)
    alice_ref = UserRef(str(alice["id"]), alice["first_name"])
    await world.app.engine.invite(ref, alice_ref, world.tg.create_referral_link, regenerate=True)
    fake.say(bob["id"], bob, f"/start {code}_{group}")  # the revoked code
    assert texts(await world.settle(), bob["id"]) == [REFUSED]
    assert fake.called("createChatInviteLink") == []


async def test_a_public_group_that_went_private_stops_taking_deep_links(world: World):
    fake = world.fake
    group, _owner, alice = await group_with_member(world, "Open Fans", username="openfans")
    link = await invite_link(world, group, alice)
    fake.chats[group].username = None  # the admins made the group private
    bob = fake.user("Bob")
    fake.say(bob["id"], bob, "/start " + link.split("start=")[1])
    assert texts(await world.settle(), bob["id"]) == [REFUSED]
    assert fake.called("createChatInviteLink") == []


async def test_an_open_pointer_says_nothing_about_a_group_to_a_stranger(world: World):
    fake = world.fake
    group, _owner, _alice = await group_with_member(world, "Secret Club")
    mallory = fake.user("Mallory")
    fake.say(mallory["id"], mallory, f"/start g{group}_status")
    [answer] = texts(await world.settle(), mallory["id"])
    assert "Secret Club" not in answer and "Referrals:" not in answer
    assert answer.startswith("That link is for members of a group you're not in.")
