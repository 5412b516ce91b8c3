"""Three real `referral-bot run` processes on one PostgreSQL database, serving two communities
of one program: concurrent joins (the same people in both), sweeps every second, tier changes
and clock jumps, then the leader killed with SIGKILL. Afterwards the database and everything
the processes posted must add up: counts equal conversions, grants once, nothing twice.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import _truncate_pg
from tests.processes import BIN, BotProcess, start_bot

BOUND = 60  # seconds: a wait not over by then means something is stuck
TAKEOVER = 30  # the promise: a new leader within 30 s of the old one's death
PEOPLE = [f"u{i}" for i in range(24)]  # join both communities at once, in two processes
OTHERS = [f"v{i}" for i in range(8)]  # join alpha through the second alpha process
LATE = [f"w{i}" for i in range(4)]  # join after the leader died

SETUP = """\
community alpha program main
community beta program main
join alice in alpha
role alice admin in alpha
alice: /tier-add Bronze 2 role bronze
alice: /set announce-channel #wins
"""


def _config(folder: Path, name: str, url: str, communities: list[str]) -> Path:
    path = folder / f"{name}.toml"
    listed = ", ".join(f'"{c}"' for c in communities)
    path.write_text(
        f'[database]\nurl = "{url}"\n'
        "[jobs]\nsweep_seconds = 1\nannounce_seconds = 1\ndigest_check_seconds = 1\n"
        "activity_flush_seconds = 1\noutbox_poll_seconds = 1\nrecheck_seconds = 60\n"
        "leader_check_seconds = 1\n"
        f"[console]\ncommunities = [{listed}]\nclock_controls = true\n"
        "[program]\nmin_days = 1\nmin_messages = 1\n"
        '[logging]\nlevel = "INFO"\n'
    )
    return path


async def _scalar(url: str, sql: str) -> int:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(sa.text(sql))).scalar_one() or 0)
    finally:
        await engine.dispose()


async def _rows(url: str, sql: str) -> list[tuple]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return [tuple(r) for r in (await conn.execute(sa.text(sql))).all()]
    finally:
        await engine.dispose()


async def _until(url: str, sql: str, expected: int, what: str) -> None:
    async def poll() -> None:
        while await _scalar(url, sql) != expected:  # noqa: ASYNC110 (polling the database)
            await asyncio.sleep(0.3)

    try:
        await asyncio.wait_for(poll(), BOUND)
    except TimeoutError:
        got = await _scalar(url, sql)
        raise AssertionError(f"{what}: {got}, expected {expected}") from None


UNDELIVERED = "SELECT count(*) FROM outbox WHERE delivered_at IS NULL"
CONVERTED = "SELECT count(*) FROM referrals WHERE status = 'converted'"
# Members whose messages were flushed: only then is a sweep's "not yet" not a 60 s recheck.
POSTED = "SELECT count(*) FROM participants WHERE message_count > 0 AND user_id ~ '^{prefix}'"


def _lines(bots: list[BotProcess], text: str) -> list[str]:
    return [line for bot in bots for line in bot.out if text in line]


@pytest.fixture
async def pg_url(pg_ready: str) -> str:
    await _truncate_pg(pg_ready)
    return pg_ready


async def test_three_processes_on_one_database_add_up(pg_url: str, tmp_path: Path):
    setup = tmp_path / "setup.scenario"
    setup.write_text(SETUP)
    base = _config(tmp_path, "setup", pg_url, ["alpha"])
    made = await asyncio.create_subprocess_exec(
        str(BIN), "simulate", str(setup), "--database", pg_url, "--config", str(base),
        cwd=tmp_path, stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert await asyncio.wait_for(made.wait(), BOUND) == 0

    first = await start_bot("p1", _config(tmp_path, "p1", pg_url, ["alpha"]), tmp_path)
    bots = [first]
    try:
        await first.wait_for("event=leader.acquired", BOUND, stream="err")
        second = await start_bot("p2", _config(tmp_path, "p2", pg_url, ["beta"]), tmp_path)
        third = await start_bot("p3", _config(tmp_path, "p3", pg_url, ["alpha"]), tmp_path)
        bots += [second, third]
        for bot in (second, third):
            await bot.wait_for("running on console", BOUND)

        # The same people join alpha (p1) and beta (p2) at the same moment; others join alpha
        # through p3; the clocks jump apart; a tier is added from the other community.
        await asyncio.gather(
            first.send(*(f"join {p} via alice in alpha" for p in PEOPLE)),
            second.send(*(f"join {p} via alice in beta" for p in PEOPLE)),
            third.send(*(f"join {p} via alice in alpha" for p in OTHERS)),
        )
        await asyncio.gather(
            first.send(*(f"{p}@alpha: hello" for p in PEOPLE)),
            second.send(
                *(f"{p}@beta: hi" for p in PEOPLE),
                "role alice admin in beta",
                "alice@beta: /tier-add Silver 10 role silver",
            ),
            third.send(*(f"{p}@alpha: hey" for p in OTHERS)),
        )
        await _until(pg_url, POSTED.format(prefix="[uv]"), len(PEOPLE) + len(OTHERS), "posted")
        # The clocks jump a day (an NTP step on the host: every process at about once).
        await asyncio.gather(*(bot.send("advance 1d") for bot in bots))
        total = len(PEOPLE) + len(OTHERS)
        await _until(pg_url, CONVERTED, total, "converted referrals")
        await _until(pg_url, UNDELIVERED, 0, "undelivered outbox items")

        first.kill()  # the leader dies without a word
        leader = await asyncio.wait_for(
            _first_of([b.wait_for("event=leader.acquired", BOUND, stream="err") for b in bots[1:]]),
            TAKEOVER,
        )
        assert "event=leader.acquired" in leader

        await third.send(
            *(f"join {p} via alice in alpha" for p in LATE),
            *(f"{p}@alpha: hello" for p in LATE),
            "role alice admin in alpha",
            "alice@alpha: /tier-add Gold 30 role gold",
        )
        await _until(pg_url, POSTED.format(prefix="w"), len(LATE), "posted after the takeover")
        await asyncio.gather(second.send("advance 2d"), third.send("advance 2d"))
        await _until(pg_url, CONVERTED, total + len(LATE), "converted after the takeover")
        await _until(pg_url, UNDELIVERED, 0, "undelivered after the takeover")
        for bot in (second, third):
            assert await bot.stop(BOUND) == 0
    finally:
        for bot in bots:
            if bot.proc.returncode is None:
                bot.kill()
                await bot.proc.wait()

    converted = total + len(LATE)
    errors = [line for b in bots for line in b.err if "Traceback" in line or "ERROR" in line]
    assert errors == []  # no failed join, no crashed job, no integrity error
    # The leaderboard equals the converted referrals, per referrer and in all.
    assert (
        await _scalar(
            pg_url,
            "SELECT count FROM leaderboard_counts lc"
            " JOIN participants p ON p.id = lc.participant_id"
            " WHERE p.user_id = 'alice' AND lc.period = 'all'",
        )
        == converted
    )
    assert (
        await _scalar(pg_url, "SELECT sum(count) FROM leaderboard_counts WHERE period = 'all'")
        == converted
    )
    # Each of the same people is one participant, a member of both communities, referred once.
    for person in PEOPLE[:3] + PEOPLE[-3:]:
        assert (
            await _scalar(pg_url, f"SELECT count(*) FROM participants WHERE user_id = '{person}'")
            == 1
        )
        assert (
            await _scalar(
                pg_url,
                "SELECT count(*) FROM memberships m JOIN participants p ON p.id = m.participant_id"
                f" WHERE p.user_id = '{person}'",
            )
            == 2
        )
    assert await _scalar(pg_url, "SELECT count(DISTINCT referred_id) FROM referrals") == converted
    # Every due tier granted exactly once, and nothing granted below its threshold.
    for tier in ("Bronze", "Silver", "Gold"):
        granted = await _scalar(
            pg_url, f"SELECT count(*) FROM grants WHERE label = '{tier}' AND status <> 'revoked'"
        )
        assert granted == 1, (tier, await _rows(pg_url, "SELECT label, status FROM grants"))
        for room in ("alpha", "beta"):  # the role is applied once in each community
            given = f"[bot -> #{room}] (role {tier.lower()} given to @alice)"
            assert len(_lines(bots, given)) == 1
    assert (
        await _scalar(
            pg_url,
            "SELECT count(*) FROM grants g JOIN participants p ON p.id = g.participant_id"
            " WHERE p.user_id <> 'alice' AND g.side = 'referrer'",
        )
        == 0
    )
    # No outbox row twice, and nothing posted twice (the killed leader's work included).
    assert await _scalar(pg_url, "SELECT count(*) - count(DISTINCT dedupe_key) FROM outbox") == 0
    announced = _lines(bots, "[bot -> #alpha/wins]")
    assert len(announced) == len(set(announced)), announced  # digests included
    reached = [line for line in announced if "alice reached" in line]
    assert len(reached) == 3, reached  # Bronze, Silver and Gold, each once
    for person in PEOPLE:
        assert len(_lines(bots, f"Welcome to alpha, @{person}!")) == 1
        assert len(_lines(bots, f"Welcome to beta, @{person}!")) == 1


async def _first_of(waits: list) -> str:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task.exception() is None:
                return task.result()
        raise AssertionError("no process took the lead")
    finally:
        for task in tasks:
            task.cancel()
