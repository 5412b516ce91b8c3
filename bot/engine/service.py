"""ReferralEngine: the one API that commands, platform adapters and jobs call.

Writes go through the store's group-commit writer; reads go to a read connection. The engine
holds no platform library and no SQL: it speaks in events, records and Text.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from bot.engine import (
    admin,
    communities,
    dead_letters,
    leaderboard,
    members,
    notify,
    observe,
    referrals,
    rewards,
    who_invited,
)
from bot.engine import codes as codes_mod
from bot.engine.admin import Actor
from bot.engine.clock import DAY
from bot.engine.context import EngineContext
from bot.engine.errors import UserError
from bot.engine.events import CommunityRef, MemberJoined, MemberLeft, MessagePosted, UserRef
from bot.engine.fraud import review
from bot.engine.members import Activity, JoinResult, LeaveResult
from bot.engine.models import (
    APPLIED_KINDS,
    AuditEntry,
    Community,
    DeadLetter,
    FraudFlag,
    Grant,
    GrantStatus,
    LeaderboardRow,
    Participant,
    Referral,
    RewardKind,
    Tier,
)
from bot.engine.ports import Repository, Store
from bot.engine.program_settings import ProgramSettings
from bot.engine.referrals import ClaimResult, SweepResult
from bot.engine.rewards import Redeemed

log = logging.getLogger(__name__)

LinkMaker = Callable[[Community, str], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class InviteInfo:
    code: str
    link: str
    settings: ProgramSettings
    tiers: list[Tier]


@dataclass(frozen=True, slots=True)
class StatusInfo:
    code: str | None
    counts: dict[str, int]
    current: Tier | None
    next: Tier | None
    available: list[Grant]
    later: list[Grant]
    points: int  # credited: points rewards redeemed
    settings: ProgramSettings
    held: list[Grant] = field(default_factory=list)  # on hold for a moderator's review
    points_unredeemed: int = 0  # granted, not yet redeemed (ready or still in holding)
    banned: bool = False  # banned from the program: no code, and /invite refuses one


@dataclass(frozen=True, slots=True)
class Standings:
    period: str
    top: list[LeaderboardRow]
    mine: tuple[int, int] | None


@dataclass(frozen=True, slots=True)
class ProgramOverview:
    program_id: int
    name: str
    settings: ProgramSettings
    tiers: list[Tier]
    communities: list[Community]
    stock: dict[str, tuple[int, int]]


@dataclass(frozen=True, slots=True)
class FlagDetail:
    flag: FraudFlag
    referral: Referral | None
    people: dict[int, Participant]
    referrer_id: int
    referrer_counts: dict[str, int]
    flags: list[FraudFlag]


class ReferralEngine:
    def __init__(self, store: Store, ctx: EngineContext) -> None:
        self.store = store
        self.ctx = ctx
        self._activity: dict[tuple[str, str, str], Activity] = {}
        # Batch operations must be the same objects every time: the writer groups by identity.
        self._joins = self._bind(members.process_joins)
        self._leaves = self._bind(members.process_leaves)
        self._activity_op = self._bind(members.flush_activity)

    def _bind(self, fn: Callable) -> Callable[[Repository, list], Awaitable[list]]:
        ctx = self.ctx

        async def op(repo: Repository, items: list) -> list:
            return await fn(repo, ctx, items)

        op.__qualname__ = f"batch:{fn.__name__}"
        return op

    # -- platform events --------------------------------------------------------------------

    async def member_joined(self, event: MemberJoined) -> JoinResult:
        result: JoinResult = await self.store.submit(self._joins, event)
        observe.emit(
            "join",
            platform=event.community.platform,
            source=event.source.value,
            outcome=result.outcome,
        )
        log.info(
            "event=member.joined platform=%s community=%s outcome=%s credited=%s",
            event.community.platform,
            event.community.external_id,
            result.outcome,
            result.referral_id is not None,
        )
        return result

    async def member_left(self, event: MemberLeft) -> LeaveResult:
        return await self.store.submit(self._leaves, event)

    def message_posted(self, event: MessagePosted) -> None:
        """Counted in memory; ``flush_activity`` writes all counts in one batched statement."""
        key = (event.community.platform, event.community.external_id, event.user.user_id)
        current = self._activity.get(key)
        if current is None:
            self._activity[key] = Activity(event.community, event.user, 1, event.roles)
        else:
            current.count += 1
            if event.roles is not None:
                current.roles = event.roles

    async def flush_activity(self) -> int:
        if not self._activity:
            return 0
        batch, self._activity = list(self._activity.values()), {}
        try:
            await self.store.submit(self._activity_op, batch)
        except Exception:
            for a in batch:  # put the counts back for the next flush
                key = (a.community.platform, a.community.external_id, a.user.user_id)
                if key in self._activity:
                    self._activity[key].count += a.count
                else:
                    self._activity[key] = a
            raise
        return len(batch)

    async def reconcile(
        self,
        ref: CommunityRef,
        present: list[UserRef],
        newcomers: Mapping[str, int] | None = None,
    ) -> members.ReconcileResult:
        """After downtime: who left while the bot was away leaves now; missed joins never credit
        (``newcomers``, first joins the platform dates, may still type a code)."""
        result = await self.store.write(
            lambda repo: members.reconcile(repo, self.ctx, ref, present, newcomers)
        )
        log.info(
            "event=community.reconciled platform=%s community=%s left=%d added=%d",
            ref.platform,
            ref.external_id,
            result.left,
            result.added,
        )
        return result

    async def roles_changed(self, ref: CommunityRef, user_id: str, roles: tuple[str, ...]) -> None:
        await self.store.write(lambda repo: members.set_roles(repo, self.ctx, ref, user_id, roles))

    # -- member commands --------------------------------------------------------------------

    async def touch(
        self, ref: CommunityRef, user: UserRef, roles: tuple[str, ...] | None = None
    ) -> tuple[Community, Participant]:
        """The member behind a command; a write only when something is new or changed."""
        cached = self.ctx.communities.get((ref.platform, ref.external_id))
        if cached is not None:

            async def known(repo: Repository) -> Participant | None:
                key = (cached.program_id, cached.platform, user.user_id)
                person = (await repo.participants_by_identity([key])).get(key)
                if person is None or person.display_name != user.display_name[:200]:
                    return None
                mine = (await repo.memberships_of([person.id])).get(person.id, [])
                here = next((m for m in mine if m.community_id == cached.id), None)
                if here is None or (roles is not None and tuple(roles) != here.roles):
                    return None
                return person

            person = await self.store.read(known)
            if person is not None:
                return cached, person
        return await self.store.write(lambda repo: members.touch(repo, self.ctx, ref, user, roles))

    async def invite(
        self, ref: CommunityRef, user: UserRef, make_link: LinkMaker, *, regenerate: bool = False
    ) -> InviteInfo:
        async def ensure(repo: Repository) -> tuple[Community, str, str | None]:
            community, person = await members.touch(repo, self.ctx, ref, user)
            if person.banned_at is not None:
                raise UserError("invite.banned")
            now = self.ctx.clock.now()
            if regenerate:
                current = await repo.active_code(person.id)
                if current is not None:
                    await self._retire_code(repo, person, current.id, now)
                    await repo.revoke_code(current.id, now)
                    await repo.add_audit(
                        community.program_id,
                        community.id,
                        person.display_name,
                        "code.regenerated",
                        {"old": current.code},
                        now,
                    )
            code = (await members.ensure_codes(repo, [person], now))[person.id]
            active = await repo.active_code(person.id)
            assert active is not None
            return community, code, await repo.link_for(active.id, community.id)

        community, code, link = await self.store.write(ensure)
        if link is None:
            url = await make_link(community, code)  # may call the platform: outside any transaction

            async def save(repo: Repository) -> str:
                active = (await repo.codes_by_value([code]))[code]
                return await repo.save_link(active.id, community.id, url, self.ctx.clock.now())

            link = await self.store.write(save)

        async def details(repo: Repository) -> InviteInfo:
            s = await communities.settings_of(repo, self.ctx, community.program_id)
            return InviteInfo(code, link, s, await repo.tiers(community.program_id))

        return await self.store.read(details)

    async def _retire_code(
        self, repo: Repository, person: Participant, code_id: int, now: int
    ) -> None:
        """`/invite new`: at most ``invite_new_per_day`` a day; the old platform links go too
        (queued with the change, so a crash can't leave them behind)."""
        limit = self.ctx.invite_new_per_day
        if await repo.codes_revoked_since(person.id, now - DAY) >= limit:
            raise UserError("invite.new_limit", count=limit)
        made = await repo.links_of_code(code_id)
        places = await repo.communities_by_ids({community_id for community_id, _ in made})
        await repo.add_outbox(
            [
                notify.link_revocation(places[cid], url, f"revoke-link:{code_id}:{cid}", now)
                for cid, url in made
                if cid in places
            ]
        )

    async def last_code(self, ref: CommunityRef, user: UserRef) -> str | None:
        """A member's most recent code even if it no longer credits (a banned member's old
        link still exists on the platform); None if they never had one."""
        community = await self.community(ref)

        async def op(repo: Repository) -> str | None:
            key = (community.program_id, community.platform, user.user_id)
            person = (await repo.participants_by_identity([key])).get(key)
            code = await repo.latest_code(person.id) if person is not None else None
            return code.code if code is not None else None

        return await self.store.read(op)

    async def links(self, ref: CommunityRef) -> dict[str, str]:
        """The personal links made in a community that still credit: url -> code.

        Adapters rebuild their link -> code maps from it after a restart.
        """
        community = await self.community(ref)
        return await self.store.read(lambda repo: repo.links_of_community(community.id))

    async def claim_code(self, ref: CommunityRef, user: UserRef, entered: str) -> ClaimResult:
        async def op(repo: Repository) -> ClaimResult:
            community, person = await members.touch(repo, self.ctx, ref, user)
            return await referrals.claim_code(repo, self.ctx, community, person, entered)

        return await self.store.write(op)

    async def status(self, ref: CommunityRef, user: UserRef) -> StatusInfo:
        community, person = await self.touch(ref, user)
        now = self.ctx.clock.now()

        async def op(repo: Repository) -> StatusInfo:
            s = await communities.settings_of(repo, self.ctx, community.program_id)
            counts = await repo.referral_counts(person.id)
            tiers = await repo.tiers(community.program_id)
            converted = counts.get("converted", 0)
            reached = [tier for tier in tiers if tier.threshold <= converted]
            upcoming = [tier for tier in tiers if tier.threshold > converted]
            grants = await repo.grants_of(person.id)
            code = await repo.active_code(person.id)
            usable = [
                g
                for g in grants
                if g.status == GrantStatus.AVAILABLE and g.kind not in APPLIED_KINDS
            ]
            # The balance is what was credited; points not yet redeemed are shown apart.
            points = sum(
                int(g.value)
                for g in grants
                if g.kind == RewardKind.POINTS and g.status == GrantStatus.REDEEMED
            )
            unredeemed = sum(
                int(g.value)
                for g in grants
                if g.kind == RewardKind.POINTS and g.status == GrantStatus.AVAILABLE
            )
            return StatusInfo(
                code=codes_mod.display(code.code) if code else None,
                counts=counts,
                current=reached[-1] if reached else None,
                next=upcoming[0] if upcoming else None,
                available=[g for g in usable if g.available_at <= now],
                # Roles are given, not claimed, but one in its holding period is shown too.
                later=[
                    g for g in grants if g.status == GrantStatus.AVAILABLE and g.available_at > now
                ],
                points=points,
                settings=s,
                held=[g for g in grants if g.status == GrantStatus.HELD],
                points_unredeemed=unredeemed,
                banned=person.banned_at is not None,
            )

        return await self.store.read(op)

    async def redeem(self, ref: CommunityRef, user: UserRef, which: str | None) -> list[Redeemed]:
        async def op(repo: Repository) -> list[Redeemed]:
            community, person = await members.touch(repo, self.ctx, ref, user)
            return await rewards.redeem(repo, self.ctx, community, person, which)

        return await self.store.write(op)

    async def rules(self, ref: CommunityRef) -> tuple[ProgramSettings, list[Tier]]:
        community = await self.community(ref)

        async def op(repo: Repository) -> tuple[ProgramSettings, list[Tier]]:
            s = await communities.settings_of(repo, self.ctx, community.program_id)
            return s, await repo.tiers(community.program_id)

        return await self.store.read(op)

    async def standings(self, ref: CommunityRef, user: UserRef, period: str) -> Standings:
        community, person = await self.touch(ref, user)
        key = leaderboard.period_key(period, self.ctx.clock.now())

        async def op(repo: Repository) -> Standings:
            top = await repo.leaderboard_top(community.program_id, key, 10)
            mine = await repo.leaderboard_rank(community.program_id, key, person.id)
            return Standings(period, top, mine)

        return await self.store.read(op)

    async def community(self, ref: CommunityRef) -> Community:
        async def op(repo: Repository) -> Community:
            found = await communities.resolve(repo, self.ctx, [ref], self.ctx.clock.now())
            return found[(ref.platform, ref.external_id)]

        cached = self.ctx.communities.get((ref.platform, ref.external_id))
        return cached if cached is not None else await self.store.write(op)

    # -- admin commands ---------------------------------------------------------------------

    async def _admin(
        self, ref: CommunityRef, fn: Callable[[Repository, Community], Awaitable]
    ) -> object:
        async def op(repo: Repository) -> object:
            found = await communities.resolve(repo, self.ctx, [ref], self.ctx.clock.now())
            return await fn(repo, found[(ref.platform, ref.external_id)])

        return await self.store.write(op)

    async def set_setting(
        self, ref: CommunityRef, actor: Actor, key: str, value: str
    ) -> ProgramSettings:
        return await self._admin(
            ref, lambda repo, c: admin.set_setting(repo, self.ctx, c, actor, key, value)
        )  # type: ignore[return-value]

    async def tier_add(
        self, ref: CommunityRef, actor: Actor, name: str, threshold: str, kind: str, value: str
    ) -> Tier:
        return await self._admin(
            ref,
            lambda repo, c: admin.tier_add(repo, self.ctx, c, actor, name, threshold, kind, value),
        )  # type: ignore[return-value]

    async def tier_edit(
        self, ref: CommunityRef, actor: Actor, name: str, threshold: str, kind: str, value: str
    ) -> Tier:
        return await self._admin(
            ref,
            lambda repo, c: admin.tier_edit(repo, self.ctx, c, actor, name, threshold, kind, value),
        )  # type: ignore[return-value]

    async def tier_remove(self, ref: CommunityRef, actor: Actor, name: str) -> Tier:
        return await self._admin(
            ref, lambda repo, c: admin.tier_remove(repo, self.ctx, c, actor, name)
        )  # type: ignore[return-value]

    async def referee_reward(
        self, ref: CommunityRef, actor: Actor, kind: str, value: str
    ) -> ProgramSettings:
        return await self._admin(
            ref, lambda repo, c: admin.set_referee_reward(repo, self.ctx, c, actor, kind, value)
        )  # type: ignore[return-value]

    async def add_coupons(
        self, ref: CommunityRef, actor: Actor, pool: str, codes: str
    ) -> tuple[int, int, int]:
        return await self._admin(
            ref, lambda repo, c: admin.add_coupons(repo, self.ctx, c, actor, pool, codes)
        )  # type: ignore[return-value]

    async def link_token(self, ref: CommunityRef, actor: Actor) -> str:
        return await self._admin(
            ref, lambda repo, c: admin.issue_link_token(repo, self.ctx, c, actor)
        )  # type: ignore[return-value]

    async def link_program(self, ref: CommunityRef, actor: Actor, token: str) -> int:
        return await self._admin(
            ref, lambda repo, c: admin.link_with_token(repo, self.ctx, c, actor, token)
        )  # type: ignore[return-value]

    async def revoke_referral(
        self, ref: CommunityRef, actor: Actor, referral_id: int, reason: str
    ) -> int:
        async def fn(repo: Repository, c: Community) -> int:
            referral = await repo.referral(referral_id)
            if referral is None or referral.program_id != c.program_id:
                raise UserError("referral.unknown", id=referral_id)
            revoked = await referrals.revoke(repo, self.ctx, referral, reason, str(actor))
            await repo.add_audit(
                c.program_id,
                c.id,
                str(actor),
                "referral.revoked",
                {"referral": referral_id, "reason": reason, "grants_revoked": revoked},
                self.ctx.clock.now(),
            )
            return revoked

        return await self._admin(ref, fn)  # type: ignore[return-value]

    async def overview(self, ref: CommunityRef) -> ProgramOverview:
        community = await self.community(ref)

        async def op(repo: Repository) -> ProgramOverview:
            program = await repo.program(community.program_id)
            assert program is not None
            return ProgramOverview(
                community.program_id,
                program[0],
                await communities.settings_of(repo, self.ctx, community.program_id),
                await repo.tiers(community.program_id),
                await repo.program_communities(community.program_id),
                await repo.coupon_stock(community.program_id),
            )

        return await self.store.read(op)

    async def audit(self, ref: CommunityRef, limit: int) -> list[AuditEntry]:
        community = await self.community(ref)
        return await self.store.read(lambda repo: admin.audit(repo, community, limit))

    # -- fraud review (moderators) -----------------------------------------------------------

    async def fraud_queue(
        self, ref: CommunityRef, riskiest: bool, page: int, per_page: int = 10
    ) -> tuple[list[FraudFlag], int]:
        community = await self.community(ref)
        return await self.store.read(
            lambda repo: repo.flag_queue(
                community.program_id, riskiest, per_page, (page - 1) * per_page
            )
        )

    async def fraud_show(self, ref: CommunityRef, flag_id: int) -> FlagDetail:
        community = await self.community(ref)

        async def op(repo: Repository) -> FlagDetail:
            flag = await repo.flag(flag_id)
            if flag is None or flag.program_id != community.program_id:
                raise UserError("fraud.unknown_flag", id=flag_id)
            referral = await repo.referral(flag.referral_id) if flag.referral_id else None
            referrer_id = referral.referrer_id if referral else flag.participant_id
            people = await repo.participants(
                {referrer_id, flag.participant_id} | ({referral.referred_id} if referral else set())
            )
            flags = await repo.flags_about(
                {flag.referral_id} if flag.referral_id else set(), {flag.participant_id}
            )
            return FlagDetail(
                flag, referral, people, referrer_id, await repo.referral_counts(referrer_id), flags
            )

        return await self.store.read(op)

    async def fraud_review(
        self,
        ref: CommunityRef,
        actor: Actor,
        flag_ids: list[int] | None,
        member: str | None,
        approve: bool,
        note: str | None,
    ) -> review.ReviewResult:
        """Approve or reject flags by id, or every open flag about one member's referrals."""

        async def fn(repo: Repository, c: Community) -> review.ReviewResult:
            ids = flag_ids or []
            if member is not None:
                person = await review.member_in(repo, c, member)
                ids = await review.flags_of_member(repo, c, person)
                if not ids:
                    raise UserError("fraud.none_open", member=person.display_name)
            now = self.ctx.clock.now()
            if approve:
                return await review.approve(repo, self.ctx, c, ids, str(actor), note, now)
            return await review.reject(
                repo, self.ctx, c, ids, str(actor), note or "did not pass review", now
            )

        return await self._admin(ref, fn)  # type: ignore[return-value]

    async def fraud_ban(
        self, ref: CommunityRef, actor: Actor, member: str, reason: str, ban: bool = True
    ) -> tuple[Participant, int]:
        async def fn(repo: Repository, c: Community) -> tuple[Participant, int]:
            person = await review.member_in(repo, c, member)
            now = self.ctx.clock.now()
            if not ban:
                await review.unban(repo, c, person, str(actor), now)
                return person, 0
            return person, await review.ban(repo, self.ctx, c, person, str(actor), reason, now)

        return await self._admin(ref, fn)  # type: ignore[return-value]

    async def fraud_link(
        self, ref: CommunityRef, actor: Actor, a: str, b: str
    ) -> tuple[Participant, Participant]:
        async def fn(repo: Repository, c: Community) -> tuple[Participant, Participant]:
            first, second = await review.member_in(repo, c, a), await review.member_in(repo, c, b)
            await review.link_accounts(
                repo, self.ctx, c, first, second, str(actor), self.ctx.clock.now()
            )
            return first, second

        return await self._admin(ref, fn)  # type: ignore[return-value]

    async def referrals_of(
        self, ref: CommunityRef, member: str, limit: int
    ) -> tuple[Participant, list[tuple[Referral, Participant]]]:
        """A member's most recent referrals, with whom they brought (moderators, admins)."""
        community = await self.community(ref)

        async def op(repo: Repository) -> tuple[Participant, list[tuple[Referral, Participant]]]:
            person = await review.member_in(repo, community, member)
            mine = await repo.recent_referrals(person.id, limit)
            people = await repo.participants(r.referred_id for r in mine)
            return person, [(r, people[r.referred_id]) for r in mine]

        return await self.store.read(op)

    async def record_action(
        self, ref: CommunityRef, actor: Actor, action: str, details: dict
    ) -> None:
        """A moderator's action taken on the platform itself (e.g. a held join request)."""

        async def fn(repo: Repository, c: Community) -> None:
            await repo.add_audit(
                c.program_id, c.id, str(actor), action, details, self.ctx.clock.now()
            )

        await self._admin(ref, fn)

    async def run_review_deadlines(self) -> int:
        return await self.store.write(lambda repo: review.enforce_deadlines(repo, self.ctx))

    # -- scheduled work ---------------------------------------------------------------------

    async def run_sweep(self, max_batches: int = 1000) -> list[SweepResult]:
        """Convert or expire everything due, batch by batch (catches up after downtime)."""
        await self.flush_activity()
        results = []
        for _ in range(max_batches):
            result = await self.store.write(lambda repo: referrals.sweep(repo, self.ctx))
            if result.looked_at:
                results.append(result)
            if result.looked_at < self.ctx.sweep_batch:
                break
        await self.store.write(lambda repo: rewards.apply_due_roles(repo, self.ctx))
        return results

    async def run_announcements(self) -> int:
        total = 0
        while True:
            handled, queued = await self.store.write(lambda repo: rewards.announce(repo, self.ctx))
            total += queued
            if handled < self.ctx.sweep_batch:
                return total

    async def run_digests(self) -> int:
        return await self.store.write(lambda repo: leaderboard.post_digests(repo, self.ctx))

    # -- Discord hardening (issue 9) ----------------------------------------------------------

    async def retry_waiting(self, ref: CommunityRef, kinds: Sequence[str], marker: str) -> int:
        """Items that wait for an admin's fix (``marker`` starts their last error) are tried
        again now: the platform saw something change that may have fixed it."""
        now = self.ctx.clock.now()
        return await self.store.write(
            lambda repo: repo.outbox_due_now(ref.platform, kinds, ref.external_id, marker, now)
        )

    async def forget_links(self, ref: CommunityRef, urls: Sequence[str]) -> int:
        """Links whose platform invite is gone: the member's next /invite makes a new link for
        the same code (their code never changes because a link was deleted)."""
        community = await self.community(ref)
        return await self.store.write(lambda repo: repo.delete_links(community.id, urls))

    async def links_of_departed(self, ref: CommunityRef) -> list[str]:
        """Links made in a community for members who have left it (found after downtime)."""
        community = await self.community(ref)
        return await self.store.read(lambda repo: repo.links_of_departed(community.id))

    async def links_of_member(self, ref: CommunityRef, user_id: str) -> list[str]:
        """The links made in a community for one member's codes (to clean up when they leave)."""
        community = await self.community(ref)

        async def op(repo: Repository) -> list[str]:
            key = (community.program_id, community.platform, user_id)
            person = (await repo.participants_by_identity([key])).get(key)
            if person is None:
                return []
            return await repo.links_of_participant(community.id, person.id)

        return await self.store.read(op)

    # -- Telegram hardening (issue 10) ------------------------------------------------------

    async def code_credits_in(self, ref: CommunityRef, code: str) -> bool:
        """Whether ``code`` is an active (not revoked) code of the program this community
        belongs to: a deep link with any other code hands out nothing."""

        async def op(repo: Repository) -> bool:
            community = await communities.existing(repo, self.ctx, ref)
            if community is None:
                return False
            found = (await repo.codes_by_value([code])).get(code)
            return (
                found is not None
                and found.revoked_at is None
                and found.program_id == community.program_id
            )

        return await self.store.read(op)

    async def who_invited(self, ref: CommunityRef, member: str) -> who_invited.JoinStory:
        """Who brought this member, how and when, and what became of it (moderators)."""
        community = await self.community(ref)
        return await self.store.read(lambda repo: who_invited.story(repo, community, member))

    async def settle_join(
        self, ref: CommunityRef, actor: Actor, member: str, code: str
    ) -> tuple[Participant, Participant]:
        """A moderator credits an ambiguous join to one of its candidates (audited)."""
        community = await self.community(ref)
        return await self.store.write(
            lambda repo: who_invited.settle(repo, self.ctx, community, member, code, str(actor))
        )

    async def communities_of_member(self, platform: str, user_id: str) -> list[str]:
        """Where a member is stored as present (latest join first): private commands know
        the member's groups after a restart, however many groups the bot is in."""
        return await self.store.read(lambda repo: repo.communities_of_member(platform, user_id))

    async def code_owner(self, ref: CommunityRef, code: str) -> str | None:
        """The display name of whoever owns ``code`` in this community's program."""

        async def op(repo: Repository) -> str | None:
            community = await communities.existing(repo, self.ctx, ref)
            found = (await repo.codes_by_value([code])).get(code)
            if community is None or found is None or found.program_id != community.program_id:
                return None
            person = await repo.participant(found.participant_id)
            return person.display_name if person is not None else None

        return await self.store.read(op)

    # -- outbox: dead letters (issue 11) ----------------------------------------------------

    async def dead_letters(self, ref: CommunityRef) -> list[DeadLetter]:
        """What could not be delivered in the program's communities: kind, why, how many."""
        community = await self.community(ref)
        return await self.store.read(lambda repo: dead_letters.of_program(repo, community))

    async def retry_dead_letters(self, ref: CommunityRef, actor: Actor) -> int:
        """An admin sends every dead letter of the program back into the queue."""
        community = await self.community(ref)
        return await self.store.write(
            lambda repo: dead_letters.retry(repo, self.ctx, community, actor)
        )

    async def community_moved(self, platform: str, old: str, new: str) -> bool:
        """A community's platform id changed (a Telegram group became a supergroup): it keeps
        its program, links and counts. Idempotent: True only the first time."""

        async def op(repo: Repository) -> bool:
            moved = await repo.change_community_id(platform, old, new)
            if moved:
                community = await repo.community(platform, new)
                assert community is not None
                await repo.add_audit(
                    community.program_id, community.id, "system", "community.moved",
                    {"platform": platform, "from": old, "to": new}, self.ctx.clock.now(),
                )  # fmt: skip
            return moved

        moved = await self.store.write(op)
        if moved:
            self.ctx.communities.pop((platform, old), None)
        return moved
