"""`referral-bot run` as a process: it stops at once on a signal, even with the console waiting
for a line on a terminal, and a second process on one SQLite file is refused clearly."""

from __future__ import annotations

import os
import pty
import signal
from pathlib import Path

from tests.processes import start_bot

BOUND = 60  # seconds: a wait that is not over by then means the process is stuck


def _config(tmp_path: Path, db: Path) -> Path:
    path = tmp_path / "bot.toml"
    path.write_text(
        f'[database]\nurl = "sqlite+aiosqlite:///{db}"\n'
        '[console]\ncommunities = ["lounge"]\n[logging]\nlevel = "INFO"\n'
    )
    return path


async def test_sigterm_stops_run_at_once_with_the_console_on_a_terminal(tmp_path: Path):
    config = _config(tmp_path, tmp_path / "bot.db")
    controller, terminal = pty.openpty()  # stdin is a terminal: the console reads lines
    try:
        bot = await start_bot("tty", config, tmp_path, stdin=terminal)
        await bot.wait_for("Type as a member", BOUND)
        os.write(controller, b"join alice\n")
        await bot.wait_for("Welcome to lounge, @alice!", BOUND)
        bot.proc.send_signal(signal.SIGTERM)  # no Enter is pressed after this
        assert await bot.stop(BOUND) == 0
    finally:
        os.close(controller)
        os.close(terminal)
    assert any("event=outbox" in line or "event=app" in line for line in bot.err)


async def test_a_second_process_on_one_sqlite_file_is_refused(tmp_path: Path):
    config = _config(tmp_path, tmp_path / "bot.db")
    first = await start_bot("first", config, tmp_path)
    try:
        await first.wait_for("running on console", BOUND)
        second = await start_bot("second", config, tmp_path)
        assert await second.exited(BOUND) == 2
        said = "".join(second.err)
        assert "another referral-bot process is using" in said
        assert "use PostgreSQL" in said
        assert "Traceback" not in said
        await first.send("join alice")  # the first one is unharmed
        await first.wait_for("Welcome to lounge, @alice!", BOUND)
    finally:
        assert await first.stop(BOUND) == 0
