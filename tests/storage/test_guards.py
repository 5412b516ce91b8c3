"""Guards that make two processes on one database safe: a lost race is a no-op, never a
second effect.

The interleaving tests open two transactions of their own on PostgreSQL (what two bot
processes do) and let the second one run against the first one's uncommitted work.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from bot.engine import members, referrals
from bot.engine.events import CommunityRef, JoinSource, MemberJoined, UserRef
from bot.engine.models import ReferralStatus
from storage.repository import Repository
from storage.tables import leaderboard_counts, memberships, participants
from storage.tables import referrals as referrals_table
from tests.conftest import Harness

LOUNGE = CommunityRef("console", "lounge", "lounge")
HALL = CommunityRef("console", "hall", "hall")


async def _converted_and_counted(h: Harness) -> tuple[int, int]:
    async def op(repo: Repository) -> tuple[int, int]:
        conn = repo.conn
        converted = (
            await conn.execute(
                sa.select(sa.func.count()).where(
                    referrals_table.c.status == ReferralStatus.CONVERTED.value
                )
            )
        ).scalar_one()
        counted = (
            await conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(leaderboard_counts.c.count), 0)).where(
                    leaderboard_counts.c.period == "all"
                )
            )
        ).scalar_one()
        return converted, counted

    return await h.app.db.read(op)


async def _ready_to_convert(h: Harness, referred: list[str]) -> None:
    await h.console.join("alice")
    for name in referred:
        await h.console.join(name, via="alice")
        for _ in range(3):
            await h.say(name, "hello")
    await h.engine.flush_activity()
    h.clock.advance(4 * 86400)  # past min-days; no job has run yet


async def test_a_status_change_is_compare_and_set(harness: Harness):
    """A stale decision (read "pending", another process converted it since) changes nothing."""
    await _ready_to_convert(harness, ["bob"])
    await harness.app.run_jobs()
    assert await _converted_and_counted(harness) == (1, 1)

    async def stale(repo: Repository) -> set[int]:
        [rid] = [r[0] for r in await repo._rows(sa.select(referrals_table.c.id))]
        return await repo.update_referrals(
            [
                {
                    "rid": rid,
                    "expect": ReferralStatus.PENDING.value,
                    "status": ReferralStatus.PENDING.value,
                    "due_at": harness.clock.now() + 3600,
                    "converted_at": None,
                    "ended_at": None,
                    "reason": None,
                }
            ]
        )

    assert await harness.app.db.write(stale) == set()
    harness.clock.advance(2 * 3600)
    await harness.app.run_jobs()
    assert await _converted_and_counted(harness) == (1, 1)  # not converted (or counted) twice
    said = await harness.say("alice", "/status")
    assert "1 converted" in said[0]


@pytest.fixture
async def pg_harness(pg_ready: str) -> AsyncIterator[Harness]:
    from tests.conftest import _truncate_pg

    await _truncate_pg(pg_ready)
    h = Harness(pg_ready)
    await h.app.open()
    await h.console.add_community("lounge")
    try:
        yield h
    finally:
        await h.app.close()


async def _two_transactions(url: str) -> AsyncIterator[tuple[AsyncConnection, AsyncConnection]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as a, engine.connect() as b:
            yield a, b
    finally:
        await engine.dispose()


async def test_two_processes_sweeping_at_once_convert_each_referral_once(pg_harness: Harness):
    h = pg_harness
    await _ready_to_convert(h, ["bob", "carol", "dave"])
    engine = create_async_engine(h.app.settings.database.url)
    try:
        async with engine.connect() as a, engine.connect() as b:
            await a.begin()
            first = await referrals.sweep(Repository(a), h.app.ctx)

            async def second_process() -> referrals.SweepResult:
                await b.begin()
                result = await referrals.sweep(Repository(b), h.app.ctx)
                await b.commit()
                return result

            other = asyncio.create_task(second_process())
            await asyncio.sleep(0.3)  # let the second process read while the first is open
            await a.commit()
            second = await other
    finally:
        await engine.dispose()
    assert first.converted + second.converted == 3
    assert await _converted_and_counted(h) == (3, 3)
    said = await h.say("alice", "/status")
    assert "3 converted" in said[0]
    dms = [line for line in await h.settle() if "now counts" in line]
    assert len(dms) <= 3


async def test_the_same_person_joining_two_communities_at_once_is_one_participant(
    pg_harness: Harness,
):
    h = pg_harness
    h.console.communities["lounge"].program = "main"  # as `community lounge program main`
    await h.console.add_community("hall", program="main")
    await h.console.join("alice")
    code = (
        await h.engine.invite(LOUNGE, UserRef("alice", "alice"), h.console.create_referral_link)
    ).code
    engine = create_async_engine(h.app.settings.database.url)
    try:
        async with engine.connect() as a, engine.connect() as b:
            await a.begin()
            [here] = await members.process_joins(
                Repository(a),
                h.app.ctx,
                [MemberJoined(LOUNGE, UserRef("zed", "zed"), JoinSource.INVITE_LINK, code)],
            )

            async def second_process() -> list[members.JoinResult]:
                await b.begin()
                out = await members.process_joins(
                    Repository(b),
                    h.app.ctx,
                    [MemberJoined(HALL, UserRef("zed", "zed"), JoinSource.ORGANIC)],
                )
                await b.commit()
                return out

            other = asyncio.create_task(second_process())
            await asyncio.sleep(0.3)  # the second insert now waits for the first transaction
            await a.commit()
            [there] = await other
    finally:
        await engine.dispose()
    assert here.credited_to == "alice"
    assert there.participant_id == here.participant_id

    async def stored(repo: Repository) -> tuple[int, int]:
        people = (
            await repo.conn.execute(
                sa.select(sa.func.count()).where(participants.c.user_id == "zed")
            )
        ).scalar_one()
        rooms = (
            await repo.conn.execute(
                sa.select(sa.func.count()).where(
                    memberships.c.participant_id == here.participant_id
                )
            )
        ).scalar_one()
        return people, rooms

    assert await h.app.db.read(stored) == (1, 2)  # one person, a member of both communities


async def test_a_community_moved_by_one_process_is_re_read_by_the_others(pg_harness: Harness):
    """/link-program in one process; another process that cached the community follows it."""
    from bot.engine.admin import Actor

    a = pg_harness
    await a.console.add_community("hall")
    b = Harness(a.app.settings.database.url)
    await b.app.open()
    await b.app.community_changes.start()
    try:
        await b.console.add_community("lounge")
        await b.console.add_community("hall")  # b now caches hall in its own first program
        before = b.app.ctx.communities[("console", "hall")].program_id
        admin = Actor("alice", "alice")
        token = await a.engine.link_token(LOUNGE, admin)
        target = await a.engine.link_program(HALL, admin, token)
        assert target != before

        async def forgotten() -> None:
            while ("console", "hall") in b.app.ctx.communities:  # noqa: ASYNC110
                await asyncio.sleep(0.05)

        await asyncio.wait_for(forgotten(), 30)  # the notice arrives (bounded wait)
        await b.console.join("zoe", "hall")
        person = await b.app.db.read(
            lambda repo: repo.participants_by_identity([(target, "console", "zoe")])
        )
        assert (target, "console", "zoe") in person  # the join went to the linked program
    finally:
        await b.app.close()
