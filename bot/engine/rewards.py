"""Tiers and rewards: granted exactly once (UNIQUE dedupe key), redeemed once, revocable."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bot.engine import communities
from bot.engine.clock import DAY
from bot.engine.context import EngineContext
from bot.engine.errors import UserError
from bot.engine.models import (
    Community,
    Grant,
    GrantStatus,
    Participant,
    Referral,
    RewardKind,
    Tier,
)
from bot.engine.notify import channel_access, role_change, to_channel, to_user
from bot.engine.ports import Repository
from bot.engine.program_settings import ProgramSettings
from bot.engine.text import Date, Mention, Text, t


def tier_key(tier_id: int, participant_id: int) -> str:
    return f"tier:{tier_id}:{participant_id}"


def reward_text(kind: RewardKind | str, value: str) -> Text:
    return t(f"reward.{RewardKind(kind).value}", value=value)


def _grant_row(
    program_id: int,
    person: Participant,
    *,
    tier: Tier | None,
    referral_id: int | None,
    kind: str,
    value: str,
    label: str,
    key: str,
    s: ProgramSettings,
    now: int,
) -> dict:
    return {
        "program_id": program_id,
        "participant_id": person.id,
        "tier_id": tier.id if tier else None,
        "referral_id": referral_id,
        "side": "referrer" if tier else "referee",
        "label": label,
        "kind": kind,
        "value": value,
        "status": GrantStatus.AVAILABLE.value,
        "created_at": now,
        "available_at": now + s.holding_days * DAY,
        "dedupe_key": key,
    }


def tier_grant_rows(
    program_id: int,
    referrers: dict[int, Participant],
    counts: dict[int, int],
    tiers: list[Tier],
    s: ProgramSettings,
    now: int,
) -> list[dict]:
    """A grant row for every tier each referrer's converted count has reached.

    Rows for tiers already granted are dropped by the UNIQUE dedupe key when inserted.
    """
    return [
        _grant_row(
            program_id,
            person,
            tier=tier,
            referral_id=None,
            kind=tier.reward_kind.value,
            value=tier.reward_value,
            label=tier.name,
            key=tier_key(tier.id, pid),
            s=s,
            now=now,
        )
        for pid, person in referrers.items()
        for tier in tiers
        if tier.threshold <= counts.get(pid, 0)
    ]


def referee_grant_rows(
    converted: list[Referral], referred: dict[int, Participant], s: ProgramSettings, now: int
) -> list[dict]:
    """Double-sided programs: the newcomer's own reward once their referral converts."""
    if not s.referee_reward_kind:
        return []
    return [
        _grant_row(
            r.program_id,
            referred[r.referred_id],
            tier=None,
            referral_id=r.id,
            kind=s.referee_reward_kind,
            value=s.referee_reward_value,
            label="welcome",
            key=f"referee:{r.id}",
            s=s,
            now=now,
        )
        for r in converted
    ]


async def tell_granted(
    repo: Repository,
    created: list[Grant],
    people: dict[int, Participant],
    home: dict[int, Community],
    settings: dict[int, ProgramSettings],
    now: int,
) -> None:
    """Tell each member what they got (one outbox write), and apply role rewards due now."""
    rows = []
    for g in created:
        person = people[g.participant_id]
        locale = communities.locale_of(settings[g.program_id], person.locale)
        reward = reward_text(g.kind, g.value)
        # The newcomer's own reward has no tier: its label is never shown as one.
        if g.side == "referee" and g.available_at > now:
            text = t("dm.referee_reward_later", reward=reward, date=Date(g.available_at))
        elif g.side == "referee" and g.kind == RewardKind.ROLE:
            text = t("dm.referee_reward_role", role=g.value)
        elif g.side == "referee":
            text = t("dm.referee_reward", reward=reward)
        elif g.available_at > now:
            text = t("dm.reward_held", label=g.label, reward=reward, date=Date(g.available_at))
        elif g.kind == RewardKind.ROLE:
            text = t("dm.reward_role", label=g.label, role=g.value)
        else:
            text = t("dm.reward_ready", label=g.label, reward=reward)
        rows.append(
            to_user(home[g.participant_id], person.user_id, text, locale, f"granted:{g.id}", now)
        )
    await repo.add_outbox(rows)
    await apply_roles(repo, [g for g in created if g.available_at <= now], people, now)


