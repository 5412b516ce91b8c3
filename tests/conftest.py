"""Fixtures: the same suite runs on SQLite and, when reachable, on PostgreSQL.

PostgreSQL comes from REFERRAL_BOT_TEST_PG_URL or 127.0.0.1:5432/test. With CI=true it must be
reachable: the PostgreSQL leg fails instead of being skipped. The server is shared with anything
else on the machine, so each test session creates a database of its own (a unique name), migrates
it, and drops it at the end: two runs at the same moment never touch each other's tables.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bot.app import App
from bot.engine.clock import ManualClock
from bot.platforms.console import ConsolePlatform
from config import settings as config
from storage.database import Database
from storage.tables import metadata

PG_URL = os.environ.get(
    "REFERRAL_BOT_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() == "true"


def _run(coro_fn):
    """Run a coroutine to completion from sync code, even when a test loop is running."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro_fn()).result()


async def _pg_reachable() -> str | None:
    engine = create_async_engine(PG_URL)
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        return None
    except Exception as exc:  # the reason is shown in the skip or failure
        return f"{type(exc).__name__}: {exc}"
    finally:
        await engine.dispose()


async def _admin(sql: str) -> None:
    """Run CREATE/DROP DATABASE on the configured server (outside a transaction)."""
    engine = create_async_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text(sql))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrated once; each test gets a copy of the file."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    db = Database(f"sqlite+aiosqlite:///{path}")

    async def go() -> None:
        await db.migrate()
        await db.close()

    _run(go)
    return path


@pytest.fixture(scope="session")
def pg_ready() -> Iterator[str]:
    """A database of this session's own on the shared server, migrated once, dropped at the end."""
    reason = _run(_pg_reachable)
    if reason is not None:
        if IN_CI:
            pytest.fail(f"CI=true but PostgreSQL at {PG_URL} is unreachable: {reason}")
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {reason}")

    name = f"referral_bot_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)

    async def create() -> None:
        await _admin(f'CREATE DATABASE "{name}"')
        db = Database(url)
        await db.migrate()
        await db.close()

    _run(create)
    try:
        yield url
    finally:
        _run(lambda: _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _truncate_pg(url: str) -> None:
    engine = create_async_engine(url)
    names = ", ".join(t.name for t in metadata.sorted_tables)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    await engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "bot.db"
        shutil.copy(template, target)
        return f"sqlite+aiosqlite:///{target}"
    url: str = request.getfixturevalue("pg_ready")
    await _truncate_pg(url)
    return url


def settings_for(url: str) -> config.Settings:
    base = config.load(environ={})
    return replace(base, database=replace(base.database, url=url))


class Harness:
    """A running app on the console platform with a clock the test moves."""

    def __init__(self, url: str) -> None:
        self.clock = ManualClock()
        self.lines: list[str] = []
        self.console = ConsolePlatform(out=self.lines.append)
        self.app = App(settings_for(url), [self.console], clock=self.clock)
        self.engine = self.app.engine

    async def settle(self) -> list[str]:
        """Deliver everything queued; return (and forget) what the bot said."""
        await self.app.outbox.drain()
        said, self.lines[:] = list(self.lines), []
        return said

    async def advance(self, seconds: int) -> list[str]:
        self.clock.advance(seconds)
        await self.app.run_jobs()
        return await self.settle()

    async def say(self, user: str, text: str, community: str | None = None) -> list[str]:
        await self.console.say(user, text, community)
        return await self.settle()


@pytest.fixture
async def harness(db_url: str) -> AsyncIterator[Harness]:
    h = Harness(db_url)
    await h.app.open()
    await h.console.add_community("lounge")
    try:
        yield h
    finally:
        await h.app.close()
