"""Scenario scripts: a readable, runnable specification of the bot's behaviour.

    # comment
    community <name> [program <name>]
    join <user> [via <member>] [code <CODE>] [age <N>d] [in <community>]
    leave <user> [in <community>]
    role <user> admin|moderator|<role-name> [in <community>]
    <user>: <text or /command args...>      # {code:<member>} stands for that member's code
    <user> in <community>: <text or /command args...>
    advance <N>(m|h|d)
    expect <text>
    expect-not <text>

The language is a contract, documented in docs/scenarios.md.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bot.app import App
from bot.engine import codes
from bot.engine.clock import ManualClock
from bot.engine.errors import UserError
from bot.platforms.console import ConsolePlatform
from config.settings import Settings

_DURATION = re.compile(r"^(\d+)([mhd])$")
_UNITS = {"m": 60, "h": 3600, "d": 86400}
_SAY = re.compile(r"^([\w.\-]+):\s?(.*)$")
_SAY_IN = re.compile(r"^([\w.\-]+) in ([\w.\-]+):\s?(.*)$")
_NAME = re.compile(r"^[\w.\-]+$")  # user and community names: letters, digits, _ . -
_CODE_REF = re.compile(r"\{code:([\w.\-]+)\}")
_LINK_TOKEN = "{link-token}"


class ScenarioError(Exception):
    def __init__(self, line_no: int, message: str) -> None:
        super().__init__(f"line {line_no}: {message}")
        self.line_no = line_no


@dataclass
class ScenarioResult:
    transcript: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def _options(words: list[str], allowed: set[str], line_no: int) -> dict[str, str]:
    if len(words) % 2:
        raise ScenarioError(
            line_no, f"expected pairs of <option> <value> from: {', '.join(sorted(allowed))}"
        )
    pairs = dict(zip(words[::2], words[1::2], strict=True))
    unknown = set(pairs) - allowed
    if unknown:
        raise ScenarioError(
            line_no, f"unknown option {sorted(unknown)[0]!r}; allowed: {', '.join(sorted(allowed))}"
        )
    return pairs


def _option(words: list[str], name: str) -> str | None:
    """The value of ``<name> <value>`` among a statement's option words, if given."""
    pairs = dict(zip(words[::2], words[1::2], strict=False))
    return pairs.get(name)


def _check_names(line_no: int, words: list[str]) -> None:
    """The user of join/leave/role, and a via member, are names people can type back."""
    for name in (words[0] if words else "", _option(words[1:], "via")):
        if name is not None and not _NAME.match(name):
            raise ScenarioError(
                line_no, f"{name!r}: user names are letters, digits, _, . and - only"
            )


def _who(word: str, line: str) -> str:
    """The member a statement acts as (for printing a refusal)."""
    said = _SAY_IN.match(line) or _SAY.match(line)
    if said:
        return said.group(1).lower()
    words = line.split()
    return words[1].lower() if word in ("join", "leave", "role") and len(words) > 1 else "console"


