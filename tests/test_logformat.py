"""Logs: key=value text or one JSON object a line, filters on every handler, quiet libraries."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from bot.logformat import parse_pairs, setup_logging
from tests.fakes.outage import free_port
from tests.fakes.telegram_api import FakeTelegram

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in ("httpx", "apscheduler")}
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)
    for name, lvl in levels.items():
        logging.getLogger(name).setLevel(lvl)


class Redact(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = record.getMessage().replace("s3cret", "***")
        record.args = None
        return True


def test_json_lines_carry_the_same_keys_as_the_text_lines(restore_logging):
    text, js = io.StringIO(), io.StringIO()
    log = logging.getLogger("bot.test")
    setup_logging("INFO", "text", stream=text)
    log.info("event=member.joined platform=%s outcome=%s credited=%s", "console", "new", True)
    setup_logging("INFO", "json", stream=js)
    log.info("event=member.joined platform=%s outcome=%s credited=%s", "console", "new", True)
    log.warning("event=discord.check guild=1 problem=%r", "Give the bot 'Manage Server'")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("event=job.failed job=sweep")
    [text_line] = text.getvalue().splitlines()
    pairs, _ = parse_pairs(text_line.split(" bot.test ", 1)[1])
    lines = [json.loads(line) for line in js.getvalue().splitlines()]
    assert len(lines) == 3  # a traceback stays inside its line
    first = lines[0]
    assert {k: first[k] for k in pairs} == pairs
    assert first["event"] == "member.joined" and first["level"] == "INFO"
    assert first["logger"] == "bot.test" and "time" in first
    assert lines[1]["problem"] == "Give the bot 'Manage Server'"
    assert lines[2]["event"] == "job.failed" and "ValueError: boom" in lines[2]["exc"]


def test_filters_are_on_every_handler_and_libraries_are_quiet(restore_logging):
    out = io.StringIO()
    setup_logging("DEBUG", "json", filters=[Redact()], stream=out)
    logging.getLogger("bot.x").info("event=x token=s3cret")
    logging.getLogger("httpx").info("HTTP Request: POST https://api.telegram.org/bots3cret/getMe")
    logging.getLogger("apscheduler.executors.default").info('Running job "sweep"')
    logging.getLogger("httpx").warning("event=lib.warn")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line.get("event") for line in lines] == ["x", "lib.warn"]
    assert lines[0]["token"] == "***" and "s3cret" not in out.getvalue()


async def test_a_json_run_parses_line_by_line_and_shows_no_secret(tmp_path: Path):
    fake = FakeTelegram(token="424242:json-run-secret")
    await fake.start()
    port = free_port()
    cfg = tmp_path / "bot.toml"
    cfg.write_text(
        f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path}/bot.db"\n'
        "[console]\nenabled = false\n"
        f'[telegram]\nenabled = true\nbase_url = "{fake.base_url}"\n'
        f'[http]\nlisten = "127.0.0.1:{port}"\n'
        '[logging]\nformat = "json"\nlevel = "DEBUG"\n'
    )
    env = {**os.environ, "TELEGRAM_TOKEN": fake.token, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from bot.cli import main; raise SystemExit(main())",
        "run",
        "--config",
        str(cfg),
        cwd=tmp_path,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as session:
            while True:
                assert time.monotonic() < deadline, "the bot never became ready"
                try:
                    async with session.get(f"http://127.0.0.1:{port}/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        owner = fake.user("Olga")
        group = fake.add_group("Fans", owner)
        while not any("I'm set up in Fans" in t for t in fake.texts(group)):
            assert time.monotonic() < deadline, "the bot did not answer in the group"
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await fake.stop()
    assert proc.returncode == 0
    text = err.decode()
    lines = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    events = [line.get("event") for line in lines]
    assert "app.started" in events and "storage.opened" in events
    assert all({"time", "level", "logger"} <= set(line) for line in lines)
    assert fake.token not in text and fake.token.split(":")[1] not in text
