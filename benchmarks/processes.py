"""Several processes and crashes: real `referral-bot run` processes, fed console lines.

1. joins/s with 1, 2 and 3 processes on one PostgreSQL database (each process serves its own
   console community and reads its lines one at a time; the machine's cores are shared by the
   processes and the server, so the ratio shows contention, not a cluster);
2. crashes: SIGKILL at a random moment while joins stream in (20 trials on SQLite, 10 on
   PostgreSQL), then a fresh process: acknowledged joins lost, duplicate rows, welcomes sent
   twice per crash (at most the lanes in flight: the console has one);
3. the guards' cost on the single-process path: the conversion sweep with the compare-and-set
   update against the old unguarded statement, on the same seeded SQLite data.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from benchmarks.common import NOW, Report, fresh, log, make_app
from bot.engine.clock import ManualClock
from bot.engine.events import CommunityRef, JoinSource, MemberJoined, MessagePosted, UserRef
from storage.repository import Repository
from storage.tables import referrals

BIN = Path(sys.executable).parent / "referral-bot"
PG_URL = os.environ.get(
    "REFERRAL_BOT_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
JOINS_PER_PROCESS = 400
SQLITE_TRIALS = 20
PG_TRIALS = 10


# -- plumbing -------------------------------------------------------------------------------


class Proc:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [
            asyncio.create_task(self._pump(proc.stdout, self.out)),
            asyncio.create_task(self._pump(proc.stderr, self.err)),
        ]

    @staticmethod
    async def _pump(stream: Any, into: list[str]) -> None:
        while line := await stream.readline():
            into.append(line.decode(errors="replace"))

    async def ready(self) -> None:
        while not any("running on" in line for line in self.out):
            if self.proc.returncode is not None:
                raise RuntimeError("".join(self.err[-20:]))
            await asyncio.sleep(0.05)

    async def send(self, lines: list[str]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("".join(f"{line}\n" for line in lines).encode())
        await self.proc.stdin.drain()

    async def end(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        await self.proc.wait()
        await asyncio.gather(*self.readers, return_exceptions=True)


async def start(folder: Path, name: str, url: str, communities: list[str]) -> Proc:
    config = folder / f"{name}.toml"
    listed = ", ".join(f'"{c}"' for c in communities)
    config.write_text(
        f'[database]\nurl = "{url}"\n[jobs]\noutbox_poll_seconds = 1\nleader_check_seconds = 1\n'
        "[outbox]\nlease_seconds = 3\n"
        f'[console]\ncommunities = [{listed}]\n[logging]\nlevel = "WARNING"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFERRAL_BOT_")}
    proc = await asyncio.create_subprocess_exec(
        str(BIN), "run", "--config", str(config), cwd=folder,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env | {"PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    return Proc(proc)


async def scalar(url: str, sql: str) -> int:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(sa.text(sql))).scalar_one() or 0)
    finally:
        await engine.dispose()


async def until(url: str, sql: str, expected: int, bound: float = 300) -> None:
    deadline = time.monotonic() + bound
    while await scalar(url, sql) < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{sql}: not {expected} after {bound} s")
        await asyncio.sleep(0.1)


async def pg_database() -> tuple[str, str]:
    name = f"referral_bot_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(PG_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    return name, make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


async def drop_pg(name: str) -> None:
    admin = create_async_engine(PG_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


MEMBERS = "SELECT count(*) FROM memberships"


# -- 1. joins/s by process count -------------------------------------------------------------


async def joins_per_second(folder: Path, url: str, processes: int) -> float:
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(sa.text("TRUNCATE memberships, participants, outbox CASCADE"))
    await engine.dispose()
    procs = [await start(folder, f"j{k}", url, [f"room{k}"]) for k in range(processes)]
    try:
        await asyncio.gather(*(p.ready() for p in procs))
        base = await scalar(url, MEMBERS)
        began = time.perf_counter()
        await asyncio.gather(
            *(
                p.send([f"join n{k}_{i} in room{k}" for i in range(JOINS_PER_PROCESS)])
                for k, p in enumerate(procs)
            )
        )
        await until(url, MEMBERS, base + processes * JOINS_PER_PROCESS)
        return processes * JOINS_PER_PROCESS / (time.perf_counter() - began)
    finally:
        await asyncio.gather(*(p.end() for p in procs))


# -- 2. crashes ------------------------------------------------------------------------------


async def crash_trial(folder: Path, url: str, trial: int) -> dict[str, int]:
    victim = await start(folder, f"c{trial}", url, ["lounge"])
    await victim.ready()
    names = [f"t{trial}_{i}" for i in range(300)]
    await victim.send([f"join {n}" for n in names])
    await asyncio.sleep(random.uniform(0.3, 1.5))  # a random moment mid-stream
    victim.proc.send_signal(signal.SIGKILL)
    await victim.end()
    acked = [n for n in names if any(f"@{n}!" in line for line in victim.out)]
    after = await start(folder, f"r{trial}", url, ["lounge"])
    await after.ready()
    try:
        stored = await _stored(url, names)
        await _drained(url)
    finally:
        await after.end()
    shown = victim.out + after.out
    resent = sum(
        max(0, sum(f"Welcome to lounge, @{n}!" in line for line in shown) - 1) for n in names
    )
    duplicates = await scalar(
        url,
        "SELECT count(*) FROM (SELECT participant_id FROM memberships"
        " GROUP BY participant_id, community_id HAVING count(*) > 1) d",
    ) + await scalar(url, "SELECT count(*) - count(DISTINCT dedupe_key) FROM outbox")
    return {
        "acknowledged": len(acked),
        "lost": len([n for n in acked if n not in stored]),
        "duplicates": duplicates,
        "resent": resent,
    }


async def _stored(url: str, names: list[str]) -> set[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                sa.text(
                    "SELECT p.user_id FROM participants p"
                    " JOIN memberships m ON m.participant_id = p.id"
                )
            )
            return {r[0] for r in rows} & set(names)
    finally:
        await engine.dispose()


async def _drained(url: str, bound: float = 120) -> None:
    deadline = time.monotonic() + bound
    while await scalar(url, "SELECT count(*) FROM outbox WHERE delivered_at IS NULL"):
        if time.monotonic() > deadline:
            raise RuntimeError("the outbox did not drain after a crash")
        await asyncio.sleep(0.1)


async def crashes(folder: Path, url: str, trials: int) -> dict[str, int]:
    total = {"trials": trials, "acknowledged": 0, "lost": 0, "duplicates": 0, "max_resent": 0}
    for trial in range(trials):
        one = await crash_trial(folder, url, trial)
        total["acknowledged"] += one["acknowledged"]
        total["lost"] += one["lost"]
        total["duplicates"] = max(total["duplicates"], one["duplicates"])
        total["max_resent"] = max(total["max_resent"], one["resent"])
    return total


# -- 3. the guards' cost ---------------------------------------------------------------------


class UnguardedRepository(Repository):
    """The sweep's update as it was: one executemany, no status guard, nothing returned."""

    async def update_referrals(self, rows: list[dict[str, Any]]) -> set[int]:
        if rows:
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
            await self.conn.execute(
                stmt, [{k: v for k, v in r.items() if k != "expect"} for r in rows]
            )
        return {r["rid"] for r in rows}


