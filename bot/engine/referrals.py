"""The referral lifecycle: typed codes, the conversion sweep, taking a referral back.

pending -> converted | left | expired   (held / rejected belong to fraud review)
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from bot.engine import codes as codes_mod
from bot.engine import communities, members, rewards
from bot.engine.clock import DAY
from bot.engine.context import EngineContext
from bot.engine.errors import UserError
from bot.engine.events import JoinSource
from bot.engine.fraud import detectors, review
from bot.engine.leaderboard import period_keys
from bot.engine.models import CHANNEL, Community, Participant, Referral, ReferralStatus
from bot.engine.notify import to_user
from bot.engine.ports import Repository
from bot.engine.program_settings import ProgramSettings
from bot.engine.text import Moment, Text, t
from bot.engine.text_rules import printable


@dataclass(frozen=True, slots=True)
class ClaimResult:
    """A typed code either credits (``referrer``) or explains why not (``error``).

    A refused claim is still a result, not an exception: the failed attempt must be committed
    so that repeated guessing locks code entry.
    """

    referrer: str | None = None
    error: Text | None = None


async def claim_code(
    repo: Repository, ctx: EngineContext, community: Community, person: Participant, entered: str
) -> ClaimResult:
    now = ctx.clock.now()
    s = await communities.settings_of(repo, ctx, community.program_id)
    if person.code_lock_until is not None and person.code_lock_until > now:
        return ClaimResult(error=t("code.locked", until=Moment(person.code_lock_until)))
    if codes_mod.malformed(entered):
        # Too long or with control characters: a guess like any wrong code, never echoed.
        return await _failed_attempt(repo, ctx, person, entered, now, revoked=False, shown=False)
    value = await _entered_code(repo, community.program_id, entered)
    code = (await repo.codes_by_value([value])).get(value) if value else None
    if code is not None and code.program_id == community.program_id and code.revoked_at:
        owner = await repo.participant(code.participant_id)
        if owner is not None and owner.banned_at is not None:
            # A banned member's old code: not a guess, but worth a moderator's look.
            if s.detects("banned"):
                flag = detectors.banned_flag(
                    community.program_id, owner, person, f"banned:{person.id}"
                )
                await review.record(repo, ctx, [flag], now)
            return ClaimResult(error=t("code.inactive"))
    if code is None or code.program_id != community.program_id or code.revoked_at is not None:
        return await _failed_attempt(repo, ctx, person, entered, now, revoked=code is not None)
    if code.participant_id == person.id:
        raise UserError("code.own")
    existing = await repo.referral_of_referred(community.program_id, person.id)
    if existing is not None:
        referrer = await repo.participant(existing.referrer_id)
        raise UserError("code.already", referrer=referrer.display_name if referrer else "?")
    if person.origin != "join" or person.first_joined_at is None:
        raise UserError("code.not_new")
    if now > person.first_joined_at + s.code_window_days * DAY:
        raise UserError("code.too_late", days=s.code_window_days)
    owner = await repo.participant(code.participant_id)
    owner_memberships = (await repo.memberships_of([code.participant_id])).get(
        code.participant_id, []
    )
    if owner is not None and owner.banned_at is not None:
        # Not an exception: the flag about the banned member's code must be committed.
        if s.detects("banned"):
            flag = detectors.banned_flag(community.program_id, owner, person, f"banned:{person.id}")
            await review.record(repo, ctx, [flag], now)
        return ClaimResult(error=t("code.inactive"))
    if owner is None or all(m.left_at is not None for m in owner_memberships):
        raise UserError("code.inactive")
    joined = person.first_joined_at
    row = members.pending_referral_row(
        community, owner.id, person.id, code.id, JoinSource.TYPED_CODE, joined, s, now
    )
    [referral_id] = await repo.insert_referrals([row])
    created = Referral(
        referral_id,
        row["program_id"],
        owner.id,
        person.id,
        code.id,
        community.id,
        row["source"],
        ReferralStatus.PENDING,
        now,
        row["due_at"],
        row["expires_at"],
        None,
        None,
        None,
    )
    flags = await detectors.on_new_referrals(
        repo, [created], {owner.id: owner, person.id: person}, {community.program_id: s}, now
    )
    await review.record(repo, ctx, flags, now)
    await repo.add_outbox([members.referrer_notice(community, owner, person, s, now)])
    return ClaimResult(referrer=owner.display_name)


async def _entered_code(repo: Repository, program_id: int, entered: str) -> str | None:
    """A typed code in canonical form; a pasted personal link gives the code it was made for."""
    links = codes_mod.link_forms(entered)
    if not links:
        return codes_mod.normalize(entered)
    known = await repo.code_of_link(program_id, links)
    return known if known is not None else codes_mod.code_in_link(links[0])


async def _failed_attempt(
    repo: Repository,
    ctx: EngineContext,
    person: Participant,
    entered: str,
    now: int,
    *,
    revoked: bool,
    shown: bool = True,
) -> ClaimResult:
    await repo.record_code_attempt(person.id, printable(entered), now)
    recent = await repo.code_attempts_since(person.id, now - ctx.code_attempt_window)
    if recent > ctx.code_attempt_limit:
        until = now + ctx.code_lock_seconds
        await repo.update_participants([{"pid": person.id, "code_lock_until": until}])
        s = await communities.settings_of(repo, ctx, person.program_id)
        if s.detects("code-guessing"):
            flag = detectors.guessing_flag(
                person.program_id, person, recent, ctx.code_attempt_window // 60
            )
            await review.record(repo, ctx, [flag], now)
        return ClaimResult(
            error=t(
                "code.locked_now",
                count=ctx.code_lock_seconds // 60,
                minutes=ctx.code_lock_seconds // 60,
                until=Moment(until),
            )
        )
    if not shown:
        return ClaimResult(error=t("code.malformed", max=codes_mod.MAX_ENTRY))
    return ClaimResult(error=t("code.revoked" if revoked else "code.unknown", code=entered[:40]))


def _eligible(s: ProgramSettings, messages: int, roles: set[str], time_only: bool) -> bool:
    """Due (min-days stayed) and active enough. In a broadcast channel nobody but the admins
    can post, so there time stayed alone converts: min-messages does not apply."""
    if not time_only and messages < s.min_messages:
        return False
    return s.required_role is None or s.required_role in roles


def _time_only(community: Community | None) -> bool:
    return community is not None and community.kind == CHANNEL


@dataclass(frozen=True, slots=True)
class SweepResult:
    looked_at: int
    converted: int
    expired: int
    left: int
    grants: int


async def sweep(repo: Repository, ctx: EngineContext) -> SweepResult:
    """One batch of due pending referrals -> converted, expired or looked at again later."""
    now = ctx.clock.now()
    due = await repo.due_referrals(now, ctx.sweep_batch)
    if not due:
        return SweepResult(0, 0, 0, 0, 0)
    settings = await communities.settings_for(repo, ctx, {r.program_id for r in due})
    referred = await repo.participants(r.referred_id for r in due)
    memberships = await repo.memberships_of(r.referred_id for r in due)
    where = await repo.communities_by_ids({r.community_id for r in due})
    updates: list[dict] = []
    converted: list[Referral] = []
    expired = left = 0
    for r in due:
        s = settings[r.program_id]
        mine = memberships.get(r.referred_id, [])
        active = [m for m in mine if m.left_at is None]
        person = referred[r.referred_id]
        roles = {role for m in active for role in m.roles}
        row = {
            "rid": r.id,
            "expect": r.status.value,  # compare-and-set: a lost race changes nothing
            "status": r.status.value,
            "due_at": r.due_at,
            "converted_at": None,
            "ended_at": None,
            "reason": None,
        }
        if not active:
            row |= {
                "status": ReferralStatus.LEFT.value,
                "ended_at": now,
                "reason": "left before converting",
            }
            left += 1
        elif _eligible(s, person.message_count, roles, _time_only(where.get(r.community_id))):
            # Dated when it became due, not when the sweep got to it (after downtime, the
            # conversion still lands in the right week and month).
            when = min(r.due_at, now)
            row |= {"status": ReferralStatus.CONVERTED.value, "converted_at": when}
            r.converted_at = when
            converted.append(r)
        elif now >= r.expires_at:
            row |= {
                "status": ReferralStatus.EXPIRED.value,
                "ended_at": now,
                "reason": "conversion window passed",
            }
            expired += 1
        else:
            row["due_at"] = min(now + ctx.recheck_seconds, r.expires_at)
        updates.append(row)
    won = await repo.update_referrals(updates)
    # Only transitions this transaction won have consequences (counts, grants, notices).
    converted = [r for r in converted if r.id in won]
    created = await _after_conversions(repo, ctx, converted, referred, settings, now)
    # Referrer patterns (leave-early, empty) show over time: look again at this batch's referrers.
    referrers = await repo.participants({r.referrer_id for r in due})
    flags = await detectors.referrer_patterns(repo, referrers, settings, now)
    await review.record(repo, ctx, flags, now)
    return SweepResult(len(due), len(converted), expired, left, created)


async def _after_conversions(
    repo: Repository,
    ctx: EngineContext,
    converted: list[Referral],
    referred: dict[int, Participant],
    settings: dict[int, ProgramSettings],
    now: int,
) -> int:
    if not converted:
        return 0
    bumps: dict[tuple[int, str, int], int] = defaultdict(int)
    for r in converted:
        for period in period_keys(r.converted_at or now):
            bumps[(r.program_id, period, r.referrer_id)] += 1
    await repo.bump_leaderboard([(p, period, pid, n) for (p, period, pid), n in bumps.items()])
    referrers = await repo.participants(r.referrer_id for r in converted)
    counts = await repo.converted_counts(referrers)
    comms = await repo.communities_by_ids({r.community_id for r in converted})
    home = {r.referrer_id: comms[r.community_id] for r in converted}
    home.update({r.referred_id: comms[r.community_id] for r in converted})
    # Each DM tells its own count: two conversions in one sweep say 1 and 2, not 2 and 2.
    in_batch: dict[int, int] = defaultdict(int)
    for r in converted:
        in_batch[r.referrer_id] += 1
    told: dict[int, int] = defaultdict(int)
    rows = []
    for r in converted:
        referrer = referrers[r.referrer_id]
        told[r.referrer_id] += 1
        count_then = counts.get(r.referrer_id, 0) - in_batch[r.referrer_id] + told[r.referrer_id]
        rows.append(
            to_user(
                comms[r.community_id],
                referrer.user_id,
                t(
                    "dm.referral_converted",
                    member=referred[r.referred_id].display_name,
                    count=count_then,
                ),
                communities.locale_of(settings[r.program_id], referrer.locale),
                f"converted:{r.id}",
                now,
            )
        )
    await repo.add_outbox(rows)
    tiers = await repo.tiers_for_programs({r.program_id for r in converted})
    grant_rows: list[dict] = []
    for program_id in sorted({r.program_id for r in converted}):
        mine = [r for r in converted if r.program_id == program_id]
        grant_rows += rewards.tier_grant_rows(
            program_id,
            {r.referrer_id: referrers[r.referrer_id] for r in mine},
            counts,
            tiers.get(program_id, []),
            settings[program_id],
            now,
        )
        grant_rows += rewards.referee_grant_rows(mine, referred, settings[program_id], now)
    created = await repo.insert_grants(grant_rows)
    await rewards.tell_granted(repo, created, referrers | referred, home, settings, now, ctx)
    return len(created)


async def take_back(
    repo: Repository, ctx: EngineContext, referral: Referral, reason: str, actor: str
) -> int:
    """Reject a referral. If it had converted, it stops counting: leaderboard and grants follow.

    Returns how many grants were revoked.
    """
    now = ctx.clock.now()
    if referral.status in (ReferralStatus.REJECTED,):
        raise UserError("referral.already_rejected", id=referral.id)
    was_converted = referral.status == ReferralStatus.CONVERTED
    held_after_conversion = referral.status == ReferralStatus.HELD and referral.converted_at
    won = await repo.update_referrals(
        [
            {
                "rid": referral.id,
                "expect": referral.status.value,
                "status": ReferralStatus.REJECTED.value,
                "due_at": referral.due_at,
                "converted_at": referral.converted_at,
                "ended_at": now,
                "reason": reason[:500],
            }
        ]
    )
    if referral.id not in won:
        return 0  # changed meanwhile (another process): its consequences are not ours to undo
    s = await communities.settings_of(repo, ctx, referral.program_id)
    community = await repo.community_by_id(referral.community_id)
    assert community is not None
    # The newcomer's own reward goes with the referral (held or not, unless redeemed).
    withdrawn = await rewards.revoke_referee(repo, ctx, referral, community, s, reason, now)
    if held_after_conversion:
        # Holding already took it off the leaderboard and held its rewards: revoke those.
        return withdrawn + await rewards.revoke_above_count(
            repo, ctx, referral.referrer_id, community, s, reason, now
        )
    if not was_converted or referral.converted_at is None:
        return withdrawn
    await repo.bump_leaderboard(
        [
            (referral.program_id, period, referral.referrer_id, -1)
            for period in period_keys(referral.converted_at)
        ]
    )
    return withdrawn + await rewards.revoke_above_count(
        repo, ctx, referral.referrer_id, community, s, reason, now
    )


async def revoke(
    repo: Repository, ctx: EngineContext, referral: Referral, reason: str, actor: str
) -> int:
    """An admin takes a referral back (``/referral-revoke``): as ``take_back``, and the
    referrer is told why. Returns how many grants were revoked."""
    withdrawn = await take_back(repo, ctx, referral, reason, actor)
    if referral.status in (ReferralStatus.LEFT, ReferralStatus.EXPIRED):
        return withdrawn  # it had stopped counting on its own: nothing changes for the referrer
    referrer = await repo.participant(referral.referrer_id)
    member = await repo.participant(referral.referred_id)
    community = await repo.community_by_id(referral.community_id)
    if referrer is not None and member is not None and community is not None:
        s = await communities.settings_of(repo, ctx, referral.program_id)
        await repo.add_outbox(
            [
                to_user(
                    community,
                    referrer.user_id,
                    t("dm.referral_revoked", member=member.display_name, reason=reason),
                    communities.locale_of(s, referrer.locale),
                    f"rejected:{referral.id}",
                    now=ctx.clock.now(),
                )
            ]
        )
    return withdrawn
