"""Rewards and balances at their edges: roles follow the member, held means held, balances are
true, take-backs are complete, members hear about changes, dates are the real ones.

Every test runs on SQLite and PostgreSQL (the ``harness`` fixture) through the console platform.
"""

from __future__ import annotations

import sqlalchemy as sa

from bot.engine import rewards
from bot.engine.admin import Actor
from bot.engine.clock import DAY, HOUR
from bot.engine.context import Capabilities
from bot.engine.events import CommunityRef, JoinSource, MemberJoined, MessagePosted, UserRef
from bot.engine.fraud import review
from bot.engine.fraud.detectors import NewFlag
from bot.engine.text import t
from tests.conftest import Harness

CONSOLE = Actor("console", "console")


async def admin_setup(h: Harness, *lines: str) -> None:
    await h.console.set_role("ada", "admin")
    await h.console.set_role("mo", "moderator")
    for line in ("/set min-days 1", "/set min-messages 1", *lines):
        await h.say("ada", line)


async def second_community(h: Harness, name: str = "games") -> None:
    """Another community in the lounge's program (linked before any activity)."""
    await h.console.add_community(name)
    token = await h.engine.link_token(h.console.community("lounge").ref, CONSOLE)
    await h.engine.link_program(h.console.community(name).ref, CONSOLE, token)


async def convert(h: Harness, newcomer: str, referrer: str = "alice") -> list[str]:
    await h.console.join(newcomer, via=referrer)
    await h.console.say(newcomer, "hello")
    await h.settle()
    return await h.advance(DAY)


def role_lines(said: list[str]) -> list[str]:
    return [line for line in said if "(role " in line]


# -- 1. role rewards follow the member --------------------------------------------------------


async def test_a_role_reaches_a_community_where_the_member_is_first_seen_by_a_command(
    harness: Harness,
):
    h = harness
    await second_community(h)
    await admin_setup(h, "/tier-add Helper 1 role Helper")
    await h.console.join("alice")
    said = await convert(h, "bob")
    assert role_lines(said) == ["[bot -> #lounge] (role Helper given to @alice)"]
    # alice was in games all along, the bot meets her there only now, through a command.
    said = await h.say("alice", "/status", "games")
    assert "[bot -> #games] (role Helper given to @alice)" in said
    assert "Helper" in h.console.community("games").roles["alice"]
    # Only once: more commands there change nothing.
    assert role_lines(await h.say("alice", "/invite", "games")) == []
    # In a third community the bot first sees her post a message.
    await second_community(h, "chat")
    await h.say("alice", "hi there", "chat")
    said = await h.advance(60)
    assert role_lines(said) == ["[bot -> #chat] (role Helper given to @alice)"]


async def test_each_hold_and_each_approval_changes_the_role_exactly_once(harness: Harness):
    h = harness
    await second_community(h)
    await admin_setup(h, "/tier-add Helper 1 role Helper", "/set risk-mode hold")
    await h.console.join("alice")
    await h.console.join("alice", "games")
    said = await convert(h, "bob")
    assert len(role_lines(said)) == 2  # given in both communities

    async def flag(n: int) -> int:
        """Another detector flags bob's converted referral (#1)."""

        async def op(repo):
            referral = await repo.referral(1)
            new = NewFlag(
                referral.program_id,
                referral.id,
                referral.referred_id,
                "ring",
                t("fraud.reason.ring", member="bob", referrer="alice"),
                f"test:{n}",
            )
            return await review.record(repo, h.engine.ctx, [new], h.clock.now())

        [created] = await h.engine.store.write(op)
        return created.id

    for round_ in (1, 2):
        flag_id = await flag(round_)
        said = await h.settle()
        assert sorted(role_lines(said)) == [
            "[bot -> #games] (role Helper taken from @alice)",
            "[bot -> #lounge] (role Helper taken from @alice)",
        ], round_
        assert "Helper" not in h.console.community("lounge").roles.get("alice", set())
        said = await h.say("mo", f"/fraud-approve {flag_id}")
        assert sorted(role_lines(said)) == [
            "[bot -> #games] (role Helper given to @alice)",
            "[bot -> #lounge] (role Helper given to @alice)",
        ], round_
        assert "Helper" in h.console.community("lounge").roles["alice"]
    # Later sweeps and redeliveries queue nothing more.
    assert role_lines(await h.advance(DAY)) == []


# -- 2 and 4. held means held; take-back is complete ------------------------------------------


