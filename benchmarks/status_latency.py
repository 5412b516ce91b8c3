"""``status`` latency with 1,000,000 referrals stored vs with 1,000 stored.

Both databases are seeded the same way (see ``benchmarks.seed``: 50 referrals per referrer,
statuses mixed), so a status call does the same work in both; only the size of the tables
differs. Each case is measured in a fresh child process (``--child``), which also reports its
peak RSS (``VmHWM``), so the two cases are measured alike and benchmark ``peak_rss`` can reuse it.

Half of the sampled members are referrers (their referrals are counted), half are referred
members; calls are sequential, as members type commands.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import NOW, RESULTS, Report, log, make_app, ms, percentile
from benchmarks.seed import Layout, Seeded, seed
from bot.engine.clock import ManualClock
from bot.engine.events import CommunityRef, UserRef

NAME = "status_latency"
SMALL, LARGE = 1_000, 1_000_000
SAMPLES = 2_000
WARMUP = 200
MARK = "RESULT "

_seeded: dict[int, Seeded] = {}  # databases seeded by this process, reused by peak_rss


def seeded(referrals: int) -> Seeded:
    """The status database with ``referrals`` referrals, seeded once per process run."""
    found = _seeded.get(referrals)
    if found is None or not found.path.exists():
        label = f"{referrals // 1000}k" if referrals < LARGE else f"{referrals // LARGE}m"
        log(f"{NAME}: seeding {referrals:,} referrals")
        found = _seeded[referrals] = seed(RESULTS / f"status_{label}.db", referrals)
        log(f"{NAME}: seeded {found.rows:,} rows in {found.seconds:.1f} s")
    return found


@dataclass(frozen=True, slots=True)
class ChildResult:
    data: dict[str, Any]
    ru_maxrss_kib: int  # the child's own peak RSS as the kernel accounts it (wait4 rusage)


def run_child(db: Seeded, samples: int = SAMPLES, warmup: int = WARMUP) -> ChildResult:
    """Measure in a fresh interpreter; its rusage is collected with ``os.wait4``."""
    args = [
        sys.executable,
        "-m",
        "benchmarks.status_latency",
        "--child",
        str(db.path),
        "--referrals",
        str(db.layout.referrals),
        "--samples",
        str(samples),
        "--warmup",
        str(warmup),
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"status child failed with exit code {proc.returncode}")
    line = next(x for x in reversed(out.splitlines()) if x.startswith(MARK))
    return ChildResult(json.loads(line[len(MARK) :]), usage.ru_maxrss)


def _vm_hwm_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return -1


def _members(path: Path, layout: Layout, count: int) -> list[tuple[CommunityRef, UserRef]]:
    """Random members (half referrers, half referred), with the community they belong to."""
    rng = random.Random(20260101)
    half = count // 2
    ids = [rng.randint(1, layout.referrers) for _ in range(half)]
    ids += [rng.randint(layout.referrers + 1, layout.participants) for _ in range(count - half)]
    db = sqlite3.connect(path)
    try:
        found = {}
        for start in range(0, len(ids), 500):
            chunk = sorted(set(ids[start : start + 500]))
            marks = ",".join("?" * len(chunk))
            for pid, user_id, name, external_id, cname in db.execute(
                "SELECT p.id, p.user_id, p.display_name, c.external_id, c.name"
                " FROM participants p JOIN memberships m ON m.participant_id = p.id"
                f" JOIN communities c ON c.id = m.community_id WHERE p.id IN ({marks})",
                chunk,
            ):
                found[pid] = (CommunityRef("console", external_id, cname), UserRef(user_id, name))
    finally:
        db.close()
    return [found[i] for i in ids]


async def _measure(path: Path, layout: Layout, samples: int, warmup: int) -> dict[str, Any]:
    members = _members(path, layout, samples + warmup)
    app = make_app(path, ManualClock(NOW))
    await app.open()
    latencies: list[float] = []
    referrals_seen = 0
    try:
        engine = app.engine
        for i, (community, user) in enumerate(members):
            start = time.perf_counter()
            info = await engine.status(community, user)
            elapsed = time.perf_counter() - start
            if i >= warmup:
                latencies.append(elapsed)
                referrals_seen += sum(info.counts.values())
        transactions = app.db.writer.transactions
    finally:
        await app.close()
    return {
        "referrals": layout.referrals,
        "samples": samples,
        "warmup": warmup,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "mean_ms": sum(latencies) / len(latencies) * 1000,
        "referrals_counted_in_samples": referrals_seen,
        "writer_transactions": transactions,
        "vm_hwm_kib": _vm_hwm_kib(),
    }


def child_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.status_latency")
    parser.add_argument("--child", type=Path, required=True, help="seeded database")
    parser.add_argument("--referrals", type=int, required=True)
    parser.add_argument("--samples", type=int, default=SAMPLES)
    parser.add_argument("--warmup", type=int, default=WARMUP)
    args = parser.parse_args(argv)
    data = asyncio.run(_measure(args.child, Layout(args.referrals), args.samples, args.warmup))
    print(MARK + json.dumps(data), flush=True)
    return 0


def run() -> Report:
    report = Report(NAME)
    small, large = seeded(SMALL), seeded(LARGE)
    log(f"{NAME}: measuring {SAMPLES} status calls per case (child processes)")
    a = run_child(small)
    b = run_child(large)
    ratio50 = b.data["p50_ms"] / a.data["p50_ms"]
    ratio99 = b.data["p99_ms"] / a.data["p99_ms"]
    report.add("p50 with 1k referrals", ms(a.data["p50_ms"] / 1000))
    report.add("p99 with 1k referrals", ms(a.data["p99_ms"] / 1000))
    report.add("p50 with 1M referrals", ms(b.data["p50_ms"] / 1000))
    report.add("p99 with 1M referrals", ms(b.data["p99_ms"] / 1000))
    report.add("ratio p50 1M/1k", f"{ratio50:.2f}", "<= 1.5", ratio50 <= 1.5)
    report.add("ratio p99 1M/1k", f"{ratio99:.2f}")
    report.data = {
        "small": a.data | {"ru_maxrss_kib": a.ru_maxrss_kib, "seed_seconds": small.seconds},
        "large": b.data | {"ru_maxrss_kib": b.ru_maxrss_kib, "seed_seconds": large.seconds},
        "ratio_p50": ratio50,
        "ratio_p99": ratio99,
    }
    return report


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
