"""Recording flags and acting on them: risk, hold mode, the queue, approve / reject / ban.

Risk modes: ``off`` (detectors silent), ``flag`` (referrals count; moderators review),
``hold`` (a flagged referral counts only once a moderator approves it; the rewards it carried
are held meanwhile).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

from bot.engine import communities, referrals, rewards
from bot.engine.clock import DAY
from bot.engine.context import EngineContext
from bot.engine.errors import UserError
from bot.engine.fraud.detectors import NewFlag, combined_risk, self_referral_flag
from bot.engine.leaderboard import period_keys
from bot.engine.models import (
    APPLIED_KINDS,
    Community,
    FlagStatus,
    FraudFlag,
    Grant,
    GrantStatus,
    Participant,
    Referral,
    ReferralStatus,
)
from bot.engine.notify import to_channel, to_user
from bot.engine.ports import Repository
from bot.engine.program_settings import ProgramSettings
from bot.engine.rewards import tell_granted, tier_grant_rows
from bot.engine.text import Text, from_json, t

# Flags about a referrer's behaviour (as opposed to one referral, or a joining member).
REFERRER_DETECTORS = frozenset({"rejoin", "banned", "leave-early", "empty"})
POSTS_PER_BATCH = 20  # moderators get at most this many posts at once; the rest wait in the queue


async def record(
    repo: Repository, ctx: EngineContext, new: list[NewFlag], now: int
) -> list[FraudFlag]:
    """Store new flags (each detector flags a thing once), update risk, hold, tell moderators."""
    if not new:
        return []
    created = await repo.insert_flags([f.row(now) for f in new])
    if not created:
        return []
    settings = await communities.settings_for(repo, ctx, {f.program_id for f in created})
    touched = {f.referral_id for f in created if f.referral_id is not None}
    about = await repo.flags_about(touched, ())
    scores: dict[int, list[int]] = defaultdict(list)
    for f in about:
        if f.referral_id is not None and f.status == FlagStatus.OPEN:
            scores[f.referral_id].append(f.score)
    await repo.set_risk({rid: combined_risk(s) for rid, s in scores.items()})
    hold: list[Referral] = []
    for f in created:
        if settings[f.program_id].risk_mode != "hold":
            continue
        if f.referral_id is not None:
            referral = await repo.referral(f.referral_id)
            if referral is not None:
                hold.append(referral)
        elif f.detector in REFERRER_DETECTORS:
            hold += await repo.referrals_by([f.participant_id], ("pending",))
    await hold_referrals(repo, ctx, hold, now)
    await _post(repo, created, settings, now)
    return created


async def hold_referrals(
    repo: Repository, ctx: EngineContext, held: list[Referral], now: int
) -> None:
    """Pending and converted referrals stop counting until reviewed; their rewards are held."""
    unique = {
        r.id: r for r in held if r.status in (ReferralStatus.PENDING, ReferralStatus.CONVERTED)
    }
    if not unique:
        return
    won = await repo.update_referrals(
        [
            {
                "rid": r.id,
                "expect": r.status.value,
                "status": ReferralStatus.HELD.value,
                "due_at": r.due_at,
                "converted_at": r.converted_at,
                "ended_at": None,
                "reason": "held for review",
            }
            for r in unique.values()
        ]
    )
    was_converted = [
        r for r in unique.values() if r.status == ReferralStatus.CONVERTED and r.id in won
    ]
    await repo.bump_leaderboard(
        [
            (r.program_id, period, r.referrer_id, -1)
            for r in was_converted
            for period in period_keys(r.converted_at or now)
        ]
    )
    referrers = {r.referrer_id for r in was_converted}
    counts = await repo.converted_counts(referrers)
    held_grants: list[Grant] = []
    for referrer_id in referrers:
        program_id = next(r.program_id for r in was_converted if r.referrer_id == referrer_id)
        thresholds = {x.id: x.threshold for x in await repo.tiers(program_id)}
        held_grants += [
            g
            for g in await repo.grants_of(referrer_id)
            if g.side == "referrer"
            and _holdable(g)
            and thresholds.get(g.tier_id or 0, 0) > counts.get(referrer_id, 0)
        ]
    # Every reward the referral carried: the newcomer's own reward is held with it.
    held_grants += [
        g for g in await repo.grants_of_referrals(r.id for r in was_converted) if _holdable(g)
    ]
    await rewards.hold(repo, ctx, held_grants, await _homes(repo, was_converted), now)


def _holdable(g: Grant) -> bool:
    """Not yet redeemed, or a role (given now, taken off while held)."""
    return g.status == GrantStatus.AVAILABLE or (
        g.status == GrantStatus.REDEEMED and g.kind in APPLIED_KINDS
    )


async def _homes(repo: Repository, referrals_: list[Referral]) -> dict[int, Community]:
    """Both sides of each referral are told in the community where it was made."""
    comms = await repo.communities_by_ids({r.community_id for r in referrals_})
    home: dict[int, Community] = {}
    for r in referrals_:
        if r.community_id in comms:
            home.setdefault(r.referrer_id, comms[r.community_id])
            home.setdefault(r.referred_id, comms[r.community_id])
    return home


async def release_referrals(
    repo: Repository, ctx: EngineContext, held: list[Referral], now: int, event: int = 0
) -> None:
    """Approved: a held referral counts again (or goes back to waiting for conversion).

    Its held rewards come back (roles are given again) and the referrer is told. ``event``
    names the approval (the newest flag it closed), so each approval is told once.
    """
    held = [r for r in held if r.status == ReferralStatus.HELD]
    if not held:
        return
    won = await repo.update_referrals(
        [
            {
                "rid": r.id,
                "expect": ReferralStatus.HELD.value,
                "status": (
                    ReferralStatus.CONVERTED if r.converted_at else ReferralStatus.PENDING
                ).value,
                # A held pending referral could not convert before now: due at once if its
                # time has passed, and dated from the approval, not from before the review.
                "due_at": max(r.due_at, now) if not r.converted_at else r.due_at,
                "converted_at": r.converted_at,
                "ended_at": None,
                "reason": None,
            }
            for r in held
        ]
    )
    # Only transitions this transaction won have consequences (another process may have
    # decided meanwhile).
    held = [r for r in held if r.id in won]
    if not held:
        return
    home = await _homes(repo, held)
    await _tell_approved(repo, ctx, held, home, now, event)
    back = [r for r in held if r.converted_at]
    await repo.bump_leaderboard(
        [
            (r.program_id, period, r.referrer_id, 1)
            for r in back
            for period in period_keys(r.converted_at or now)
        ]
    )
    if not back:
        return
    referrers = await repo.participants(r.referrer_id for r in back)
    counts = await repo.converted_counts(referrers)
    settings = await communities.settings_for(repo, ctx, {r.program_id for r in back})
    within: list[Grant] = []
    for pid, person in referrers.items():
        thresholds = {x.id: x.threshold for x in await repo.tiers(person.program_id)}
        within += [
            g
            for g in await repo.grants_of(pid)
            if g.status == GrantStatus.HELD
            and g.side == "referrer"
            and thresholds.get(g.tier_id or 0, 0) <= counts.get(pid, 0)
        ]
    within += [
        g
        for g in await repo.grants_of_referrals(r.id for r in back)
        if g.status == GrantStatus.HELD
    ]
    await rewards.release(repo, ctx, within, home, now)
    rows = []
    for program_id in {r.program_id for r in back}:
        mine = {pid: p for pid, p in referrers.items() if p.program_id == program_id}
        tiers = await repo.tiers(program_id)
        rows += tier_grant_rows(program_id, mine, counts, tiers, settings[program_id], now)
    created = await repo.insert_grants(rows)
    await tell_granted(repo, created, referrers, home, settings, now, ctx)


async def _tell_approved(
    repo: Repository,
    ctx: EngineContext,
    released: list[Referral],
    home: dict[int, Community],
    now: int,
    event: int,
) -> None:
    people = await repo.participants(
        {r.referrer_id for r in released} | {r.referred_id for r in released}
    )
    settings = await communities.settings_for(repo, ctx, {r.program_id for r in released})
    rows = []
    for r in released:
        referrer, member = people.get(r.referrer_id), people.get(r.referred_id)
        where = home.get(r.referrer_id)
        if referrer is None or member is None or where is None:
            continue
        s = settings[r.program_id]
        text = (
            t("dm.referral_approved", member=member.display_name)
            if r.converted_at
            else t(
                "dm.referral_approved_pending",
                member=member.display_name,
                min_days=t("days", count=s.min_days),
                min_messages=t("messages", count=s.min_messages),
            )
        )
        rows.append(
            to_user(
                where,
                referrer.user_id,
                text,
                communities.locale_of(s, referrer.locale),
                f"approved:{r.id}:{event}",
                now,
            )
        )
    await repo.add_outbox(rows)


async def _post(
    repo: Repository, flags: list[FraudFlag], settings: dict[int, ProgramSettings], now: int
) -> None:
    """New flags go to the program's moderators' channel, with approve / reject / ban buttons."""
    rows = []
    per_program: dict[int, int] = defaultdict(int)
    for f in flags:
        s = settings[f.program_id]
        if s.moderator_community_id is None:
            continue
        per_program[f.program_id] += 1
        if per_program[f.program_id] > POSTS_PER_BATCH:
            continue
        community = await repo.community_by_id(s.moderator_community_id)
        if community is None:
            continue
        suspect = await _suspect(repo, f)
        buttons: tuple[tuple[Text, str], ...] = (
            (t("fraud.button.approve"), f"fraud-approve {f.id}"),
            (t("fraud.button.reject"), f"fraud-reject {f.id}"),
        )
        if suspect is not None:
            buttons += (
                (
                    t("fraud.button.ban", member=suspect.display_name),
                    f"fraud-ban {suspect.user_id}",
                ),
            )
        rows.append(
            to_channel(
                community,
                s.moderator_channel,
                t(
                    "fraud.posted",
                    id=f.id,
                    detector=f.detector,
                    score=f.score,
                    reason=from_json(f.reason),
                ),
                s.language,
                f"fraud-post:{f.id}",
                now,
                buttons,
            )
        )
    for program_id, count in per_program.items():
        if count > POSTS_PER_BATCH:
            s = settings[program_id]
            community = await repo.community_by_id(s.moderator_community_id or 0)
            if community is not None:
                rows.append(
                    to_channel(
                        community,
                        s.moderator_channel,
                        t("fraud.more_in_queue", count=count - POSTS_PER_BATCH),
                        s.language,
                        f"fraud-more:{program_id}:{flags[-1].id}",
                        now,
                    )
                )
    await repo.add_outbox(rows)


async def _suspect(repo: Repository, f: FraudFlag) -> Participant | None:
    """Whom a ban would hit: the referrer behind the flag."""
    if f.referral_id is not None:
        referral = await repo.referral(f.referral_id)
        return await repo.participant(referral.referrer_id) if referral else None
    if f.detector in REFERRER_DETECTORS:
        return await repo.participant(f.participant_id)
    return None


# -- moderator actions -----------------------------------------------------------------------


async def _flag_in(repo: Repository, community: Community, flag_id: int) -> FraudFlag:
    flag = await repo.flag(flag_id)
    if flag is None or flag.program_id != community.program_id:
        raise UserError("fraud.unknown_flag", id=flag_id)
    return flag


# A platform mention as people paste it: Discord's <@id> / <@!id>.
_MENTION = re.compile(r"^<@!?(\d{1,25})>$")


async def member_in(repo: Repository, community: Community, text: str) -> Participant:
    """The member a moderator named: an exact platform id (or mention) always wins over a
    display name, so nobody can hide behind another member's id as their name."""
    wanted = text.strip()
    if (mention := _MENTION.match(wanted)) is not None:
        wanted = mention.group(1)
    found = await repo.find_participants(community.program_id, wanted)
    by_id = [p for p in found if p.user_id == wanted.lstrip("@")]
    if len(by_id) == 1:
        return by_id[0]
    if not found:
        raise UserError("fraud.unknown_member", member=text[:60])
    if len(found) > 1:
        raise UserError(
            "fraud.ambiguous_member", member=text[:60], ids=", ".join(p.user_id for p in found)
        )
    return found[0]


