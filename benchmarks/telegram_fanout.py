"""Telegram fan-out: 600 announcements over 30 groups against a fake Bot API enforcing the limits.

The real path runs: App.start() (outbox worker, scheduler), the real python-telegram-bot, the
Telegram adapter's pacer, HTTP to the fake on 127.0.0.1. The 600 outbox rows are queued in one
transaction, in a shuffled order (as tier grants come), then the clock starts. Done when the fake
has accepted all 600; then we wait a little longer to catch late duplicates.

    python -m benchmarks.telegram_fanout [--groups 30] [--per-group 20] [--speed 1]

``--speed N`` runs Telegram's time limits N times faster in the fake and the pacer (the outbox's
own retry clock stays in whole seconds, so speeds above 1 are harsher on us, never kinder).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sqlite3
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, Report, machine, machine_line
from bot.app import App
from bot.delivery import OutboxWorker
from bot.engine.events import CommunityRef
from bot.engine.notify import to_channel
from bot.engine.text import Mention, t
from bot.platforms.telegram import TELEGRAM_LIMITS, TelegramPlatform
from config.settings import load
from storage.database import Database
from tests.fakes.telegram_api import FakeLimits, FakeTelegram

TARGET_RATIO = 1.10


def minimum_seconds(groups: int, per_group: int, lim: FakeLimits) -> tuple[float, str]:
    """The earliest the last message can be accepted if every limit is used to the full."""
    total = groups * per_group
    per_chat = (per_group - 1) * lim.per_chat_interval
    per_group_window = (math.ceil(per_group / lim.group_max) - 1) * lim.group_window
    overall = (math.ceil(total / lim.global_max) - 1) * lim.global_window
    formula = (
        f"T_min = max((n-1)*{lim.per_chat_interval:g}s per chat, "
        f"(ceil(n/{lim.group_max})-1)*{lim.group_window:g}s per group, "
        f"(ceil(N/{lim.global_max})-1)*{lim.global_window:g}s overall) "
        f"with n={per_group}, N={total} = max({per_chat:g}, {per_group_window:g}, {overall:g})"
    )
    return max(per_chat, per_group_window, overall), formula


async def run(
    groups: int = 30,
    per_group: int = 20,
    speed: float = 1.0,
    defer_after: float | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    limits = FakeLimits().scaled(speed)
    fake = FakeTelegram(limits=limits)
    await fake.start()
    folder = Path(tempfile.mkdtemp(prefix="tg-fanout-"))
    url = f"sqlite+aiosqlite:///{folder / 'fanout.db'}"
    db = Database(url)
    await db.migrate()
    await db.close()
    base = load(environ={})
    settings = replace(
        base,
        database=replace(base.database, url=url),
        console=replace(base.console, enabled=False),
        telegram=replace(base.telegram, enabled=True, base_url=fake.base_url),
    )
    owner = fake.user("Owner")
    chats = [fake.add_group(f"Group {i}", owner) for i in range(groups)]
    fake.updates.clear()  # the bot was added long ago: only the fan-out is measured
    tg = TelegramPlatform(settings.telegram, fake.token, limits=TELEGRAM_LIMITS.scaled(speed))
    if defer_after is not None:
        tg.defer_after = defer_after
    app = App(settings, [tg])
    tasks: list[asyncio.Task] = []
    await app.start()
    # workers > 1: extra outbox workers in this process (what several processes sharing one
    # PostgreSQL do), each claiming small batches; the pacer is shared, so limits still hold.
    extra = [
        OutboxWorker(app.db, app.platforms, app.clock, settings.outbox, batch=2)
        for _ in range(workers - 1)
    ]
    tasks += [asyncio.create_task(w.run(settings.jobs.outbox_poll_seconds)) for w in extra]
    for w in extra:
        app.db.writer.on_outbox.append(w.wake)
    try:
        communities = [
            await app.engine.community(CommunityRef("telegram", str(c), f"Group {i}"))
            for i, c in enumerate(chats)
        ]
        now = app.clock.now()
        rows = []
        for g, community in enumerate(communities):
            for k in range(per_group):
                n = g * per_group + k
                text = t("announce.tier", member=Mention("1", f"m{n}"), tier=f"#{n}", reward="x")
                rows.append(to_channel(community, "general", text, "en", f"fanout:{n}", now))
        random.Random(4).shuffle(rows)
        total = len(rows)
        started = time.monotonic()
        await app.db.write(lambda repo: repo.add_outbox(rows))
        for _ in range(60_000):  # at most 10 minutes
            if len(fake.sent) >= total:
                break
            await asyncio.sleep(0.01)
        elapsed = max(s.at for s in fake.sent) - started if fake.sent else float("nan")
        await asyncio.sleep(2.0 / speed + 1)  # anything sent twice would arrive now
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await app.close()
        await fake.stop()
    markers = [s.text.split("reached ", 1)[1].split("!", 1)[0] for s in fake.sent]
    received = len(set(markers))
    minimum, formula = minimum_seconds(groups, per_group, limits)
    return {
        "groups": groups,
        "messages": total,
        "speed": speed,
        "workers": workers,
        "delivery": f"OutboxWorker, per-chat lanes ({workers} worker(s))",
        "defer_after": tg.defer_after,
        "limits": limits.__dict__,
        "minimum_seconds": round(minimum, 3),
        "formula": formula,
        "seconds": round(elapsed, 3),
        "ratio": round(elapsed / minimum, 3) if minimum else None,
        "target_ratio": TARGET_RATIO,
        "http_429": len(fake.too_many),
        "received_unique": received,
        "lost": total - received,
        "duplicates": len(markers) - received,
        "outbox_deferrals": _deferrals(folder / "fanout.db"),
    }


def _deferrals(path: Path) -> int:
    """Items the adapter handed back to the outbox because their chat was busy (retry_after)."""
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT COALESCE(SUM(attempts), 0) FROM outbox").fetchone()[0])


def table(r: dict[str, Any]) -> str:
    rows = [
        ("messages / groups", f"{r['messages']} / {r['groups']}", ""),
        ("delivery", f"{r['delivery']} x {r['workers']}", ""),
        ("time scale", f"{r['speed']:g}x (1 = Telegram's real limits)", ""),
        ("minimum the limits allow", f"{r['minimum_seconds']:.2f} s", ""),
        ("completion time", f"{r['seconds']:.2f} s", ""),
        ("ratio to minimum", f"{r['ratio']:.3f}", f"<= {TARGET_RATIO}"),
        ("HTTP 429 received", str(r["http_429"]), "0"),
        ("lost", str(r["lost"]), "0"),
        ("duplicates", str(r["duplicates"]), "0"),
        ("items deferred (chat busy)", str(r["outbox_deferrals"]), ""),
    ]
    width = max(len(a) for a, _, _ in rows)
    lines = [f"{a.ljust(width)}  {b}" + (f"   (target {c})" if c else "") for a, b, c in rows]
    return "\n".join([r["formula"], *lines])


def bench() -> Report:
    """For ``make bench``: the fan-out at Telegram's real limits, as a table row set."""
    r = asyncio.run(run())
    report = Report("telegram_fanout")
    report.add("messages / groups", f"{r['messages']} / {r['groups']}")
    report.add("minimum the limits allow", f"{r['minimum_seconds']:.2f} s")
    report.add("completion time", f"{r['seconds']:.2f} s")
    report.add(
        "ratio to minimum",
        f"{r['ratio']:.3f}",
        f"<= {TARGET_RATIO}",
        r["ratio"] is not None and r["ratio"] <= TARGET_RATIO,
    )
    report.add("HTTP 429 received", str(r["http_429"]), "0", r["http_429"] == 0)
    report.add(
        "lost / duplicated",
        f"{r['lost']} / {r['duplicates']}",
        "0 / 0",
        r["lost"] == 0 and r["duplicates"] == 0,
    )
    report.data = r
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.telegram_fanout")
    parser.add_argument("--groups", type=int, default=30)
    parser.add_argument("--per-group", type=int, default=20)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--defer-after", type=float, default=None)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    result = asyncio.run(
        run(args.groups, args.per_group, args.speed, args.defer_after, args.workers)
    )
    print(machine_line())
    print(table(result))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "telegram_fanout.json"
    path.write_text(json.dumps({"benchmark": "telegram_fanout", "machine": machine(), **result},
                               indent=2) + "\n")  # fmt: skip
    print(f"results: {path}")


if __name__ == "__main__":
    main()
