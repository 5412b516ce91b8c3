"""Settings: config/defaults.toml, then a TOML file, then REFERRAL_BOT_* environment variables.

Validated at start; every error names the key. Tokens are never read from the TOML file itself,
only from the environment or from a file whose path the TOML names.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

DEFAULTS = Path(__file__).with_name("defaults.toml")
ENV_PREFIX = "REFERRAL_BOT_"


class ConfigError(ValueError):
    """A setting is wrong; the message names the key and what is allowed."""


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "sqlite+aiosqlite:///data/referral-bot.db"
    start_retry_seconds: int = 60  # `run` waits this long for an unreachable database at start


@dataclass(frozen=True)
class JobSettings:
    sweep_seconds: int = 300
    announce_seconds: int = 60
    digest_check_seconds: int = 900
    activity_flush_seconds: int = 5
    outbox_poll_seconds: int = 2
    recheck_seconds: int = 3600
    leader_check_seconds: int = 5  # PostgreSQL: how often a follower tries to become leader


@dataclass(frozen=True)
class OutboxSettings:
    max_attempts: int = 8
    base_backoff_seconds: int = 5
    max_backoff_seconds: int = 3600
    delivery_timeout_seconds: int = 30  # a platform call with no answer by then is a failure
    revive_seconds: int = 3600  # dead letters (attempts used up) get a new try at least this often
    lease_seconds: int = 60  # a claimed item is another process's to take after this (crash)


@dataclass(frozen=True)
class CodeSettings:
    attempt_limit: int = 5
    attempt_window_seconds: int = 600
    lock_seconds: int = 1800


@dataclass(frozen=True)
class FloodSettings:
    """Members can't flood the bot (admins and moderators are never slowed down)."""

    command_budget: int = 5  # commands and button presses per member...
    command_window_seconds: int = 10  # ...within this many seconds; more get one "slow down"
    invite_new_per_day: int = 3  # `/invite new` per member per 24 hours


@dataclass(frozen=True)
class ConsoleSettings:
    enabled: bool = True
    communities: tuple[str, ...] = ("lounge",)
    # `run` reads `advance <N>(m|h|d)` from the console to move this process's clock (tests).
    clock_controls: bool = False


@dataclass(frozen=True)
class DiscordSettings:
    enabled: bool = False
    token_env: str = "DISCORD_TOKEN"  # the token is read from this environment variable...
    token_file: str = ""  # ...or from this file; never from the TOML itself
    guild_ids: tuple[str, ...] = ()  # sync slash commands to these guilds only (empty: global)
    invite_channel: str = ""  # where personal invites are created (empty: the system channel)
    shard_count: int = 0  # 0: one process decides (AutoShardedClient when in many guilds)
    shard_ids: tuple[str, ...] = ()  # the shards this process runs, e.g. ["0", "1"]
    burst_window_ms: int = 1500  # joins within this window share one invite fetch
    # Settle ambiguous joins later from Discord's members-search (undocumented; off by default)
    members_search: bool = False


@dataclass(frozen=True)
class TelegramSettings:
    enabled: bool = False
    token_env: str = "TELEGRAM_TOKEN"
    token_file: str = ""
    base_url: str = "https://api.telegram.org/bot"  # a self-hosted Bot API server goes here
    mode: str = "polling"  # polling | webhook
    webhook_url: str = ""
    webhook_listen: str = "127.0.0.1"
    webhook_port: int = 8443
    webhook_secret_env: str = "TELEGRAM_WEBHOOK_SECRET"
    moderators_chat_id: str = ""
    allow_unauthenticated: bool = False  # webhook without a secret (warned at every start)


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "INFO"
    format: str = "text"  # text: key=value lines | json: one JSON object a line
    third_party_level: str = "WARNING"  # discord.py, python-telegram-bot, httpx, APScheduler...


@dataclass(frozen=True)
class HttpSettings:
    listen: str = ""  # host:port of the health and metrics listener, e.g. "127.0.0.1:8080"
    outbox_stuck_seconds: int = 900  # /readyz fails when a due item waits longer than this


