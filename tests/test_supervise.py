"""Start-up that survives the world: a platform that cannot connect never stops the others.

Real discord.py and python-telegram-bot run against loopback servers that refuse, answer 401
or 500, or never answer; the database is reached through a switch that can be turned off.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from bot.app import App
from bot.cli import main
from bot.engine.clock import ManualClock
from bot.platforms.console import ConsolePlatform
from bot.platforms.discord import DiscordPlatform
from bot.platforms.telegram import TelegramPlatform
from bot.supervise import wait_for_database
from tests.conftest import settings_for
from tests.fakes.outage import StatusServer, Switch, discord_api, free_port
from tests.fakes.telegram_api import FakeTelegram

DISCORD_SECRET = "MTIzNDU2Nzg5.discord-secret-token"


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    target = tmp_path / "bot.db"
    shutil.copy(sqlite_template, target)
    return f"sqlite+aiosqlite:///{target}"


@pytest.fixture
async def fake() -> FakeTelegram:
    server = FakeTelegram()
    await server.start()
    yield server
    await server.stop()


async def until(condition: Callable[[], bool], within: float = 15.0) -> None:
    """Wait for something that happens in the background (never a timing assertion)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not become true")
        await asyncio.sleep(0.02)


def build_app(url: str, *, telegram_url: str | None, token: str = "") -> tuple[App, dict]:
    settings = settings_for(url)
    settings = replace(
        settings,
        telegram=replace(settings.telegram, enabled=True, base_url=telegram_url or ""),
        discord=replace(settings.discord, enabled=True),
    )
    lines: list[str] = []
    platforms = {
        "console": ConsolePlatform(out=lines.append),
        "discord": DiscordPlatform(settings.discord, DISCORD_SECRET),
    }
    if telegram_url is not None:
        platforms["telegram"] = TelegramPlatform(settings.telegram, token, poll_timeout=1)
    app = App(settings, list(platforms.values()), clock=ManualClock())
    app.supervisor.base_delay = 0.05  # retries come quickly here; the rule is the same
    app.supervisor.max_delay = 0.2
    platforms["lines"] = lines
    return app, platforms


def retry_lines(caplog: pytest.LogCaptureFixture, platform: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.getMessage().startswith(f"event=platform.retry platform={platform} ")
    ]


async def test_a_refused_discord_leaves_telegram_and_the_console_running(
    sqlite_url: str, fake: FakeTelegram, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO)
    app, p = build_app(sqlite_url, telegram_url=fake.base_url, token=fake.token)
    with discord_api(f"http://127.0.0.1:{free_port()}"):
        await app.open()  # does not raise: Discord is retried in the background
        try:
            await until(lambda: len(retry_lines(caplog, "discord")) >= 2)
            # Telegram works: the bot is added to a group and says it is set up there.
            owner = fake.user("Olga")
            group = fake.add_group("Fans", owner)
            await until(lambda: ("telegram", str(group)) in app.ctx.communities)
            await app.outbox.drain()
            assert any("I'm set up in Fans" in t for t in fake.texts(group))
            # The console works too.
            await p["console"].add_community("lounge")
            await p["console"].join("alice")
            await app.outbox.drain()
            assert any("Welcome to lounge, @alice!" in line for line in p["lines"])
            assert app.supervisor.connected("telegram") == (True, "connected")
            ok, reason = app.supervisor.connected("discord")
            assert not ok and "ClientConnectorError" in reason
        finally:
            await app.close()
    for record in retry_lines(caplog, "discord"):
        assert record.exc_info is None and "\n" not in record.getMessage()
        assert DISCORD_SECRET not in record.getMessage()
    assert not [r for r in caplog.records if r.exc_info and r.name.startswith("bot")]


async def test_telegram_answering_500_is_retried_until_it_recovers(
    sqlite_url: str, fake: FakeTelegram, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO)
    switch = Switch("127.0.0.1", fake.port)
    await switch.start()
    await switch.answer(500)
    app, p = build_app(sqlite_url, telegram_url=f"http://127.0.0.1:{switch.port}/bot")
    p["telegram"].token = fake.token
    with discord_api(f"http://127.0.0.1:{free_port()}"):
        await app.open()
        try:
            await until(lambda: len(retry_lines(caplog, "telegram")) >= 2)
            ok, reason = app.supervisor.connected("telegram")
            assert not ok and "NetworkError" in reason
            await switch.up()  # Telegram is back
            await until(lambda: app.supervisor.connected("telegram")[0])
            owner = fake.user("Olga")
            group = fake.add_group("Fans", owner)
            await until(lambda: ("telegram", str(group)) in app.ctx.communities)
        finally:
            await app.close()
            await switch.stop()
    assert any(
        r.getMessage().startswith("event=platform.connected platform=telegram")
        for r in caplog.records
    )
    for record in retry_lines(caplog, "telegram"):
        assert record.exc_info is None and fake.token not in record.getMessage()


async def test_a_platform_that_never_answers_times_out_and_is_retried(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO)
    app, _p = build_app(sqlite_url, telegram_url=None)
    app.supervisor.start_timeout = 0.3
    with StatusServer(hang=True) as server, discord_api(server.url):
        await app.open()
        try:
            await until(lambda: len(retry_lines(caplog, "discord")) >= 2)
            assert app.supervisor.connected("discord") == (False, "timed out after 0.3s")
            assert app.supervisor.connected("console") == (True, "connected")
        finally:
            await app.close()


def write_config(tmp_path: Path, text: str) -> Path:
    cfg = tmp_path / "bot.toml"
    cfg.write_text(
        f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path}/bot.db"\n'
        "[console]\nenabled = false\n" + text
    )
    return cfg


