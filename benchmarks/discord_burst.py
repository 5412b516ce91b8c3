"""Discord join burst: 1,000 joins over 50 personal invites in one guild, within a few seconds.

The real adapter (discord.py under SimCord, the engine on SQLite) attributes the joins. Reported:
REST calls per join spent on attribution (an InviteManager-style tracker makes one invite fetch
per join: 1.0), attribution accuracy against the ground truth (wrong credits, determinable joins
credited, ambiguous ones) and the wall time to process the burst.

Two arrival patterns over the same invites:
- ``burst``: 1,000 joins in ~4 s, every invite active at once (a raid or a viral post);
- ``waves``: the same joins, one invite's cluster after another, each cluster alone in its
  burst window (links shared one after the other).

A join is *determinable* when every join of its burst window came through invites of one owner:
then the uses alone say who invited it. Otherwise no tracker can know, and the adapter records it
as ambiguous with the candidates instead of guessing.

A third run replays ``waves`` with 5 % of the invite fetches failing (every 20th answers 500):
the joins of a failed window are unknown, the baseline is rebuilt, and nobody may be credited
wrongly.

Run: ``python -m benchmarks.discord_burst``.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import discord
import simcord

from benchmarks.common import RESULTS, Report, log, machine_line
from bot.app import App
from bot.engine.clock import ManualClock
from bot.engine.events import CommunityRef, UserRef
from bot.platforms.discord import DiscordPlatform
from config.settings import load
from tests.fakes.discord_invites import join

NAME = "discord_burst"
JOINS = 1_000
INVITES = 50
WINDOW = 1.5
TICK = 0.05  # joins are released every 50 ms of virtual time
TARGET_CALLS = 0.05


def arrivals(pattern: str, rng: random.Random) -> list[tuple[float, int]]:
    """(time, invite index) for every join."""
    per = JOINS // INVITES
    if pattern == "burst":
        return sorted((rng.uniform(0, 4.0), i) for i in range(INVITES) for _ in range(per))
    gap = WINDOW + 0.6  # each invite's cluster alone in its window
    return sorted(
        (k * gap + rng.uniform(0, 0.4), i)
        for k, i in enumerate(rng.sample(range(INVITES), INVITES))
        for _ in range(per)
    )


FAIL_EVERY = 20  # the faults run: every 20th invite fetch fails (5 %)


async def scenario(pattern: str, workdir: Path, fail_every: int = 0) -> dict[str, Any]:
    name = f"{pattern}-faults" if fail_every else pattern
    db = workdir / f"{name}.db"
    settings = load(environ={})
    settings = replace(
        settings,
        database=replace(settings.database, url=f"sqlite+aiosqlite:///{db}"),
        discord=replace(settings.discord, enabled=True, invite_channel="invites"),
        program={"dm_newcomers": "off"},
    )
    platform = DiscordPlatform(
        settings.discord, "bench", burst_window=WINDOW, state_dir=workdir / name
    )
    app = App(settings, [platform], clock=ManualClock())
    await app.db.open()
    platform.bind(app)
    env = simcord.Env(platform.client, shard_count=1, settle_timeout=60)
    await env.start()
    real_invites = discord.Guild.invites
    fetched = failed = 0

    async def flaky(guild: discord.Guild) -> Any:
        nonlocal fetched, failed
        fetched += 1
        if fail_every and fetched % fail_every == 0:
            failed += 1
            # what env.inject_error does, from inside the bot's own call: Discord answers 500
            env.backend.faults.append(
                {
                    "method": "GET",
                    "path": f"/guilds/{guild.id}/invites",
                    "status": 500,
                    "code": 0,
                    "message": "Internal Server Error (benchmark fault)",
                    "times": 1,
                }
            )
        return await real_invites(guild)

    discord.Guild.invites = flaky  # type: ignore[method-assign]
    try:
        result = await _run(pattern, env, platform, app)
        result["pattern"] = name
        result["failed_fetches"] = failed
        return result
    finally:
        discord.Guild.invites = real_invites  # type: ignore[method-assign]
        await env.shutdown()
        await app.db.close()


async def _run(
    pattern: str, env: simcord.Env, platform: DiscordPlatform, app: App
) -> dict[str, Any]:
    guild = env.create_guild("Burst")
    env.backend.edit_guild(guild.id, {"system_channel_id": guild.create_text_channel("general").id})
    guild.create_text_channel("invites")
    await env.settle()
    dguild = platform.client.get_guild(guild.id)
    assert dguild is not None
    ref = CommunityRef("discord", str(guild.id), guild.name)
    owners, codes = [], []
    members = [guild.add_member(env.create_user(f"owner{i}")) for i in range(INVITES)]
    await env.advance_time(WINDOW + 0.5)  # their own joins are recorded first
    for owner in members:
        info = await app.engine.invite(
            ref, UserRef(str(owner.id), owner.name), platform.create_referral_link
        )
        owners.append(str(owner.id))
        codes.append(info.link.rsplit("/", 1)[1])
    await env.settle()

    batches: list[list[str]] = []
    deliver = platform.tracker.deliver

    async def observed(g: Any, members: list[Any], verdicts: list[Any]) -> None:
        batches.append([str(m.id) for m in members])
        await deliver(g, members, verdicts)

    platform.tracker.deliver = observed
    truth: dict[str, str] = {}
    rng = random.Random(7)
    requests_before = len(env.http_requests)
    started = time.perf_counter()
    now = 0.0
    for at, index in arrivals(pattern, rng):
        tick = round(at / TICK) * TICK
        if tick > now:
            await env.advance_time(tick - now)
            now = tick
        member = join(env, guild, env.create_user(f"j{len(truth)}"), codes[index])
        truth[str(member.id)] = owners[index]
    await env.advance_time(WINDOW + 0.5)
    await env.settle()
    seconds = time.perf_counter() - started
    calls = env.http_requests[requests_before:]
    fetches = [c for c in calls if c.method == "GET" and "/invites" in c.path]

    recorded = await _recorded(app)
    determinable = {
        user for batch in batches if len({truth[u] for u in batch}) == 1 for user in batch
    }
    wrong = [u for u, owner in truth.items() if recorded[u][1] not in (None, owner)]
    credited = [u for u in truth if recorded[u][1] == truth[u]]
    ambiguous = [u for u in truth if recorded[u][0] == "ambiguous"]
    return {
        "pattern": pattern,
        "joins": len(truth),
        "windows": len(batches),
        "rest_calls": len(calls),
        "invite_fetches": len(fetches),
        "rest_calls_per_join": len(calls) / len(truth),
        "wrong": len(wrong),
        "determinable": len(determinable),
        "credited": len(credited),
        "determinable_credited": len(determinable & set(credited)),
        "ambiguous": len(ambiguous),
        "seconds": seconds,
        "virtual_seconds": now,
    }


async def _recorded(app: App) -> dict[str, tuple[str, str | None]]:
    import sqlalchemy as sa

    async def op(repo: Any) -> dict[str, tuple[str, str | None]]:
        rows = await repo.conn.execute(
            sa.text(
                "SELECT p.user_id, m.join_source, o.user_id FROM memberships m "
                "JOIN participants p ON p.id = m.participant_id "
                "LEFT JOIN referrals r ON r.referred_id = p.id "
                "LEFT JOIN participants o ON o.id = r.referrer_id"
            )
        )
        return {u: (s, o) for u, s, o in rows}

    return await app.db.read(op)


async def run() -> dict[str, Any]:
    report = Report(NAME)
    started = time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for pattern in ("burst", "waves"):
            log(f"{pattern}: {JOINS} joins over {INVITES} invites")
            results[pattern] = await scenario(pattern, Path(tmp))
        log(f"waves with 1 in {FAIL_EVERY} invite fetches failing")
        results["waves-faults"] = await scenario("waves", Path(tmp), fail_every=FAIL_EVERY)
    for pattern, r in results.items():
        if pattern.endswith("-faults"):
            report.add(
                f"{pattern}: wrong attributions",
                f"{r['wrong']} ({r['failed_fetches']} of {r['invite_fetches']} fetches failed)",
                "0",
                r["wrong"] == 0,
            )
            report.add(
                f"{pattern}: credited / determinable",
                f"{r['credited']} / {r['determinable']}",
                "failed windows: unknown",
            )
            report.add(
                f"{pattern}: REST calls per join", f"{r['rest_calls_per_join']:.4f}", "(rebuilds)"
            )
            continue
        per = r["rest_calls_per_join"]
        report.add(
            f"{pattern}: REST calls per join",
            f"{per:.4f} ({r['invite_fetches']} fetches / {r['joins']} joins)",
            f"<= {TARGET_CALLS} (naive tracker: 1.0)",
            per <= TARGET_CALLS,
        )
        report.add(f"{pattern}: wrong attributions", str(r["wrong"]), "0", r["wrong"] == 0)
        report.add(
            f"{pattern}: determinable joins credited",
            f"{r['determinable_credited']} / {r['determinable']}",
            "all",
            r["determinable_credited"] == r["determinable"],
        )
        report.add(f"{pattern}: ambiguous (candidates kept)", str(r["ambiguous"]))
        report.add(f"{pattern}: burst windows", str(r["windows"]))
        report.add(
            f"{pattern}: time to process",
            f"{r['seconds']:.2f} s wall ({r['virtual_seconds']:.1f} s of joins)",
        )
    report.data = results
    report.seconds = time.perf_counter() - started
    report.write()
    return {"report": report, **results}


def main() -> None:
    result = asyncio.run(run())
    report: Report = result["report"]
    from benchmarks.__main__ import table

    print(machine_line())
    print(table([report]))
    print(f"written: {RESULTS / (NAME + '.json')}")


if __name__ == "__main__":
    main()
