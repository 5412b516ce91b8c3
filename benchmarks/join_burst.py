"""Join burst: 10,000 joins through the engine (group commit) beside a plain sqlite3 loop.

The engine gets the joins as concurrent bursts (``asyncio.gather`` in waves), so its writer
batches them. The plain loop inserts the same rows the engine wrote (participants, memberships,
newcomers' referral codes, referrals and the very same outbox rows) with one commit per join,
in WAL mode with synchronous=NORMAL, as the engine's connections use.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import NOW, RESULTS, Report, fresh, log, make_app, ms, percentile
from bot.engine.clock import DAY, ManualClock
from bot.engine.events import CommunityRef, JoinSource, MemberJoined, UserRef
from bot.engine.models import Community
from bot.engine.service import ReferralEngine

NAME = "join_burst"
JOINS = 10_000
COMMUNITIES = 100
VIA_CODE_EVERY = 5  # every 5th join uses its community's invite link: 20%
WAVE = 1_000  # joins in flight at once


@dataclass(frozen=True, slots=True)
class EngineRun:
    seconds: float
    latencies: list[float]
    transactions: int
    credited: int
    outbox: list[tuple]  # the outbox rows the joins produced, in order
    # (community_id, program_id, external_id, owner user_id, code), one per community
    owners: list[tuple[int, int, str, str, str]]
    flags: list[tuple]  # the fraud flags the burst raised (a burst is what velocity looks for)


def _community(i: int) -> CommunityRef:
    return CommunityRef("console", f"c{i:03d}", f"Community {i}")


async def _make_link(community: Community, code: str) -> str:
    return f"console://join/{code}"


def _events(codes: dict[int, str]) -> list[MemberJoined]:
    events = []
    for k in range(JOINS):
        c = k % COMMUNITIES
        user = UserRef(f"j{k}", f"Joiner {k}", NOW - 400 * DAY)
        if k % VIA_CODE_EVERY == 0:
            events.append(MemberJoined(_community(c), user, JoinSource.INVITE_LINK, codes[c]))
        else:
            events.append(MemberJoined(_community(c), user, JoinSource.ORGANIC))
    return events


async def _timed_join(engine: ReferralEngine, event: MemberJoined, out: list[float]) -> bool:
    start = time.perf_counter()
    result = await engine.member_joined(event)
    out.append(time.perf_counter() - start)
    return result.referral_id is not None


async def run_engine(path: Path) -> EngineRun:
    app = make_app(fresh(path), ManualClock(NOW))
    await app.open()
    try:
        engine = app.engine
        codes: dict[int, str] = {}
        for c in range(COMMUNITIES):  # communities and code owners exist before the clock starts
            info = await engine.invite(
                _community(c), UserRef(f"owner{c}", f"Owner {c}"), _make_link
            )
            codes[c] = info.code
        events = _events(codes)
        outbox_before = _count(path, "outbox")
        flags_before = _count(path, "fraud_flags")
        before = app.db.writer.transactions
        latencies: list[float] = []
        credited = 0
        start = time.perf_counter()
        for w in range(0, JOINS, WAVE):
            wave = events[w : w + WAVE]
            done = await asyncio.gather(*(_timed_join(engine, e, latencies) for e in wave))
            credited += sum(done)
        seconds = time.perf_counter() - start
        transactions = app.db.writer.transactions - before
    finally:
        await app.close()
    db = sqlite3.connect(path)
    try:
        outbox = db.execute(
            "SELECT platform, kind, payload, dedupe_key, attempts, next_attempt_at, created_at"
            " FROM outbox ORDER BY id LIMIT -1 OFFSET ?",
            (outbox_before,),
        ).fetchall()
        flags = db.execute(
            "SELECT program_id, referral_id, participant_id, detector, score, reason, status,"
            " created_at, dedupe_key FROM fraud_flags ORDER BY id LIMIT -1 OFFSET ?",
            (flags_before,),
        ).fetchall()
        owners = db.execute(
            "SELECT c.id, c.program_id, c.external_id, p.user_id, rc.code FROM communities c"
            " JOIN memberships m ON m.community_id = c.id"
            " JOIN participants p ON p.id = m.participant_id AND p.origin = 'existing'"
            " JOIN referral_codes rc ON rc.participant_id = p.id AND rc.revoked_at IS NULL"
            " ORDER BY c.external_id"
        ).fetchall()
    finally:
        db.close()
    return EngineRun(seconds, latencies, transactions, credited, outbox, owners, flags)


def _count(path: Path, table: str) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        db.close()


def _plain_schema(path: Path, owners: list[tuple[int, int, str, str, str]]) -> sqlite3.Connection:
    """The real schema (copied from the engine's database), with the same communities/owners."""
    source = sqlite3.connect(RESULTS / "join.db")
    ddl = [
        sql
        for (sql,) in source.execute(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'"
            " ORDER BY CASE type WHEN 'table' THEN 0 ELSE 1 END, rowid"
        )
    ]
    source.close()
    db = sqlite3.connect(fresh(path), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("BEGIN")
    for sql in ddl:
        db.execute(sql)
    for community_id, program_id, external_id, user_id, code in owners:
        db.execute(
            "INSERT INTO programs (id, name, settings, created_at) VALUES (?, ?, '{}', ?)",
            (program_id, external_id, NOW),
        )
        db.execute(
            "INSERT INTO communities (id, platform, external_id, name, program_id, created_at)"
            " VALUES (?, 'console', ?, ?, ?, ?)",
            (community_id, external_id, external_id, program_id, NOW),
        )
        pid = db.execute(
            "INSERT INTO participants (program_id, platform, user_id, display_name, origin,"
            " message_count, created_at) VALUES (?, 'console', ?, ?, 'existing', 0, ?)",
            (program_id, user_id, user_id, NOW),
        ).lastrowid
        db.execute(
            "INSERT INTO memberships (participant_id, community_id, first_joined_at,"
            " join_source, message_count, roles) VALUES (?, ?, ?, 'existing', 0, '')",
            (pid, community_id, NOW),
        )
        db.execute(
            "INSERT INTO referral_codes (program_id, participant_id, code, created_at)"
            " VALUES (?, ?, ?, ?)",
            (program_id, pid, code, NOW),
        )
    db.execute("COMMIT")
    return db


def run_plain(path: Path, engine: EngineRun) -> float:
    """The same rows, one transaction per join. Returns the seconds it took."""
    db = _plain_schema(path, engine.owners)
    owners = {}
    for community_id, _program_id, _external_id, _user_id, code in engine.owners:
        [(owner_id, code_id)] = db.execute(
            "SELECT participant_id, id FROM referral_codes WHERE code = ?", (code,)
        ).fetchall()
        owners[community_id] = (owner_id, code_id)
    # the k-th join goes to community k % 100, in external-id order, as in the engine run
    targets = [(c, program_id) for c, program_id, _, _, _ in engine.owners]
    total = len(engine.outbox)
    # The engine also gives every newcomer their own code (for the welcome DM): same rows here.
    own_codes = [f"P{k:09d}" for k in range(JOINS)]
    start = time.perf_counter()
    for k in range(JOINS):
        community_id, program_id = targets[k % COMMUNITIES]
        db.execute("BEGIN")
        pid = db.execute(
            "INSERT INTO participants (program_id, platform, user_id, display_name,"
            " account_created_at, first_joined_at, origin, message_count, created_at)"
            " VALUES (?, 'console', ?, ?, ?, ?, 'join', 0, ?)",
            (program_id, f"j{k}", f"Joiner {k}", NOW - 400 * DAY, NOW, NOW),
        ).lastrowid
        db.execute(
            "INSERT INTO memberships (participant_id, community_id, joined_at, first_joined_at,"
            " join_source, message_count, roles) VALUES (?, ?, ?, ?, ?, 0, '')",
            (pid, community_id, NOW, NOW, "invite-link" if k % VIA_CODE_EVERY == 0 else "organic"),
        )
        db.execute(
            "INSERT INTO referral_codes (program_id, participant_id, code, created_at)"
            " VALUES (?, ?, ?, ?)",
            (program_id, pid, own_codes[k], NOW),
        )
        if k % VIA_CODE_EVERY == 0:
            owner_id, code_id = owners[community_id]
            db.execute(
                "INSERT INTO referrals (program_id, referrer_id, referred_id, code_id,"
                " community_id, source, status, risk, created_at, due_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, 'invite-link', 'pending', 0, ?, ?, ?)",
                (
                    program_id,
                    owner_id,
                    pid,
                    code_id,
                    community_id,
                    NOW,
                    NOW + 3 * DAY,
                    NOW + 30 * DAY,
                ),
            )
        # The engine's outbox rows, spread evenly over the joins (same count, same payloads).
        rows = engine.outbox[total * k // JOINS : total * (k + 1) // JOINS]
        db.executemany(
            "INSERT INTO outbox (platform, kind, payload, dedupe_key, attempts,"
            " next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        # ...and the fraud flags the burst raised (velocity), spread the same way.
        marks = engine.flags[len(engine.flags) * k // JOINS : len(engine.flags) * (k + 1) // JOINS]
        db.executemany(
            "INSERT INTO fraud_flags (program_id, referral_id, participant_id, detector, score,"
            " reason, status, created_at, dedupe_key) VALUES (?, NULL, ?, ?, ?, ?, ?, ?, ?)",
            [(f[0], pid, f[3], f[4], f[5], f[6], f[7], f[8]) for f in marks],
        )
        db.execute("COMMIT")
    seconds = time.perf_counter() - start
    db.close()
    return seconds


ROUNDS = 3  # engine and plain loop alternate; the median round is reported (2 cores are noisy)


def run() -> Report:
    report = Report(NAME)
    rounds = []
    for r in range(ROUNDS):
        log(f"{NAME}: round {r + 1}: engine, {JOINS} joins in waves of {WAVE}")
        engine = asyncio.run(run_engine(RESULTS / "join.db"))
        log(f"{NAME}: round {r + 1}: plain sqlite3 loop, one commit per join")
        plain_seconds = run_plain(RESULTS / "join_plain.db", engine)
        rounds.append((JOINS / engine.seconds / (JOINS / plain_seconds), engine, plain_seconds))
    rounds.sort(key=lambda x: x[0])
    ratio, engine, plain_seconds = rounds[len(rounds) // 2]
    engine_rate = JOINS / engine.seconds
    plain_rate = JOINS / plain_seconds
    p50, p99 = percentile(engine.latencies, 50), percentile(engine.latencies, 99)
    report.add("engine joins/s", f"{engine_rate:,.0f}")
    report.add("plain sqlite3 joins/s (1 commit/join)", f"{plain_rate:,.0f}")
    report.add("ratio engine/plain (median of 3)", f"{ratio:.2f}", ">= 0.5", ratio >= 0.5)
    report.add("ratio range over the rounds", f"{rounds[0][0]:.2f} - {rounds[-1][0]:.2f}")
    report.add("engine latency p50 (submit->ack)", ms(p50))
    report.add("engine latency p99 (submit->ack)", ms(p99))
    report.add("writer transactions", f"{engine.transactions:,}")
    report.add(
        "referrals credited / outbox rows / flags",
        f"{engine.credited:,} / {len(engine.outbox):,} / {len(engine.flags):,}",
    )
    report.data = {
        "joins": JOINS,
        "communities": COMMUNITIES,
        "via_code_fraction": 1 / VIA_CODE_EVERY,
        "wave": WAVE,
        "engine_seconds": engine.seconds,
        "engine_joins_per_s": engine_rate,
        "plain_seconds": plain_seconds,
        "plain_joins_per_s": plain_rate,
        "ratio_engine_over_plain": ratio,
        "latency_p50_ms": p50 * 1000,
        "latency_p99_ms": p99 * 1000,
        "latency_max_ms": max(engine.latencies) * 1000,
        "writer_transactions": engine.transactions,
        "referrals_credited": engine.credited,
        "outbox_rows": len(engine.outbox),
        "fraud_flags": len(engine.flags),
        "round_ratios": [x[0] for x in rounds],
        "database": "sqlite (file, WAL, synchronous=NORMAL)",
    }
    return report