def test_a_rejected_discord_token_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DISCORD_TOKEN", DISCORD_SECRET)
    cfg = write_config(tmp_path, "[discord]\nenabled = true\n")
    body = {"message": "401: Unauthorized", "code": 0}
    with StatusServer(401, body) as server, discord_api(server.url):
        assert main(["run", "--config", str(cfg)]) == 2
        assert server.requests  # it did ask Discord
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("discord: the token was rejected (401 Unauthorized).")
    assert "DISCORD_TOKEN" in err and "discord.token_file" in err
    assert DISCORD_SECRET not in err


def test_a_rejected_telegram_token_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    secret = "123456:telegram-secret-token"
    monkeypatch.setenv("TELEGRAM_TOKEN", secret)
    body = {"ok": False, "error_code": 401, "description": "Unauthorized"}
    with StatusServer(401, body) as server:
        cfg = write_config(tmp_path, f'[telegram]\nenabled = true\nbase_url = "{server.url}/bot"\n')
        assert main(["run", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("telegram: the token was rejected (401 Unauthorized).")
    assert "TELEGRAM_TOKEN" in err and secret not in err


def test_an_unreachable_database_is_retried_then_named_in_one_line(tmp_path, capsys):
    url = f"postgresql+asyncpg://bot:hunter2@127.0.0.1:{free_port()}/referrals"
    cfg = tmp_path / "bot.toml"
    cfg.write_text(f'[database]\nurl = "{url}"\nstart_retry_seconds = 1\n')
    assert main(["run", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("database: cannot reach postgresql+asyncpg://bot:***@127.0.0.1:")
    assert "hunter2" not in err


async def test_a_database_that_comes_up_late_is_waited_for(pg_ready: str):
    from sqlalchemy.engine import make_url

    pg = make_url(pg_ready)
    switch = Switch(pg.host or "127.0.0.1", pg.port or 5432)
    await switch.start()
    await switch.down()  # the server is not there yet
    url = pg.set(port=switch.port).render_as_string(hide_password=False)

    async def later() -> None:
        await asyncio.sleep(0.5)
        await switch.up()

    task = asyncio.create_task(later())
    try:
        await wait_for_database(url, 30, first_delay=0.1)
        assert switch.connections >= 1  # it got through once the switch was up
    finally:
        await task
        await switch.stop()


async def test_a_token_rejected_on_a_retry_stops_the_bot_with_the_same_line(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO)
    body = {"ok": False, "error_code": 401, "description": "Unauthorized"}
    with StatusServer(401, body) as rejecting:
        switch = Switch("127.0.0.1", rejecting.port)
        await switch.start()
        await switch.answer(502)  # first Telegram is down; when it is back, it says 401
        app, _p = build_app(
            sqlite_url, telegram_url=f"http://127.0.0.1:{switch.port}/bot", token="1:revoked"
        )
        stopped: list[str] = []
        app.supervisor.on_fatal.append(lambda exc: stopped.append(str(exc)))
        with discord_api(f"http://127.0.0.1:{free_port()}"):
            await app.open()
            try:
                await until(lambda: len(retry_lines(caplog, "telegram")) >= 1)
                await switch.up()
                await until(lambda: bool(stopped))
            finally:
                await app.close()
                await switch.stop()
    assert stopped[0].startswith("telegram: the token was rejected (401 Unauthorized).")
    assert app.supervisor.fatal is not None
    assert any(
        "event=platform.rejected platform=telegram" in r.getMessage() for r in caplog.records
    )


async def test_items_for_a_platform_still_being_retried_wait_and_are_never_given_up(
    sqlite_url: str,
):
    app, _p = build_app(sqlite_url, telegram_url=None)
    with discord_api(f"http://127.0.0.1:{free_port()}"):
        await app.open()
        try:
            now = app.clock.now()
            row = {
                "platform": "discord",
                "kind": "dm",
                "payload": '{"community":"1","user":"2","text":{"key":"x","values":{}}}',
                "dedupe_key": "dm-while-down",
                "next_attempt_at": now,
                "created_at": now,
                "attempts": 0,
            }
            await app.db.write(lambda repo: repo.add_outbox([row]))
            for _ in range(app.settings.outbox.max_attempts + 2):  # more tries than allowed
                await app.outbox.drain()
                assert isinstance(app.clock, ManualClock)
                app.clock.advance(60)
            [waiting] = await app.db.read(lambda repo: repo.outbox_backlog())
            assert waiting.platform == "discord" and waiting.waiting == 1  # not failed
            assert app.outbox.failed == 0
        finally:
            await app.close()


async def test_a_discord_gateway_that_gives_up_is_one_line_and_not_ready(
    caplog: pytest.LogCaptureFixture,
):
    from bot.platforms.discord import platform as discord_platform

    settings = settings_for("sqlite+aiosqlite:///unused.db")
    discord = DiscordPlatform(settings.discord, DISCORD_SECRET)

    async def gateway() -> None:  # as client.connect ends on a close code it will not retry
        raise ConnectionError("gateway closed with 4004")

    discord._task = asyncio.create_task(gateway())
    discord._task.add_done_callback(discord_platform._gateway_ended)
    with pytest.raises(ConnectionError):
        await discord._task
    await asyncio.sleep(0)
    assert not discord.is_connected()
    [line] = [r for r in caplog.records if "event=discord.gateway_stopped" in r.getMessage()]
    assert "4004" in line.getMessage() and line.exc_info is None