async def apply_roles(
    repo: Repository, grants: Iterable[Grant], people: dict[int, Participant], now: int
) -> None:
    """Role rewards are applied, not claimed: give the role in every community the member is in."""
    due = [g for g in grants if g.kind == RewardKind.ROLE and g.status == GrantStatus.AVAILABLE]
    if not due:
        return
    memberships = await repo.memberships_of({g.participant_id for g in due})
    places = await repo.communities_by_ids(
        {m.community_id for ms in memberships.values() for m in ms if m.left_at is None}
    )
    rows = []
    for g in due:
        person = people[g.participant_id]
        for m in memberships.get(person.id, []):
            community = places.get(m.community_id)
            if m.left_at is None and community is not None:
                rows.append(
                    role_change(
                        community,
                        person.user_id,
                        g.value,
                        True,
                        f"role-grant:{g.id}:{community.id}",
                        now,
                    )
                )
    await repo.mark_redeemed_many([g.id for g in due], now)
    await repo.add_outbox(rows)


async def apply_due_roles(repo: Repository, ctx: EngineContext) -> int:
    """Role grants whose holding period has just ended."""
    now = ctx.clock.now()
    due = await repo.due_role_grants(now, ctx.sweep_batch)
    people = await repo.participants(g.participant_id for g in due)
    await apply_roles(repo, due, people, now)
    return len(due)


async def revoke_above_count(
    repo: Repository,
    ctx: EngineContext,
    referrer_id: int,
    community: Community,
    s: ProgramSettings,
    reason: str,
    now: int,
) -> int:
    """After a converted referral is taken back: revoke what the new count no longer reaches.

    Unredeemed rewards are revoked; a role (a standing status, not a claim) is taken away too.
    Redeemed coupons, points and messages stay with the member.
    """
    count = (await repo.converted_counts([referrer_id])).get(referrer_id, 0)
    thresholds = {tier.id: tier.threshold for tier in await repo.tiers(community.program_id)}
    person = await repo.participant(referrer_id)
    assert person is not None
    revoked = [
        g
        for g in await repo.grants_of(referrer_id)
        if g.side == "referrer"
        and g.tier_id is not None
        and thresholds.get(g.tier_id, 0) > count
        and (
            g.status in (GrantStatus.AVAILABLE, GrantStatus.HELD)
            or (g.status == GrantStatus.REDEEMED and g.kind == RewardKind.ROLE)
        )
    ]
    if not revoked:
        return 0
    await repo.revoke_grants([g.id for g in revoked], now)
    rows = []
    for g in revoked:
        if g.kind == RewardKind.ROLE:
            for m in (await repo.memberships_of([referrer_id])).get(referrer_id, []):
                c = await repo.community_by_id(m.community_id)
                if c is not None and m.left_at is None:
                    rows.append(
                        role_change(
                            c, person.user_id, g.value, False, f"role-revoke:{g.id}:{c.id}", now
                        )
                    )
        rows.append(
            to_user(
                community,
                person.user_id,
                t(
                    "dm.reward_revoked",
                    label=g.label,
                    reward=reward_text(g.kind, g.value),
                    reason=reason,
                    count=count,
                ),
                communities.locale_of(s, person.locale),
                f"revoked:{g.id}",
                now,
            )
        )
    await repo.add_outbox(rows)
    return len(revoked)


@dataclass(frozen=True, slots=True)
class Redeemed:
    label: str
    text: Text


