"""The real python-telegram-bot Application against the fake Bot API, on a copy of SQLite."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot.app import App
from bot.engine.clock import ManualClock
from bot.platforms.telegram import TELEGRAM_LIMITS, TelegramPlatform
from tests.conftest import settings_for
from tests.fakes.telegram_api import FakeLimits, FakeTelegram

SPEED = 20  # Telegram's time limits run 20x faster here: 1 msg/s per chat is 1 per 50 ms
PACING = replace(TELEGRAM_LIMITS.scaled(SPEED), margin=0.5)  # wide margin: test-host jitter


class World:
    """A fake Telegram, and the bot app running against it on a clock the test moves."""

    def __init__(self, db_url: str, fake: FakeTelegram) -> None:
        self.db_url = db_url
        self.fake = fake
        self.clock = ManualClock()
        self._start = self.clock.now()
        self.seen = 0
        self.app: App | None = None
        fake.clock = self.pacer_clock  # Telegram's limits see the time the test moved, too
        self.tg: TelegramPlatform | None = None
        self.call_limits = None  # the pacing of calls that send no message (default: PACING)

    def pacer_clock(self) -> float:
        """Real time, plus however far the test moved the app's clock (429 waits pass)."""
        return time.monotonic() + (self.clock.now() - self._start)

    async def open(self, **options: Any) -> TelegramPlatform:
        settings = settings_for(self.db_url)
        settings = replace(
            settings,
            telegram=replace(
                settings.telegram, enabled=True, base_url=self.fake.base_url, **options
            ),
        )
        self.tg = TelegramPlatform(
            settings.telegram,
            self.fake.token,
            limits=PACING,
            call_limits=self.call_limits,
            pacer_clock=self.pacer_clock,
            poll_timeout=1,
            defer_after=3.0 / SPEED,  # scaled like the limits
            pointer_interval=30.0 / SPEED,
        )
        self.app = App(settings, [self.tg], clock=self.clock)
        await self.app.open()
        return self.tg

    async def close(self) -> None:
        if self.app is not None:
            await self.app.close()
            self.app = None

    async def updates_handled(self, within: float = 10) -> None:
        """Every injected update fetched by the bot and processed by its handlers (including
        updates that handling caused, such as the join after an approved join request)."""
        assert self.tg is not None and self.tg.application is not None
        deadline = time.monotonic() + within
        while True:
            target = max((u["update_id"] for u in self.fake.updates), default=0)
            target = max(target, self.fake.handed_out)
            if self.tg.last_update_id >= target:
                assert self.tg.inbox is not None
                await asyncio.wait_for(self.tg.inbox.idle(), within)
                if self.fake.handed_out <= self.tg.last_update_id and not [
                    u for u in self.fake.updates if u["update_id"] > self.tg.last_update_id
                ]:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"update {target} not handled (at {self.tg.last_update_id})")
            await asyncio.sleep(0.005)

    async def settle(self) -> list[tuple[int, str]]:
        """Handle every update, deliver the outbox; returns (chat, text) sent since last time."""
        await self.updates_handled()
        assert self.app is not None
        await self.app.outbox.drain()
        return self.take()

    def take(self) -> list[tuple[int, str]]:
        new = self.fake.sent[self.seen :]
        self.seen = len(self.fake.sent)
        return [(s.chat_id, s.text) for s in new]

    async def advance(self, seconds: int) -> list[tuple[int, str]]:
        assert self.app is not None
        await self.updates_handled()
        self.clock.advance(seconds)
        await self.app.run_jobs()
        return await self.settle()


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    server = FakeTelegram(limits=FakeLimits().scaled(SPEED))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
    assert server.too_many == [], "the bot exceeded a Telegram limit (the pacer let it through)"


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    target = tmp_path / "bot.db"
    shutil.copy(sqlite_template, target)
    return f"sqlite+aiosqlite:///{target}"


@pytest.fixture
async def world(sqlite_url: str, fake: FakeTelegram) -> AsyncIterator[World]:
    w = World(sqlite_url, fake)
    await w.open()
    try:
        yield w
    finally:
        await w.close()


def texts(sent: list[tuple[int, str]], chat_id: int) -> list[str]:
    return [text for chat, text in sent if chat == chat_id]