async def _audit(
    repo: Repository, community: Community, actor: str, action: str, details: dict, now: int
) -> None:
    await repo.add_audit(community.program_id, community.id, actor, action, details, now)


@dataclass(frozen=True, slots=True)
class ReviewResult:
    flags: int  # flags closed
    referrals: int  # referrals released (approve) or taken back (reject)


async def approve(
    repo: Repository,
    ctx: EngineContext,
    community: Community,
    flag_ids: list[int],
    actor: str,
    note: str | None,
    now: int,
) -> ReviewResult:
    flags = [await _flag_in(repo, community, i) for i in flag_ids]
    open_ids = [f.id for f in flags if f.status == FlagStatus.OPEN]
    if not open_ids:
        raise UserError("fraud.already_reviewed", id=flag_ids[0])
    await repo.review_flags(open_ids, FlagStatus.APPROVED.value, actor, note, now)
    candidates: list[Referral] = []
    for f in flags:
        if f.referral_id is not None:
            r = await repo.referral(f.referral_id)
            candidates += [r] if r else []
        elif f.detector in REFERRER_DETECTORS:
            candidates += await repo.referrals_by([f.participant_id], ("held",))
    release = await _unflagged(repo, candidates)
    await release_referrals(repo, ctx, release, now, max(open_ids))
    await _audit(
        repo,
        community,
        actor,
        "fraud.approved",
        {"flags": open_ids, "released": [r.id for r in release], "note": note},
        now,
    )
    return ReviewResult(len(open_ids), len(release))


