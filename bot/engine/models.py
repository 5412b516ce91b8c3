"""The engine's records. Repositories return these, never driver rows."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ReferralStatus(StrEnum):
    PENDING = "pending"
    CONVERTED = "converted"
    LEFT = "left"
    EXPIRED = "expired"
    HELD = "held"  # fraud review: counts only once a moderator approves
    REJECTED = "rejected"  # taken back


class RewardKind(StrEnum):
    ROLE = "role"
    COUPON = "coupon"
    POINTS = "points"
    MESSAGE = "message"
    CHANNEL_ACCESS = "channel_access"
    TAG = "tag"  # a member tag (Telegram): applied like a role, never claimed


# Rewards applied to the member where they are (given, taken back on revoke or hold).
APPLIED_KINDS = frozenset({RewardKind.ROLE, RewardKind.TAG})
TAG_MAX_LENGTH = 16  # Telegram's limit for a member tag


class GrantStatus(StrEnum):
    AVAILABLE = "available"
    REDEEMED = "redeemed"
    REVOKED = "revoked"
    HELD = "held"


class Audience(StrEnum):
    MEMBER = "member"
    MODERATOR = "moderator"
    ADMIN = "admin"


@dataclass(slots=True)
class Community:
    id: int
    platform: str
    external_id: str
    name: str
    program_id: int
    # "group", or "channel": a broadcast channel, whose subscribers can't post, so a referral
    # there converts on time stayed alone and no welcome is posted to every subscriber.
    kind: str = "group"


CHANNEL = "channel"  # Community.kind of a broadcast channel


@dataclass(slots=True)
class Participant:
    """A person in a program: one platform account, across the program's communities."""

    id: int
    program_id: int
    platform: str
    user_id: str
    display_name: str
    locale: str | None
    account_created_at: int | None
    first_joined_at: int | None
    origin: str
    message_count: int
    banned_at: int | None
    code_lock_until: int | None


@dataclass(slots=True)
class Membership:
    id: int
    participant_id: int
    community_id: int
    joined_at: int | None
    left_at: int | None
    first_joined_at: int | None
    join_count: int
    message_count: int
    roles: tuple[str, ...]


@dataclass(slots=True)
class ReferralCode:
    id: int
    program_id: int
    participant_id: int
    code: str
    created_at: int
    revoked_at: int | None


@dataclass(slots=True)
class Referral:
    id: int
    program_id: int
    referrer_id: int
    referred_id: int
    code_id: int | None
    community_id: int
    source: str
    status: ReferralStatus
    created_at: int
    due_at: int
    expires_at: int
    converted_at: int | None
    ended_at: int | None
    reason: str | None
    risk: int = 0  # 0-100, combined from open fraud flags


@dataclass(slots=True)
class Tier:
    id: int
    program_id: int
    name: str
    threshold: int
    reward_kind: RewardKind
    reward_value: str


@dataclass(slots=True)
class Grant:
    id: int
    program_id: int
    participant_id: int
    tier_id: int | None
    referral_id: int | None
    side: str  # referrer | referee
    label: str  # the tier name, or "welcome" for a referee reward
    kind: RewardKind
    value: str
    status: GrantStatus
    created_at: int
    available_at: int
    redeemed_at: int | None
    coupon_code: str | None
    epoch: int = 0  # bumped on each apply (a role given), hold and release: names each change


@dataclass(slots=True)
class AuditEntry:
    id: int
    program_id: int
    actor: str
    action: str
    details: str
    created_at: int


@dataclass(slots=True)
class LeaderboardRow:
    participant_id: int
    display_name: str
    user_id: str
    count: int


@dataclass(slots=True)
class OutboxItem:
    id: int
    platform: str
    kind: str
    payload: dict
    dedupe_key: str
    attempts: int


class FlagStatus(StrEnum):
    OPEN = "open"
    APPROVED = "approved"  # reviewed: the referral counts
    REJECTED = "rejected"  # reviewed: the referral does not count


@dataclass(slots=True)
class FraudFlag:
    id: int
    program_id: int
    referral_id: int | None  # None: a flag on a member (e.g. a referrer's pattern)
    participant_id: int  # who the flag is about
    detector: str
    score: int  # 0-100
    reason: dict  # a catalog Text as JSON (text.from_json)
    status: FlagStatus
    created_at: int
    reviewer: str | None
    reviewed_at: int | None
    review_note: str | None


# -- operations (issue 14: health and metrics) --------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboxBacklog:
    """What waits in the outbox for one platform (neither delivered nor given up)."""

    platform: str
    waiting: int
    oldest_created_at: int | None  # the oldest waiting item's creation
    oldest_due_at: int | None  # the earliest next_attempt_at among them (due if <= now)


# -- inbox (issue 10) ------------------------------------------------------------------------


@dataclass(slots=True)
class InboxItem:
    """A platform update as received, stored before the platform was told it arrived."""

    platform: str
    update_id: int
    lane: str  # updates of one lane (a chat) are handled in order
    payload: dict


# -- several processes, dead letters (issue 11) --------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboxRoute:
    """Which of a platform's outbox items this process delivers.

    ``communities``: only these community ids (external); ``shard_count``/``shard_ids``: only
    the communities whose Discord shard, ``(id >> 22) % shard_count``, is one of ``shard_ids``.
    """

    communities: frozenset[str] | None = None
    shard_count: int = 0
    shard_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Outbox items given up on, grouped for an admin: what, why, how many."""

    kind: str
    # "attempts" (retried once the platform delivers again), "refused", or "unreachable" (a
    # member who can't be messaged: never started the bot, or blocked it)
    reason: str
    error: str
    count: int
