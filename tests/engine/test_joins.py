"""Joins under bursts: every determinable join credited, none twice, few transactions."""

import asyncio

from bot.engine.events import CommunityRef, JoinSource, MemberJoined, UserRef
from tests.conftest import Harness

LOUNGE = CommunityRef("console", "lounge", "lounge")


async def make_code(h: Harness, user: str) -> str:
    info = await h.engine.invite(LOUNGE, UserRef(user, user), h.console.create_referral_link)
    return info.code


async def test_a_burst_of_joins_is_attributed_exactly(harness: Harness):
    owners = [f"owner{i}" for i in range(5)]
    for o in owners:
        await harness.console.join(o)
    codes = {o: await make_code(harness, o) for o in owners}
    before = harness.app.db.writer.transactions
    events = [
        MemberJoined(
            LOUNGE, UserRef(f"n{i}", f"n{i}"), JoinSource.INVITE_LINK, codes[owners[i % 5]]
        )
        for i in range(300)
    ]
    results = await asyncio.gather(*(harness.engine.member_joined(e) for e in events))
    assert [r.credited_to for r in results] == [owners[i % 5] for i in range(300)]
    assert len({r.referral_id for r in results}) == 300
    assert harness.app.db.writer.transactions - before < 60  # group commit, not one per join
    for o in owners:
        said = await harness.say(o, "/status")
        assert "60 pending" in said[0]


async def test_the_same_join_twice_is_not_a_second_member(harness: Harness):
    await harness.console.join("alice")
    code = await make_code(harness, "alice")
    event = MemberJoined(LOUNGE, UserRef("bob", "bob"), JoinSource.INVITE_LINK, code)
    first, second = await asyncio.gather(
        harness.engine.member_joined(event), harness.engine.member_joined(event)
    )
    assert (first.outcome, second.outcome) == ("new", "duplicate")
    said = await harness.settle()
    assert sum("Welcome to lounge, @bob" in line for line in said) == 1


async def test_unknown_and_revoked_codes_do_not_credit(harness: Harness):
    await harness.console.join("alice")
    old = await make_code(harness, "alice")
    await harness.say("alice", "/invite new")
    new = await make_code(harness, "alice")
    assert new != old
    stale = await harness.engine.member_joined(
        MemberJoined(LOUNGE, UserRef("bob", "bob"), JoinSource.INVITE_LINK, old)
    )
    bogus = await harness.engine.member_joined(
        MemberJoined(LOUNGE, UserRef("cy", "cy"), JoinSource.TYPED_CODE, "ZZZZZ-ZZZZZ")
    )
    fresh = await harness.engine.member_joined(
        MemberJoined(LOUNGE, UserRef("di", "di"), JoinSource.INVITE_LINK, new.lower())
    )
    assert stale.not_credited == "code-revoked"
    assert bogus.not_credited == "code-unknown"
    assert fresh.credited_to == "alice"


async def test_ambiguous_joins_are_never_guessed(harness: Harness):
    await harness.console.join("alice")
    code = await make_code(harness, "alice")
    result = await harness.engine.member_joined(
        MemberJoined(LOUNGE, UserRef("bob", "bob"), JoinSource.AMBIGUOUS, None, candidates=(code,))
    )
    assert result.credited_to is None and result.referral_id is None


async def test_reconcile_after_downtime(harness: Harness):
    await harness.console.join("alice")
    await harness.console.join("bob", via="alice")
    await harness.settle()
    # While the bot was away: bob left, and zed joined through who knows what.
    result = await harness.engine.reconcile(
        LOUNGE, [UserRef("alice", "alice"), UserRef("zed", "zed")]
    )
    assert (result.left, result.added) == (1, 1)
    assert await harness.settle() == []  # nobody is greeted hours late
    status = await harness.say("alice", "/status")
    assert "0 pending" in status[0] and "1 left early" in status[0]
    code = await make_code(harness, "alice")
    refused = await harness.say("zed", f"/code {code}")
    assert "Only new members can enter a referral code" in refused[0]


async def test_a_platform_reported_rejoin_is_never_a_referral(harness: Harness):
    await harness.console.join("alice")
    code = await make_code(harness, "alice")
    result = await harness.engine.member_joined(
        MemberJoined(LOUNGE, UserRef("bob", "bob"), JoinSource.INVITE_LINK, code, rejoined=True)
    )
    assert result.referral_id is None
    assert "[bot -> #lounge] Welcome back to lounge, @bob!" in await harness.settle()


async def test_links_that_still_credit_survive_for_adapters(harness: Harness):
    await harness.console.join("alice")
    old = await make_code(harness, "alice")
    assert await harness.engine.links(LOUNGE) == {f"console://join/{old}": old}
    await harness.say("alice", "/invite new")
    new = await make_code(harness, "alice")
    assert await harness.engine.links(LOUNGE) == {f"console://join/{new}": new}
