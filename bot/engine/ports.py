"""The storage port: what the engine needs from a database, in the engine's own terms.

storage.repository.Repository implements it over SQLAlchemy Core (SQLite and PostgreSQL).
Generated from that class's signatures, then kept by hand: change both together.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from bot.engine.models import (
    AuditEntry,
    Community,
    DeadLetter,
    FraudFlag,
    Grant,
    InboxItem,
    LeaderboardRow,
    Membership,
    OutboxBacklog,
    OutboxItem,
    OutboxRoute,
    Participant,
    Referral,
    ReferralCode,
    Tier,
)

R = TypeVar("R")
ParticipantKey = tuple[int, str, str]  # (program_id, platform, user_id)


class Repository(Protocol):
    """One transaction's view of the database. List-taking methods are set-based."""

    hooks: list[Callable[[], None]]

    def after_commit(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` once this transaction has committed (never if it rolls back)."""
        ...

    async def create_program(self, name: str, settings: dict[str, Any], now: int) -> int: ...

    async def program(self, program_id: int) -> tuple[str, dict[str, Any], int] | None: ...

    async def program_settings(self, program_ids: Iterable[int]) -> dict[int, dict[str, Any]]: ...

    async def save_program_settings(self, program_id: int, settings: dict[str, Any]) -> None: ...

    async def programs_created(self) -> dict[int, int]: ...

    async def community(self, platform: str, external_id: str) -> Community | None: ...

    async def community_by_id(self, community_id: int) -> Community | None: ...

    async def communities_by_ids(self, ids: Iterable[int]) -> dict[int, Community]: ...

    async def create_community(
        self,
        platform: str,
        external_id: str,
        name: str,
        program_id: int,
        now: int,
        kind: str = "group",
    ) -> Community: ...

    async def program_communities(self, program_id: int) -> list[Community]: ...

    async def program_has_activity(self, program_id: int) -> bool: ...

    async def move_community(self, community_id: int, target_program_id: int) -> None:
        """Re-home a community and its members in another program (before any activity)."""
        ...

    async def participants_by_identity(
        self, keys: Iterable[ParticipantKey]
    ) -> dict[ParticipantKey, Participant]: ...

    async def participant(self, participant_id: int) -> Participant | None: ...

    async def participants(self, ids: Iterable[int]) -> dict[int, Participant]: ...

    async def insert_participants(self, rows: list[dict[str, Any]]) -> list[int]:
        """Insert new participants; returns their ids in the order of ``rows``."""
        ...

    async def update_participants(self, rows: list[dict[str, Any]]) -> None:
        """Each row: ``pid`` plus the columns to set (all rows must set the same columns)."""
        ...

    # -- multi-process guards (issue 11) --

    async def upsert_participants(self, rows: list[dict[str, Any]]) -> list[tuple[int, bool]]:
        """(id, created by this transaction) per row, in order; a row another transaction
        inserted first is found, never a conflict."""
        ...

    async def memberships_of(
        self, participant_ids: Iterable[int]
    ) -> dict[int, list[Membership]]: ...

    async def active_members(self, community_id: int) -> list[tuple[Membership, Participant]]:
        """Everyone stored as currently in a community."""
        ...

    async def insert_memberships(self, rows: list[dict[str, Any]]) -> None: ...

    async def update_memberships(self, rows: list[dict[str, Any]]) -> None:
        """Each row: ``mid`` plus the columns to set (all rows must set the same columns)."""
        ...

    async def add_message_counts(
        self, by_participant: list[tuple[int, int]], by_membership: list[tuple[int, int]]
    ) -> None: ...

    async def record_code_attempt(self, participant_id: int, entered: str, now: int) -> None: ...

    async def code_attempts_since(self, participant_id: int, since: int) -> int: ...

    async def active_code(self, participant_id: int) -> ReferralCode | None: ...

    async def codes_by_value(self, values: Iterable[str]) -> dict[str, ReferralCode]: ...

    async def insert_codes(self, rows: list[dict[str, Any]]) -> dict[int, ReferralCode]:
        """Insert codes; a row whose code already exists (a collision) is skipped."""
        ...

    async def revoke_code(self, code_id: int, now: int) -> None: ...

    async def link_for(self, code_id: int, community_id: int) -> str | None: ...

    async def links_of_community(self, community_id: int) -> dict[str, str]:
        """Shareable links made in a community whose code is still active: url -> code."""
        ...

    async def save_link(self, code_id: int, community_id: int, url: str, now: int) -> str: ...

    # codes and links: input and words (issue 8, items 8-16)

    async def code_of_link(self, program_id: int, urls: list[str]) -> str | None:
        """The code (active or not) behind a personal link made in this program, if any."""
        ...

    async def codes_revoked_since(self, participant_id: int, since: int) -> int: ...

    async def latest_code(self, participant_id: int) -> ReferralCode | None:
        """A member's most recent code, active or revoked (a banned member's old link)."""
        ...

    async def links_of_code(self, code_id: int) -> list[tuple[int, str]]:
        """(community id, url) of every personal link made for one code."""
        ...

    # -- Discord hardening (issue 9): links whose invite is gone ------------------------------

    async def delete_links(self, community_id: int, urls: Sequence[str]) -> int:
        """Forget links the platform no longer has (the next request makes a new one)."""
        ...

    async def links_of_participant(self, community_id: int, participant_id: int) -> list[str]:
        """Every link made in a community for any code (active or not) of one participant."""
        ...

    async def links_of_departed(self, community_id: int) -> list[str]:
        """Links made in a community for members who have left it."""
        ...

    async def join_record(
        self, community_id: int, participant_id: int
    ) -> tuple[str | None, list[str], int | None, int | None] | None:
        """How a member's latest join was recorded: (source, candidates, joined_at, left_at)."""
        ...

    async def referral_of_referred(
        self, program_id: int, participant_id: int
    ) -> Referral | None: ...

    async def referral(self, referral_id: int) -> Referral | None: ...

    async def insert_referrals(self, rows: list[dict[str, Any]]) -> list[int]:
        """Insert referrals; returns their ids in the order of ``rows``."""
        ...

    async def due_referrals(self, now: int, limit: int) -> list[Referral]: ...

    async def update_referrals(self, rows: list[dict[str, Any]]) -> set[int]:
        """Each row: ``rid`` plus status, due_at, converted_at, ended_at, reason, and
        ``expect`` (the status read). Compare-and-set: returns the ids actually changed."""
        ...

    async def open_referrals_of_referred(
        self, participant_ids: Iterable[int]
    ) -> list[Referral]: ...

    async def referral_counts(self, referrer_id: int) -> dict[str, int]: ...

    async def converted_counts(self, referrer_ids: Iterable[int]) -> dict[int, int]: ...

    async def recent_referrals(self, referrer_id: int, limit: int) -> list[Referral]: ...

    async def tiers(self, program_id: int) -> list[Tier]: ...

    async def tiers_for_programs(self, program_ids: Iterable[int]) -> dict[int, list[Tier]]: ...

    async def insert_tier(
        self, program_id: int, name: str, threshold: int, kind: str, value: str, now: int
    ) -> int: ...

    async def update_tier(self, tier_id: int, threshold: int, kind: str, value: str) -> None: ...

    async def remove_tier(self, tier_id: int, now: int) -> None: ...

    async def insert_grants(self, rows: list[dict[str, Any]]) -> list[Grant]:
        """Insert grants; one whose dedupe key exists is skipped. Returns the ones created."""
        ...

    async def grants_of(self, participant_id: int) -> list[Grant]: ...

    async def mark_redeemed(self, grant_id: int, now: int, coupon_code: str | None) -> bool: ...

    async def mark_redeemed_many(self, grant_ids: list[int], now: int) -> None: ...

    async def revoke_grants(self, grant_ids: list[int], now: int) -> None:
        """Revoke grants and free their dedupe keys, so reaching the tier again grants it again."""
        ...

    async def due_role_grants(self, now: int, limit: int) -> list[Grant]: ...

    async def unannounced_grants(self, limit: int) -> list[Grant]: ...

    async def mark_announced(self, grant_ids: list[int], now: int) -> None: ...

    async def add_coupons(self, program_id: int, pool: str, codes: list[str], now: int) -> int: ...

    async def claim_coupon(self, program_id: int, pool: str, grant_id: int) -> str | None:
        """Assign the oldest free coupon of a pool to a grant; None when the pool is empty."""
        ...

    async def coupon_stock(self, program_id: int) -> dict[str, tuple[int, int]]:
        """Per pool: (free, total)."""
        ...

    # rewards and balances (issue 8): roles that follow the member, ready notices, coupon waits

    async def apply_role_grants(self, grant_ids: list[int], now: int) -> dict[int, int]:
        """Available role grants become applied (redeemed); returns the new epoch of each."""
        ...

    async def applied_roles_of(self, participant_ids: Iterable[int]) -> dict[int, list[Grant]]:
        """Role grants currently given to each participant (status redeemed)."""
        ...

    async def grants_of_referrals(self, referral_ids: Iterable[int]) -> list[Grant]:
        """The newcomer's own (referee) grants made for these referrals."""
        ...

    async def ready_untold_grants(self, now: int, limit: int) -> list[Grant]:
        """Available grants whose holding period has ended and whose member was not told yet."""
        ...

    async def mark_ready_told(self, grant_ids: list[int], now: int) -> None: ...

    async def mark_waiting(self, grant_id: int, now: int) -> None:
        """A coupon grant whose pool was empty at redeem: its member waits for a refill."""
        ...

    async def waiting_for_pool(self, program_id: int, pool: str, limit: int) -> list[Grant]:
        """Coupon grants still available that wait for this pool, longest waiting first."""
        ...

    async def clear_waiting(self, grant_ids: list[int]) -> None: ...

    async def bump_leaderboard(self, rows: list[tuple[int, str, int, int]]) -> None:
        """Add deltas: rows of (program_id, period, participant_id, delta)."""
        ...

    async def leaderboard_top(
        self, program_id: int, period: str, limit: int
    ) -> list[LeaderboardRow]: ...

    async def qualified_for(self, program_id: int, threshold: int) -> list[Participant]:
        """Members whose converted referrals (all time) reach ``threshold``."""
        ...

    async def leaderboard_rank(
        self, program_id: int, period: str, participant_id: int
    ) -> tuple[int, int] | None: ...

    async def insert_flags(self, rows: list[dict[str, Any]]) -> list[FraudFlag]:
        """Insert flags; one whose dedupe key exists is skipped. Returns the ones created."""
        ...

    async def flag(self, flag_id: int) -> FraudFlag | None: ...

    async def flag_queue(
        self, program_id: int, riskiest: bool, limit: int, offset: int
    ) -> tuple[list[FraudFlag], int]:
        """Open flags, newest or riskiest first, and how many are open in all."""
        ...

    async def flags_about(
        self, referral_ids: Iterable[int], participant_ids: Iterable[int]
    ) -> list[FraudFlag]:
        """Every flag on these referrals or these members, oldest first."""
        ...

    async def review_flags(
        self, flag_ids: list[int], status: str, reviewer: str, note: str | None, now: int
    ) -> int:
        """Close open flags; returns how many were still open."""
        ...

    async def overdue_flags(self, program_id: int, before: int, limit: int) -> list[FraudFlag]: ...

    async def set_risk(self, risks: dict[int, int]) -> None: ...

    async def referrals_since(self, referrer_ids: Iterable[int], since: int) -> list[Referral]: ...

    async def referrals_of_referred(self, participant_ids: Iterable[int]) -> list[Referral]: ...

    async def referrals_by(
        self, referrer_ids: Iterable[int], statuses: Sequence[str]
    ) -> list[Referral]: ...

    async def silent_referred(self, referrer_ids: Iterable[int], before: int) -> dict[int, int]:
        """Per referrer: referred members who joined before ``before`` and never posted."""
        ...

    async def linked_identities(self, participant_ids: Iterable[int]) -> set[tuple[int, int]]:
        """Pairs (a, b), both directions, that an admin linked as one person."""
        ...

    async def link_identities(self, program_id: int, a: int, b: int, by: str, now: int) -> bool: ...

    async def set_ban(self, participant_id: int, at: int | None, reason: str | None) -> None: ...

    async def find_participants(self, program_id: int, text: str) -> list[Participant]:
        """Members of a program by platform id, or else by display name (any case).

        An exact platform id comes first.
        """
        ...

    async def hold_grants(self, grant_ids: list[int]) -> dict[int, int]:
        """Hold grants not yet revoked; returns the new epoch of each one held."""
        ...

    async def release_grants(self, grant_ids: list[int]) -> dict[int, int]:
        """Held grants become available; returns the new epoch of each one released."""
        ...

    async def insert_link_token(
        self, token_hash: str, program_id: int, now: int, expires: int
    ) -> None: ...

    async def use_link_token(self, token_hash: str, now: int) -> int | None:
        """Spend a valid token once; returns its program, or None if unknown, used or expired."""
        ...

    async def add_audit(
        self,
        program_id: int,
        community_id: int | None,
        actor: str,
        action: str,
        details: dict[str, Any],
        now: int,
    ) -> None: ...

    async def audit(self, program_id: int, limit: int) -> list[AuditEntry]: ...

    async def add_outbox(self, rows: list[dict[str, Any]]) -> None:
        """Queue effects; a row whose dedupe key is already queued is skipped (exactly once)."""
        ...

    async def due_outbox(
        self,
        now: int,
        limit: int,
        platforms: Sequence[str],
        routes: Mapping[str, OutboxRoute | None] | None = None,
    ) -> list[OutboxItem]:
        """Items due for the platforms (and with ``routes`` the communities or Discord shards)
        this process serves; others are left to their process."""
        ...

    async def lease_outbox(self, ids: list[int], until: int) -> None: ...

    async def mark_delivered(self, outbox_id: int, now: int) -> None: ...

    async def mark_retry(self, outbox_id: int, attempts: int, next_at: int, error: str) -> None: ...

    async def mark_failed(
        self, outbox_id: int, attempts: int, now: int, error: str, reason: str = "refused"
    ) -> None:
        """A dead letter: ``reason`` "attempts" (every attempt failed), "refused", or
        "unreachable" (a member who can't be messaged)."""
        ...

    async def outbox_keys(self, keys: Iterable[str]) -> set[str]: ...

    # -- operations (issue 14: health and metrics) ----------------------------------------

    async def outbox_backlog(self) -> list[OutboxBacklog]:
        """Per platform: how many items wait, the oldest one's age, the earliest due time."""
        ...

    # -- Discord hardening (issue 9): items waiting for an admin's fix ------------------------

    async def outbox_due_now(
        self, platform: str, kinds: Sequence[str], community: str, marker: str, now: int
    ) -> int:
        """Make pending items of ``kinds`` for one community, whose last error starts with
        ``marker`` (they wait for a fix, not for a backoff), due at ``now``; how many."""
        ...

    # -- inbox (issue 10): platform updates stored before they are confirmed ----------------

    async def add_inbox(self, rows: list[dict[str, Any]]) -> int: ...

    async def pending_inbox(self, platform: str, limit: int) -> list[InboxItem]: ...

    async def mark_inbox_processed(
        self, platform: str, update_ids: list[int], now: int
    ) -> None: ...

    async def prune_inbox(self, platform: str, processed_before: int) -> None: ...

    # -- member's communities (issue 10) ----------------------------------------------------

    async def communities_of_member(self, platform: str, user_id: str) -> list[str]: ...

    # -- outbox: dead letters and claims (issue 11) --

    async def record_attempt(self, outbox_id: int, attempts: int) -> None:
        """Count an attempt before the platform is called (a crash then counts too)."""
        ...

    async def release_outbox(self, ids: list[int], now: int) -> None:
        """Claimed items this process will not deliver: due again at once, no attempt spent."""
        ...

    async def revive_outbox(
        self,
        platforms: Sequence[str],
        now: int,
        attempts: int,
        *,
        reasons: Sequence[str] = ("attempts",),
        communities: Sequence[str] | None = None,
    ) -> int:
        """Dead letters back in the queue (due now, ``attempts`` spent); returns how many."""
        ...

    async def dead_letters(self, platform: str, communities: Sequence[str]) -> list[DeadLetter]:
        """Dead letters of some communities, grouped by kind, reason and error."""
        ...

    async def change_community_id(self, platform: str, old: str, new: str) -> bool: ...


class Store(Protocol):
    """Where the engine's transactions run: a group-commit writer and read connections."""

    async def submit(
        self, op: Callable[[Repository, list[Any]], Awaitable[Sequence[Any]]], item: Any
    ) -> Any:
        """Queue ``item`` for the batch operation ``op``; resolved once its transaction commits."""
        ...

    async def write(self, fn: Callable[[Repository], Awaitable[R]]) -> R:
        """Run ``fn`` in a write transaction."""
        ...

    async def read(self, fn: Callable[[Repository], Awaitable[R]]) -> R:
        """Run ``fn`` on a read connection (a consistent snapshot)."""
        ...
