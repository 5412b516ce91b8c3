"""Repository: every query the engine needs, in plain SQLAlchemy Core, for SQLite and PostgreSQL.

A Repository wraps one connection inside one transaction. It returns the engine's records
(bot.engine.models), never driver rows. Methods that take lists are set-based: one statement
for the whole list, so batched callers pay per batch, not per item.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.engine.models import (
    AuditEntry,
    Community,
    FlagStatus,
    FraudFlag,
    Grant,
    GrantStatus,
    InboxItem,
    LeaderboardRow,
    Membership,
    OutboxItem,
    Participant,
    Referral,
    ReferralCode,
    ReferralStatus,
    RewardKind,
    Tier,
)
from storage.tables import (
    audit_log,
    code_attempts,
    communities,
    coupons,
    fraud_flags,
    grants,
    identity_links,
    inbox,
    leaderboard_counts,
    link_tokens,
    memberships,
    outbox,
    participants,
    programs,
    referral_codes,
    referral_links,
    referrals,
    tiers,
)

CHUNK = 500  # bound parameter lists well under SQLite's and asyncpg's limits

ParticipantKey = tuple[int, str, str]  # (program_id, platform, user_id)


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _participant(row: Any) -> Participant:
    return Participant(
        id=row.id,
        program_id=row.program_id,
        platform=row.platform,
        user_id=row.user_id,
        display_name=row.display_name,
        locale=row.locale,
        account_created_at=row.account_created_at,
        first_joined_at=row.first_joined_at,
        origin=row.origin,
        message_count=row.message_count,
        banned_at=row.banned_at,
        code_lock_until=row.code_lock_until,
    )


def _membership(row: Any) -> Membership:
    return Membership(
        id=row.id,
        participant_id=row.participant_id,
        community_id=row.community_id,
        joined_at=row.joined_at,
        left_at=row.left_at,
        first_joined_at=row.first_joined_at,
        join_count=row.join_count,
        message_count=row.message_count,
        roles=tuple(r for r in row.roles.split("\n") if r),
    )


def _community(row: Any) -> Community:
    return Community(row.id, row.platform, row.external_id, row.name, row.program_id)


def _code(row: Any) -> ReferralCode:
    return ReferralCode(
        row.id, row.program_id, row.participant_id, row.code, row.created_at, row.revoked_at
    )


def _referral(row: Any) -> Referral:
    return Referral(
        id=row.id,
        program_id=row.program_id,
        referrer_id=row.referrer_id,
        referred_id=row.referred_id,
        code_id=row.code_id,
        community_id=row.community_id,
        source=row.source,
        status=ReferralStatus(row.status),
        created_at=row.created_at,
        due_at=row.due_at,
        expires_at=row.expires_at,
        converted_at=row.converted_at,
        ended_at=row.ended_at,
        reason=row.reason,
        risk=row.risk,
    )


def _flag(row: Any) -> FraudFlag:
    return FraudFlag(
        id=row.id,
        program_id=row.program_id,
        referral_id=row.referral_id,
        participant_id=row.participant_id,
        detector=row.detector,
        score=row.score,
        reason=json.loads(row.reason),
        status=FlagStatus(row.status),
        created_at=row.created_at,
        reviewer=row.reviewer,
        reviewed_at=row.reviewed_at,
        review_note=row.review_note,
    )


def _tier(row: Any) -> Tier:
    return Tier(
        row.id,
        row.program_id,
        row.name,
        row.threshold,
        RewardKind(row.reward_kind),
        row.reward_value,
    )


def _grant(row: Any) -> Grant:
    return Grant(
        id=row.id,
        program_id=row.program_id,
        participant_id=row.participant_id,
        tier_id=row.tier_id,
        referral_id=row.referral_id,
        side=row.side,
        label=row.label,
        kind=RewardKind(row.kind),
        value=row.value,
        status=GrantStatus(row.status),
        created_at=row.created_at,
        available_at=row.available_at,
        redeemed_at=row.redeemed_at,
        coupon_code=row.coupon_code,
    )


class Repository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.dialect = conn.dialect.name
        self.hooks: list[Callable[[], None]] = []
        self.outbox_added = False  # this transaction queued deliveries: wake the outbox worker

    # -- plumbing ---------------------------------------------------------------------------

    def after_commit(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` once this transaction has committed (never if it rolls back)."""
        self.hooks.append(hook)

    def _insert(self, table: sa.Table) -> Any:
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    async def _rows(self, stmt: Any) -> list[Any]:
        return list((await self.conn.execute(stmt)).all())

    async def _executemany(self, stmt: Any, rows: list[dict[str, Any]]) -> None:
        if rows:
            await self.conn.execute(stmt, rows)

    # -- programs and communities -----------------------------------------------------------

    async def create_program(self, name: str, settings: dict[str, Any], now: int) -> int:
        result = await self.conn.execute(
            programs.insert()
            .values(name=name, settings=json.dumps(settings), created_at=now)
            .returning(programs.c.id)
        )
        return result.scalar_one()

    async def program(self, program_id: int) -> tuple[str, dict[str, Any], int] | None:
        row = (
            await self.conn.execute(sa.select(programs).where(programs.c.id == program_id))
        ).first()
        return (row.name, json.loads(row.settings), row.created_at) if row else None

    async def program_settings(self, program_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        ids = sorted(set(program_ids))
        out: dict[int, dict[str, Any]] = {}
        for chunk in _chunks(ids):
            rows = await self._rows(
                sa.select(programs.c.id, programs.c.settings).where(programs.c.id.in_(chunk))
            )
            out.update({r.id: json.loads(r.settings) for r in rows})
        return out

    async def save_program_settings(self, program_id: int, settings: dict[str, Any]) -> None:
        await self.conn.execute(
            programs.update()
            .where(programs.c.id == program_id)
            .values(settings=json.dumps(settings))
        )

    async def programs_created(self) -> dict[int, int]:
        rows = await self._rows(sa.select(programs.c.id, programs.c.created_at))
        return {r.id: r.created_at for r in rows}

    async def community(self, platform: str, external_id: str) -> Community | None:
        row = (
            await self.conn.execute(
                sa.select(communities).where(
                    communities.c.platform == platform,
                    communities.c.external_id == external_id,
                )
            )
        ).first()
        return _community(row) if row else None

    async def community_by_id(self, community_id: int) -> Community | None:
        row = (
            await self.conn.execute(sa.select(communities).where(communities.c.id == community_id))
        ).first()
        return _community(row) if row else None

    async def communities_by_ids(self, ids: Iterable[int]) -> dict[int, Community]:
        out: dict[int, Community] = {}
        for chunk in _chunks(sorted(set(ids))):
            rows = await self._rows(sa.select(communities).where(communities.c.id.in_(chunk)))
            out.update({r.id: _community(r) for r in rows})
        return out

    async def create_community(
        self, platform: str, external_id: str, name: str, program_id: int, now: int
    ) -> Community:
        await self.conn.execute(
            self._insert(communities)
            .values(
                platform=platform,
                external_id=external_id,
                name=name,
                program_id=program_id,
                created_at=now,
            )
            .on_conflict_do_nothing()
        )
        found = await self.community(platform, external_id)
        assert found is not None
        return found

    async def program_communities(self, program_id: int) -> list[Community]:
        rows = await self._rows(
            sa.select(communities)
            .where(communities.c.program_id == program_id)
            .order_by(communities.c.id)
        )
        return [_community(r) for r in rows]

    async def program_has_activity(self, program_id: int) -> bool:
        for table in (referral_codes, referrals, grants):
            row = (
                await self.conn.execute(
                    sa.select(table.c.id).where(table.c.program_id == program_id).limit(1)
                )
            ).first()
            if row:
                return True
        return False

    async def move_community(self, community_id: int, target_program_id: int) -> None:
        """Re-home a community and its members in another program (before any activity).

        Only the people who are members of this community move; someone also in another
        community of the old program keeps their place there and gets a second identity here.
        """
        rows = await self._rows(
            sa.select(memberships.c.id, participants)
            .join(participants, participants.c.id == memberships.c.participant_id)
            .where(memberships.c.community_id == community_id)
        )
        for row in rows:
            target = (
                await self.conn.execute(
                    sa.select(participants.c.id).where(
                        participants.c.program_id == target_program_id,
                        participants.c.platform == row.platform,
                        participants.c.user_id == row.user_id,
                    )
                )
            ).scalar_one_or_none()
            if target is None:
                [target] = await self.insert_participants(
                    [
                        {
                            "program_id": target_program_id,
                            "platform": row.platform,
                            "user_id": row.user_id,
                            "display_name": row.display_name,
                            "locale": row.locale,
                            "account_created_at": row.account_created_at,
                            "first_joined_at": row.first_joined_at,
                            "origin": row.origin,
                            "message_count": row.message_count,
                            "created_at": row.created_at,
                        }
                    ]
                )
            await self.conn.execute(
                memberships.update().where(memberships.c.id == row[0]).values(participant_id=target)
            )
            left = (
                await self.conn.execute(
                    sa.select(sa.func.count()).where(memberships.c.participant_id == row.id)
                )
            ).scalar_one()
            if left == 0:
                await self.conn.execute(
                    code_attempts.delete().where(code_attempts.c.participant_id == row.id)
                )
                await self.conn.execute(participants.delete().where(participants.c.id == row.id))
        await self.conn.execute(
            communities.update()
            .where(communities.c.id == community_id)
            .values(program_id=target_program_id)
        )

    # -- participants and memberships -------------------------------------------------------

    async def participants_by_identity(
        self, keys: Iterable[ParticipantKey]
    ) -> dict[ParticipantKey, Participant]:
        """One query per chunk of user ids, whatever the number of programs in the batch."""
        wanted = set(keys)
        programs_ = sorted({k[0] for k in wanted})
        platforms = sorted({k[1] for k in wanted})
        found: dict[ParticipantKey, Participant] = {}
        for chunk in _chunks(sorted({k[2] for k in wanted})):
            rows = await self._rows(
                sa.select(participants).where(
                    participants.c.user_id.in_(chunk),
                    participants.c.platform.in_(platforms),
                    participants.c.program_id.in_(programs_),
                )
            )
            for r in rows:
                key = (r.program_id, r.platform, r.user_id)
                if key in wanted:
                    found[key] = _participant(r)
        return found

    async def participant(self, participant_id: int) -> Participant | None:
        row = (
            await self.conn.execute(
                sa.select(participants).where(participants.c.id == participant_id)
            )
        ).first()
        return _participant(row) if row else None

    async def participants(self, ids: Iterable[int]) -> dict[int, Participant]:
        out: dict[int, Participant] = {}
        for chunk in _chunks(sorted(set(ids))):
            rows = await self._rows(sa.select(participants).where(participants.c.id.in_(chunk)))
            out.update({r.id: _participant(r) for r in rows})
        return out

    async def insert_participants(self, rows: list[dict[str, Any]]) -> list[int]:
        """Insert new participants; returns their ids in the order of ``rows``.

        Unordered RETURNING of the id with the unique identity, matched back by identity:
        *ordered* RETURNING makes SQLAlchemy insert SQLite rows one by one (a thread hop each).
        """
        if not rows:
            return []
        c = participants.c
        result = await self.conn.execute(
            participants.insert().returning(c.id, c.program_id, c.platform, c.user_id), rows
        )
        ids = {(r.program_id, r.platform, r.user_id): r.id for r in result.all()}
        return [ids[(r["program_id"], r["platform"], r["user_id"])] for r in rows]

    async def update_participants(self, rows: list[dict[str, Any]]) -> None:
        """Each row: ``pid`` plus the columns to set (all rows must set the same columns)."""
        if not rows:
            return
        columns = [k for k in rows[0] if k != "pid"]
        stmt = (
            participants.update()
            .where(participants.c.id == sa.bindparam("pid"))
            .values({c: sa.bindparam(c) for c in columns})
        )
        await self.conn.execute(stmt, rows)

    async def memberships_of(self, participant_ids: Iterable[int]) -> dict[int, list[Membership]]:
        out: dict[int, list[Membership]] = defaultdict(list)
        for chunk in _chunks(sorted(set(participant_ids))):
            rows = await self._rows(
                sa.select(memberships).where(memberships.c.participant_id.in_(chunk))
            )
            for r in rows:
                out[r.participant_id].append(_membership(r))
        return out

    async def active_members(self, community_id: int) -> list[tuple[Membership, Participant]]:
        """Everyone stored as currently in a community."""
        rows = await self._rows(
            sa.select(memberships).where(
                memberships.c.community_id == community_id, memberships.c.left_at.is_(None)
            )
        )
        here = [_membership(r) for r in rows]
        people = await self.participants(m.participant_id for m in here)
        return [(m, people[m.participant_id]) for m in here]

    async def insert_memberships(self, rows: list[dict[str, Any]]) -> None:
        await self._executemany(memberships.insert(), rows)

    async def update_memberships(self, rows: list[dict[str, Any]]) -> None:
        """Each row: ``mid`` plus the columns to set (all rows must set the same columns)."""
        if not rows:
            return
        columns = [k for k in rows[0] if k != "mid"]
        stmt = (
            memberships.update()
            .where(memberships.c.id == sa.bindparam("mid"))
            .values({c: sa.bindparam(c) for c in columns})
        )
        await self.conn.execute(stmt, rows)

    async def add_message_counts(
        self, by_participant: list[tuple[int, int]], by_membership: list[tuple[int, int]]
    ) -> None:
        if by_participant:
            await self.conn.execute(
                participants.update()
                .where(participants.c.id == sa.bindparam("pid"))
                .values(message_count=participants.c.message_count + sa.bindparam("n")),
                [{"pid": p, "n": n} for p, n in by_participant],
            )
        if by_membership:
            await self.conn.execute(
                memberships.update()
                .where(memberships.c.id == sa.bindparam("mid"))
                .values(message_count=memberships.c.message_count + sa.bindparam("n")),
                [{"mid": m, "n": n} for m, n in by_membership],
            )

    async def record_code_attempt(self, participant_id: int, entered: str, now: int) -> None:
        await self.conn.execute(
            code_attempts.insert().values(
                participant_id=participant_id, entered=entered[:60], created_at=now
            )
        )

    async def code_attempts_since(self, participant_id: int, since: int) -> int:
        return (
            await self.conn.execute(
                sa.select(sa.func.count()).where(
                    code_attempts.c.participant_id == participant_id,
                    code_attempts.c.created_at >= since,
                )
            )
        ).scalar_one()

    # -- codes and links --------------------------------------------------------------------

    async def active_code(self, participant_id: int) -> ReferralCode | None:
        row = (
            await self.conn.execute(
                sa.select(referral_codes).where(
                    referral_codes.c.participant_id == participant_id,
                    referral_codes.c.revoked_at.is_(None),
                )
            )
        ).first()
        return _code(row) if row else None

    async def codes_by_value(self, values: Iterable[str]) -> dict[str, ReferralCode]:
        out: dict[str, ReferralCode] = {}
        for chunk in _chunks(sorted(set(values))):
            rows = await self._rows(
                sa.select(referral_codes).where(referral_codes.c.code.in_(chunk))
            )
            out.update({r.code: _code(r) for r in rows})
        return out

    async def insert_codes(self, rows: list[dict[str, Any]]) -> dict[int, ReferralCode]:
        """Insert codes; a row whose code already exists (a collision) is skipped.

        Returns the inserted codes by participant id.
        """
        if not rows:
            return {}
        # Unordered RETURNING of what was inserted (a collision returns nothing for its row).
        stmt = self._insert(referral_codes).on_conflict_do_nothing().returning(*referral_codes.c)
        inserted = (await self.conn.execute(stmt, rows)).all()
        return {r.participant_id: _code(r) for r in inserted}

    async def revoke_code(self, code_id: int, now: int) -> None:
        await self.conn.execute(
            referral_codes.update().where(referral_codes.c.id == code_id).values(revoked_at=now)
        )

    async def link_for(self, code_id: int, community_id: int) -> str | None:
        return (
            await self.conn.execute(
                sa.select(referral_links.c.url).where(
                    referral_links.c.code_id == code_id,
                    referral_links.c.community_id == community_id,
                )
            )
        ).scalar_one_or_none()

    async def links_of_community(self, community_id: int) -> dict[str, str]:
        """Shareable links made in a community whose code is still active: url -> code."""
        rows = await self._rows(
            sa.select(referral_links.c.url, referral_codes.c.code)
            .join(referral_codes, referral_codes.c.id == referral_links.c.code_id)
            .where(
                referral_links.c.community_id == community_id,
                referral_codes.c.revoked_at.is_(None),
            )
        )
        return {url: code for url, code in rows}

    async def save_link(self, code_id: int, community_id: int, url: str, now: int) -> str:
        await self.conn.execute(
            self._insert(referral_links)
            .values(code_id=code_id, community_id=community_id, url=url, created_at=now)
            .on_conflict_do_nothing()
        )
        saved = await self.link_for(code_id, community_id)
        assert saved is not None
        return saved

    # -- referrals --------------------------------------------------------------------------

    async def referral_of_referred(self, program_id: int, participant_id: int) -> Referral | None:
        row = (
            await self.conn.execute(
                sa.select(referrals).where(
                    referrals.c.program_id == program_id,
                    referrals.c.referred_id == participant_id,
                )
            )
        ).first()
        return _referral(row) if row else None

    async def referral(self, referral_id: int) -> Referral | None:
        row = (
            await self.conn.execute(sa.select(referrals).where(referrals.c.id == referral_id))
        ).first()
        return _referral(row) if row else None

    async def insert_referrals(self, rows: list[dict[str, Any]]) -> list[int]:
        """Insert referrals; returns their ids in the order of ``rows``."""
        if not rows:
            return []
        c = referrals.c
        result = await self.conn.execute(
            referrals.insert().returning(c.id, c.program_id, c.referred_id), rows
        )
        ids = {(r.program_id, r.referred_id): r.id for r in result.all()}
        return [ids[(r["program_id"], r["referred_id"])] for r in rows]

    async def due_referrals(self, now: int, limit: int) -> list[Referral]:
        rows = await self._rows(
            sa.select(referrals)
            .where(referrals.c.status == ReferralStatus.PENDING.value, referrals.c.due_at <= now)
            .order_by(referrals.c.due_at)
            .limit(limit)
        )
        return [_referral(r) for r in rows]

    async def update_referrals(self, rows: list[dict[str, Any]]) -> None:
        """Each row: ``rid`` plus status, due_at, converted_at, ended_at, reason."""
        if not rows:
            return
        stmt = (
            referrals.update()
            .where(referrals.c.id == sa.bindparam("rid"))
            .values(
                status=sa.bindparam("status"),
                due_at=sa.bindparam("due_at"),
                converted_at=sa.bindparam("converted_at"),
                ended_at=sa.bindparam("ended_at"),
                reason=sa.bindparam("reason"),
            )
        )
        await self.conn.execute(stmt, rows)

    async def open_referrals_of_referred(self, participant_ids: Iterable[int]) -> list[Referral]:
        out: list[Referral] = []
        for chunk in _chunks(sorted(set(participant_ids))):
            rows = await self._rows(
                sa.select(referrals).where(
                    referrals.c.referred_id.in_(chunk),
                    referrals.c.status.in_(
                        [ReferralStatus.PENDING.value, ReferralStatus.HELD.value]
                    ),
                )
            )
            out.extend(_referral(r) for r in rows)
        return out

    async def referral_counts(self, referrer_id: int) -> dict[str, int]:
        rows = await self._rows(
            sa.select(referrals.c.status, sa.func.count())
            .where(referrals.c.referrer_id == referrer_id)
            .group_by(referrals.c.status)
        )
        return {status: count for status, count in rows}

    async def converted_counts(self, referrer_ids: Iterable[int]) -> dict[int, int]:
        out: dict[int, int] = {}
        for chunk in _chunks(sorted(set(referrer_ids))):
            rows = await self._rows(
                sa.select(referrals.c.referrer_id, sa.func.count())
                .where(
                    referrals.c.referrer_id.in_(chunk),
                    referrals.c.status == ReferralStatus.CONVERTED.value,
                )
                .group_by(referrals.c.referrer_id)
            )
            out.update({rid: n for rid, n in rows})
        return out

    async def recent_referrals(self, referrer_id: int, limit: int) -> list[Referral]:
        rows = await self._rows(
            sa.select(referrals)
            .where(referrals.c.referrer_id == referrer_id)
            .order_by(referrals.c.id.desc())
            .limit(limit)
        )
        return [_referral(r) for r in rows]

    # -- tiers, grants, coupons -------------------------------------------------------------

    async def tiers(self, program_id: int) -> list[Tier]:
        rows = await self._rows(
            sa.select(tiers)
            .where(tiers.c.program_id == program_id, tiers.c.removed_at.is_(None))
            .order_by(tiers.c.threshold)
        )
        return [_tier(r) for r in rows]

    async def tiers_for_programs(self, program_ids: Iterable[int]) -> dict[int, list[Tier]]:
        out: dict[int, list[Tier]] = defaultdict(list)
        for chunk in _chunks(sorted(set(program_ids))):
            rows = await self._rows(
                sa.select(tiers)
                .where(tiers.c.program_id.in_(chunk), tiers.c.removed_at.is_(None))
                .order_by(tiers.c.threshold)
            )
            for r in rows:
                out[r.program_id].append(_tier(r))
        return out

    async def insert_tier(
        self, program_id: int, name: str, threshold: int, kind: str, value: str, now: int
    ) -> int:
        result = await self.conn.execute(
            tiers.insert()
            .values(
                program_id=program_id,
                name=name,
                threshold=threshold,
                reward_kind=kind,
                reward_value=value,
                created_at=now,
            )
            .returning(tiers.c.id)
        )
        return result.scalar_one()

    async def update_tier(self, tier_id: int, threshold: int, kind: str, value: str) -> None:
        await self.conn.execute(
            tiers.update()
            .where(tiers.c.id == tier_id)
            .values(threshold=threshold, reward_kind=kind, reward_value=value)
        )

    async def remove_tier(self, tier_id: int, now: int) -> None:
        await self.conn.execute(tiers.update().where(tiers.c.id == tier_id).values(removed_at=now))

    async def insert_grants(self, rows: list[dict[str, Any]]) -> list[Grant]:
        """Insert grants; one whose dedupe key exists is skipped. Returns the ones created."""
        if not rows:
            return []
        keys = [r["dedupe_key"] for r in rows]
        existing: set[str] = set()
        for chunk in _chunks(keys):
            found = await self._rows(
                sa.select(grants.c.dedupe_key).where(grants.c.dedupe_key.in_(chunk))
            )
            existing.update(f[0] for f in found)
        fresh = [r for r in rows if r["dedupe_key"] not in existing]
        if not fresh:
            return []
        await self.conn.execute(self._insert(grants).on_conflict_do_nothing(), fresh)
        created: list[Grant] = []
        for chunk in _chunks([r["dedupe_key"] for r in fresh]):
            found = await self._rows(
                sa.select(grants).where(grants.c.dedupe_key.in_(chunk)).order_by(grants.c.id)
            )
            created.extend(_grant(f) for f in found)
        return created

    async def grants_of(self, participant_id: int) -> list[Grant]:
        rows = await self._rows(
            sa.select(grants).where(grants.c.participant_id == participant_id).order_by(grants.c.id)
        )
        return [_grant(r) for r in rows]

    async def mark_redeemed(self, grant_id: int, now: int, coupon_code: str | None) -> bool:
        result = await self.conn.execute(
            grants.update()
            .where(grants.c.id == grant_id, grants.c.status == GrantStatus.AVAILABLE.value)
            .values(status=GrantStatus.REDEEMED.value, redeemed_at=now, coupon_code=coupon_code)
        )
        return result.rowcount == 1

    async def mark_redeemed_many(self, grant_ids: list[int], now: int) -> None:
        for chunk in _chunks(grant_ids):
            await self.conn.execute(
                grants.update()
                .where(grants.c.id.in_(chunk), grants.c.status == GrantStatus.AVAILABLE.value)
                .values(status=GrantStatus.REDEEMED.value, redeemed_at=now)
            )

    async def revoke_grants(self, grant_ids: list[int], now: int) -> None:
        """Revoke grants and free their dedupe keys, so reaching the tier again grants it again."""
        if grant_ids:
            await self.conn.execute(
                grants.update()
                .where(grants.c.id.in_(grant_ids))
                .values(
                    status=GrantStatus.REVOKED.value,
                    revoked_at=now,
                    dedupe_key=grants.c.dedupe_key + ":revoked:" + sa.cast(grants.c.id, sa.String),
                )
            )

    async def due_role_grants(self, now: int, limit: int) -> list[Grant]:
        rows = await self._rows(
            sa.select(grants)
            .where(
                grants.c.status == GrantStatus.AVAILABLE.value,
                grants.c.kind == RewardKind.ROLE.value,
                grants.c.available_at <= now,
            )
            .order_by(grants.c.available_at)
            .limit(limit)
        )
        return [_grant(r) for r in rows]

    async def unannounced_grants(self, limit: int) -> list[Grant]:
        rows = await self._rows(
            sa.select(grants)
            .where(grants.c.announced_at.is_(None))
            .order_by(grants.c.id)
            .limit(limit)
        )
        return [_grant(r) for r in rows]

    async def mark_announced(self, grant_ids: list[int], now: int) -> None:
        if grant_ids:
            await self.conn.execute(
                grants.update().where(grants.c.id.in_(grant_ids)).values(announced_at=now)
            )

    async def add_coupons(self, program_id: int, pool: str, codes: list[str], now: int) -> int:
        if not codes:
            return 0
        before = await self._coupon_total(program_id, pool)
        await self.conn.execute(
            self._insert(coupons).on_conflict_do_nothing(),
            [{"program_id": program_id, "pool": pool, "code": c, "added_at": now} for c in codes],
        )
        return await self._coupon_total(program_id, pool) - before

    async def _coupon_total(self, program_id: int, pool: str) -> int:
        return (
            await self.conn.execute(
                sa.select(sa.func.count()).where(
                    coupons.c.program_id == program_id, coupons.c.pool == pool
                )
            )
        ).scalar_one()

    async def claim_coupon(self, program_id: int, pool: str, grant_id: int) -> str | None:
        """Assign the oldest free coupon of a pool to a grant; None when the pool is empty."""
        query = (
            sa.select(coupons.c.id, coupons.c.code)
            .where(
                coupons.c.program_id == program_id,
                coupons.c.pool == pool,
                coupons.c.grant_id.is_(None),
            )
            .order_by(coupons.c.id)
            .limit(1)
        )
        if self.dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)
        row = (await self.conn.execute(query)).first()
        if row is None:
            return None
        await self.conn.execute(
            coupons.update().where(coupons.c.id == row.id).values(grant_id=grant_id)
        )
        return row.code

    async def coupon_stock(self, program_id: int) -> dict[str, tuple[int, int]]:
        """Per pool: (free, total)."""
        rows = await self._rows(
            sa.select(
                coupons.c.pool,
                sa.func.count(coupons.c.id) - sa.func.count(coupons.c.grant_id),
                sa.func.count(coupons.c.id),
            )
            .where(coupons.c.program_id == program_id)
            .group_by(coupons.c.pool)
            .order_by(coupons.c.pool)
        )
        return {pool: (free, total) for pool, free, total in rows}

    # -- leaderboard ------------------------------------------------------------------------

    async def bump_leaderboard(self, rows: list[tuple[int, str, int, int]]) -> None:
        """Add deltas: rows of (program_id, period, participant_id, delta)."""
        if not rows:
            return
        stmt = self._insert(leaderboard_counts)
        stmt = stmt.on_conflict_do_update(
            index_elements=["program_id", "period", "participant_id"],
            set_={"count": leaderboard_counts.c.count + stmt.excluded.count},
        )
        await self.conn.execute(
            stmt,
            [
                {"program_id": p, "period": period, "participant_id": pid, "count": delta}
                for p, period, pid, delta in rows
            ],
        )

    async def leaderboard_top(
        self, program_id: int, period: str, limit: int
    ) -> list[LeaderboardRow]:
        lc = leaderboard_counts
        rows = await self._rows(
            sa.select(
                lc.c.participant_id, participants.c.display_name, participants.c.user_id, lc.c.count
            )
            .join(participants, participants.c.id == lc.c.participant_id)
            .where(lc.c.program_id == program_id, lc.c.period == period, lc.c.count > 0)
            .order_by(lc.c.count.desc(), lc.c.participant_id)
            .limit(limit)
        )
        return [LeaderboardRow(r[0], r[1], r[2], r[3]) for r in rows]

    async def qualified_for(self, program_id: int, threshold: int) -> list[Participant]:
        """Members whose converted referrals (all time) reach ``threshold``."""
        lc = leaderboard_counts
        rows = await self._rows(
            sa.select(participants)
            .join(lc, lc.c.participant_id == participants.c.id)
            .where(lc.c.program_id == program_id, lc.c.period == "all", lc.c.count >= threshold)
        )
        return [_participant(r) for r in rows]

    async def leaderboard_rank(
        self, program_id: int, period: str, participant_id: int
    ) -> tuple[int, int] | None:
        lc = leaderboard_counts
        mine = (
            await self.conn.execute(
                sa.select(lc.c.count).where(
                    lc.c.program_id == program_id,
                    lc.c.period == period,
                    lc.c.participant_id == participant_id,
                )
            )
        ).scalar_one_or_none()
        if not mine:
            return None
        above = (
            await self.conn.execute(
                sa.select(sa.func.count()).where(
                    lc.c.program_id == program_id, lc.c.period == period, lc.c.count > mine
                )
            )
        ).scalar_one()
        return above + 1, mine

    # -- fraud review -----------------------------------------------------------------------

    async def insert_flags(self, rows: list[dict[str, Any]]) -> list[FraudFlag]:
        """Insert flags; one whose dedupe key exists is skipped. Returns the ones created."""
        if not rows:
            return []
        existing: set[str] = set()
        for chunk in _chunks([r["dedupe_key"] for r in rows]):
            found = await self._rows(
                sa.select(fraud_flags.c.dedupe_key).where(fraud_flags.c.dedupe_key.in_(chunk))
            )
            existing.update(f[0] for f in found)
        fresh = list({r["dedupe_key"]: r for r in rows if r["dedupe_key"] not in existing}.values())
        if not fresh:
            return []
        await self.conn.execute(self._insert(fraud_flags).on_conflict_do_nothing(), fresh)
        created: list[FraudFlag] = []
        for chunk in _chunks([r["dedupe_key"] for r in fresh]):
            found = await self._rows(
                sa.select(fraud_flags)
                .where(fraud_flags.c.dedupe_key.in_(chunk))
                .order_by(fraud_flags.c.id)
            )
            created.extend(_flag(f) for f in found)
        return created

    async def flag(self, flag_id: int) -> FraudFlag | None:
        row = (
            await self.conn.execute(sa.select(fraud_flags).where(fraud_flags.c.id == flag_id))
        ).first()
        return _flag(row) if row else None

    async def flag_queue(
        self, program_id: int, riskiest: bool, limit: int, offset: int
    ) -> tuple[list[FraudFlag], int]:
        """Open flags, newest or riskiest first, and how many are open in all."""
        f = fraud_flags.c
        where = (f.program_id == program_id, f.status == FlagStatus.OPEN.value)
        order = (f.score.desc(), f.id.desc()) if riskiest else (f.id.desc(),)
        rows = await self._rows(
            sa.select(fraud_flags).where(*where).order_by(*order).limit(limit).offset(offset)
        )
        total = (await self.conn.execute(sa.select(sa.func.count()).where(*where))).scalar_one()
        return [_flag(r) for r in rows], total

    async def flags_about(
        self, referral_ids: Iterable[int], participant_ids: Iterable[int]
    ) -> list[FraudFlag]:
        """Every flag on these referrals or these members, oldest first."""
        refs, people = sorted(set(referral_ids)), sorted(set(participant_ids))
        conditions = []
        if refs:
            conditions.append(fraud_flags.c.referral_id.in_(refs))
        if people:
            conditions.append(fraud_flags.c.participant_id.in_(people))
        if not conditions:
            return []
        rows = await self._rows(
            sa.select(fraud_flags).where(sa.or_(*conditions)).order_by(fraud_flags.c.id)
        )
        return [_flag(r) for r in rows]

    async def review_flags(
        self, flag_ids: list[int], status: str, reviewer: str, note: str | None, now: int
    ) -> int:
        """Close open flags; returns how many were still open."""
        total = 0
        for chunk in _chunks(flag_ids):
            result = await self.conn.execute(
                fraud_flags.update()
                .where(fraud_flags.c.id.in_(chunk), fraud_flags.c.status == FlagStatus.OPEN.value)
                .values(status=status, reviewer=reviewer, review_note=note, reviewed_at=now)
            )
            total += result.rowcount
        return total

    async def overdue_flags(self, program_id: int, before: int, limit: int) -> list[FraudFlag]:
        rows = await self._rows(
            sa.select(fraud_flags)
            .where(
                fraud_flags.c.program_id == program_id,
                fraud_flags.c.status == FlagStatus.OPEN.value,
                fraud_flags.c.created_at <= before,
            )
            .order_by(fraud_flags.c.id)
            .limit(limit)
        )
        return [_flag(r) for r in rows]

    async def set_risk(self, risks: dict[int, int]) -> None:
        if risks:
            await self.conn.execute(
                referrals.update()
                .where(referrals.c.id == sa.bindparam("rid"))
                .values(risk=sa.bindparam("risk")),
                [{"rid": rid, "risk": risk} for rid, risk in risks.items()],
            )

    async def referrals_since(self, referrer_ids: Iterable[int], since: int) -> list[Referral]:
        out: list[Referral] = []
        for chunk in _chunks(sorted(set(referrer_ids))):
            rows = await self._rows(
                sa.select(referrals).where(
                    referrals.c.referrer_id.in_(chunk), referrals.c.created_at >= since
                )
            )
            out.extend(_referral(r) for r in rows)
        return out

    async def referrals_of_referred(self, participant_ids: Iterable[int]) -> list[Referral]:
        out: list[Referral] = []
        for chunk in _chunks(sorted(set(participant_ids))):
            rows = await self._rows(sa.select(referrals).where(referrals.c.referred_id.in_(chunk)))
            out.extend(_referral(r) for r in rows)
        return out

    async def referrals_by(
        self, referrer_ids: Iterable[int], statuses: Sequence[str]
    ) -> list[Referral]:
        out: list[Referral] = []
        for chunk in _chunks(sorted(set(referrer_ids))):
            rows = await self._rows(
                sa.select(referrals).where(
                    referrals.c.referrer_id.in_(chunk), referrals.c.status.in_(list(statuses))
                )
            )
            out.extend(_referral(r) for r in rows)
        return out

    async def silent_referred(self, referrer_ids: Iterable[int], before: int) -> dict[int, int]:
        """Per referrer: referred members who joined before ``before`` and never posted."""
        out: dict[int, int] = {}
        for chunk in _chunks(sorted(set(referrer_ids))):
            rows = await self._rows(
                sa.select(referrals.c.referrer_id, sa.func.count())
                .join(participants, participants.c.id == referrals.c.referred_id)
                .where(
                    referrals.c.referrer_id.in_(chunk),
                    referrals.c.created_at <= before,
                    participants.c.message_count == 0,
                )
                .group_by(referrals.c.referrer_id)
            )
            out.update({rid: n for rid, n in rows})
        return out

    async def linked_identities(self, participant_ids: Iterable[int]) -> set[tuple[int, int]]:
        """Pairs (a, b), both directions, that an admin linked as one person."""
        ids = sorted(set(participant_ids))
        pairs: set[tuple[int, int]] = set()
        for chunk in _chunks(ids):
            rows = await self._rows(
                sa.select(identity_links.c.participant_a, identity_links.c.participant_b).where(
                    sa.or_(
                        identity_links.c.participant_a.in_(chunk),
                        identity_links.c.participant_b.in_(chunk),
                    ),
                )
            )
            for a, b in rows:
                pairs.update({(a, b), (b, a)})
        return pairs

    async def link_identities(self, program_id: int, a: int, b: int, by: str, now: int) -> bool:
        first, second = sorted((a, b))
        result = await self.conn.execute(
            self._insert(identity_links)
            .values(
                program_id=program_id,
                participant_a=first,
                participant_b=second,
                linked_by=by,
                created_at=now,
            )
            .on_conflict_do_nothing()
        )
        return result.rowcount == 1

    async def set_ban(self, participant_id: int, at: int | None, reason: str | None) -> None:
        await self.conn.execute(
            participants.update()
            .where(participants.c.id == participant_id)
            .values(banned_at=at, banned_reason=reason)
        )

    async def find_participants(self, program_id: int, text: str) -> list[Participant]:
        """Members of a program by platform id, or else by display name (any case)."""
        wanted = text.strip().lstrip("@")
        rows = await self._rows(
            sa.select(participants)
            .where(
                participants.c.program_id == program_id,
                sa.or_(
                    participants.c.user_id == wanted,
                    sa.func.lower(participants.c.display_name) == wanted.lower(),
                ),
            )
            .limit(5)
        )
        return [_participant(r) for r in rows]

    async def hold_grants(self, grant_ids: list[int]) -> None:
        if grant_ids:
            await self.conn.execute(
                grants.update()
                .where(grants.c.id.in_(grant_ids))
                .values(status=GrantStatus.HELD.value)
            )

    async def release_grants(self, grant_ids: list[int]) -> None:
        if grant_ids:
            await self.conn.execute(
                grants.update()
                .where(grants.c.id.in_(grant_ids), grants.c.status == GrantStatus.HELD.value)
                .values(status=GrantStatus.AVAILABLE.value)
            )

    # -- program links ----------------------------------------------------------------------

    async def insert_link_token(
        self, token_hash: str, program_id: int, now: int, expires: int
    ) -> None:
        await self.conn.execute(
            link_tokens.insert().values(
                token_hash=token_hash, program_id=program_id, created_at=now, expires_at=expires
            )
        )

    async def use_link_token(self, token_hash: str, now: int) -> int | None:
        """Spend a valid token once; returns its program, or None if unknown, used or expired."""
        row = (
            await self.conn.execute(
                sa.select(link_tokens).where(link_tokens.c.token_hash == token_hash)
            )
        ).first()
        if row is None or row.used_at is not None or row.expires_at < now:
            return None
        result = await self.conn.execute(
            link_tokens.update()
            .where(link_tokens.c.token_hash == token_hash, link_tokens.c.used_at.is_(None))
            .values(used_at=now)
        )
        return row.program_id if result.rowcount == 1 else None

    # -- audit log --------------------------------------------------------------------------

    async def add_audit(
        self,
        program_id: int,
        community_id: int | None,
        actor: str,
        action: str,
        details: dict[str, Any],
        now: int,
    ) -> None:
        await self.conn.execute(
            audit_log.insert().values(
                program_id=program_id,
                community_id=community_id,
                actor=actor,
                action=action,
                details=json.dumps(details, ensure_ascii=False, sort_keys=True),
                created_at=now,
            )
        )

    async def audit(self, program_id: int, limit: int) -> list[AuditEntry]:
        rows = await self._rows(
            sa.select(audit_log)
            .where(audit_log.c.program_id == program_id)
            .order_by(audit_log.c.id.desc())
            .limit(limit)
        )
        return [
            AuditEntry(r.id, r.program_id, r.actor, r.action, r.details, r.created_at) for r in rows
        ]

    # -- outbox -----------------------------------------------------------------------------

    async def add_outbox(self, rows: list[dict[str, Any]]) -> None:
        """Queue effects; a row whose dedupe key is already queued is skipped (exactly once)."""
        self.outbox_added = self.outbox_added or bool(rows)
        for chunk in _chunks(rows):
            await self.conn.execute(self._insert(outbox).on_conflict_do_nothing(), list(chunk))

    async def due_outbox(self, now: int, limit: int, platforms: Sequence[str]) -> list[OutboxItem]:
        """Items due for the platforms this process serves (others are left to their process)."""
        query = (
            sa.select(outbox)
            .where(
                outbox.c.delivered_at.is_(None),
                outbox.c.failed_at.is_(None),
                outbox.c.next_attempt_at <= now,
                outbox.c.platform.in_(list(platforms)),
            )
            .order_by(outbox.c.next_attempt_at, outbox.c.id)
            .limit(limit)
        )
        if self.dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = await self._rows(query)
        return [
            OutboxItem(r.id, r.platform, r.kind, json.loads(r.payload), r.dedupe_key, r.attempts)
            for r in rows
        ]

    async def lease_outbox(self, ids: list[int], until: int) -> None:
        if ids:
            await self.conn.execute(
                outbox.update().where(outbox.c.id.in_(ids)).values(next_attempt_at=until)
            )

    async def mark_delivered(self, outbox_id: int, now: int) -> None:
        await self.conn.execute(
            outbox.update().where(outbox.c.id == outbox_id).values(delivered_at=now)
        )

    async def mark_retry(self, outbox_id: int, attempts: int, next_at: int, error: str) -> None:
        await self.conn.execute(
            outbox.update()
            .where(outbox.c.id == outbox_id)
            .values(attempts=attempts, next_attempt_at=next_at, last_error=error[:500])
        )

    async def mark_failed(self, outbox_id: int, attempts: int, now: int, error: str) -> None:
        await self.conn.execute(
            outbox.update()
            .where(outbox.c.id == outbox_id)
            .values(attempts=attempts, failed_at=now, last_error=error[:500])
        )

    async def outbox_keys(self, keys: Iterable[str]) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(sorted(set(keys))):
            rows = await self._rows(
                sa.select(outbox.c.dedupe_key).where(outbox.c.dedupe_key.in_(chunk))
            )
            found.update(r[0] for r in rows)
        return found

    # -- inbox (issue 10): platform updates stored before they are confirmed ----------------

    async def add_inbox(self, rows: list[dict[str, Any]]) -> int:
        """Store updates (platform, update_id, lane, payload, received_at); one already stored
        is skipped. Returns how many were new."""
        added = 0
        for chunk in _chunks(rows):
            stmt = self._insert(inbox).on_conflict_do_nothing().returning(inbox.c.id)
            added += len(await self._rows(stmt.values(list(chunk))))
        return added

    async def pending_inbox(self, platform: str, limit: int) -> list[InboxItem]:
        rows = await self._rows(
            sa.select(inbox.c.update_id, inbox.c.lane, inbox.c.payload)
            .where(inbox.c.platform == platform, inbox.c.processed_at.is_(None))
            .order_by(inbox.c.update_id)
            .limit(limit)
        )
        return [InboxItem(platform, r.update_id, r.lane, json.loads(r.payload)) for r in rows]

    async def mark_inbox_processed(self, platform: str, update_ids: list[int], now: int) -> None:
        for chunk in _chunks(update_ids):
            await self.conn.execute(
                inbox.update()
                .where(inbox.c.platform == platform, inbox.c.update_id.in_(chunk))
                .values(processed_at=now)
            )

    async def prune_inbox(self, platform: str, processed_before: int) -> None:
        await self.conn.execute(
            inbox.delete().where(
                inbox.c.platform == platform, inbox.c.processed_at < processed_before
            )
        )

    # -- member's communities (issue 10): private commands after a restart -----------------

    async def communities_of_member(self, platform: str, user_id: str) -> list[str]:
        """External ids of the communities this user is stored as in, latest join first."""
        rows = await self._rows(
            sa.select(communities.c.external_id)
            .select_from(
                memberships.join(participants, participants.c.id == memberships.c.participant_id)
                .join(communities, communities.c.id == memberships.c.community_id)
            )
            .where(
                participants.c.platform == platform,
                participants.c.user_id == user_id,
                communities.c.platform == platform,
                memberships.c.left_at.is_(None),
            )
            .order_by(memberships.c.joined_at.desc().nulls_last(), memberships.c.id.desc())
        )
        return list(dict.fromkeys(r.external_id for r in rows))

    # -- community id changes (issue 10): a Telegram group that became a supergroup ---------

    async def change_community_id(self, platform: str, old: str, new: str) -> bool:
        """The community known as ``old`` is known as ``new`` from now on (same program,
        links and counts). False if ``old`` is unknown or ``new`` is taken."""
        if await self.community(platform, new) is not None:
            return False
        result = await self.conn.execute(
            communities.update()
            .where(communities.c.platform == platform, communities.c.external_id == old)
            .values(external_id=new)
        )
        return bool(result.rowcount)
