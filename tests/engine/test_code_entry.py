"""/code as people really use it: pasted links, odd characters, and the guessing lock."""

import sqlalchemy as sa

from bot.engine import codes
from bot.engine.events import CommunityRef, JoinSource, MemberJoined, UserRef
from storage.tables import code_attempts, referral_links
from tests.conftest import Harness


async def _attempts(h: Harness) -> int:
    async def count(repo) -> int:
        stmt = sa.select(sa.func.count()).select_from(code_attempts)
        return (await repo.conn.execute(stmt)).scalar_one()

    return await h.app.db.read(count)


async def _code_of(h: Harness, user: str) -> str:
    info = await h.engine.invite(
        h.console.community(None).ref, h.console.user(user), h.console.create_referral_link
    )
    return info.code


async def test_full_width_code_with_a_unicode_dash_credits(harness: Harness):
    await harness.console.join("alice")
    await harness.console.join("bob")
    await harness.settle()
    shown = codes.display(await _code_of(harness, "alice"))
    typed = "".join(chr(ord(ch) + 0xFEE0) for ch in shown).replace("\uff0d", "\u2014")
    said = await harness.say("bob", f"/code {typed}")
    assert "alice is now credited for inviting you" in said[0], said


async def test_a_pasted_personal_link_credits_its_owner(harness: Harness):
    await harness.console.join("alice")
    await harness.console.join("bob")
    await harness.settle()
    await _code_of(harness, "alice")

    async def opaque_link(repo) -> None:
        # Like a Telegram or Discord invite: the url does not spell the code.
        await repo.conn.execute(referral_links.update().values(url="https://t.me/+Xy7pQ_opaque"))

    await harness.app.db.write(opaque_link)
    said = await harness.say("bob", "/code t.me/+Xy7pQ_opaque")
    assert "alice is now credited for inviting you" in said[0], said


async def test_malformed_entries_count_toward_the_lock_and_are_never_echoed(harness: Harness):
    await harness.console.join("mallory")
    await harness.settle()
    entries = ["X" * 500, "ABCDE\x07FGHJK", "AB\u202eCDE-FGHJK", "\x1b[2J" * 3, "Z" * 300]
    for entry in entries:
        harness.clock.advance(3)  # within the command budget (5 per 10 s)
        said = await harness.say("mallory", f"/code {entry}")
        assert len(said) == 1 and "That is not a referral code" in said[0], said
        assert "\x07" not in said[0] and "XXXXX" not in said[0]
    assert await _attempts(harness) == len(entries)
    harness.clock.advance(3)
    said = await harness.say("mallory", "/code " + "Q" * 250)
    assert "Too many wrong codes: code entry is locked for 30 minutes, until" in said[0]
    assert "00:30 UTC" in said[0]  # typed 18 s after midnight: locked until 00:30


async def test_typed_code_at_join_folds_full_width(harness: Harness):
    await harness.console.join("alice")
    await harness.settle()
    shown = codes.display(await _code_of(harness, "alice"))
    full_width = "".join(chr(ord(ch) + 0xFEE0) for ch in shown)
    result = await harness.engine.member_joined(
        MemberJoined(
            CommunityRef("console", "lounge", "lounge"),
            UserRef("bob", "bob"),
            JoinSource.TYPED_CODE,
            full_width,
        )
    )
    assert result.referral_id is not None
