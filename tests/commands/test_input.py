"""Input and words: what people really type gets a clear answer, and nothing is written."""

import sqlalchemy as sa

from bot.engine.events import JoinSource, MemberJoined, UserRef
from commands import dispatch
from commands.registry import CommandContext, split_command
from storage.tables import audit_log, participants
from tests.conftest import Harness


async def _audit_rows(h: Harness) -> int:
    async def count(repo) -> int:
        stmt = sa.select(sa.func.count()).select_from(audit_log)
        return (await repo.conn.execute(stmt)).scalar_one()

    return await h.app.db.read(count)


async def _refused(h: Harness, user: str, line: str) -> str:
    before = await _audit_rows(h)
    said = await h.say(user, line)
    assert len(said) == 1 and said[0].startswith(f"[bot -> @{user} (private)]"), (line, said)
    assert await _audit_rows(h) == before, line
    return said[0]


async def test_template_conversions_and_format_specs_are_refused(harness: Harness):
    await harness.console.set_role("ada", "admin")
    for template in ("Hi {member!r}", "Hi {member:>30}", "Hi {member!s:^9}", "Hi {member.name}"):
        said = await _refused(harness, "ada", f'/set welcome-text "{template}"')
        assert "welcome-text may only use these placeholders" in said, said
        assert "{member}, {inviter}, {community}" in said
    ok = await harness.say("ada", '/set welcome-text "Hi {member}, meet {community}"')
    assert "Saved welcome-text." in ok[0]


async def test_too_long_names_the_settings_real_limit(harness: Harness):
    await harness.console.set_role("ada", "admin")
    said = await _refused(harness, "ada", "/set welcome-text " + "x" * 2500)
    assert "welcome-text is too long (2500 characters); at most 1000 are allowed" in said
    said = await _refused(harness, "ada", "/set required-role " + "r" * 2500)
    assert "at most 100 are allowed" in said


async def test_refusals_name_the_range_and_never_an_internal_bound(harness: Harness):
    await harness.console.set_role("ada", "admin")
    said = await _refused(harness, "ada", "/set review-deadline 400d approve")
    assert "1d–365d" in said
    said = await _refused(harness, "ada", "/set min-days " + "9" * 1500)
    assert "min-days must be from 0 to 365 (you gave 999999999999…)" in said
    said = await _refused(harness, "ada", "/set rules-text Use {member}")
    assert "rules-text is plain text" in said
    for line in (
        "/referral-revoke 99999999999999999999",
        "/referral-revoke -3",
        "/referral-revoke twelve",
        "/fraud-show 0",
        "/fraud-show 5000000000000000000",
    ):
        said = await _refused(harness, "ada", line)
        assert "4611686018427387904" not in said and "2**62" not in said, said
        assert "referral" in said or "flag" in said
    said = await _refused(harness, "ada", "/referral-revoke 0")
    assert "referral must be a number such as 12 (1 or more)" in said


async def test_an_unbalanced_quote_is_read_forgivingly_not_as_help(harness: Harness):
    await harness.console.set_role("ada", "admin")
    said = await harness.say("ada", "/set rules-text Don't cheat")
    assert len(said) == 1 and "Saved rules-text." in said[0], said
    rules = await harness.say("bob", "/rules")
    assert "Don't cheat" in rules[0]
    said = await harness.say("bob", '/code "ABCDE')
    assert "Commands:" not in said[0]


async def _as(h: Harness, user: UserRef, line: str, *, moderator: bool = False) -> list[str]:
    name, tokens = split_command(line.lstrip("/"))
    ctx = CommandContext(
        engine=h.engine,
        community=h.console.community(None).ref,
        user=user,
        is_moderator=moderator,
        capabilities=h.console.capabilities,
    )
    return [h.console.render(r.text) for r in await dispatch(ctx, name, tokens)]


