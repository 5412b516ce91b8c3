"""A Discord world for adapter tests: the real discord.py client under SimCord, SQLite, ManualClock.

``World`` builds one guild (system channel #general, #invites, #announcements, a bot role high
enough for reward roles), opens the app without a real connection, and attaches the platform's
client to SimCord. Joins go through tests/fakes/discord_invites.py; ``window()`` lets the burst
window close (virtual time); ``deliver()`` runs the outbox worker.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import discord
import pytest
import simcord
from simcord import GuildHandle, MemberActor, RoleHandle

from bot.app import App
from bot.engine.clock import ManualClock
from bot.platforms.discord import DiscordPlatform
from tests.conftest import settings_for
from tests.fakes import discord_invites

WINDOW = 1.0


class World:
    def __init__(self, tmp_path: Path, template: Path) -> None:
        self.tmp_path = tmp_path
        db = tmp_path / "bot.db"
        shutil.copy(template, db)
        base = settings_for(f"sqlite+aiosqlite:///{db}")
        self.settings = replace(
            base,
            discord=replace(base.discord, enabled=True, invite_channel="invites"),
            program={**base.program, "dm_newcomers": "off"},
        )
        self.clock = ManualClock()
        self.env: simcord.Env | None = None
        self.platform, self.app = self._make()
        self.users = 0

    def _make(self, **kwargs: Any) -> tuple[DiscordPlatform, App]:
        platform = DiscordPlatform(
            self.settings.discord,
            "simcord-token",
            burst_window=WINDOW,
            state_dir=self.tmp_path,
            **kwargs,
        )
        return platform, App(self.settings, [platform], clock=self.clock)

    async def connect(self, **run_options: Any) -> simcord.Env:
        await self.app.db.open()
        self.platform.bind(self.app)
        self.env = simcord.Env(self.platform.client, shard_count=1, **run_options)
        await self.env.start()
        return self.env

    async def build(self) -> None:
        env = self.env
        assert env is not None
        self.guild: GuildHandle = env.create_guild("Lounge")
        self.general = self.guild.create_text_channel("general")
        self.invites = self.guild.create_text_channel("invites")
        self.announcements = self.guild.create_text_channel("announcements")
        env.backend.edit_guild(self.guild.id, {"system_channel_id": self.general.id})
        self.admin_role = self.guild.create_role(
            "Admins", permissions=discord.Permissions(manage_guild=True)
        )
        self.mod_role = self.guild.create_role(
            "Mods", permissions=discord.Permissions(manage_messages=True)
        )
        self.admin = self.guild.add_member(env.create_user("boss"), roles=[self.admin_role])
        self.raise_bot_role()
        await self.window()

    def raise_bot_role(self, position: int = 50) -> None:
        backend = self.env.backend
        guild = backend.guilds[self.guild.id]
        bot_role = next(r for r in guild.roles.values() if r.managed)
        bot_role.position = position
        backend.announce_role_updates(self.guild.id, [bot_role])

    def set_bot_permissions(self, **changes: bool) -> None:
        backend = self.env.backend
        guild = backend.guilds[self.guild.id]
        bot_role = next(r for r in guild.roles.values() if r.managed)
        perms = discord.Permissions(bot_role.permissions)
        perms.update(**changes)
        bot_role.permissions = perms.value
        backend.announce_role_updates(self.guild.id, [bot_role])

    def role(self, name: str, position: int = 5) -> RoleHandle:
        handle = self.guild.create_role(name)
        backend = self.env.backend
        model = backend.guilds[self.guild.id].roles[handle.id]
        model.position = position
        backend.announce_role_updates(self.guild.id, [model])
        return handle

    def user(self, name: str | None = None) -> Any:
        self.users += 1
        return self.env.create_user(name or f"user{self.users}")

    async def member(self, name: str | None = None, **kwargs: Any) -> MemberActor:
        """A member who joined earlier (their join window already closed)."""
        actor = self.guild.add_member(self.user(name), **kwargs)
        await self.window()
        return actor

    def join(self, invite: str | None = None, name: str | None = None, **kw: Any) -> MemberActor:
        return discord_invites.join(self.env, self.guild, self.user(name), invite, **kw)

    async def window(self) -> None:
        """Let every open burst window close and the joins reach the engine."""
        await self.env.advance_time(WINDOW + 0.5)
        await self.env.settle()

    async def deliver(self) -> None:
        await self.app.outbox.drain()
        await self.env.settle()

    async def jobs(self, seconds: int = 0) -> None:
        self.clock.advance(seconds)
        await self.app.run_jobs()
        await self.env.settle()

    def fetches(self) -> int:
        return sum(
            1
            for r in self.env.http_requests
            if r.method == "GET" and r.path.endswith("/invites") and "/guilds/" in r.path
        )

    async def restart(self) -> None:
        """A new process: a new app and platform on the same database and state directory."""
        old = self.app
        old_platform = self.platform
        old_platform.app = None  # downtime: the old process no longer hears anything
        await old.db.close()
        self.platform, self.app = self._make()
        await self.app.db.open()
        self.platform.bind(self.app)

    async def reattach(self) -> None:
        await self.env.restart_bot(self.platform.client)
        await self.env.settle()

    async def close(self) -> None:
        try:
            if self.env is not None:
                await self.env.shutdown()
        finally:
            await self.app.db.close()
        if self.env is not None and self.env.check_errors:
            self.env._raise_errors_since(self.env._errors_acknowledged)


@pytest.fixture
def world_unopened(tmp_path: Path, sqlite_template: Path) -> World:
    return World(tmp_path, sqlite_template)


@pytest.fixture
async def discord_env(world_unopened: World) -> AsyncIterator[simcord.Env]:
    env = await world_unopened.connect()
    try:
        yield env
    finally:
        await world_unopened.close()


@pytest.fixture
async def world(world_unopened: World, discord_env: simcord.Env) -> World:
    await world_unopened.build()
    return world_unopened


async def joins_of(world: World) -> dict[str, dict[str, Any]]:
    """user id -> how their join was recorded: source, candidates, referrer's user id, status."""
    import json

    import sqlalchemy as sa

    async def op(repo: Any) -> dict[str, dict[str, Any]]:
        rows = await repo.conn.execute(
            sa.text(
                "SELECT p.user_id, m.join_source, m.join_details, r.status, o.user_id "
                "FROM memberships m JOIN participants p ON p.id = m.participant_id "
                "LEFT JOIN referrals r ON r.referred_id = p.id "
                "LEFT JOIN participants o ON o.id = r.referrer_id"
            )
        )
        out: dict[str, dict[str, Any]] = {}
        for user_id, source, details, status, referrer in rows:
            candidates = json.loads(details)["candidates"] if details else []
            out[user_id] = {
                "source": source,
                "candidates": sorted(candidates),
                "referrer": referrer,
                "status": status,
            }
        return out

    return await world.app.db.read(op)