@dataclass(frozen=True)
class Settings:
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    jobs: JobSettings = field(default_factory=JobSettings)
    outbox: OutboxSettings = field(default_factory=OutboxSettings)
    codes: CodeSettings = field(default_factory=CodeSettings)
    flood: FloodSettings = field(default_factory=FloodSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    discord: DiscordSettings = field(default_factory=DiscordSettings)
    telegram: TelegramSettings = field(default_factory=TelegramSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    program: dict[str, Any] = field(default_factory=dict)


_SECTIONS = {f.name: f for f in fields(Settings)}
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _coerce(key: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        if isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {_shown(value)}")
        return value
    if isinstance(default, int):
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a whole number, got {_shown(value)}") from None
        if number < 0:
            raise ConfigError(f"{key}: must not be negative, got {number}")
        return number
    if isinstance(default, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        # Ids may be written as numbers (guild_ids = [123]) or as text (["123"]).
        if not isinstance(value, list) or not all(_is_text_or_id(v) for v in value):
            raise ConfigError(
                f"{key}: expected a list of ids or names, e.g. [123, 456] or "
                f'["lounge"], got {_shown(value)}'
            )
        return tuple(str(v) for v in value)
    if _is_id(value):
        return str(value)  # moderators_chat_id = -100123 is the same as "-100123"
    if not isinstance(value, str):
        raise ConfigError(
            f'{key}: expected text or a whole number, e.g. "name" or 123, got {_shown(value)}'
        )
    return value


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_text_or_id(value: Any) -> bool:
    return isinstance(value, str) or _is_id(value)


def _section(name: str, data: Any) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"[{name}] must be a table of settings")
    cls = _SECTIONS[name].default_factory()  # type: ignore[misc]
    if name == "program":
        return dict(data)
    known = {f.name: getattr(cls, f.name) for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"{name}.{unknown[0]}: unknown setting; allowed: {', '.join(sorted(known))}"
        )
    values = {k: _coerce(f"{name}.{k}", v, known[k]) for k, v in data.items()}
    return type(cls)(**{**known, **values})


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        out.setdefault(section, {})[key] = value
    return out


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def _looks_secret(value: str) -> bool:
    """A long value with no path separator or space: a token, not a file name."""
    return len(value) >= 20 and not any(c in value for c in "/\\ .")


def _shown(value: Any) -> str:
    """A wrong value as an error message shows it, unless it may be a secret in the wrong key."""
    if _looks_secret(str(value)):
        return "a value that looks like a token (not shown)"
    return repr(value)


def read_token(key: str, env_name: str, file: str, environ: dict[str, str] | None = None) -> str:
    """A platform token from the environment or a file; the message never shows the token."""
    env = dict(os.environ if environ is None else environ)
    if not _ENV_NAME.match(env_name):  # e.g. the token itself, pasted into the wrong key
        raise ConfigError(
            f"{key}.token_env: must be the name of an environment variable (letters, digits "
            "and _), not the token itself; the value is not shown here"
        )
    if file:
        path = Path(file)
        if not path.is_file():
            shown = "(not shown: it looks like a token)" if _looks_secret(file) else repr(file)
            raise ConfigError(f"{key}.token_file: no such file {shown}")
        token = path.read_text().strip()
    else:
        token = env.get(env_name, "").strip()
    if not token:
        raise ConfigError(
            f"{key}: no token; set the {env_name} environment variable or {key}.token_file"
        )
    return token


def load(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    data = tomllib.loads(DEFAULTS.read_text())
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"--config: no such file {str(file)!r}")
        try:
            data = _merge(data, tomllib.loads(file.read_text()))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML ({exc})") from None
    data = _merge(data, _env_overrides(dict(os.environ if environ is None else environ)))
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise ConfigError(
            f"[{unknown[0]}]: unknown section; allowed: {', '.join(sorted(_SECTIONS))}"
        )
    settings = Settings(**{name: _section(name, value) for name, value in data.items()})
    if settings.logging.level.upper() not in _LEVELS:
        raise ConfigError(f"logging.level: expected one of {', '.join(_LEVELS)}")
    if settings.logging.format not in ("text", "json"):
        raise ConfigError(f"logging.format: expected text or json, got {settings.logging.format!r}")
    if settings.logging.third_party_level.upper() not in _LEVELS:
        raise ConfigError(f"logging.third_party_level: expected one of {', '.join(_LEVELS)}")
    if settings.http.listen:
        _listen_address("http.listen", settings.http.listen)
    flood = settings.flood
    for key, value in (
        ("command_budget", flood.command_budget),
        ("command_window_seconds", flood.command_window_seconds),
        ("invite_new_per_day", flood.invite_new_per_day),
    ):
        if not 1 <= value <= 1_000_000:
            raise ConfigError(f"flood.{key}: expected a whole number from 1 to 1000000")
    if settings.telegram.mode not in ("polling", "webhook"):
        raise ConfigError("telegram.mode: expected polling or webhook")
    tg = settings.telegram
    if tg.enabled and tg.mode == "webhook" and not tg.webhook_url.strip():
        raise ConfigError(
            "telegram.webhook_url: webhook mode needs the public HTTPS URL Telegram calls, "
            "e.g. https://bot.example.com/telegram/hook"
        )
    url = settings.database.url
    if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        raise ConfigError(
            "database.url: expected sqlite+aiosqlite:///path/file.db or "
            "postgresql+asyncpg://user@host/db"
        )
    return settings


def _listen_address(key: str, value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(
            f'{key}: expected host:port, e.g. "127.0.0.1:8080" or "0.0.0.0:8080", '
            f"got {_shown(value)}"
        )
    return host.strip("[]"), int(port)


def listen_address(settings: HttpSettings) -> tuple[str, int] | None:
    """The health listener's (host, port), or None when it is off."""
    return _listen_address("http.listen", settings.listen) if settings.listen else None
