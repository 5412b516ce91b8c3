"""Each detector in isolation, on the real engine and database, through public behaviour."""

from bot.engine.clock import DAY, MINUTE
from bot.engine.events import CommunityRef, JoinSource, MemberJoined, UserRef
from tests.conftest import Harness

LOUNGE = CommunityRef("console", "lounge", "lounge")


async def setup(h: Harness, *settings: str) -> None:
    await h.console.set_role("ada", "admin")
    await h.console.set_role("mo", "moderator")
    for line in ("/set moderator-channel #mods", *settings):
        said = await h.say("ada", line)
        assert "Saved" in said[0], said


async def code_of(h: Harness, user: str) -> str:
    return (await h.engine.invite(LOUNGE, UserRef(user, user), h.console.create_referral_link)).code


async def posted(h: Harness) -> list[str]:
    return [line for line in await h.settle() if line.startswith("[bot -> #lounge/mods]")]


async def test_linking_accounts_flags_referrals_between_them(harness: Harness):
    await setup(harness)
    await harness.console.join("alice")
    await harness.console.join("alt", via="alice")
    assert await posted(harness) == []
    said = await harness.say("ada", "/fraud-link alice alt")
    assert "alice and alt are now treated as the same person" in said[0]
    [post] = [line for line in said if line.startswith("[bot -> #lounge/mods]")]
    assert "self-referral (score 90): alt is linked to alice as the same person" in post
    again = await harness.say("ada", "/fraud-link alt alice")
    assert "already linked" in again[0]


async def test_young_accounts_are_flagged_only_when_young(harness: Harness):
    await setup(harness, "/set young-account-days 7")
    await harness.console.join("alice")
    await harness.settle()
    await harness.console.join("old", via="alice", age_days=400)
    assert await posted(harness) == []
    await harness.console.join("new", via="alice", age_days=3)
    [post] = await posted(harness)
    assert "young-account (score 40): new's account is 3 days old" in post


async def test_velocity_flags_every_referral_in_the_burst(harness: Harness):
    await setup(harness, "/set velocity 3/10m")
    await harness.console.join("alice")
    for i in range(3):
        await harness.console.join(f"n{i}", via="alice")
    assert await posted(harness) == []
    harness.clock.advance(2 * MINUTE)
    await harness.console.join("n3", via="alice")
    posts = await posted(harness)
    assert len(posts) == 4 and all("4 joins in 2 minutes through alice's code" in p for p in posts)
    harness.clock.advance(20 * MINUTE)
    await harness.console.join("n4", via="alice")
    assert await posted(harness) == []  # the window moved on


async def test_referral_rings_are_flagged(harness: Harness):
    await setup(harness)
    await harness.console.join("alice")
    await harness.console.join("bob", via="alice")
    await harness.console.join("cy", via="bob")
    assert await posted(harness) == []
    # Alice is new too (joined on her own, within the code window): she types cy's code.
    # alice referred bob, bob referred cy, and now cy would be credited for alice.
    said = await harness.say("alice", f"/code {await code_of(harness, 'cy')}")
    assert "cy is now credited" in said[0]
    [post] = [line for line in said if line.startswith("[bot -> #lounge/mods]")]
    assert "ring (score 80): alice and cy refer each other (a referral ring)" in post


async def test_rejoining_through_another_code_is_flagged(harness: Harness):
    await setup(harness)
    await harness.console.join("x1")
    await harness.console.join("x2", via="x1")
    code = await code_of(harness, "x2")
    await harness.console.leave("x1")
    await harness.settle()
    harness.clock.advance(2 * DAY)
    await harness.console.join("x1", code=code)
    [post] = await posted(harness)
    assert "rejoin (score 60): x1 left and came back through x2's code 2 days later" in post


async def test_leave_early_and_empty_referrers(harness: Harness):
    await setup(harness, "/set leave-early-count 2", "/set empty-count 3")
    await harness.console.join("alice")
    for name in ("a1", "a2"):
        await harness.console.join(name, via="alice")
        await harness.console.leave(name)
    posts = await posted(harness)
    assert any(
        "leave-early" in p and "2 of alice's 2 referrals left before counting" in p for p in posts
    )
    await harness.console.join("bob")
    for name in ("b1", "b2", "b3"):
        await harness.console.join(name, via="bob")
    await harness.settle()
    harness.clock.advance(4 * DAY)
    await harness.app.run_jobs()
    posts = await posted(harness)
    assert any("empty" in p and "3 of the 3 members bob referred never posted" in p for p in posts)


async def test_ambiguous_joins_and_code_guessing_are_flagged(harness: Harness):
    await setup(harness)
    await harness.console.join("alice")
    await harness.console.join("bob")
    codes = (await code_of(harness, "alice"), await code_of(harness, "bob"))
    await harness.engine.member_joined(
        MemberJoined(LOUNGE, UserRef("zoe", "zoe"), JoinSource.AMBIGUOUS, candidates=codes)
    )
    [post] = await posted(harness)
    assert "zoe's join could have come through 2 invites (alice, bob)" in post
    await harness.console.join("mal")
    said = []
    for i in range(6):
        harness.clock.advance(3)  # a guesser within the command budget (5 per 10 s)
        said += await harness.say("mal", f"/code AAAA{i}-BBBBB")
    [post] = [line for line in said if line.startswith("[bot -> #lounge/mods]")]
    assert "code-guessing" in post and "mal typed 6 wrong codes within 10 minutes" in post


async def test_a_banned_members_old_link_stops_crediting_and_is_flagged(harness: Harness):
    await setup(harness)
    await harness.console.join("alice")
    code = await code_of(harness, "alice")
    await harness.say("mo", "/fraud-ban alice spam")
    result = await harness.engine.member_joined(
        MemberJoined(LOUNGE, UserRef("yan", "yan"), JoinSource.INVITE_LINK, code)
    )
    assert result.referral_id is None and result.not_credited == "referrer-banned"
    posts = await posted(harness)
    assert any(
        "banned (score 80): yan joined through the code of alice, who is banned" in p for p in posts
    )
    # Typing the old code is not counted as guessing; it is explained.
    await harness.console.join("zara")
    said = await harness.say("zara", f"/code {code}")
    assert "no longer taking part" in said[0]


async def test_off_mode_silences_every_detector(harness: Harness):
    await setup(harness, "/set risk-mode off", "/set velocity 1/10m")
    await harness.console.join("alice")
    for i in range(3):
        await harness.console.join(f"n{i}", via="alice", age_days=1)
    assert await posted(harness) == []


async def test_review_deadline_decides_unreviewed_flags(harness: Harness):
    await setup(harness, "/set review-deadline 2d reject", "/set risk-mode hold")
    await harness.console.join("alice")
    await harness.console.join("kid", via="alice", age_days=1)
    await harness.settle()
    harness.clock.advance(3 * DAY)
    await harness.app.run_jobs()
    said = await harness.settle()
    assert any("Your referral of kid didn't pass review" in line for line in said)
    audit = await harness.say("ada", "/audit 1")
    assert "review deadline: fraud.rejected" in audit[0]
