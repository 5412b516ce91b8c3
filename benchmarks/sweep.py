"""The conversion sweep: 10,000 due referrals among 1,000,000 stored vs among 10,000 stored.

Both databases hold the same 10,000 due pending referrals with the same referrers (see
``benchmarks.seed``): half convert (granting both tiers to each referrer), a quarter are looked
at again later, a quarter expire. The large one adds 990,000 referrals that are not due or not
pending. ``engine.run_sweep()`` is timed end to end (batches of 500 until none is due).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import NOW, RESULTS, Report, log, make_app
from benchmarks.seed import Seeded, seed
from bot.engine.clock import ManualClock

NAME = "sweep"
DUE = 10_000
SMALL, LARGE = 10_000, 1_000_000


@dataclass(frozen=True, slots=True)
class SweepRun:
    stored: int
    seconds: float
    batches: int
    looked_at: int
    converted: int
    expired: int
    left: int
    grants: int
    transactions: int
    still_due: int


async def _sweep(db: Seeded) -> SweepRun:
    app = make_app(db.path, ManualClock(NOW))
    await app.open()
    try:
        before = app.db.writer.transactions
        start = time.perf_counter()
        results = await app.engine.run_sweep()
        seconds = time.perf_counter() - start
        transactions = app.db.writer.transactions - before
    finally:
        await app.close()
    check = sqlite3.connect(db.path)
    try:
        [(still_due,)] = check.execute(
            "SELECT count(*) FROM referrals WHERE status = 'pending' AND due_at <= ?", (NOW,)
        ).fetchall()
    finally:
        check.close()
    return SweepRun(
        stored=db.layout.referrals,
        seconds=seconds,
        batches=len(results),
        looked_at=sum(r.looked_at for r in results),
        converted=sum(r.converted for r in results),
        expired=sum(r.expired for r in results),
        left=sum(r.left for r in results),
        grants=sum(r.grants for r in results),
        transactions=transactions,
        still_due=still_due,
    )


def _seeded(referrals: int, path: Path) -> Seeded:
    log(f"{NAME}: seeding {referrals:,} referrals ({DUE:,} due)")
    db = seed(path, referrals, due=DUE)
    log(f"{NAME}: seeded {db.rows:,} rows in {db.seconds:.1f} s")
    return db


def run() -> Report:
    report = Report(NAME)
    small = _seeded(SMALL, RESULTS / "sweep_10k.db")
    large = _seeded(LARGE, RESULTS / "sweep_1m.db")
    log(f"{NAME}: sweeping")
    a = asyncio.run(_sweep(small))
    b = asyncio.run(_sweep(large))
    ratio = b.seconds / a.seconds
    for run_ in (a, b):
        label = "10k" if run_.stored == SMALL else "1M"
        report.add(f"sweep 10k due among {label}", f"{run_.seconds:.2f} s")
    report.add("ratio 1M/10k", f"{ratio:.2f}", "<= 1.5", ratio <= 1.5)
    report.add(
        "work per run (converted/expired/later/grants)",
        f"{a.converted:,}/{a.expired:,}/{a.looked_at - a.converted - a.expired - a.left:,}"
        f"/{a.grants:,}",
    )
    report.add("batches / writer transactions", f"{a.batches} / {a.transactions}")
    report.data = {
        "due": DUE,
        "small": vars_of(a) | {"seed_seconds": small.seconds},
        "large": vars_of(b) | {"seed_seconds": large.seconds},
        "ratio": ratio,
        "same_work": (a.converted, a.expired, a.left, a.grants)
        == (b.converted, b.expired, b.left, b.grants),
    }
    return report


def vars_of(run_: SweepRun) -> dict[str, float | int]:
    return {name: getattr(run_, name) for name in SweepRun.__slots__}
