"""A real ``referral-bot run`` process against the fake Bot API (both on 127.0.0.1).

Used where only a separate process tells the truth: SIGKILL in the middle of a burst, and
everything a full run writes to its log.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from tests.fakes.telegram_api import FakeTelegram

RUN = "import sys; from bot.cli import main; sys.exit(main())"
ROOT = str(Path(__file__).resolve().parents[2])  # the project, where `bot` is importable


class BotProcess:
    def __init__(
        self,
        fake: FakeTelegram,
        folder: Path,
        database_url: str,
        *,
        token: str | None = None,
        level: str = "INFO",
        telegram: dict[str, str | int | bool] | None = None,
        env: dict[str, str] | None = None,
        extra_toml: str = "",
    ) -> None:
        self.fake = fake
        self.folder = folder
        self.token = fake.token if token is None else token
        self.level = level
        self.env = env or {}
        self.config = folder / "bot.toml"
        options = {"enabled": True, "base_url": fake.base_url, **(telegram or {})}
        lines = ["[console]", "enabled = false", "", "[database]", f'url = "{database_url}"', "",
                 "[telegram]"]  # fmt: skip
        lines += [f"{k} = {_toml(v)}" for k, v in options.items()]
        self.config.write_text("\n".join(lines) + "\n" + extra_toml)
        self.log = folder / "bot.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.runs = 0

    async def start(self, within: float = 60) -> None:
        """Start the process; returns once it polls (or serves the webhook)."""
        polls = len(self.fake.called("getUpdates"))
        hooks = len(self.fake.called("setWebhook"))
        env = {
            **os.environ,
            "TELEGRAM_TOKEN": self.token,
            "REFERRAL_BOT_LOG_LEVEL": self.level,
            **self.env,
        }
        self.runs += 1
        out = self.log.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", RUN, "run", "--config", str(self.config),
            stdout=out, stderr=out, env=env, cwd=ROOT,
        )  # fmt: skip
        out.close()
        deadline = time.monotonic() + within
        while (
            len(self.fake.called("getUpdates")) <= polls
            and len(self.fake.called("setWebhook")) <= hooks
        ):
            if self.proc.returncode is not None:
                code = self.proc.returncode
                raise RuntimeError(f"referral-bot exited with {code}: {self.text()}")
            if time.monotonic() > deadline:
                raise TimeoutError("referral-bot did not start polling")
            await asyncio.sleep(0.02)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)

    async def wait(self, within: float = 30) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), within)

    async def stop(self, within: float = 30) -> int:
        """SIGTERM, as a service manager stops it."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await self.wait(within)

    async def run_once(self, within: float = 60) -> int:
        """Run until the process exits by itself (a start that is refused)."""
        env = {**os.environ, "TELEGRAM_TOKEN": self.token, "REFERRAL_BOT_LOG_LEVEL": self.level,
               **self.env}  # fmt: skip
        out = self.log.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", RUN, "run", "--config", str(self.config),
            stdout=out, stderr=out, env=env, cwd=ROOT,
        )  # fmt: skip
        out.close()
        return await self.wait(within)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _toml(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
