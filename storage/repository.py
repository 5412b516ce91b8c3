"""Repository: every query the engine needs, in plain SQLAlchemy Core, for SQLite and PostgreSQL.

A Repository wraps one connection inside one transaction. It returns the engine's records
(bot.engine.models), never driver rows. Methods that take lists are set-based: one statement
for the whole list, so batched callers pay per batch, not per item.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.engine import observe
from bot.engine.models import (
    AuditEntry,
    Community,
    DeadLetter,
    FlagStatus,
    FraudFlag,
    Grant,
    GrantStatus,
    InboxItem,
    LeaderboardRow,
    Membership,
    OutboxBacklog,
    OutboxItem,
    OutboxRoute,
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
# An outbox item due now: 0, not the writer's clock, so a process whose clock is behind the
# writer's (several hosts, a clock jump) still sees it due at once.
DUE_AT_ONCE = 0
# PostgreSQL NOTIFY channel: "<platform>:<external id>" of a community that changed program.
COMMUNITY_CHANNEL = "referral_bot_community"

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
    return Community(row.id, row.platform, row.external_id, row.name, row.program_id, row.kind)


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
        epoch=row.epoch,
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
        self,
        platform: str,
        external_id: str,
        name: str,
        program_id: int,
        now: int,
        kind: str = "group",
    ) -> Community:
        await self.conn.execute(
            self._insert(communities)
            .values(
                platform=platform,
                external_id=external_id,
                name=name,
                program_id=program_id,
                created_at=now,
                kind=kind,
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
        await self._community_changed(community_id)

    async def _community_changed(self, community_id: int) -> None:
        """Tell every process that caches this community (PostgreSQL NOTIFY: delivered when,
        and only if, this transaction commits). One process on SQLite: nothing to tell."""
        if self.dialect != "postgresql":
            return
        row = (
            await self.conn.execute(
                sa.select(communities.c.platform, communities.c.external_id).where(
                    communities.c.id == community_id
                )
            )
        ).first()
        if row is not None:
            await self.conn.execute(
                sa.select(sa.func.pg_notify(COMMUNITY_CHANNEL, f"{row[0]}:{row[1]}"))
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

        An upsert: a participant another process created meanwhile is found, not a conflict
        (see ``upsert_participants``, which also says who was created here).
        """
        return [pid for pid, _ in await self.upsert_participants(rows)]

    # -- multi-process guards (issue 11): inserts that lose a race find the winner's row ----

    async def upsert_participants(self, rows: list[dict[str, Any]]) -> list[tuple[int, bool]]:
        """(id, created here) for each row, in order: ``INSERT … ON CONFLICT DO NOTHING``,
        then the rows another transaction inserted first are read back. So the same person
        joining two communities served by two processes is one participant, never an error.

        Unordered RETURNING of the id with the unique identity, matched back by identity:
        *ordered* RETURNING makes SQLAlchemy insert SQLite rows one by one (a thread hop each).
        """
        if not rows:
            return []
        c = participants.c
        result = await self.conn.execute(
            self._insert(participants)
            .on_conflict_do_nothing(index_elements=["program_id", "platform", "user_id"])
            .returning(c.id, c.program_id, c.platform, c.user_id),
            rows,
        )
        created = {(r.program_id, r.platform, r.user_id): r.id for r in result.all()}
        keys = [(r["program_id"], r["platform"], r["user_id"]) for r in rows]
        lost = [k for k in keys if k not in created]
        found = {k: p.id for k, p in (await self.participants_by_identity(lost)).items()}
        return [(created[k], True) if k in created else (found[k], False) for k in keys]

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
        """A membership another process stored meanwhile is kept (an upsert, never a conflict)."""
        await self._executemany(self._insert(memberships).on_conflict_do_nothing(), rows)

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

    # -- codes and links: input and words (issue 8, items 8-16) ------------------------------

    async def code_of_link(self, program_id: int, urls: list[str]) -> str | None:
        """The code (active or not) behind a personal link made in this program, if any."""
        if not urls:
            return None
        return (
            await self.conn.execute(
                sa.select(referral_codes.c.code)
                .join(referral_links, referral_links.c.code_id == referral_codes.c.id)
                .where(referral_links.c.url.in_(urls), referral_codes.c.program_id == program_id)
                .limit(1)
            )
        ).scalar_one_or_none()

    async def codes_revoked_since(self, participant_id: int, since: int) -> int:
        return (
            await self.conn.execute(
                sa.select(sa.func.count()).where(
                    referral_codes.c.participant_id == participant_id,
                    referral_codes.c.revoked_at >= since,
                )
            )
        ).scalar_one()

    async def latest_code(self, participant_id: int) -> ReferralCode | None:
        """A member's most recent code, active or revoked (a banned member's old link)."""
        row = (
            await self.conn.execute(
                sa.select(referral_codes)
                .where(referral_codes.c.participant_id == participant_id)
                .order_by(referral_codes.c.id.desc())
                .limit(1)
            )
        ).first()
        return _code(row) if row else None

    async def links_of_code(self, code_id: int) -> list[tuple[int, str]]:
        """(community id, url) of every personal link made for one code."""
        rows = await self._rows(
            sa.select(referral_links.c.community_id, referral_links.c.url).where(
                referral_links.c.code_id == code_id
            )
        )
        return [(community_id, url) for community_id, url in rows]

    # -- Discord hardening (issue 9): links whose invite is gone ------------------------------

    async def delete_links(self, community_id: int, urls: Sequence[str]) -> int:
        """Forget links the platform no longer has (the next request makes a new one)."""
        if not urls:
            return 0
        result = await self.conn.execute(
            referral_links.delete().where(
                referral_links.c.community_id == community_id,
                referral_links.c.url.in_(list(urls)),
            )
        )
        return int(result.rowcount or 0)

    async def links_of_participant(self, community_id: int, participant_id: int) -> list[str]:
        """Every link made in a community for any code (active or not) of one participant."""
        rows = await self._rows(
            sa.select(referral_links.c.url)
            .join(referral_codes, referral_codes.c.id == referral_links.c.code_id)
            .where(
                referral_links.c.community_id == community_id,
                referral_codes.c.participant_id == participant_id,
            )
        )
        return [r[0] for r in rows]

    async def links_of_departed(self, community_id: int) -> list[str]:
        """Links made in a community for members who have left it."""
        rows = await self._rows(
            sa.select(referral_links.c.url)
            .join(referral_codes, referral_codes.c.id == referral_links.c.code_id)
            .join(
                memberships,
                sa.and_(
                    memberships.c.participant_id == referral_codes.c.participant_id,
                    memberships.c.community_id == referral_links.c.community_id,
                ),
            )
            .where(
                referral_links.c.community_id == community_id,
                memberships.c.left_at.is_not(None),
            )
        )
        return [r[0] for r in rows]

    async def join_record(
        self, community_id: int, participant_id: int
    ) -> tuple[str | None, list[str], int | None, int | None] | None:
        """How a member's latest join was recorded: (source, candidates, joined_at, left_at)."""
        row = (
            await self.conn.execute(
                sa.select(
                    memberships.c.join_source,
                    memberships.c.join_details,
                    memberships.c.joined_at,
                    memberships.c.left_at,
                ).where(
                    memberships.c.community_id == community_id,
                    memberships.c.participant_id == participant_id,
                )
            )
        ).first()
        if row is None:
            return None
        details = json.loads(row.join_details) if row.join_details else {}
        return row.join_source, list(details.get("candidates") or []), row.joined_at, row.left_at

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
        _count_transitions(self, [("new", _value(r["status"])) for r in rows])
        return [ids[(r["program_id"], r["referred_id"])] for r in rows]

    async def due_referrals(self, now: int, limit: int) -> list[Referral]:
        """Due pending referrals, claimed: on PostgreSQL the rows are locked until this
        transaction ends and rows another process is sweeping are skipped (SKIP LOCKED)."""
        query = (
            sa.select(referrals)
            .where(referrals.c.status == ReferralStatus.PENDING.value, referrals.c.due_at <= now)
            .order_by(referrals.c.due_at)
            .limit(limit)
        )
        if self.dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)
        return [_referral(r) for r in await self._rows(query)]

    async def update_referrals(self, rows: list[dict[str, Any]]) -> set[int]:
        """Each row: ``rid`` plus status, due_at, converted_at, ended_at, reason, and ``expect``:
        the status the caller read. A compare-and-set: a row whose status is no longer
        ``expect`` (another process changed it meanwhile) is left alone. Returns the ids that
        were changed; the caller applies the consequences (leaderboard, grants) to those only.

        Rows with the same values share one ``UPDATE … WHERE id IN (…) RETURNING id``.
        A row without ``expect`` is updated whatever its status (avoid: it can overwrite).
        """
        groups: dict[tuple[Any, ...], list[int]] = defaultdict(list)
        for r in rows:
            values = (r.get("expect"), r["status"], r["due_at"], r["converted_at"])
            groups[(*values, r["ended_at"], r["reason"])].append(r["rid"])
        won: set[int] = set()
        for (expect, status, due_at, converted_at, ended_at, reason), ids in groups.items():
            for chunk in _chunks(ids):
                stmt = referrals.update().where(referrals.c.id.in_(chunk))
                if expect is not None:
                    stmt = stmt.where(referrals.c.status == expect)
                stmt = stmt.values(
                    status=status,
                    due_at=due_at,
                    converted_at=converted_at,
                    ended_at=ended_at,
                    reason=reason,
                ).returning(referrals.c.id)
                changed = {r[0] for r in await self._rows(stmt)}
                won |= changed
                if changed and observe.listening():  # metrics: the transitions really made
                    _count_transitions(
                        self, [(_value(expect or "unknown"), _value(status))] * len(changed)
                    )
        return won

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
        for g in created:
            observe.after_commit(self, "grant", kind=_value(g.kind), side=g.side)
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
                grants.c.kind.in_([RewardKind.ROLE.value, RewardKind.TAG.value]),
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

    # rewards and balances (issue 8): roles that follow the member, ready notices, coupon waits

    async def apply_role_grants(self, grant_ids: list[int], now: int) -> dict[int, int]:
        """Available role grants become applied (redeemed); returns the new epoch of each."""
        return await self._set_grant_status(
            grant_ids,
            GrantStatus.REDEEMED.value,
            (GrantStatus.AVAILABLE.value,),
            redeemed_at=now,
        )

    async def applied_roles_of(self, participant_ids: Iterable[int]) -> dict[int, list[Grant]]:
        """Role grants currently given to each participant (status redeemed)."""
        out: dict[int, list[Grant]] = defaultdict(list)
        for chunk in _chunks(sorted(set(participant_ids))):
            rows = await self._rows(
                sa.select(grants)
                .where(
                    grants.c.participant_id.in_(chunk),
                    grants.c.kind.in_([RewardKind.ROLE.value, RewardKind.TAG.value]),
                    grants.c.status == GrantStatus.REDEEMED.value,
                )
                .order_by(grants.c.id)
            )
            for r in rows:
                out[r.participant_id].append(_grant(r))
        return out

    async def grants_of_referrals(self, referral_ids: Iterable[int]) -> list[Grant]:
        """The newcomer's own (referee) grants made for these referrals."""
        out: list[Grant] = []
        for chunk in _chunks(sorted(set(referral_ids))):
            rows = await self._rows(
                sa.select(grants).where(grants.c.referral_id.in_(chunk)).order_by(grants.c.id)
            )
            out.extend(_grant(r) for r in rows)
        return out

    async def ready_untold_grants(self, now: int, limit: int) -> list[Grant]:
        """Available grants whose holding period has ended and whose member was not told yet."""
        rows = await self._rows(
            sa.select(grants)
            .where(
                grants.c.ready_told_at.is_(None),
                grants.c.available_at <= now,
                grants.c.status == GrantStatus.AVAILABLE.value,
            )
            .order_by(grants.c.available_at, grants.c.id)
            .limit(limit)
        )
        return [_grant(r) for r in rows]

    async def mark_ready_told(self, grant_ids: list[int], now: int) -> None:
        for chunk in _chunks(sorted(set(grant_ids))):
            await self.conn.execute(
                grants.update()
                .where(grants.c.id.in_(chunk), grants.c.ready_told_at.is_(None))
                .values(ready_told_at=now)
            )

    async def mark_waiting(self, grant_id: int, now: int) -> None:
        """A coupon grant whose pool was empty at redeem: its member waits for a refill."""
        await self.conn.execute(
            grants.update()
            .where(grants.c.id == grant_id, grants.c.waiting_since.is_(None))
            .values(waiting_since=now)
        )

    async def waiting_for_pool(self, program_id: int, pool: str, limit: int) -> list[Grant]:
        """Coupon grants still available that wait for this pool, longest waiting first."""
        rows = await self._rows(
            sa.select(grants)
            .where(
                grants.c.program_id == program_id,
                grants.c.waiting_since.is_not(None),
                grants.c.status == GrantStatus.AVAILABLE.value,
                grants.c.kind == RewardKind.COUPON.value,
                grants.c.value == pool,
            )
            .order_by(grants.c.waiting_since, grants.c.id)
            .limit(limit)
        )
        return [_grant(r) for r in rows]

    async def clear_waiting(self, grant_ids: list[int]) -> None:
        for chunk in _chunks(sorted(set(grant_ids))):
            await self.conn.execute(
                grants.update().where(grants.c.id.in_(chunk)).values(waiting_since=None)
            )

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
        for f in created:
            observe.after_commit(self, "flag", detector=f.detector)
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
            # An exact platform id comes first: a display name can never hide it.
            .order_by(sa.case((participants.c.user_id == wanted, 0), else_=1), participants.c.id)
            .limit(5)
        )
        return [_participant(r) for r in rows]

    async def hold_grants(self, grant_ids: list[int]) -> dict[int, int]:
        """Hold grants not yet revoked; returns the new epoch of each one held."""
        return await self._set_grant_status(
            grant_ids,
            GrantStatus.HELD.value,
            (GrantStatus.AVAILABLE.value, GrantStatus.REDEEMED.value),
        )

    async def release_grants(self, grant_ids: list[int]) -> dict[int, int]:
        """Held grants become available; returns the new epoch of each one released."""
        return await self._set_grant_status(
            grant_ids, GrantStatus.AVAILABLE.value, (GrantStatus.HELD.value,)
        )

    async def _set_grant_status(
        self, grant_ids: list[int], status: str, expected: tuple[str, ...], **values: Any
    ) -> dict[int, int]:
        out: dict[int, int] = {}
        for chunk in _chunks(sorted(set(grant_ids))):
            rows = await self._rows(
                grants.update()
                .where(grants.c.id.in_(chunk), grants.c.status.in_(expected))
                .values(status=status, epoch=grants.c.epoch + 1, **values)
                .returning(grants.c.id, grants.c.epoch)
            )
            out.update({r.id: r.epoch for r in rows})
        return out

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
                actor=actor[:200],  # the column's width: a long name is cut, never an error
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
        """Queue effects; a row whose dedupe key is already queued is skipped (exactly once).

        Each row is routed by its community (``route_key``, from the payload's community)."""
        self.outbox_added = self.outbox_added or bool(rows)
        for r in rows:
            if r["next_attempt_at"] <= r["created_at"]:
                r["next_attempt_at"] = DUE_AT_ONCE  # due on any process, whatever its clock
            if "route_key" not in r:
                community = json.loads(r["payload"]).get("community")
                r["route_key"] = None if community is None else str(community)[:64]
        for chunk in _chunks(rows):
            await self.conn.execute(self._insert(outbox).on_conflict_do_nothing(), list(chunk))

    async def due_outbox(
        self,
        now: int,
        limit: int,
        platforms: Sequence[str],
        routes: Mapping[str, OutboxRoute | None] | None = None,
    ) -> list[OutboxItem]:
        """Items due for the platforms (and, with ``routes``, the communities or Discord
        shards) this process serves; the others are left to their process, untouched."""
        query = (
            sa.select(outbox)
            .where(
                outbox.c.delivered_at.is_(None),
                outbox.c.failed_at.is_(None),
                outbox.c.next_attempt_at <= now,
                _routed(platforms, routes or {}),
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

    async def mark_failed(
        self, outbox_id: int, attempts: int, now: int, error: str, reason: str = "refused"
    ) -> None:
        """A dead letter: no longer claimed, kept with why (``reason``) until retried."""
        await self.conn.execute(
            outbox.update()
            .where(outbox.c.id == outbox_id)
            .values(attempts=attempts, failed_at=now, last_error=error[:500], dead_reason=reason)
        )

    async def outbox_keys(self, keys: Iterable[str]) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(sorted(set(keys))):
            rows = await self._rows(
                sa.select(outbox.c.dedupe_key).where(outbox.c.dedupe_key.in_(chunk))
            )
            found.update(r[0] for r in rows)
        return found

    # -- operations (issue 14: health and metrics) ----------------------------------------

    async def outbox_backlog(self) -> list[OutboxBacklog]:
        """Per platform: how many items wait, the oldest one's creation, the earliest due time."""
        c = outbox.c
        rows = await self._rows(
            sa.select(
                c.platform,
                sa.func.count(),
                sa.func.min(c.created_at),
                # Due since: a fresh row is due at 0 ("at once"), so never before its creation.
                sa.func.min(
                    sa.case(
                        (c.next_attempt_at > c.created_at, c.next_attempt_at),
                        else_=c.created_at,
                    )
                ),
            )
            .where(c.delivered_at.is_(None), c.failed_at.is_(None))
            .group_by(c.platform)
        )
        return [OutboxBacklog(r[0], int(r[1]), r[2], r[3]) for r in rows]


    # -- Discord hardening (issue 9): items waiting for an admin's fix ------------------------

    async def outbox_due_now(
        self, platform: str, kinds: Sequence[str], community: str, marker: str, now: int
    ) -> int:
        rows = await self._rows(
            sa.select(outbox.c.id, outbox.c.payload).where(
                outbox.c.platform == platform,
                outbox.c.kind.in_(list(kinds)),
                outbox.c.delivered_at.is_(None),
                outbox.c.failed_at.is_(None),
                outbox.c.next_attempt_at > now,
                outbox.c.last_error.startswith(marker, autoescape=True),
            )
        )
        ids = [r.id for r in rows if str(json.loads(r.payload).get("community")) == community]
        for chunk in _chunks(ids):
            await self.conn.execute(
                outbox.update().where(outbox.c.id.in_(list(chunk))).values(next_attempt_at=now)
            )
        return len(ids)

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
    # -- outbox: dead letters and claims (issue 11) --

    async def record_attempt(self, outbox_id: int, attempts: int) -> None:
        """An attempt is about to be made: counted before the platform is called."""
        await self.conn.execute(
            outbox.update().where(outbox.c.id == outbox_id).values(attempts=attempts)
        )

    async def release_outbox(self, ids: list[int], now: int) -> None:
        """Claimed items this process will not deliver (a clean stop): due again at once,
        for whichever process runs next, with no attempt spent."""
        for chunk in _chunks(ids):
            await self.conn.execute(
                outbox.update()
                .where(outbox.c.id.in_(chunk), outbox.c.delivered_at.is_(None))
                .where(outbox.c.failed_at.is_(None))
                .values(next_attempt_at=DUE_AT_ONCE)
            )

    async def revive_outbox(
        self,
        platforms: Sequence[str],
        now: int,
        attempts: int,
        *,
        reasons: Sequence[str] = ("attempts",),
        communities: Sequence[str] | None = None,
    ) -> int:
        """Dead letters back in the queue, due now, with ``attempts`` already spent; returns
        how many. Only those given up for ``reasons``, optionally of some communities."""
        stmt = outbox.update().where(
            outbox.c.failed_at.is_not(None),
            outbox.c.delivered_at.is_(None),
            outbox.c.platform.in_(list(platforms)),
            outbox.c.dead_reason.in_(list(reasons)),
        )
        if communities is not None:
            stmt = stmt.where(outbox.c.route_key.in_(list(communities)))
        result = await self.conn.execute(
            stmt.values(
                failed_at=None, dead_reason=None, next_attempt_at=DUE_AT_ONCE, attempts=attempts
            )
        )
        return result.rowcount or 0

    async def dead_letters(self, platform: str, communities: Sequence[str]) -> list[DeadLetter]:
        """The dead letters of some communities, grouped by kind, reason and error."""
        rows = await self._rows(
            sa.select(outbox.c.kind, outbox.c.dead_reason, outbox.c.last_error, sa.func.count())
            .where(
                outbox.c.failed_at.is_not(None),
                outbox.c.delivered_at.is_(None),
                outbox.c.platform == platform,
                outbox.c.route_key.in_(list(communities)),
            )
            .group_by(outbox.c.kind, outbox.c.dead_reason, outbox.c.last_error)
            .order_by(sa.func.count().desc(), outbox.c.kind)
        )
        return [DeadLetter(k, r or "refused", e or "", n) for k, r, e, n in rows]


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


def _routed(platforms: Sequence[str], routes: Mapping[str, OutboxRoute | None]) -> Any:
    """The claim's WHERE for routing: each platform, narrowed by its route if it has one."""
    terms = []
    for name in platforms:
        route = routes.get(name)
        term = outbox.c.platform == name
        if route is not None and route.communities is not None:
            term = sa.and_(term, outbox.c.route_key.in_(sorted(route.communities)))
        if route is not None and route.shard_count > 0:
            # Discord: shard = (guild_id >> 22) % shard_count; >> 22 is integer division.
            # CASE: the cast is evaluated for this platform's rows only (others aren't numbers).
            guild = sa.case((outbox.c.platform == name, sa.cast(outbox.c.route_key, sa.BigInteger)))
            shard = guild / 4194304 % route.shard_count
            term = sa.and_(term, shard.in_(list(route.shard_ids)))
        terms.append(term)
    return sa.or_(*terms) if terms else sa.false()


# -- metrics (issue 14: run it for real) --------------------------------------------------------


def _count_transitions(repo: Repository, changes: list[tuple[str, str]]) -> None:
    """Count referral status changes once the transaction commits (never on a rollback)."""
    if not observe.listening():
        return
    counts: dict[tuple[str, str], int] = {}
    for old, new in changes:
        if old != new:
            counts[(old, new)] = counts.get((old, new), 0) + 1
    for (old, new), n in counts.items():
        observe.after_commit(repo, "referral.transition", n, from_status=old, to_status=new)


def _value(enum_or_text: Any) -> str:
    return str(getattr(enum_or_text, "value", enum_or_text))