class ScenarioRunner:
    def __init__(self, settings: Settings, echo: Callable[[str], None] | None = None) -> None:
        self.clock = ManualClock()
        self.result = ScenarioResult()
        self._since_expect: list[str] = []
        self._expecting = False  # consecutive expects check the same output
        self.echo = echo
        self.console = ConsolePlatform(out=self._bot_line)
        self.app = App(settings, [self.console], clock=self.clock)

    def _bot_line(self, line: str) -> None:
        self.result.transcript.append(line)
        self._since_expect.append(line)
        if self.echo:
            self.echo(line)

    def _note(self, line: str) -> None:
        self.result.transcript.append(line)
        if self.echo:
            self.echo(line)

    async def run_file(self, path: Path) -> ScenarioResult:
        script = await asyncio.to_thread(path.read_text, encoding="utf-8")
        return await self.run_text(script)

    async def run_text(self, script: str) -> ScenarioResult:
        await self.app.open()
        try:
            for line_no, raw in enumerate(script.splitlines(), start=1):
                await self.step(line_no, raw)
        finally:
            await self.app.close()
        return self.result

    async def step(self, line_no: int, raw: str) -> None:
        """Run one line of the scenario language (also what the interactive console reads)."""
        line = raw.strip()
        if line and not line.startswith("#"):
            await self._step(line_no, line)

    async def _settle(self) -> None:
        await self.app.outbox.drain()

    async def _step(self, line_no: int, line: str) -> None:
        word, _, rest = line.partition(" ")
        if word in ("expect", "expect-not"):
            needle = await self._expand(line_no, rest.strip(), None)
            self._expect(line_no, word == "expect", needle)
            return
        if self._expecting:
            self._since_expect = []
            self._expecting = False
        self._note(f"> {line}")
        try:
            await self._act(line_no, word, line)
        except UserError as exc:
            if exc.key.startswith("console."):  # the script's own mistake
                raise ScenarioError(line_no, self.console.render(exc.text)) from None
            # A bot refusal is never a script error: it is printed, and expects can check it.
            self._bot_line(
                f"[bot -> @{_who(word, line)} (private)] {self.console.render(exc.text)}"
            )
        await self._settle()

    async def _act(self, line_no: int, word: str, line: str) -> None:
        console = self.console
        if (said_in := _SAY_IN.match(line)) is not None:  # before keywords: "join in x: hi"
            user, where, text = said_in.groups()
            await console.say(user, await self._expand(line_no, text, where), where)
            return
        rest = line.partition(" ")[2]
        if word in ("join", "leave", "role"):
            rest = await self._expand(line_no, rest, _option(rest.split()[1:], "in"))
            if rest.split():
                _check_names(line_no, rest.split())
        words = rest.split()
        if word == "community" and words:
            if not _NAME.match(words[0]):
                raise ScenarioError(
                    line_no, f"{words[0]!r}: community names are letters, digits, _, . and - only"
                )
            opts = _options(words[1:], {"program"}, line_no)
            await console.add_community(words[0], opts.get("program"))
        elif word == "join" and words:
            opts = _options(words[1:], {"via", "code", "age", "in"}, line_no)
            age = None
            if "age" in opts:
                if not re.fullmatch(r"\d+d", opts["age"]):
                    raise ScenarioError(line_no, "age takes days, e.g. age 30d")
                age = int(opts["age"][:-1])
            await console.join(words[0], opts.get("in"), opts.get("via"), opts.get("code"), age)
        elif word == "leave" and words:
            opts = _options(words[1:], {"in"}, line_no)
            await console.leave(words[0], opts.get("in"))
        elif word == "role" and len(words) >= 2:
            opts = _options(words[2:], {"in"}, line_no)
            await console.set_role(words[0], words[1], opts.get("in"))
        elif word == "advance" and len(words) == 1:
            match = _DURATION.match(words[0])
            if not match:
                raise ScenarioError(line_no, "advance takes a duration like 30m, 12h or 3d")
            self.clock.advance(int(match.group(1)) * _UNITS[match.group(2)])
            await self.app.run_jobs()
        elif (said := _SAY.match(line)) is not None:
            user, text = said.groups()
            await console.say(user, await self._expand(line_no, text, None))
        else:
            raise ScenarioError(line_no, f"cannot read {line!r}; see docs/scenarios.md")

    async def _expand(self, line_no: int, text: str, community: str | None) -> str:
        """{code:<member>}: that member's code as the bot shows it (ABCDE-FGHJK), made if
        needed (a banned member's last code); {link-token}: the latest /link-program token."""
        for member in dict.fromkeys(_CODE_REF.findall(text)):
            code = await self.console.code_of(member, community)
            if code is None:
                raise ScenarioError(line_no, f"{member} has no code and can't get one")
            text = text.replace(f"{{code:{member}}}", codes.display(code))
        if _LINK_TOKEN in text:
            if self.console.last_link_token is None:
                raise ScenarioError(line_no, "{link-token}: no /link-program token shown yet")
            text = text.replace(_LINK_TOKEN, self.console.last_link_token)
        return text

    def _expect(self, line_no: int, present: bool, needle: str) -> None:
        output = "\n".join(self._since_expect)
        found = needle in output
        if found != present:
            what = "expected" if present else "did not expect"
            self.result.failures.append(
                f"line {line_no}: {what} {needle!r} in the bot output since the previous expect"
            )
            self._note(f"! FAILED line {line_no}: {what} {needle!r}")
        else:
            self._note(f"  ok: {'expect' if present else 'expect-not'} {needle}")
        self._expecting = True