async def test_the_newcomers_reward_is_held_with_the_referral_and_withdrawn_on_reject(
    harness: Harness,
):
    h = harness
    await admin_setup(h, "/referee-reward points 50", "/tier-add Bronze 1 points 10")
    await h.console.join("alice")
    said = await convert(h, "bob")
    assert any("welcome reward: 50 points" in line for line in said)
    await h.say("ada", "/set risk-mode hold")
    said = await h.say("ada", "/fraud-link alice bob")
    held = [line for line in said if "is on hold while the moderators review" in line]
    assert any(line.startswith("[bot -> @bob ") and "welcome" in line for line in held)
    assert any(line.startswith("[bot -> @alice ") and "Bronze" in line for line in held)
    # Held rewards can't be redeemed, and /redeem and /status say so.
    refused = "On hold while the moderators review a referral: welcome."
    assert refused in (await h.say("bob", "/redeem"))[0]
    assert refused in (await h.say("bob", "/redeem welcome"))[0]
    assert (
        "On hold while the moderators review a referral: Bronze."
        in (await h.say("alice", "/redeem Bronze"))[0]
    )
    status = (await h.say("bob", "/status"))[0]
    assert "On hold while the moderators review a referral: welcome." in status
    said = await h.say("mo", "/fraud-reject 1 same person")
    assert any(
        line.startswith("[bot -> @bob ")
        and "welcome reward (50 points) was withdrawn: same person" in line
        for line in said
    )
    assert any(
        line.startswith("[bot -> @alice ") and "Your referral of bob didn't pass review" in line
        for line in said
    )
    assert "no rewards to redeem" in (await h.say("bob", "/redeem"))[0]
    assert "On hold" not in (await h.say("bob", "/status"))[0]


async def test_a_revoked_referral_takes_the_newcomers_role_everywhere(harness: Harness):
    h = harness
    await second_community(h)
    await admin_setup(h, "/referee-reward role Welcomed")
    await h.console.join("alice")
    await h.console.join("bob", via="alice")
    await h.console.join("bob", "games")
    await h.console.say("bob", "hello")
    said = await h.advance(DAY)
    assert len([x for x in role_lines(said) if "Welcomed given to @bob" in x]) == 2
    said = await h.say("ada", "/referral-revoke 1 duplicate")
    assert "1 reward withdrawn" in said[0]
    assert sorted(role_lines(said)) == [
        "[bot -> #games] (role Welcomed taken from @bob)",
        "[bot -> #lounge] (role Welcomed taken from @bob)",
    ]
    assert any(line.startswith("[bot -> @bob ") and "withdrawn: duplicate" in line for line in said)
    assert any(line.startswith("[bot -> @alice ") and "taken back" in line for line in said)


# -- 3. the points balance is true ------------------------------------------------------------


async def test_the_balance_counts_only_points_credited(harness: Harness):
    h = harness
    await admin_setup(h, "/tier-add Bronze 1 points 100", "/tier-add Silver 2 points 30")
    await h.console.join("alice")
    await convert(h, "bob")
    status = (await h.say("alice", "/status"))[0]
    assert "Points: 0 credited." in status
    assert "Not in your balance yet: 100 points" in status
    said = await h.say("alice", "/redeem")
    assert "Bronze: 100 points added to your balance." in said[0]
    status = (await h.say("alice", "/status"))[0]
    assert "Points: 100 credited." in status  # /redeem changed it by what it said
    assert "Not in your balance yet" not in status
    # A reward in its holding period is shown as such, never in the balance.
    await h.say("ada", "/set holding-days 3")
    await convert(h, "carol")
    status = (await h.say("alice", "/status"))[0]
    assert "Points: 100 credited." in status
    assert "Silver becomes available on" in status
    assert "Not in your balance yet: 30 points" in status
    # Withdrawn before it was redeemed: the balance never moves.
    await h.say("ada", "/referral-revoke 2 duplicate")
    status = (await h.say("alice", "/status"))[0]
    assert "Points: 100 credited." in status
    assert "Not in your balance yet" not in status and "Silver" not in status.split("Next")[0]


# -- 5. people hear about changes that concern them -------------------------------------------


async def test_the_end_of_a_holding_period_is_told_once(harness: Harness):
    h = harness
    await admin_setup(h, "/set holding-days 2", "/tier-add Bronze 1 points 100")
    await h.console.join("alice")
    said = await convert(h, "bob")
    assert any("It becomes available on" in line for line in said)
    said = await h.advance(DAY)
    assert not any("holding period" in line for line in said)
    said = await h.advance(DAY)
    ready = [line for line in said if "holding period of Bronze is over" in line]
    assert ready == [
        "[bot -> @alice (private)] The holding period of Bronze is over: 100 points is ready. "
        "Claim it with /redeem."
    ]
    assert not any("holding period" in line for line in await h.advance(DAY))