async def test_an_exact_platform_id_wins_over_a_display_name(harness: Harness):
    lounge = harness.console.community(None).ref
    victim, impostor = UserRef("1001", "victim"), UserRef("2002", "1001")
    for person in (victim, impostor):
        await harness.engine.member_joined(MemberJoined(lounge, person, JoinSource.ORGANIC))
    mod = UserRef("9", "mod")
    for target in ("1001", "<@1001>", "<@!1001>", "@1001"):
        said = await _as(harness, mod, f"/referrals {target}", moderator=True)
        assert said[0].startswith("victim's referrals"), (target, said)
    said = await _as(harness, mod, "/fraud-ban 2002 spam", moderator=True)
    assert said[0].startswith("Banned 1001"), said
    said = await _as(harness, mod, "/fraud-ban <@1001> spam", moderator=True)
    assert said[0].startswith("Banned victim"), said


async def test_names_from_platforms_are_neutralised_before_storage_and_output(harness: Harness):
    lounge = harness.console.community(None).ref
    sly = UserRef("3003", "ad\u202emin\x00\ud800 Bob")
    await harness.engine.member_joined(MemberJoined(lounge, sly, JoinSource.ORGANIC))
    said = await harness.settle()
    assert said and all(bad not in line for line in said for bad in ("\u202e", "\x00", "\ud800"))

    async def stored(repo) -> str:
        stmt = sa.select(participants.c.display_name).where(participants.c.user_id == "3003")
        return (await repo.conn.execute(stmt)).scalar_one()

    name = await harness.app.db.read(stored)
    assert name == "admin\ufffd\ufffd Bob"
    persian = UserRef("3004", "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645 \u200fRTL")
    assert persian.display_name == "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645 \u200fRTL"


async def test_writing_that_needs_format_characters_is_accepted_in_admin_texts(harness: Harness):
    await harness.console.set_role("ada", "admin")
    texts = {
        "zwnj": "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # Persian
        "marks": "\u200fשלום\u200e ok",  # RLM / LRM
        "flag": "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
        "shy": "refer\u00adral",
    }
    for label, text in texts.items():
        said = await harness.say("ada", f"/set rules-text {text}")
        assert "Saved rules-text." in said[0], (label, said)
    said = await _refused(harness, "ada", "/set rules-text Be \u202ekind")
    assert "rules-text contains control characters" in said


async def test_a_long_name_is_cut_in_the_audit_log_not_an_error(harness: Harness):
    long_admin = UserRef("4004", "A" * 300)
    ctx = CommandContext(
        engine=harness.engine,
        community=harness.console.community(None).ref,
        user=long_admin,
        is_admin=True,
        capabilities=harness.console.capabilities,
    )
    replies = await dispatch(ctx, "set", ["min-days", "2"])
    assert "Saved min-days." in harness.console.render(replies[0].text)
    entries = await harness.engine.audit(harness.console.community(None).ref, 5)
    assert entries[0].actor.startswith("A" * 100) and len(entries[0].actor) <= 200


async def test_refused_staff_commands_are_counted_in_the_log_not_the_audit(
    harness: Harness, caplog
):
    caplog.set_level("WARNING", logger="commands.guard")
    before = await _audit_rows(harness)
    for line in ("/tier-add Gold 1 points 5", "/fraud-queue", "/set min-days 1"):
        harness.clock.advance(3)
        said = await harness.say("bob", line)
        assert "is for the" in said[0] and "role only" in said[0], said
    events = [r.getMessage() for r in caplog.records if "event=command.forbidden" in r.getMessage()]
    assert len(events) == 3
    assert "command=tier-add attempts=1" in events[0] and "user=bob" in events[0]
    assert "command=set attempts=3" in events[2]
    assert await _audit_rows(harness) == before


async def test_the_cooldown_answers_once_then_drops(harness: Harness):
    bob = harness.console.user("bob")
    replies = [await _as(harness, bob, "/leaderboard week") for _ in range(7)]
    assert all(r and r[0].startswith("Top referrers") for r in replies[:5])
    assert replies[5] == ["Slow down: you are sending commands too fast. Try again in 10 seconds."]
    assert replies[6] == []
    harness.clock.advance(10)
    assert (await _as(harness, bob, "/leaderboard"))[0].startswith("Top referrers")
