"""The command registry: every command's name, options, audience and handler in one place.

Platforms build their own surfaces from it (slash commands, Bot API commands, console lines);
the behaviour of a command is one hop from its name: ``REGISTRY.get(name).handler``.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.engine import observe
from bot.engine.admin import Actor
from bot.engine.context import Capabilities
from bot.engine.errors import UserError
from bot.engine.events import CommunityRef, UserRef
from bot.engine.models import Audience
from bot.engine.service import LinkMaker, ReferralEngine
from bot.engine.text import Text, t
from bot.engine.text_rules import check_text
from commands.guard import Verdict, guard_of

MENTION = re.compile(r"<@!?(\d+)>")  # a member pasted as a mention


@dataclass(frozen=True, slots=True)
class Reply:
    text: Text
    private: bool = False
    buttons: tuple[tuple[Text, str], ...] = ()  # (label, command line run by whoever presses)


ID_BOUND = 2**31  # an int option above this is an id: its upper bound is never shown


def split_command(line: str) -> tuple[str, list[str]]:
    """``name arg "two words"`` -> (name, args), split like a shell line.

    An unbalanced quote (``/set rules-text Don't cheat``) is read forgivingly: the line is
    split at spaces and the quote stays part of the text, never "no command at all".
    """
    try:
        words = shlex.split(line)
    except ValueError:
        words = line.split()
    return (words[0], words[1:]) if words else ("", [])


@dataclass(frozen=True, slots=True)
class Option:
    name: str
    # text | int | choice | rest (the rest of the line) | raw (the rest, checked by the handler,
    # which knows the field's real name: `set <setting> <value>`) | member (a platform user id,
    # a pasted mention such as <@123>, or a display name)
    kind: str = "text"
    required: bool = True
    choices: tuple[str, ...] = ()
    max_length: int = 200
    min_value: int = 0
    max_value: int = 1_000_000

    def parse(self, raw: str) -> Any:
        if self.kind == "int":
            return self._int(raw)
        if self.kind == "choice":
            value = raw.strip().lower()
            if value not in self.choices:
                raise UserError(
                    "option.not_allowed", option=self.name, allowed=", ".join(self.choices)
                )
            return value
        if self.kind == "raw":
            return raw
        if self.kind == "member":
            mention = MENTION.fullmatch(raw.strip())
            if mention is not None:
                return mention.group(1)
        return check_text(self.name, raw, self.max_length, multiline=self.kind == "rest")

    def _int(self, raw: str) -> int:
        # An id (flag, referral) has no upper bound a person needs to know: the internal one
        # (2**62) is never shown, "a number the bot listed" is.
        is_id = self.max_value > ID_BOUND
        try:
            value = int(raw.strip())
        except ValueError:
            value = None
        if is_id:
            if value is None or value < self.min_value:
                raise UserError("option.not_an_id", option=self.name, low=self.min_value)
            if value > self.max_value:
                raise UserError("option.no_such_id", option=self.name, value=str(value)[:40])
            return value
        if value is None:
            raise UserError(
                "option.not_a_number", option=self.name, low=self.min_value, high=self.max_value
            )
        if not self.min_value <= value <= self.max_value:
            raise UserError(
                "option.out_of_range", option=self.name, low=self.min_value, high=self.max_value
            )
        return value


@dataclass(slots=True)
class CommandContext:
    engine: ReferralEngine
    community: CommunityRef
    user: UserRef
    roles: tuple[str, ...] = ()
    is_admin: bool = False
    is_moderator: bool = False
    make_link: LinkMaker | None = None
    capabilities: Capabilities = field(default_factory=Capabilities)
    # How the platform writes a command for people to type (Discord groups admin commands).
    usage_of: Callable[[Command], str] | None = None
    # The platform's own health check for this community (permissions, intents...).
    diagnose: Callable[[], Awaitable[list[Text]]] | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def usage(self, command: Command) -> str:
        return self.usage_of(command) if self.usage_of else "/" + command.usage()

    @property
    def actor(self) -> Actor:
        return Actor(self.user.user_id, self.user.display_name)


Handler = Callable[[CommandContext], Awaitable["Reply | list[Reply]"]]


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    audience: Audience
    handler: Handler
    options: tuple[Option, ...] = ()

    @property
    def description_key(self) -> str:
        return f"help.{self.name}"

    def usage(self) -> str:
        parts = [self.name]
        for o in self.options:
            label = "|".join(o.choices) if o.kind == "choice" else o.name
            label += "..." if o.kind in ("rest", "raw") else ""
            parts.append(f"<{label}>" if o.required else f"[{label}]")
        return " ".join(parts)

    def parse_tokens(self, tokens: Sequence[str], usage: str | None = None) -> dict[str, Any]:
        """Positional values (console, Telegram) -> typed options; ``rest`` takes the remainder.

        ``usage`` is how the platform writes the command (errors show it); default ``/name``."""
        usage = usage or "/" + self.usage()
        values: dict[str, Any] = {}
        rest = list(tokens)
        for o in self.options:
            if not rest:
                if o.required:
                    raise UserError("option.missing", option=o.name, usage=usage)
                break
            greedy = o.kind in ("rest", "raw")
            raw = " ".join(rest) if greedy else rest.pop(0)
            if greedy:
                rest = []
            values[o.name] = o.parse(raw)
        if rest:
            raise UserError("option.too_many", usage=usage)
        return values

    def parse_named(self, raw: dict[str, Any], usage: str | None = None) -> dict[str, Any]:
        """Named values (Discord slash options) -> typed options, with the same checks."""
        usage = usage or "/" + self.usage()
        unknown = sorted(set(raw) - {o.name for o in self.options})
        if unknown:
            raise UserError("option.unknown", option=unknown[0], usage=usage)
        values: dict[str, Any] = {}
        for o in self.options:
            if raw.get(o.name) is None:
                if o.required:
                    raise UserError("option.missing", option=o.name, usage=usage)
                continue
            values[o.name] = o.parse(str(raw[o.name]))
        return values


class Registry:
    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}

    def command(
        self, name: str, audience: Audience = Audience.MEMBER, options: Sequence[Option] = ()
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            if name in self._commands:
                raise ValueError(f"command {name!r} registered twice")
            self._commands[name] = Command(name, audience, handler, tuple(options))
            return handler

        return register

    def get(self, name: str) -> Command | None:
        return self._commands.get(name.lower())

    def all(self) -> list[Command]:
        return list(self._commands.values())


REGISTRY = Registry()


def allowed(command: Command, ctx: CommandContext) -> bool:
    if command.audience == Audience.ADMIN:
        return ctx.is_admin
    if command.audience == Audience.MODERATOR:
        return ctx.is_admin or ctx.is_moderator
    return True


async def dispatch(
    ctx: CommandContext,
    name: str,
    tokens: Sequence[str] | None = None,
    named: dict[str, Any] | None = None,
) -> list[Reply]:
    """Run a command: look it up, authorize by audience, parse options, call the handler.

    A UserError at any step becomes one private reply explaining it; nothing was written.
    A member over the command budget gets one "slow down" reply, then nothing (an empty list)
    until the window has room again; a refused staff command is counted in the log.
    """
    guard = guard_of(ctx.engine)
    if not (ctx.is_admin or ctx.is_moderator):  # staff working a queue are never slowed down
        verdict, wait = guard.admit(ctx.community.platform, ctx.user.user_id)
        if verdict == Verdict.SLOW_DOWN:
            return [Reply(t("command.slow_down", count=wait), private=True)]
        if verdict == Verdict.DROP:
            return []
    command = REGISTRY.get(name)
    if command is None:
        observe.emit("command", 0.0, command="unknown", outcome="unknown")
        return [Reply(t("command.unknown", name=name[:40]), private=True)]
    started, outcome = time.perf_counter(), "error"
    try:
        if not allowed(command, ctx):
            outcome = "forbidden"
            guard.forbidden(
                ctx.community.platform, ctx.community.external_id, ctx.user.user_id, command.name
            )
            return [
                Reply(
                    t("command.forbidden", name=command.name, audience=command.audience.value),
                    private=True,
                )
            ]
        try:
            usage = ctx.usage(command)
            ctx.options = (
                command.parse_named(named, usage)
                if named is not None
                else command.parse_tokens(tokens or (), usage)
            )
            result = await command.handler(ctx)
        except UserError as exc:
            outcome = "user_error"
            return [Reply(exc.text, private=True)]
        outcome = "ok"
        return result if isinstance(result, list) else [result]
    finally:
        seconds = time.perf_counter() - started
        observe.emit("command", seconds, command=command.name, outcome=outcome)