async def _unflagged(repo: Repository, candidates: list[Referral]) -> list[Referral]:
    """Held referrals with no open flag left on them or on their referrer's behaviour."""
    unique = {r.id: r for r in candidates if r.status == ReferralStatus.HELD}
    if not unique:
        return []
    flags = await repo.flags_about(unique, {r.referrer_id for r in unique.values()})
    blocked_refs = {f.referral_id for f in flags if f.status == FlagStatus.OPEN and f.referral_id}
    blocked_people = {
        f.participant_id
        for f in flags
        if f.status == FlagStatus.OPEN
        and f.referral_id is None
        and f.detector in REFERRER_DETECTORS
    }
    return [
        r
        for r in unique.values()
        if r.id not in blocked_refs and r.referrer_id not in blocked_people
    ]


async def reject(
    repo: Repository,
    ctx: EngineContext,
    community: Community,
    flag_ids: list[int],
    actor: str,
    reason: str,
    now: int,
) -> ReviewResult:
    flags = [await _flag_in(repo, community, i) for i in flag_ids]
    open_flags = [f for f in flags if f.status == FlagStatus.OPEN]
    if not open_flags:
        raise UserError("fraud.already_reviewed", id=flag_ids[0])
    await repo.review_flags(
        [f.id for f in open_flags], FlagStatus.REJECTED.value, actor, reason, now
    )
    targets: dict[int, Referral] = {}
    for f in open_flags:
        if f.referral_id is not None:
            r = await repo.referral(f.referral_id)
            if r is not None:
                targets[r.id] = r
        elif f.detector in REFERRER_DETECTORS:
            for r in await repo.referrals_by([f.participant_id], ("pending", "held")):
                targets[r.id] = r
    taken = await _take_back_all(repo, ctx, list(targets.values()), reason, actor, now)
    # The other open flags on a rejected referral are settled with it.
    others = [f.id for f in await repo.flags_about(targets, ()) if f.status == FlagStatus.OPEN]
    await repo.review_flags(others, FlagStatus.REJECTED.value, actor, reason, now)
    await _audit(
        repo,
        community,
        actor,
        "fraud.rejected",
        {"flags": [f.id for f in open_flags], "referrals": taken, "reason": reason},
        now,
    )
    return ReviewResult(len(open_flags), len(taken))


