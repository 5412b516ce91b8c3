"""Leaderboard periods and the weekly digest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.engine import communities
from bot.engine.context import EngineContext
from bot.engine.models import LeaderboardRow
from bot.engine.notify import to_channel
from bot.engine.ports import Repository
from bot.engine.text import DateRange, t

PERIODS = ("all", "month", "week")


def period_keys(ts: int) -> list[str]:
    """Every leaderboard bucket a conversion at ``ts`` counts in."""
    when = datetime.fromtimestamp(ts, UTC)
    year, week, _ = when.isocalendar()
    return ["all", f"{when.year:04d}-{when.month:02d}", f"{year:04d}-W{week:02d}"]


def period_key(period: str, now: int) -> str:
    keys = period_keys(now)
    return {"all": keys[0], "month": keys[1], "week": keys[2]}[period]


def digest_slot(now: int, weekday: int, minute: int) -> tuple[int, str]:
    """The most recent digest time at or before ``now``, and the completed ISO week it reports."""
    when = datetime.fromtimestamp(now, UTC)
    monday = (when - timedelta(days=when.weekday())).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    slot = monday + timedelta(days=weekday, minutes=minute)
    if slot > when:
        slot -= timedelta(days=7)
    slot_monday = slot - timedelta(days=slot.weekday(), hours=slot.hour, minutes=slot.minute)
    year, week, _ = (slot_monday - timedelta(days=1)).isocalendar()
    return int(slot.timestamp()), f"{year:04d}-W{week:02d}"


async def present_only(
    repo: Repository, rows: list[LeaderboardRow], limit: int
) -> list[LeaderboardRow]:
    """No public praise for someone who left every community of the program."""
    memberships = await repo.memberships_of(r.participant_id for r in rows)
    here = [
        r for r in rows if any(m.left_at is None for m in memberships.get(r.participant_id, []))
    ]
    return here[:limit]


def week_dates(slot: int) -> DateRange:
    """Monday to Sunday of the completed week a digest at ``slot`` reports."""
    when = datetime.fromtimestamp(slot, UTC)
    monday = (when - timedelta(days=when.weekday() + 7)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    return DateRange(int(monday.timestamp()), int((monday + timedelta(days=6)).timestamp()))


async def post_digests(repo: Repository, ctx: EngineContext) -> int:
    """Queue this week's digest for every program whose slot has passed; idempotent per week."""
    now = ctx.clock.now()
    created = await repo.programs_created()
    settings = await communities.settings_for(repo, ctx, created)
    queued = 0
    for program_id, s in settings.items():
        if s.digest_weekday is None or s.announce_community_id is None:
            continue
        slot, week = digest_slot(now, s.digest_weekday, s.digest_minute)
        if slot < created[program_id]:
            continue
        key = f"digest:{program_id}:{week}"
        if await repo.outbox_keys([key]):
            continue
        community = await repo.community_by_id(s.announce_community_id)
        if community is None or community.program_id != program_id:
            continue
        top = await present_only(repo, await repo.leaderboard_top(program_id, week, 50), 10)
        dates = week_dates(slot)
        # Names, not mentions: a weekly post must not ping ten members (as /leaderboard).
        lines = [
            t("leaderboard.line", rank=i, member=r.display_name, count=r.count)
            for i, r in enumerate(top, start=1)
        ]
        text = (
            t("digest.body", week=week, dates=dates, lines=lines)
            if lines
            else t("digest.empty", week=week, dates=dates)
        )
        await repo.add_outbox(
            [to_channel(community, s.announce_channel, text, s.language, key, now)]
        )
        queued += 1
    return queued
