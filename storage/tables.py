"""The schema, in SQLAlchemy Core. One definition for SQLite and PostgreSQL.

Times are whole seconds since the epoch (UTC) in BIGINT columns: portable, indexable and free
of time-zone surprises between drivers. Exactly-once lives here, as UNIQUE constraints.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Id = BigInteger().with_variant(Integer(), "sqlite")  # INTEGER PRIMARY KEY is the rowid in SQLite

programs = Table(
    "programs",
    metadata,
    Column("id", Id, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("settings", Text, nullable=False, server_default="{}"),
    Column("created_at", BigInteger, nullable=False),
)

communities = Table(
    "communities",
    metadata,
    Column("id", Id, primary_key=True),
    Column("platform", String(20), nullable=False),
    Column("external_id", String(100), nullable=False),
    Column("name", String(200), nullable=False),
    Column("program_id", ForeignKey("programs.id"), nullable=False, index=True),
    Column("created_at", BigInteger, nullable=False),
    # broadcast channels (issue 10 item 16): "group" or "channel"
    Column("kind", String(20), nullable=False, server_default="group"),
    UniqueConstraint("platform", "external_id", name="uq_communities_platform_external"),
)

participants = Table(
    "participants",
    metadata,
    Column("id", Id, primary_key=True),
    Column("program_id", ForeignKey("programs.id"), nullable=False),
    Column("platform", String(20), nullable=False),
    Column("user_id", String(100), nullable=False),
    Column("display_name", String(200), nullable=False),
    Column("locale", String(20)),
    Column("account_created_at", BigInteger),
    Column("first_joined_at", BigInteger),
    # "join": first seen joining; "existing": already a member when first seen (never a referral).
    Column("origin", String(10), nullable=False, server_default="join"),
    Column("message_count", BigInteger, nullable=False, server_default="0"),
    Column("banned_at", BigInteger),
    Column("banned_reason", String(300)),
    Column("code_lock_until", BigInteger),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("program_id", "platform", "user_id", name="uq_participants_identity"),
)

memberships = Table(
    "memberships",
    metadata,
    Column("id", Id, primary_key=True),
    Column("participant_id", ForeignKey("participants.id"), nullable=False, index=True),
    Column("community_id", ForeignKey("communities.id"), nullable=False),
    Column("joined_at", BigInteger),
    Column("left_at", BigInteger),
    Column("first_joined_at", BigInteger),
    Column("join_count", Integer, nullable=False, server_default="1"),  # names each join uniquely
    Column("join_source", String(20)),
    Column("join_details", Text),
    Column("message_count", BigInteger, nullable=False, server_default="0"),
    Column("roles", Text, nullable=False, server_default=""),
    UniqueConstraint("community_id", "participant_id", name="uq_memberships_community_member"),
)

referral_codes = Table(
    "referral_codes",
    metadata,
    Column("id", Id, primary_key=True),
    Column("program_id", ForeignKey("programs.id"), nullable=False),
    Column("participant_id", ForeignKey("participants.id"), nullable=False),
    Column("code", String(20), nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger),
    # One active code per member per program.
    Index(
        "uq_referral_codes_active",
        "participant_id",
        unique=True,
        sqlite_where=text("revoked_at IS NULL"),
        postgresql_where=text("revoked_at IS NULL"),
    ),
)

referral_links = Table(
    "referral_links",
    metadata,
    Column("id", Id, primary_key=True),
    Column("code_id", ForeignKey("referral_codes.id"), nullable=False),
    Column("community_id", ForeignKey("communities.id"), nullable=False),
    Column("url", String(500), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("code_id", "community_id", name="uq_referral_links_code_community"),
)

code_attempts = Table(
    "code_attempts",
    metadata,
    Column("id", Id, primary_key=True),
    Column("participant_id", ForeignKey("participants.id"), nullable=False),
    Column("entered", String(60), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_code_attempts_recent", "participant_id", "created_at"),
)

referrals = Table(
    "referrals",
    metadata,
    Column("id", Id, primary_key=True),
    Column("program_id", ForeignKey("programs.id"), nullable=False),
    Column("referrer_id", ForeignKey("participants.id"), nullable=False),
    Column("referred_id", ForeignKey("participants.id"), nullable=False),
    Column("code_id", ForeignKey("referral_codes.id")),
    Column("community_id", ForeignKey("communities.id"), nullable=False),
    Column("source", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("risk", Integer, nullable=False, server_default="0"),
    Column("created_at", BigInteger, nullable=False),
    Column("due_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("converted_at", BigInteger),
    Column("ended_at", BigInteger),
    Column("reason", String(500)),
    # First touch: a member is referred at most once per program.
    UniqueConstraint("program_id", "referred_id", name="uq_referrals_program_referred"),
    # The sweep reads "pending and due" in due order; cost is independent of program size.
    Index("ix_referrals_status_due", "status", "due_at"),
    # status: one member's referrals by status.
    Index("ix_referrals_referrer_status", "referrer_id", "status"),
)

tiers = Table(
    "tiers",
    metadata,
    Column("id", Id, primary_key=True),
    Column("program_id", ForeignKey("programs.id"), nullable=False),
    Column("name", String(60), nullable=False),
    Column("threshold", Integer, nullable=False),
    Column("reward_kind", String(20), nullable=False),
    Column("reward_value", String(1000), nullable=False, server_default=""),
    Column("created_at", BigInteger, nullable=False),
    Column("removed_at", BigInteger),
    Index(
        "uq_tiers_active_threshold",
        "program_id",
        "threshold",
        unique=True,
        sqlite_where=text("removed_at IS NULL"),
        postgresql_where=text("removed_at IS NULL"),
    ),
    Index(
        "uq_tiers_active_name",
        "program_id",
        "name",
        unique=True,
        sqlite_where=text("removed_at IS NULL"),
        postgresql_where=text("removed_at IS NULL"),
    ),
)

grants = Table(
    "grants",
    metadata,
    Column("id", Id, primary_key=True),
    Column("program_id", ForeignKey("programs.id"), nullable=False),
    Column("participant_id", ForeignKey("participants.id"), nullable=False),
    Column("tier_id", ForeignKey("tiers.id")),
    Column("referral_id", ForeignKey("referrals.id")),
    Column("side", String(10), nullable=False),
    Column("label", String(60), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("value", String(1000), nullable=False),
    Column("status", String(20), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("available_at", BigInteger, nullable=False),
    Column("redeemed_at", BigInteger),
    Column("revoked_at", BigInteger),
    Column("announced_at", BigInteger),
    Column("coupon_code", String(200)),
    # Exactly once: "tier:<tier>:<member>" or "referee:<referral>".
    Column("dedupe_key", String(100), nullable=False, unique=True),
    Index("ix_grants_participant_status", "participant_id", "status"),
    Index("ix_grants_status_kind_available", "status", "kind", "available_at"),
    Index(
        "ix_grants_unannounced",
        "program_id",
        sqlite_where=text("announced_at IS NULL"),
        postgresql_where=text("announced_at IS NULL"),
    ),
)

coupons = Table(
    "coupons",
    metadata,
    Column("id", Id, primary_key=True),
    Column("program_id", ForeignKey("programs.id"), nullable=False),
    Column("pool", String(60), nullable=False),
    Column("code", String(200), nullable=False),
    Column("grant_id", ForeignKey("grants.id"), unique=True),  # a coupon goes to one grant, once
    Column("added_at", BigInteger, nullable=False),
    UniqueConstraint("program_id", "pool", "code", name="uq_coupons_pool_code"),
    Index("ix_coupons_free", "program_id", "pool", "grant_id"),
)

leaderboard_counts = Table(
    "leaderboard_counts",
    metadata,
    Column("program_id", ForeignKey("programs.id"), primary_key=True),
    Column("period", String(10), primary_key=True),  # "all", "2026-11", "2026-W47"
    Column("participant_id", ForeignKey("participants.id"), primary_key=True),
    Column("count", Integer, nullable=False),
    # Top-N reads the head of this index, whatever the size of the program.
    Index("ix_leaderboard_rank", "program_id", "period", "count"),
)

fraud_flags = Table(
    "fraud_flags",
    metadata,
    Column("id", Id, primary_key=True),
    Column("program_id", ForeignKey("programs.id"), nullable=False),
    Column("referral_id", ForeignKey("referrals.id")),  # NULL: a flag on a member, not a referral
    Column("participant_id", ForeignKey("participants.id"), nullable=False),  # who it is about
    Column("detector", String(30), nullable=False),
    Column("score", Integer, nullable=False),
    Column("reason", Text, nullable=False),  # a catalog Text as JSON: rendered per reader
    Column("status", String(20), nullable=False),  # open | approved | rejected
    Column("created_at", BigInteger, nullable=False),
    Column("reviewer", String(200)),
    Column("reviewed_at", BigInteger),
    Column("review_note", String(500)),
    # A detector flags one referral (or member) once.
    Column("dedupe_key", String(120), nullable=False, unique=True),
    Index("ix_fraud_flags_queue", "program_id", "status", "created_at"),
    Index("ix_fraud_flags_referral", "referral_id"),
    Index("ix_fraud_flags_participant", "participant_id"),
)

identity_links = Table(
    "identity_links",
    metadata,
    Column("program_id", ForeignKey("programs.id"), primary_key=True),
    Column("participant_a", ForeignKey("participants.id"), primary_key=True),
    Column("participant_b", ForeignKey("participants.id"), primary_key=True),
    Column("linked_by", String(200), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

link_tokens = Table(
    "link_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("program_id", ForeignKey("programs.id"), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("used_at", BigInteger),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Id, primary_key=True),
    Column("program_id", ForeignKey("programs.id"), nullable=False),
    Column("community_id", ForeignKey("communities.id")),
    Column("actor", String(200), nullable=False),
    Column("action", String(60), nullable=False),
    Column("details", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_audit_log_program", "program_id", "id"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True),
    Column("platform", String(20), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("payload", Text, nullable=False),
    # Redelivery is harmless: one row per effect, ever.
    Column("dedupe_key", String(200), nullable=False, unique=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("delivered_at", BigInteger),
    Column("failed_at", BigInteger),
    Column("last_error", String(500)),
    Index(
        "ix_outbox_due",
        "next_attempt_at",
        sqlite_where=text("delivered_at IS NULL AND failed_at IS NULL"),
        postgresql_where=text("delivered_at IS NULL AND failed_at IS NULL"),
    ),
)

# -- rewards and balances (issue 8): grants that follow the member -----------------------------
# epoch: bumped each time a grant is applied (a role given), held or released, so every such
#   change has outbox keys of its own (a re-approval or a rejoin queues a new role change).
# ready_told_at: when the member was told the reward is ready (NULL: its holding period has not
#   been announced to them yet).
# waiting_since: a coupon grant whose redeem found the pool empty; told once it is refilled.
grants.append_column(Column("epoch", Integer, nullable=False, server_default="0"))
grants.append_column(Column("ready_told_at", BigInteger))
grants.append_column(Column("waiting_since", BigInteger))
# The sweep's "holding period over, not told yet": status = 'available' AND ready_told_at IS NULL
# AND available_at <= now, in available_at order, read from the head of this index.
Index(
    "ix_grants_ready_untold",
    grants.c.status,
    grants.c.ready_told_at,
    grants.c.available_at,
)
Index(
    "ix_grants_pool_waiting",
    grants.c.program_id,
    grants.c.waiting_since,
    sqlite_where=text("waiting_since IS NOT NULL"),
    postgresql_where=text("waiting_since IS NOT NULL"),
)
# Input and words (issue 8): a pasted personal link is looked up by its url.
Index("ix_referral_links_url", referral_links.c.url)

# -- inbox (issue 10): platform updates stored before they are confirmed ------------------------

inbox = Table(
    "inbox",
    metadata,
    Column("id", Id, primary_key=True),
    Column("platform", String(20), nullable=False),
    Column("update_id", BigInteger, nullable=False),
    Column("lane", String(60), nullable=False),  # one chat's updates are handled in order
    Column("payload", Text, nullable=False),
    Column("received_at", BigInteger, nullable=False),
    Column("processed_at", BigInteger),
    # A replayed or duplicated update is stored once, so it is handled once.
    UniqueConstraint("platform", "update_id", name="uq_inbox_platform_update_id"),
    Index(
        "ix_inbox_pending",
        "platform",
        "update_id",
        sqlite_where=text("processed_at IS NULL"),
        postgresql_where=text("processed_at IS NULL"),
    ),
)

# A referral's own grants (the newcomer's reward), held, released or revoked with it.
Index("ix_grants_referral", grants.c.referral_id)

# -- several processes, dead letters (issue 11) ----------------------------------------------
# The community an outbox item is for (its external id): a process claims only the items of
# the communities (Discord: the shards) it serves.
outbox.append_column(Column("route_key", String(64)))
# Why an item stopped being tried ("attempts": every attempt failed on a retryable error, so it
# is tried again once the platform delivers again; "refused": the platform said retrying cannot
# help, so it waits for an admin's /outbox retry). NULL while it is alive.
outbox.append_column(Column("dead_reason", String(20)))
Index(
    "ix_outbox_dead",
    outbox.c.platform,
    outbox.c.route_key,
    sqlite_where=text("failed_at IS NOT NULL AND delivered_at IS NULL"),
    postgresql_where=text("failed_at IS NOT NULL AND delivered_at IS NULL"),
)
