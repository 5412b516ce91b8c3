"""Real `referral-bot run` processes for tests: started with a config, fed console lines on
stdin, their output collected as it comes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent / "referral-bot"


@dataclass
class BotProcess:
    name: str
    proc: asyncio.subprocess.Process
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)
    _readers: list[asyncio.Task] = field(default_factory=list)

    async def send(self, *lines: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("".join(f"{line}\n" for line in lines).encode())
        await self.proc.stdin.drain()

    async def wait_for(self, text: str, within: float, *, stream: str = "out") -> str:
        """The first line containing ``text``; fails after ``within`` seconds (a bound on a
        wait, never a speed claim)."""
        lines = self.out if stream == "out" else self.err

        async def look() -> str:
            while True:
                for line in lines:
                    if text in line:
                        return line
                if self.proc.returncode is not None and not self._alive_readers():
                    raise AssertionError(
                        f"{self.name} exited ({self.proc.returncode}) before {text!r}:\n"
                        + "".join(self.err[-30:])
                    )
                await asyncio.sleep(0.1)

        return await asyncio.wait_for(look(), within)

    def _alive_readers(self) -> bool:
        return any(not t.done() for t in self._readers)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)

    async def exited(self, within: float) -> int:
        """The exit code of a process that ends by itself."""
        code = await asyncio.wait_for(self.proc.wait(), within)
        await asyncio.gather(*self._readers, return_exceptions=True)
        return code

    async def stop(self, within: float = 30) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.proc.wait(), within)
        except TimeoutError:
            self.kill()  # never leave a stuck process behind a failed test
            await self.proc.wait()
            raise
        await asyncio.gather(*self._readers, return_exceptions=True)
        return code


async def start_bot(
    name: str,
    config: Path,
    cwd: Path,
    *,
    stdin: int | None = asyncio.subprocess.PIPE,
    env: dict[str, str] | None = None,
) -> BotProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("REFERRAL_BOT_")}
    environ |= {"PYTHONUNBUFFERED": "1"} | (env or {})
    proc = await asyncio.create_subprocess_exec(
        str(BIN),
        "run",
        "--config",
        str(config),
        cwd=cwd,
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environ,
    )
    bot = BotProcess(name, proc)

    async def pump(stream: asyncio.StreamReader | None, into: list[str]) -> None:
        assert stream is not None
        while line := await stream.readline():
            into.append(line.decode(errors="replace"))

    bot._readers = [
        asyncio.create_task(pump(proc.stdout, bot.out)),
        asyncio.create_task(pump(proc.stderr, bot.err)),
    ]
    return bot