async def sweep_seconds(path: Path, repository: type[Repository], joins: int = 3000) -> float:
    clock = ManualClock(NOW)
    app = make_app(fresh(path), clock)
    app.db.writer._make_repo = repository
    await app.open()
    try:
        room = CommunityRef("console", "lounge", "lounge")
        info = await app.engine.invite(room, UserRef("owner", "Owner"), _link)
        await asyncio.gather(
            *(
                app.engine.member_joined(
                    MemberJoined(room, UserRef(f"n{i}", f"n{i}"), JoinSource.INVITE_LINK, info.code)
                )
                for i in range(joins)
            )
        )
        for i in range(joins):
            for _ in range(3):
                app.engine.message_posted(MessagePosted(room, UserRef(f"n{i}", f"n{i}")))
        await app.engine.flush_activity()
        clock.advance(4 * 86400)
        began = time.perf_counter()
        await app.engine.run_sweep()
        return time.perf_counter() - began
    finally:
        await app.close()


async def _link(_community: Any, code: str) -> str:
    return f"console://join/{code}"


# -- the report ------------------------------------------------------------------------------


async def bench() -> Report:
    report = Report("processes")
    folder = Path(tempfile.mkdtemp(prefix="referral-bot-bench-"))
    guarded, unguarded = [], []
    for _ in range(5):  # alternating, so both see the same machine load
        unguarded.append(await sweep_seconds(folder / "old.db", UnguardedRepository))
        guarded.append(await sweep_seconds(folder / "new.db", Repository))
    cost = sorted(guarded)[2] / sorted(unguarded)[2] - 1
    report.add(
        "sweep of 3,000 conversions, unguarded (median of 5)", f"{sorted(unguarded)[2]:.3f} s"
    )
    report.add("sweep of 3,000 conversions, guarded (median of 5)", f"{sorted(guarded)[2]:.3f} s")
    report.add("added cost of the guards", f"{cost * 100:+.1f} %", "<= 10 %", cost <= 0.10)
    log("guards measured")

    sqlite = await crashes(folder, f"sqlite+aiosqlite:///{folder / 'crash.db'}", SQLITE_TRIALS)
    log("sqlite crashes done")
    name, url = await pg_database()
    try:
        from storage.database import Database

        db = Database(url)
        await db.migrate()
        await db.close()
        postgres = await crashes(folder, url, PG_TRIALS)
        log("postgresql crashes done")
        rates = {n: await joins_per_second(folder, url, n) for n in (1, 2, 3)}
        log("joins/s measured")
    finally:
        await drop_pg(name)
    for label, result in (("sqlite", sqlite), ("postgresql", postgres)):
        trials = result["trials"]
        report.add(f"{label}: SIGKILL trials", str(trials))
        report.add(f"{label}: acknowledged joins at the kills", f"{result['acknowledged']:,}")
        report.add(
            f"{label}: acknowledged joins lost", str(result["lost"]), "0", result["lost"] == 0
        )
        report.add(
            f"{label}: duplicate rows", str(result["duplicates"]), "0", result["duplicates"] == 0
        )
        report.add(
            f"{label}: welcomes shown twice per crash (max)",
            str(result["max_resent"]),
            "<= 1 (lanes in flight)",
            result["max_resent"] <= 1,
        )
    for n, rate in rates.items():
        report.add(f"postgresql joins/s, {n} process{'es' if n > 1 else ''}", f"{rate:,.0f}")
    report.add(
        "ratio 3 processes / 1",
        f"{rates[3] / rates[1]:.2f}",
        f"2 cores shared by {3} bots and the server",
    )
    report.data = {"sqlite": sqlite, "postgresql": postgres, "joins_per_second": rates}
    return report


run = bench  # the runner looks for either name
