"""Tiers and rewards: granted exactly once (UNIQUE dedupe key), redeemed once, revocable."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bot.engine import communities
from bot.engine.clock import DAY
from bot.engine.context import EngineContext
from bot.engine.errors import UserError
from bot.engine.models import (
    APPLIED_KINDS,
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
    reward_kind = RewardKind(kind)
    if reward_kind is RewardKind.POINTS and value.isdigit():
        # "1 point", "100 points": the count picks the plural form.
        return t("reward.points", value=value, count=int(value))
    return t(f"reward.{reward_kind.value}", value=value)


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
        # Told at once when there is no holding period; otherwise when the period ends.
        "ready_told_at": now if s.holding_days <= 0 else None,
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
    ctx: EngineContext | None = None,
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
        elif g.side == "referee" and g.kind in APPLIED_KINDS:
            text = t(f"dm.referee_reward_{g.kind.value}", role=g.value)
        elif g.side == "referee":
            text = t("dm.referee_reward", reward=reward)
        elif g.available_at > now:
            text = t("dm.reward_held", label=g.label, reward=reward, date=Date(g.available_at))
        elif g.kind in APPLIED_KINDS:
            text = t(f"dm.reward_{g.kind.value}", label=g.label, role=g.value)
        else:
            text = t("dm.reward_ready", label=g.label, reward=reward)
        rows.append(
            to_user(home[g.participant_id], person.user_id, text, locale, f"granted:{g.id}", now)
        )
    await repo.add_outbox(rows)
    await apply_roles(repo, [g for g in created if g.available_at <= now], people, now, ctx)


async def apply_roles(
    repo: Repository,
    grants: Iterable[Grant],
    people: dict[int, Participant],
    now: int,
    ctx: EngineContext | None = None,
) -> None:
    """Role rewards are applied, not claimed: give the role in every community the member is in.

    Applying bumps the grant's epoch, so a role given again (after a hold) has keys of its own.
    """
    due = [g for g in grants if g.kind in APPLIED_KINDS and g.status == GrantStatus.AVAILABLE]
    if not due:
        return
    epochs = await repo.apply_role_grants([g.id for g in due], now)
    applied = [(g, epochs[g.id]) for g in due if g.id in epochs]
    await repo.add_outbox(await role_changes(repo, applied, people, give=True, now=now, ctx=ctx))


def role_key(give: bool, grant_id: int, community_id: int, epoch: int, join_count: int) -> str:
    """One role change per (grant, community, application of the grant, join of the member).

    A role is on in a community while the grant is applied and the member is there; each time
    that starts, either the grant's epoch or the membership's join count is new, so a rejoin or
    a re-approval queues a new item, and a redelivery of the same one is a no-op.
    """
    kind = "role-grant" if give else "role-revoke"
    return f"{kind}:{grant_id}:{community_id}:{epoch}:{join_count}"


async def role_changes(
    repo: Repository,
    grants: list[tuple[Grant, int]],
    people: dict[int, Participant],
    *,
    give: bool,
    now: int,
    ctx: EngineContext | None = None,
) -> list[dict]:
    """A grant_role / revoke_role item per (grant, epoch) for every community the member is in
    (where the platform has roles)."""
    if not grants:
        return []
    memberships = await repo.memberships_of({g.participant_id for g, _ in grants})
    places = await repo.communities_by_ids(
        {m.community_id for ms in memberships.values() for m in ms if m.left_at is None}
    )
    missing = {g.participant_id for g, _ in grants} - set(people)
    people = people | (await repo.participants(missing) if missing else {})
    rows = []
    for g, epoch in grants:
        person = people[g.participant_id]
        for m in memberships.get(person.id, []):
            community = places.get(m.community_id)
            if m.left_at is None and community is not None and _applies(ctx, community, g.kind):
                key = role_key(give, g.id, community.id, epoch, m.join_count)
                rows.append(role_change(community, person.user_id, g.value, give, key, now))
    return rows


def _has_roles(ctx: EngineContext | None, community: Community) -> bool:
    """A program may span a platform without roles (Telegram) or tags (Discord)."""
    return ctx is None or ctx.caps(community.platform).roles or ctx.caps(community.platform).tags


def _applies(ctx: EngineContext | None, community: Community, kind: RewardKind) -> bool:
    """A role where the platform has roles, a member tag where it has tags; nothing else."""
    if ctx is None:
        return True
    caps = ctx.caps(community.platform)
    return caps.tags if kind == RewardKind.TAG else caps.roles


async def roles_on_arrival(
    repo: Repository,
    arrivals: list[tuple[int, Community, int]],
    now: int,
    ctx: EngineContext | None = None,
) -> None:
    """A member arrives in a community of the program (a join, a rejoin, first seen there):
    every role reward they hold is given there too. ``arrivals``: (participant, community,
    join count of that membership)."""
    arrivals = [a for a in arrivals if _has_roles(ctx, a[1])]
    if not arrivals:
        return
    applied = await repo.applied_roles_of({pid for pid, _, _ in arrivals})
    if not applied:
        return
    people = await repo.participants(applied)
    rows = [
        role_change(
            community,
            people[pid].user_id,
            g.value,
            True,
            role_key(True, g.id, community.id, g.epoch, join_count),
            now,
        )
        for pid, community, join_count in arrivals
        for g in applied.get(pid, [])
        if g.program_id == community.program_id and _applies(ctx, community, g.kind)
    ]
    await repo.add_outbox(rows)


async def apply_due_roles(repo: Repository, ctx: EngineContext) -> int:
    """Rewards whose holding period has just ended: the member is told; roles are given."""
    now = ctx.clock.now()
    ready = await repo.ready_untold_grants(now, ctx.sweep_batch)
    if ready:
        await _tell_ready(repo, ctx, ready, now)
    due = await repo.due_role_grants(now, ctx.sweep_batch)
    people = await repo.participants(g.participant_id for g in due)
    await apply_roles(repo, due, people, now, ctx)
    return len(due) + len(ready)


async def _tell_ready(repo: Repository, ctx: EngineContext, ready: list[Grant], now: int) -> None:
    people = await repo.participants(g.participant_id for g in ready)
    settings = await communities.settings_for(repo, ctx, {g.program_id for g in ready})
    home = await homes(repo, people)
    rows = []
    for g in ready:
        person, where = people.get(g.participant_id), home.get(g.participant_id)
        if person is None or where is None:
            continue
        reward = reward_text(g.kind, g.value)
        if g.kind in APPLIED_KINDS and g.side == "referee":
            text = t(f"dm.referee_{g.kind.value}_ready", role=g.value)
        elif g.kind in APPLIED_KINDS:
            text = t(f"dm.{g.kind.value}_ready", label=g.label, role=g.value)
        elif g.side == "referee":
            text = t("dm.referee_ready", reward=reward)
        else:
            text = t("dm.reward_now_ready", label=g.label, reward=reward)
        locale = communities.locale_of(settings[g.program_id], person.locale)
        rows.append(to_user(where, person.user_id, text, locale, f"ready:{g.id}", now))
    await repo.add_outbox(rows)
    await repo.mark_ready_told([g.id for g in ready], now)


async def homes(repo: Repository, people: dict[int, Participant]) -> dict[int, Community]:
    """Where to reach each member privately: the community they joined last and are still in
    (or, if they left everywhere, the last one they were in)."""
    memberships = await repo.memberships_of(people)
    chosen = {
        pid: max(ms, key=lambda m: (m.left_at is None, m.joined_at or 0, m.id))
        for pid, ms in memberships.items()
        if ms
    }
    places = await repo.communities_by_ids({m.community_id for m in chosen.values()})
    return {pid: places[m.community_id] for pid, m in chosen.items() if m.community_id in places}


def _takes_back(g: Grant) -> bool:
    """Grants a take-back withdraws: not yet redeemed, or a role (a standing status)."""
    return g.status in (GrantStatus.AVAILABLE, GrantStatus.HELD) or (
        g.status == GrantStatus.REDEEMED and g.kind in APPLIED_KINDS
    )


async def _revoke(
    repo: Repository, grants: list[Grant], now: int, ctx: EngineContext | None = None
) -> list[dict]:
    """Revoke grants; roles still given are taken away everywhere. Returns the role changes."""
    await repo.revoke_grants([g.id for g in grants], now)
    applied = [
        (g, g.epoch)
        for g in grants
        if g.kind in APPLIED_KINDS and g.status == GrantStatus.REDEEMED
    ]
    return await role_changes(repo, applied, {}, give=False, now=now, ctx=ctx)


async def hold(
    repo: Repository,
    ctx: EngineContext,
    grants: list[Grant],
    home: dict[int, Community],
    now: int,
) -> None:
    """Fraud review holds these grants: a role given is taken off until a moderator approves."""
    epochs = await repo.hold_grants([g.id for g in grants])
    held = [g for g in grants if g.id in epochs]
    if not held:
        return
    applied = [
        (g, g.epoch)
        for g in held
        if g.kind in APPLIED_KINDS and g.status == GrantStatus.REDEEMED
    ]
    people = await repo.participants(g.participant_id for g in held)
    rows = await role_changes(repo, applied, people, give=False, now=now, ctx=ctx)
    settings = await communities.settings_for(repo, ctx, {g.program_id for g in held})
    for g in held:
        person, where = people[g.participant_id], home.get(g.participant_id)
        if where is None:
            continue
        rows.append(
            to_user(
                where,
                person.user_id,
                t("dm.reward_on_hold", label=g.label, reward=reward_text(g.kind, g.value)),
                communities.locale_of(settings[g.program_id], person.locale),
                f"held:{g.id}:{epochs[g.id]}",
                now,
            )
        )
    await repo.add_outbox(rows)


async def release(
    repo: Repository,
    ctx: EngineContext,
    grants: list[Grant],
    home: dict[int, Community],
    now: int,
) -> None:
    """A moderator approved: held grants are available again, roles are given back."""
    epochs = await repo.release_grants([g.id for g in grants if g.status == GrantStatus.HELD])
    if not epochs:
        return
    people = await repo.participants(g.participant_id for g in grants if g.id in epochs)
    back = [g for g in await _reload(repo, people) if g.id in epochs]
    await apply_roles(repo, [g for g in back if g.available_at <= now], people, now, ctx)
    settings = await communities.settings_for(repo, ctx, {g.program_id for g in back})
    rows = []
    for g in back:
        person, where = people[g.participant_id], home.get(g.participant_id)
        if where is None:
            continue
        text = (
            t("dm.reward_released", label=g.label, reward=reward_text(g.kind, g.value))
            if g.available_at <= now
            else t(
                "dm.reward_released_later",
                label=g.label,
                reward=reward_text(g.kind, g.value),
                date=Date(g.available_at),
            )
        )
        rows.append(
            to_user(
                where,
                person.user_id,
                text,
                communities.locale_of(settings[g.program_id], person.locale),
                f"released:{g.id}:{epochs[g.id]}",
                now,
            )
        )
    await repo.add_outbox(rows)
    # The release notice says the reward is ready: no separate "ready" notice for it.
    await repo.mark_ready_told([g.id for g in back if g.available_at <= now], now)


async def _reload(repo: Repository, people: dict[int, Participant]) -> list[Grant]:
    out: list[Grant] = []
    for pid in people:
        out += await repo.grants_of(pid)
    return out


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

    Unredeemed rewards are revoked; a role (a standing status, not a claim) is taken away too,
    in every community where the member is. Redeemed coupons, points and messages stay.
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
        and _takes_back(g)
    ]
    if not revoked:
        return 0
    rows = await _revoke(repo, revoked, now, ctx)
    for g in revoked:
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


async def revoke_referee(
    repo: Repository,
    ctx: EngineContext,
    referral: Referral,
    community: Community,
    s: ProgramSettings,
    reason: str,
    now: int,
) -> int:
    """A referral taken back takes the newcomer's own reward with it, unless already redeemed
    (a role is taken away even then). The newcomer is told why."""
    revoked = [g for g in await repo.grants_of_referrals([referral.id]) if _takes_back(g)]
    if not revoked:
        return 0
    rows = await _revoke(repo, revoked, now, ctx)
    people = await repo.participants(g.participant_id for g in revoked)
    for g in revoked:
        person = people[g.participant_id]
        rows.append(
            to_user(
                community,
                person.user_id,
                t("dm.referee_revoked", reward=reward_text(g.kind, g.value), reason=reason),
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
    claimable = [
        g for g in mine if g.status == GrantStatus.AVAILABLE and g.kind not in APPLIED_KINDS
    ]
    ready = [g for g in claimable if g.available_at <= now]
    if which is not None:
        wanted = which.strip().lower()
        matching = [g for g in claimable if g.label.lower() == wanted]
        if not matching and any(
            g.label.lower() == wanted and g.status == GrantStatus.REDEEMED for g in mine
        ):
            raise UserError("redeem.already", reward=which[:60])
        _refuse_held([g for g in mine if g.label.lower() == wanted] if not matching else [])
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
        _refuse_held(mine)
        raise UserError("redeem.nothing")
    out: list[Redeemed] = []
    pools_used: set[str] = set()
    for g in ready:
        coupon = None
        if g.kind == RewardKind.COUPON:
            coupon = await repo.claim_coupon(community.program_id, g.value, g.id)
            pools_used.add(g.value)
            if coupon is None:
                await repo.mark_waiting(g.id, now)  # told when the pool is refilled
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


async def tell_refilled(
    repo: Repository, ctx: EngineContext, program_id: int, pool: str, now: int
) -> int:
    """A pool got new codes: members whose redeem found it empty are told, longest waiting
    first, as many as there are free codes (the others keep waiting for the next refill)."""
    free, total = (await repo.coupon_stock(program_id)).get(pool, (0, 0))
    if free <= 0:
        return 0
    waiting = await repo.waiting_for_pool(program_id, pool, free)
    if not waiting:
        return 0
    people = await repo.participants(g.participant_id for g in waiting)
    home = await homes(repo, people)
    s = await communities.settings_of(repo, ctx, program_id)
    rows = [
        to_user(
            home[g.participant_id],
            people[g.participant_id].user_id,
            t("dm.coupons_back", label=g.label),
            communities.locale_of(s, people[g.participant_id].locale),
            # A refill raises the pool's total: each refill tells a waiting member once.
            f"refilled:{g.id}:{total}",
            now,
        )
        for g in waiting
        if g.participant_id in home
    ]
    await repo.add_outbox(rows)
    await repo.clear_waiting([g.id for g in waiting])
    return len(rows)


def _refuse_held(grants: list[Grant]) -> None:
    """A reward held for review can't be redeemed; say so rather than "no such reward"."""
    held = sorted({g.label for g in grants if g.status == GrantStatus.HELD})
    if held:
        raise UserError("redeem.on_hold", rewards=", ".join(held))


def _redeemed_text(g: Grant, coupon: str | None) -> Text:
    if g.kind == RewardKind.COUPON:
        return t("redeem.coupon", reward=g.label, coupon=coupon or "")
    if g.kind == RewardKind.POINTS:
        points = int(g.value or 0)
        return t("redeem.points", reward=g.label, points=points, count=points)
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
    # No public praise for someone who left every community of the program.
    memberships = await repo.memberships_of(people)
    present = {pid for pid, ms in memberships.items() if any(m.left_at is None for m in ms)}
    places = await repo.communities_by_ids(
        {s.announce_community_id for s in settings.values() if s.announce_community_id}
    )
    rows = []
    for g in pending:
        s = settings[g.program_id]
        if g.side != "referrer" or s.announce_community_id is None:
            continue
        if g.participant_id not in present or g.status in (GrantStatus.REVOKED, GrantStatus.HELD):
            continue  # gone, taken back or held for review before it was announced
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