async def test_a_refill_tells_the_members_who_waited_for_it(harness: Harness):
    h = harness
    await admin_setup(h, "/tier-add Star 1 coupon stars")
    for referrer, newcomer in (("alice", "bob"), ("carol", "dan")):
        await h.console.join(referrer)
        await convert(h, newcomer, referrer)
    for who in ("carol", "alice"):  # carol waits first
        assert "coupons have run out" in (await h.say(who, "/redeem"))[0]
        h.clock.advance(60)
    said = await h.say("ada", "/coupons-add stars S-1")
    told = [line for line in said if "back in stock" in line]
    assert told == [
        "[bot -> @carol (private)] Coupons for your Star reward are back in stock. "
        "Claim yours with /redeem Star."
    ]
    assert "S-1" in (await h.say("carol", "/redeem Star"))[0]
    said = await h.say("ada", "/coupons-add stars S-2 S-3")
    assert [line for line in said if "back in stock" in line] == [
        "[bot -> @alice (private)] Coupons for your Star reward are back in stock. "
        "Claim yours with /redeem Star."
    ]
    # Told once: another refill does not tell her again.
    said = await h.say("ada", "/coupons-add stars S-4")
    assert not [line for line in said if "back in stock" in line]


# -- 6. no public praise for someone who is gone ----------------------------------------------


async def test_a_referrer_who_left_is_not_announced_but_still_counts(harness: Harness):
    h = harness
    await admin_setup(h, "/set announce-channel #news", "/tier-add Bronze 1 points 10")
    await h.console.join("alice")
    await h.console.join("bob", via="alice")
    await h.console.say("bob", "hello")
    await h.console.leave("alice")
    said = await h.advance(DAY)
    assert any("bob now counts as your referral" in line for line in said)
    assert not any(line.startswith("[bot -> #lounge/news]") for line in said)
    board = (await h.say("carol", "/leaderboard"))[0]
    assert "1. alice: 1 referral" in board
    # Nor in the weekly digest (Monday 18:00 reports the week before).
    said = await h.advance(4 * DAY + 19 * HOUR)
    digest = [line for line in said if "Weekly referral leaderboard" in line]
    assert len(digest) == 1 and "no new referrals to celebrate" in digest[0]
    assert "alice" not in digest[0]
    # She comes back: the old grant is never announced later.
    await h.console.join("alice")
    assert not any("#lounge/news" in line for line in await h.advance(HOUR))


# -- 7. dates are the real ones ---------------------------------------------------------------


async def test_referrals_show_when_the_newcomer_joined(harness: Harness):
    h = harness
    await admin_setup(h)
    await h.console.join("alice")
    await h.console.join("dan")  # 2026-01-01
    await h.advance(3 * DAY)
    code = (
        await h.engine.invite(
            h.console.community(None).ref, h.console.user("alice"), h.console.create_referral_link
        )
    ).code
    assert "credited" in (await h.say("dan", f"/code {code}"))[0]
    listing = (await h.say("ada", "/referrals alice"))[0]
    assert "dan — pending, joined Jan 1, 2026" in listing


async def test_after_downtime_a_conversion_counts_in_the_week_it_became_due(harness: Harness):
    h = harness
    await admin_setup(h, "/set announce-channel #news")
    await h.console.join("alice")
    await h.console.join("bob", via="alice")  # Thursday 2026-01-01: due Friday, week 1
    await h.console.say("bob", "hello")
    await h.settle()
    said = await h.advance(10 * DAY)  # the bot was down; it catches up on Sunday of week 2
    assert any("bob now counts as your referral" in line for line in said)
    digest = [line for line in said if "Weekly referral leaderboard" in line]
    assert len(digest) == 1
    assert "Dec 29\u2009–\u2009Jan 4 (2026-W01)" in digest[0]
    assert "1. alice: 1 referral" in digest[0] and "@alice" not in digest[0]
    assert "No converted referrals yet." in (await h.say("alice", "/leaderboard week"))[0]
    assert "1. alice: 1 referral" in (await h.say("alice", "/leaderboard month"))[0]