async def _take_back_all(
    repo: Repository, ctx: EngineContext, targets: list[Referral], reason: str, actor: str, now: int
) -> list[int]:
    taken = []
    for r in targets:
        if r.status in (ReferralStatus.REJECTED, ReferralStatus.LEFT, ReferralStatus.EXPIRED):
            continue
        await referrals.take_back(repo, ctx, r, reason, actor)
        taken.append(r.id)
        referrer = await repo.participant(r.referrer_id)
        member = await repo.participant(r.referred_id)
        home = await repo.community_by_id(r.community_id)
        if referrer is None or member is None or home is None:
            continue
        s = await communities.settings_of(repo, ctx, r.program_id)
        await repo.add_outbox(
            [
                to_user(
                    home,
                    referrer.user_id,
                    t("dm.referral_rejected", member=member.display_name, reason=reason),
                    communities.locale_of(s, referrer.locale),
                    f"rejected:{r.id}",
                    now,
                )
            ]
        )
    return taken


async def flags_of_member(repo: Repository, community: Community, person: Participant) -> list[int]:
    """Open flags about a member or about the referrals they made."""
    mine = await repo.referrals_by([person.id], ("pending", "held", "converted", "left", "expired"))
    flags = await repo.flags_about({r.id for r in mine}, {person.id})
    return [
        f.id for f in flags if f.status == FlagStatus.OPEN and f.program_id == community.program_id
    ]


