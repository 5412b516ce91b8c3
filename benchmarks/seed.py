"""Seeding large, consistent databases fast: migrate with Alembic, then stdlib sqlite3 executemany.

Layout (ids are assigned here, so the benchmarks know who is who without asking):

* ``COMMUNITIES`` programs, one community each, two tiers each (points at 2, a role at 4).
* Background referrals: ``PER_REFERRER`` per referrer, statuses cycling
  converted / pending (not due) / left / expired. Each referrer has its leaderboard counts
  ("all", month, week) and the tier grants its converted count has reached.
* Due referrals (the sweep's work): pending with ``due_at <= now``, 10 per dedicated referrer who
  has converted nothing yet. Half of the referred members are eligible (3+ messages, active
  membership); a quarter are not yet eligible (looked at again later); a quarter are past their
  conversion window (expire).
* Every participant has one membership, in its program's community, and one active code.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import NOW, fresh, sqlite_url
from bot.engine.clock import DAY
from bot.engine.codes import ALPHABET, LENGTH
from bot.engine.leaderboard import period_keys
from storage.database import Database

COMMUNITIES = 100
PER_REFERRER = 50
DUE_PER_REFERRER = 10
TIERS = (("Bronze", 2, "points", "100"), ("Silver", 4, "role", "Champion"))
BACKGROUND = ("converted", "pending", "left", "expired")
CONVERTED_AT = NOW - 10 * DAY
ACCOUNT_AGE = 400 * DAY


@dataclass(frozen=True, slots=True)
class Layout:
    referrals: int
    due: int = 0

    @property
    def background(self) -> int:
        return self.referrals - self.due

    @property
    def background_referrers(self) -> int:
        return -(-self.background // PER_REFERRER)

    @property
    def due_referrers(self) -> int:
        return -(-self.due // DUE_PER_REFERRER)

    @property
    def referrers(self) -> int:
        return self.background_referrers + self.due_referrers

    @property
    def participants(self) -> int:
        return self.referrers + self.referrals

    def community_of_referrer(self, index: int) -> int:
        """Community id (== program id) of the referrer with 0-based ``index``."""
        return index % COMMUNITIES + 1

    def referrer_of(self, j: int) -> int:
        """0-based referrer index of referral ``j`` (background first, then due)."""
        if j < self.background:
            return j % self.background_referrers
        return self.background_referrers + (j - self.background) // DUE_PER_REFERRER

    def converted_of(self, referrer: int) -> int:
        """Converted background referrals of a background referrer (positions 0, 4, 8, ...)."""
        base, extra = divmod(self.background, self.background_referrers)
        n = base + (1 if referrer < extra else 0)
        return -(-n // len(BACKGROUND))


@dataclass(frozen=True, slots=True)
class Seeded:
    path: Path
    layout: Layout
    seconds: float
    rows: int


def code_for(participant_id: int) -> str:
    """A unique, valid code per participant (a bijection of the id in the 31-symbol space)."""
    space = len(ALPHABET) ** LENGTH
    n = (participant_id * 2_654_435_761) % space
    chars = []
    for _ in range(LENGTH):
        n, digit = divmod(n, len(ALPHABET))
        chars.append(ALPHABET[digit])
    return "".join(chars)


def _participants(layout: Layout) -> Iterator[tuple]:
    for r in range(layout.referrers):
        pid = r + 1
        program = layout.community_of_referrer(r)
        yield (pid, program, f"u{pid}", f"User {pid}", NOW - ACCOUNT_AGE, NOW - 100 * DAY,
               "existing", 50, NOW - 100 * DAY)  # fmt: skip
    for j in range(layout.referrals):
        pid = layout.referrers + j + 1
        program = layout.community_of_referrer(layout.referrer_of(j))
        status, _created, _left = _referral_shape(layout, j)
        messages = _messages(layout, j, status)
        yield (pid, program, f"u{pid}", f"User {pid}", NOW - ACCOUNT_AGE, _created,
               "join", messages, _created)  # fmt: skip


def _messages(layout: Layout, j: int, status: str) -> int:
    if j >= layout.background:
        return 5 if (j - layout.background) % 2 == 0 else 1  # half of the due ones can convert
    return {"converted": 5, "pending": 1, "left": 0, "expired": 1}[status]


def _referral_shape(layout: Layout, j: int) -> tuple[str, int, int | None]:
    """(status, created_at, left_at of the referred member's membership)."""
    if j >= layout.background:
        k = j - layout.background
        spread = (k * 7919) % DAY
        if k % 4 == 3:  # past the conversion window
            return "pending", NOW - 31 * DAY - spread, None
        return "pending", NOW - 4 * DAY - spread, None
    status = BACKGROUND[(j // layout.background_referrers) % len(BACKGROUND)]
    created = {
        "converted": NOW - 20 * DAY,
        "pending": NOW - DAY,
        "left": NOW - 20 * DAY,
        "expired": NOW - 40 * DAY,
    }[status]
    return status, created, NOW - 15 * DAY if status == "left" else None


def _memberships(layout: Layout) -> Iterator[tuple]:
    for r in range(layout.referrers):
        yield (r + 1, layout.community_of_referrer(r), NOW - 100 * DAY, None, NOW - 100 * DAY,
               "existing", 50, "")  # fmt: skip
    for j in range(layout.referrals):
        pid = layout.referrers + j + 1
        community = layout.community_of_referrer(layout.referrer_of(j))
        status, created, left = _referral_shape(layout, j)
        yield (pid, community, created, left, created, "invite-link",
               _messages(layout, j, status), "")  # fmt: skip


def _codes(layout: Layout) -> Iterator[tuple]:
    for pid in range(1, layout.participants + 1):
        if pid <= layout.referrers:
            program = layout.community_of_referrer(pid - 1)
        else:
            program = layout.community_of_referrer(layout.referrer_of(pid - layout.referrers - 1))
        yield (pid, program, pid, code_for(pid), NOW - 100 * DAY)


def _referrals(layout: Layout) -> Iterator[tuple]:
    for j in range(layout.referrals):
        r = layout.referrer_of(j)
        program = layout.community_of_referrer(r)
        status, created, _left = _referral_shape(layout, j)
        due, expires = created + 3 * DAY, created + 30 * DAY
        converted_at = ended_at = reason = None
        if j < layout.background:
            if status == "converted":
                converted_at = CONVERTED_AT
            elif status == "left":
                ended_at, reason = NOW - 15 * DAY, "left before converting"
            elif status == "expired":
                ended_at, reason = expires, "conversion window passed"
        yield (j + 1, program, r + 1, layout.referrers + j + 1, r + 1, program, "invite-link",
               status, 0, created, due, expires, converted_at, ended_at, reason)  # fmt: skip


def _leaderboard(layout: Layout) -> Iterator[tuple]:
    keys = period_keys(CONVERTED_AT)
    for r in range(layout.background_referrers):
        n = layout.converted_of(r)
        if n:
            for key in keys:
                yield (layout.community_of_referrer(r), key, r + 1, n)


def _tiers() -> Iterator[tuple]:
    for program in range(1, COMMUNITIES + 1):
        for t, (name, threshold, kind, value) in enumerate(TIERS):
            yield (tier_id(program, t), program, name, threshold, kind, value, NOW - 200 * DAY)


def tier_id(program: int, index: int) -> int:
    return (program - 1) * len(TIERS) + index + 1


def _grants(layout: Layout) -> Iterator[tuple]:
    for r in range(layout.background_referrers):
        program, pid = layout.community_of_referrer(r), r + 1
        for t, (name, threshold, kind, value) in enumerate(TIERS):
            if layout.converted_of(r) >= threshold:
                tid = tier_id(program, t)
                status = "redeemed" if kind == "role" else "available"  # roles are applied at once
                redeemed = CONVERTED_AT if kind == "role" else None
                yield (program, pid, tid, "referrer", name, kind, value, status, CONVERTED_AT,
                       CONVERTED_AT, redeemed, CONVERTED_AT, f"tier:{tid}:{pid}")  # fmt: skip


INSERTS = {
    "participants": (
        "INSERT INTO participants (id, program_id, platform, user_id, display_name,"
        " account_created_at, first_joined_at, origin, message_count, created_at)"
        " VALUES (?, ?, 'console', ?, ?, ?, ?, ?, ?, ?)"
    ),
    "memberships": (
        "INSERT INTO memberships (participant_id, community_id, joined_at, left_at,"
        " first_joined_at, join_source, message_count, roles) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    "referral_codes": (
        "INSERT INTO referral_codes (id, program_id, participant_id, code, created_at)"
        " VALUES (?, ?, ?, ?, ?)"
    ),
    "referrals": (
        "INSERT INTO referrals (id, program_id, referrer_id, referred_id, code_id, community_id,"
        " source, status, risk, created_at, due_at, expires_at, converted_at, ended_at, reason)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    "leaderboard_counts": (
        "INSERT INTO leaderboard_counts (program_id, period, participant_id, count)"
        " VALUES (?, ?, ?, ?)"
    ),
    "grants": (
        "INSERT INTO grants (program_id, participant_id, tier_id, side, label, kind, value,"
        " status, created_at, available_at, redeemed_at, announced_at, dedupe_key)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
}


def seed(path: Path, referrals: int, *, due: int = 0) -> Seeded:
    """A fresh, migrated database at ``path`` holding ``referrals`` referrals (``due`` of them
    pending and due at ``NOW``)."""
    start = time.perf_counter()
    layout = Layout(referrals, due)
    fresh(path)
    asyncio.run(Database(sqlite_url(path)).migrate())  # the real schema, from the migrations
    db = sqlite3.connect(path, isolation_level=None)
    rows = 0
    try:
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA journal_mode=MEMORY")
        db.execute("PRAGMA cache_size=-262144")  # 256 MiB while seeding (this process only)
        db.execute("BEGIN")
        # Secondary indexes are built after the bulk insert (sorted, much faster), same DDL.
        indexes = db.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        ).fetchall()
        for name, _sql in indexes:
            db.execute(f'DROP INDEX "{name}"')
        db.executemany(
            "INSERT INTO programs (id, name, settings, created_at) VALUES (?, ?, '{}', ?)",
            [(p, f"Program {p}", NOW - 200 * DAY) for p in range(1, COMMUNITIES + 1)],
        )
        db.executemany(
            "INSERT INTO communities (id, platform, external_id, name, program_id, created_at)"
            " VALUES (?, 'console', ?, ?, ?, ?)",
            [(c, f"c{c}", f"Community {c}", c, NOW - 200 * DAY) for c in range(1, COMMUNITIES + 1)],
        )
        db.executemany(
            "INSERT INTO tiers (id, program_id, name, threshold, reward_kind, reward_value,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            _tiers(),
        )
        sources = {
            "participants": _participants(layout),
            "memberships": _memberships(layout),
            "referral_codes": _codes(layout),
            "referrals": _referrals(layout),
            "leaderboard_counts": _leaderboard(layout),
            "grants": _grants(layout),
        }
        for table, source in sources.items():
            rows += db.executemany(INSERTS[table], source).rowcount
        for _name, sql in indexes:
            db.execute(sql)
        db.execute("COMMIT")
        db.execute("PRAGMA journal_mode=WAL")  # as the engine runs it
    finally:
        db.close()
    return Seeded(path, layout, time.perf_counter() - start, rows)
