"""Telegram crash: a real ``referral-bot run`` killed with SIGKILL in the middle of a join burst.

Each trial: 10 people join a group through Alice's personal invite link at once; as soon as the
bot has fetched the first of those updates from the fake Bot API, and after a random delay of
0-150 ms, the process gets SIGKILL. It is started again and left to catch up. Then the
database is read: a join is **lost** if the newcomer is not credited to Alice (or was stored as
an `existing` member), **duplicated** if it produced a second membership join or a second
referral. Updates handled twice (a kill between handling and marking; no effect) are counted
too, for information.

    python -m benchmarks.telegram_crash [--trials 20] [--joins 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, Report, machine, machine_line
from storage.database import Database
from tests.fakes.bot_process import BotProcess
from tests.fakes.telegram_api import FakeLimits, FakeTelegram

INVITE = re.compile(r"https://t\.me/\+[\w-]+")


async def _until(check, within: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def _pending(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT COUNT(*) FROM inbox WHERE processed_at IS NULL").fetchone()
        return int(row[0])


def _outcome(path: Path, referrer: int, joiners: list[int]) -> tuple[int, int]:
    """(lost, duplicated) for these newcomers."""
    ids = ",".join(f"'{u}'" for u in joiners)
    with sqlite3.connect(path) as conn:
        (alice_pid,) = conn.execute(
            "SELECT id FROM participants WHERE platform='telegram' AND user_id=?", (str(referrer),)
        ).fetchone()
        people = dict(conn.execute(
            f"SELECT user_id, id FROM participants WHERE platform='telegram' AND user_id IN ({ids})"
            " AND origin='join'"
        ).fetchall())  # fmt: skip
        credited: dict[int, int] = {}
        for (referred,) in conn.execute(
            "SELECT referred_id FROM referrals WHERE referrer_id=?", (alice_pid,)
        ):
            credited[referred] = credited.get(referred, 0) + 1
        joins = dict(conn.execute("SELECT participant_id, join_count FROM memberships").fetchall())
    lost = sum(1 for u in joiners if credited.get(people.get(str(u), -1), 0) == 0)
    duplicated = sum(
        1
        for u in joiners
        if str(u) in people
        and (credited.get(people[str(u)], 0) > 1 or joins.get(people[str(u)], 1) > 1)
    )
    return lost, duplicated


async def run(trials: int = 20, joins: int = 10, seed: int = 10) -> dict[str, Any]:
    rng = random.Random(seed)
    fake = FakeTelegram(limits=FakeLimits().scaled(50))  # the fake's limits never get in the way
    await fake.start()
    folder = Path(tempfile.mkdtemp(prefix="tg-crash-"))
    path = folder / "crash.db"
    url = f"sqlite+aiosqlite:///{path}"
    db = Database(url)
    await db.migrate()
    await db.close()
    bot = BotProcess(fake, folder, url)
    per_trial: list[dict[str, Any]] = []
    try:
        owner = fake.user("Olga", started=True)
        group = fake.add_group("Fans", owner)
        alice = fake.user("Alice", started=True)
        fake.join(group, alice)
        await bot.start()
        fake.say(group, alice, "/invite")
        await _until(lambda: any(INVITE.search(s.text) for s in fake.sent
                                 if s.chat_id == alice["id"]), what="Alice's link")  # fmt: skip
        dm = next(s.text for s in fake.sent if s.chat_id == alice["id"] and INVITE.search(s.text))
        link = INVITE.search(dm).group(0)  # type: ignore[union-attr]
        for trial in range(trials):
            before = bot.text().count("outcome=duplicate")
            people = [fake.user(f"T{trial}N{i}") for i in range(joins)]
            ids = [fake.join(group, person, link) for person in people]
            await _until(lambda first=ids[0]: fake.handed_out >= first, what="the burst fetched")
            await asyncio.sleep(rng.uniform(0.0, 0.15))
            bot.kill()
            await bot.wait()
            await bot.start()
            last = ids[-1]
            await _until(lambda last=last: not [u for u in fake.updates if u["update_id"] <= last]
                         and _pending(path) == 0, what="the catch-up")  # fmt: skip
            lost, duplicated = _outcome(path, alice["id"], [p["id"] for p in people])
            twice = bot.text().count("outcome=duplicate") - before
            per_trial.append({"lost": lost, "duplicated": duplicated, "handled_twice": twice})
        await bot.stop()
    finally:
        if bot.proc is not None and bot.proc.returncode is None:
            bot.kill()
            await bot.wait()
        await fake.stop()
    return {
        "trials": trials,
        "joins_per_trial": joins,
        "joins": trials * joins,
        "lost": sum(t["lost"] for t in per_trial),
        "duplicated": sum(t["duplicated"] for t in per_trial),
        "handled_twice": sum(t["handled_twice"] for t in per_trial),
        "per_trial": per_trial,
    }


def bench() -> Report:
    r = asyncio.run(run())
    report = Report("telegram_crash")
    report.add("SIGKILL trials x joins", f"{r['trials']} x {r['joins_per_trial']}")
    report.add("joins lost", str(r["lost"]), "0", r["lost"] == 0)
    report.add("joins duplicated", str(r["duplicated"]), "0", r["duplicated"] == 0)
    report.add("updates handled twice (no effect)", str(r["handled_twice"]))
    report.data = r
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.telegram_crash")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--joins", type=int, default=10)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.trials, args.joins))
    print(machine_line())
    print({k: v for k, v in result.items() if k != "per_trial"})
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "telegram_crash.json"
    out.write_text(json.dumps({"benchmark": "telegram_crash", "machine": machine(), **result},
                              indent=2) + "\n")  # fmt: skip
    print(f"results: {out}")


if __name__ == "__main__":
    main()