async def ban(
    repo: Repository,
    ctx: EngineContext,
    community: Community,
    person: Participant,
    actor: str,
    reason: str,
    now: int,
) -> int:
    """Ban from the program: the code stops crediting, pending and held referrals are taken back."""
    if person.banned_at is not None:
        raise UserError("fraud.already_banned", member=person.display_name)
    await repo.set_ban(person.id, now, reason)
    code = await repo.active_code(person.id)
    if code is not None:
        await repo.revoke_code(code.id, now)
    targets = await repo.referrals_by([person.id], ("pending", "held"))
    taken = await _take_back_all(repo, ctx, targets, reason, actor, now)
    open_ids = await flags_of_member(repo, community, person)
    await repo.review_flags(open_ids, FlagStatus.REJECTED.value, actor, reason, now)
    await _audit(
        repo,
        community,
        actor,
        "fraud.banned",
        {"member": person.user_id, "reason": reason, "referrals": taken},
        now,
    )
    return len(taken)


async def unban(
    repo: Repository, community: Community, person: Participant, actor: str, now: int
) -> None:
    if person.banned_at is None:
        raise UserError("fraud.not_banned", member=person.display_name)
    await repo.set_ban(person.id, None, None)
    await _audit(repo, community, actor, "fraud.unbanned", {"member": person.user_id}, now)


async def link_accounts(
    repo: Repository,
    ctx: EngineContext,
    community: Community,
    a: Participant,
    b: Participant,
    actor: str,
    now: int,
) -> None:
    if a.id == b.id:
        raise UserError("fraud.link_same")
    if not await repo.link_identities(community.program_id, a.id, b.id, actor, now):
        raise UserError("fraud.already_linked", a=a.display_name, b=b.display_name)
    # Referrals already made between the two are self-referrals now that we know.
    between = [
        r
        for r in await repo.referrals_by([a.id, b.id], ("pending", "converted", "held"))
        if {r.referrer_id, r.referred_id} == {a.id, b.id}
    ]
    people = {a.id: a, b.id: b}
    settings = {
        community.program_id: await communities.settings_of(repo, ctx, community.program_id)
    }
    if between and settings[community.program_id].detects("self-referral"):
        await record(
            repo,
            ctx,
            [self_referral_flag(r, people) for r in between],
            now,
        )
    await _audit(
        repo, community, actor, "fraud.accounts_linked", {"a": a.user_id, "b": b.user_id}, now
    )


async def enforce_deadlines(repo: Repository, ctx: EngineContext) -> int:
    """Flags nobody reviewed in time are approved or rejected, as each program says."""
    now = ctx.clock.now()
    settings = await communities.settings_for(repo, ctx, await repo.programs_created())
    done = 0
    for program_id, s in settings.items():
        if s.review_deadline_days is None or s.risk_mode == "off":
            continue
        overdue = await repo.overdue_flags(program_id, now - s.review_deadline_days * DAY, 200)
        if not overdue:
            continue
        community = next(iter(await repo.program_communities(program_id)), None)
        if community is None:
            continue
        ids = [f.id for f in overdue]
        if s.review_deadline_action == "reject":
            await reject(repo, ctx, community, ids, "review deadline", "not reviewed in time", now)
        else:
            await approve(repo, ctx, community, ids, "review deadline", "not reviewed in time", now)
        done += len(ids)
    return done
