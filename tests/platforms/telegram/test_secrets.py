"""Secrets never reach a log line, and a webhook is authenticated or refuses to start."""

import asyncio
import socket
import time
from pathlib import Path

import pytest
from aiohttp import ClientSession, ClientTimeout
from sqlalchemy.engine import make_url

from config.settings import ConfigError, load
from tests.fakes.bot_process import BotProcess
from tests.fakes.telegram_api import FakeTelegram
from tests.platforms.telegram.conftest import World, texts
from tests.platforms.telegram.helpers import group_with_member

TOKEN = "123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
SECRET = "Webhook_Secret-0123456789"
PASSWORD = "Db-Passw0rd-never-logged"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _until(check, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_full_run_at_debug_logs_no_secret(tmp_path: Path, pg_ready: str):
    fake = FakeTelegram(token=TOKEN)
    await fake.start()
    port = _free_port()
    url = make_url(pg_ready).set(password=PASSWORD).render_as_string(hide_password=False)
    bot = BotProcess(
        fake,
        tmp_path,
        url,
        level="DEBUG",
        telegram={
            "mode": "webhook",
            "webhook_url": f"http://127.0.0.1:{port}/hook",
            "webhook_port": port,
        },
        env={"TELEGRAM_WEBHOOK_SECRET": SECRET},
        # Every library at DEBUG too: a secret in any logger's line would show.
        extra_toml='\n[logging]\nthird_party_level = "DEBUG"\n',
    )
    try:
        await bot.start()
        owner = fake.user("Olga", started=True)
        group = fake.add_group("Fans", owner)
        fake.say(group, owner, "/status")
        await _until(lambda: fake.texts(owner["id"]))
        assert await bot.stop() == 0
    finally:
        if bot.proc is not None and bot.proc.returncode is None:
            bot.kill()
        await fake.stop()
    log = bot.text()
    assert " DEBUG " in log and "event=telegram.started" in log  # it really ran, verbosely
    for secret in (TOKEN, TOKEN.split(":")[1], SECRET, PASSWORD):
        assert secret not in log
    assert "HTTP Request: POST" not in log  # httpx's per-request lines are silenced


async def test_a_rejected_token_is_said_without_the_token(tmp_path: Path, sqlite_url: str):
    fake = FakeTelegram(token=TOKEN)
    await fake.start()
    wrong = "654321:AAWrongTokenWrongTokenWrongToken00"
    bot = BotProcess(fake, tmp_path, sqlite_url, token=wrong, level="DEBUG")
    try:
        assert await bot.run_once() == 2  # a rejected token is final: exit 2, one line
    finally:
        await fake.stop()
    log = bot.text()
    assert "telegram: the token was rejected" in log and "Traceback" not in log
    assert wrong not in log and wrong.split(":")[1] not in log


def test_a_token_put_in_the_wrong_key_is_not_echoed(tmp_path: Path):
    from config.settings import read_token

    with pytest.raises(ConfigError) as bad:
        read_token("telegram", TOKEN, "", environ={})
    assert TOKEN not in str(bad.value) and "telegram.token_env" in str(bad.value)
    with pytest.raises(ConfigError) as bad:
        read_token("telegram", "TELEGRAM_TOKEN", TOKEN.replace(":", ""), environ={})
    assert TOKEN.replace(":", "") not in str(bad.value)
    cfg = tmp_path / "bot.toml"
    cfg.write_text(f'[telegram]\nwebhook_port = "{TOKEN}"\n')
    with pytest.raises(ConfigError) as bad:
        load(cfg, environ={})
    assert TOKEN not in str(bad.value) and "telegram.webhook_port" in str(bad.value)


# -- webhook mode: authenticated or refused ----------------------------------------------------


def test_webhook_mode_needs_a_url(tmp_path: Path):
    cfg = tmp_path / "bot.toml"
    cfg.write_text('[telegram]\nenabled = true\nmode = "webhook"\n')
    with pytest.raises(ConfigError, match=r"telegram\.webhook_url: webhook mode needs"):
        load(cfg, environ={})


async def test_webhook_mode_without_a_secret_refuses_to_start(
    sqlite_url: str, fake: FakeTelegram, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("TELEGRAM_WEBHOOK_SECRET", raising=False)
    port = _free_port()
    world = World(sqlite_url, fake)
    with pytest.raises(ConfigError, match="webhook mode needs a secret"):
        await world.open(mode="webhook", webhook_url=f"http://127.0.0.1:{port}/hook",
                         webhook_port=port)  # fmt: skip
    await world.close()
    assert fake.webhook is None and fake.called("setWebhook") == []


async def test_an_explicitly_unauthenticated_webhook_warns_at_start(
    sqlite_url: str, fake: FakeTelegram, monkeypatch: pytest.MonkeyPatch, caplog
):
    monkeypatch.delenv("TELEGRAM_WEBHOOK_SECRET", raising=False)
    port = _free_port()
    world = World(sqlite_url, fake)
    await world.open(mode="webhook", webhook_url=f"http://127.0.0.1:{port}/hook",
                     webhook_port=port, allow_unauthenticated=True)  # fmt: skip
    try:
        assert "event=telegram.webhook_unauthenticated" in caplog.text
        owner = fake.user("Olga")
        group = fake.add_group("Open Door", owner)
        assert texts(await world.settle(), group)[0].startswith("I'm set up in Open Door.")
    finally:
        await world.close()


@pytest.fixture
async def hook(sqlite_url: str, fake: FakeTelegram, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", "s3cret")
    port = _free_port()
    world = World(sqlite_url, fake)
    await world.open(mode="webhook", webhook_url=f"http://127.0.0.1:{port}/hook",
                     webhook_port=port)  # fmt: skip
    try:
        yield world, f"http://127.0.0.1:{port}/hook"
    finally:
        await world.close()


async def test_the_webhook_refuses_what_telegram_never_sends(hook):
    world, url = hook
    group, _owner, alice = await group_with_member(world)
    fake = world.fake
    fake.webhook = None  # the test posts by hand from here
    update = {"update_id": 999_001, "message": {"message_id": 1, "date": 0,
              "chat": {"id": group, "type": "supergroup", "title": "Fans"},
              "from": alice, "text": "hello"}}  # fmt: skip
    async with ClientSession() as session:
        async with session.post(url, json=update) as r:
            assert r.status == 403  # no secret
        bad = {"X-Telegram-Bot-Api-Secret-Token": "s3cr\u00e9t"}
        async with session.post(url, json=update, headers=bad) as r:
            assert r.status == 403  # a non-ASCII secret is a wrong secret, not a crash
        good = {"X-Telegram-Bot-Api-Secret-Token": "s3cret"}
        async with session.post(url, data=b"x" * 300_000, headers=good) as r:
            assert r.status == 413  # far larger than any update
        async with session.post(url, data=b"[1, 2]", headers=good) as r:
            assert r.status == 400


async def test_a_webhook_client_that_sends_too_slowly_is_cut_off(hook):
    world, url = hook
    assert world.tg is not None and world.tg._webhook is not None
    world.tg._webhook.body_seconds = 0.3

    async def trickle():
        yield b'{"update_id": '
        await asyncio.sleep(2)
        yield b"1}"

    good = {"X-Telegram-Bot-Api-Secret-Token": "s3cret"}
    async with (
        ClientSession(timeout=ClientTimeout(total=5)) as session,
        session.post(url, data=trickle(), headers=good) as r,
    ):
        assert r.status == 408  # a complete body would have been a valid update (200)