async def redeem(
    repo: Repository,
    ctx: EngineContext,
    community: Community,
    person: Participant,
    which: str | None,
) -> list[Redeemed]:
    now = ctx.clock.now()
    s = await communities.settings_of(repo, ctx, community.program_id)
    mine = await repo.grants_of(person.id)
    claimable = [g for g in mine if g.status == GrantStatus.AVAILABLE and g.kind != RewardKind.ROLE]
    ready = [g for g in claimable if g.available_at <= now]
    if which is not None:
        wanted = which.strip().lower()
        matching = [g for g in claimable if g.label.lower() == wanted]
        if not matching and any(
            g.label.lower() == wanted and g.status == GrantStatus.REDEEMED for g in mine
        ):
            raise UserError("redeem.already", reward=which[:60])
        if not matching:
            names = ", ".join(sorted({g.label for g in ready}))
            if not names:
                raise UserError("redeem.unknown_none_ready", reward=which[:60])
            raise UserError("redeem.unknown", reward=which[:60], available=names)
        ready = [g for g in matching if g.available_at <= now]
        if not ready:
            raise UserError(
                "redeem.not_yet",
                reward=matching[0].label,
                date=Date(min(g.available_at for g in matching)),
            )
    if not ready:
        later = [g for g in claimable if g.available_at > now]
        if later:
            raise UserError(
                "redeem.not_yet",
                reward=later[0].label,
                date=Date(min(g.available_at for g in later)),
            )
        raise UserError("redeem.nothing")
    out: list[Redeemed] = []
    pools_used: set[str] = set()
    for g in ready:
        coupon = None
        if g.kind == RewardKind.COUPON:
            coupon = await repo.claim_coupon(community.program_id, g.value, g.id)
            pools_used.add(g.value)
            if coupon is None:
                out.append(Redeemed(g.label, t("redeem.pool_empty", reward=g.label)))
                continue
        if not await repo.mark_redeemed(g.id, now, coupon):
            continue  # redeemed concurrently: the other call told the member
        if g.kind == RewardKind.CHANNEL_ACCESS:
            await repo.add_outbox(
                [
                    channel_access(
                        community,
                        person.user_id,
                        g.value,
                        communities.locale_of(s, person.locale),
                        f"channel-access:{g.id}",
                        now,
                    )
                ]
            )
        out.append(Redeemed(g.label, _redeemed_text(g, coupon)))
    await _warn_low_stock(repo, community.program_id, pools_used, s, now)
    return out


def _redeemed_text(g: Grant, coupon: str | None) -> Text:
    if g.kind == RewardKind.COUPON:
        return t("redeem.coupon", reward=g.label, coupon=coupon or "")
    if g.kind == RewardKind.POINTS:
        return t("redeem.points", reward=g.label, points=int(g.value or 0))
    if g.kind == RewardKind.CHANNEL_ACCESS:
        return t("redeem.channel_access", reward=g.label, channel=g.value)
    return t("redeem.message", reward=g.label, message=g.value)


async def _warn_low_stock(
    repo: Repository, program_id: int, pools: set[str], s: ProgramSettings, now: int
) -> None:
    if not pools or s.admin_community_id is None:
        return
    community = await repo.community_by_id(s.admin_community_id)
    if community is None:
        return
    stock = await repo.coupon_stock(program_id)
    rows = []
    for pool in sorted(pools):
        free, _total = stock.get(pool, (0, 0))
        if free > s.coupon_low_stock:
            continue
        text = (
            t("admin.pool_empty", pool=pool)
            if free == 0
            else t("admin.pool_low", pool=pool, free=free)
        )
        rows.append(
            to_channel(
                community,
                s.admin_channel,
                text,
                s.language,
                f"stock:{program_id}:{pool}:{free}:{_stock_epoch(stock, pool)}",
                now,
            )
        )
    await repo.add_outbox(rows)


def _stock_epoch(stock: dict[str, tuple[int, int]], pool: str) -> int:
    # A refill raises the total, so the same free count after a refill warns again.
    return stock.get(pool, (0, 0))[1]


async def announce(repo: Repository, ctx: EngineContext) -> tuple[int, int]:
    """Announce newly reached tiers in the program's announcement channel, once each.

    Returns (grants handled, announcements queued).
    """
    now = ctx.clock.now()
    pending = await repo.unannounced_grants(ctx.sweep_batch)
    if not pending:
        return 0, 0
    settings = await communities.settings_for(repo, ctx, {g.program_id for g in pending})
    people = await repo.participants(g.participant_id for g in pending)
    places = await repo.communities_by_ids(
        {s.announce_community_id for s in settings.values() if s.announce_community_id}
    )
    rows = []
    for g in pending:
        s = settings[g.program_id]
        if g.side != "referrer" or s.announce_community_id is None:
            continue
        community = places.get(s.announce_community_id)
        if community is None or community.program_id != g.program_id:
            continue
        person = people[g.participant_id]
        rows.append(
            to_channel(
                community,
                s.announce_channel,
                t(
                    "announce.tier",
                    member=Mention(person.user_id, person.display_name),
                    tier=g.label,
                    reward=reward_text(g.kind, g.value),
                ),
                s.language,
                f"announce:{g.id}",
                now,
            )
        )
    await repo.add_outbox(rows)
    await repo.mark_announced([g.id for g in pending], now)
    return len(pending), len(rows)
