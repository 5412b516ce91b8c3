"""Discord shards split over processes: each process claims only its shards' outbox items and
keeps its own adapter state file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from bot.engine import notify
from bot.engine.models import Community
from bot.engine.text import t
from bot.platforms.discord import DiscordPlatform
from config.settings import DiscordSettings


def _guild_on_shard(shard: int, count: int) -> int:
    return ((1 << 40) + shard) << 22  # (id >> 22) % count == shard for count <= 4


async def test_each_shard_process_claims_only_its_guilds(db_url: str, tmp_path: Path):
    from storage.database import Database

    db = Database(db_url)
    await db.open(migrate=False)
    try:
        rows = [
            notify.to_channel(
                Community(i + 1, "discord", str(_guild_on_shard(i, 4)), f"g{i}", 1),
                None,
                t("days", count=1),
                "en",
                f"note:{i}",
                100,
            )
            for i in range(4)
        ]
        await db.write(lambda repo: repo.add_outbox(rows))
        base = DiscordSettings(enabled=True, shard_count=4)
        first = DiscordPlatform(replace(base, shard_ids=("0", "1")), "t", state_dir=tmp_path)
        second = DiscordPlatform(replace(base, shard_ids=("2", "3")), "t", state_dir=tmp_path)

        async def claimed(platform: DiscordPlatform) -> set[str]:
            items = await db.read(
                lambda repo: repo.due_outbox(1000, 100, ["discord"], {"discord": platform.route()})
            )
            return {i.dedupe_key for i in items}

        assert await claimed(first) == {"note:0", "note:1"}
        assert await claimed(second) == {"note:2", "note:3"}
        assert first.state.path != second.state.path  # no shared state file
    finally:
        await db.close()