async def test_a_role_in_its_holding_period_is_shown_and_told_when_given(harness: Harness):
    h = harness
    await admin_setup(h, "/set holding-days 2", "/tier-add Helper 1 role Helper")
    await h.say("ada", "/referee-reward role Welcomed")
    await h.console.join("alice")
    await convert(h, "bob")  # converts on Jan 2: the roles wait until Jan 4
    assert "Helper becomes available on Jan 4, 2026." in (await h.say("alice", "/status"))[0]
    assert "welcome becomes available on Jan 4, 2026." in (await h.say("bob", "/status"))[0]
    said = await h.advance(2 * DAY)
    assert (
        "[bot -> @bob (private)] Your welcome reward is ready: you now have the Welcomed role."
        in said
    )
    assert "[bot -> #lounge] (role Welcomed given to @bob)" in said
    assert "[bot -> #lounge] (role Helper given to @alice)" in said
    assert "becomes available" not in (await h.say("alice", "/status"))[0]


async def test_a_tier_taken_back_before_its_announcement_is_never_announced(harness: Harness):
    h = harness
    await admin_setup(h, "/set announce-channel #news", "/tier-add Bronze 1 points 10")
    await h.console.join("alice")
    await h.console.join("bob", via="alice")
    await h.console.say("bob", "hello")
    h.clock.advance(DAY)
    await h.engine.run_sweep()  # converted and granted; the announcement job has not run yet
    await h.say("ada", "/referral-revoke 1 duplicate")
    said = await h.advance(60)
    assert not any("#lounge/news" in line for line in said)


async def test_no_role_change_is_queued_where_the_platform_has_no_roles(harness: Harness):
    """A group on a platform without roles (like Telegram) linked into a program that has a
    role tier: its members reach the tier, and no undeliverable role change is queued."""
    h = harness
    await admin_setup(h, "/tier-add Helper 1 role Helper")
    h.engine.ctx.capabilities["noroles"] = Capabilities(roles=False)
    group = CommunityRef("noroles", "g1", "group")
    await h.engine.community(group)
    token = await h.engine.link_token(h.console.community("lounge").ref, CONSOLE)
    await h.engine.link_program(group, CONSOLE, token)
    eve, fay = UserRef("eve", "eve"), UserRef("fay", "fay")
    await h.engine.member_joined(MemberJoined(group, eve))
    info = await h.engine.invite(group, eve, h.console.create_referral_link)
    await h.engine.member_joined(MemberJoined(group, fay, JoinSource.INVITE_LINK, info.code))
    h.engine.message_posted(MessagePosted(group, fay))
    await h.advance(DAY)
    await h.engine.member_joined(MemberJoined(group, eve))  # a duplicate join changes nothing

    async def kinds(repo):
        rows = await repo.conn.execute(sa.text("SELECT platform, kind FROM outbox"))
        return {(p, k) for p, k in rows}

    queued = await h.engine.store.read(kinds)
    assert ("noroles", "dm") in queued  # eve was told she reached Helper
    assert not any(k in ("grant_role", "revoke_role") for _, k in queued)


async def test_a_referral_approved_after_its_due_date_is_dated_by_the_approval(harness: Harness):
    h = harness
    await admin_setup(h, "/set risk-mode hold", "/set moderator-channel #mods")
    await h.console.join("alice")
    await h.console.join("kid", via="alice", age_days=1)  # young account: held at once
    await h.console.say("kid", "hello")
    await h.advance(5 * DAY)  # Tuesday of week 2; it was due on Friday of week 1
    said = await h.say("mo", "/fraud-approve 1")
    assert any("The moderators reviewed your referral of kid" in line for line in said)
    said = await h.advance(HOUR)
    assert any("kid now counts as your referral" in line for line in said)
    assert "1. alice: 1 referral" in (await h.say("alice", "/leaderboard week"))[0]


async def test_a_crash_after_the_sweep_before_the_roles_step_loses_nothing(
    harness: Harness, monkeypatch
):
    """The conversions commit; the process dies before the step that tells members and gives
    roles whose holding period ended. The next sweep does that step, once."""
    h = harness
    await admin_setup(h, "/set holding-days 1", "/tier-add Helper 1 role Helper")
    await h.console.join("alice")
    await convert(h, "bob")  # granted; the role waits one day
    real = rewards.apply_due_roles
    calls = 0

    async def crash_once(repo, ctx):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("process killed")
        return await real(repo, ctx)

    monkeypatch.setattr(rewards, "apply_due_roles", crash_once)
    said = await h.advance(DAY)
    assert role_lines(said) == []  # the job failed this time
    said = await h.advance(300)
    assert role_lines(said) == ["[bot -> #lounge] (role Helper given to @alice)"]
    assert sum("holding period of Helper is over" in line for line in said) == 1
    said = await h.advance(DAY)
    assert role_lines(said) == [] and not any("holding period" in line for line in said)
